"""Which client files this hospital's data steward approved: by name, path and SHA-256.

A client plan is the hospital's own code on its own machine; the coordinator never sends code
and never learns the file. The steward approves the file as it is now; any later edit changes
its SHA-256 (of the file's bytes, what ``sha256sum client.py`` prints) and the node refuses it
until re-approved. Only the one file is hashed: modules it imports are outside the approval, so
a client should be one self-contained file (its imports: installed libraries).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from medfed.errors import ConfigError, PolicyError

_FILE = "client_plans.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class ApprovedClient:
    name: str
    path: str
    sha256: str


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def default_name(path: Path) -> str:
    """A plan name from a file name: ``heart_client.py`` -> ``heart_client``."""
    return re.sub(r"[^a-z0-9_.-]", "_", path.stem.lower()).lstrip("_.-") or "client"


class ClientApprovals:
    """The steward's approved client files, in ``<state_dir>/client_plans.json``."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / _FILE

    def approved(self) -> list[ApprovedClient]:
        if not self._path.exists():
            return []
        doc = json.loads(self._path.read_text(encoding="utf-8"))
        return [ApprovedClient(**entry) for entry in doc.get("approved_clients", [])]

    def approve(self, path: Path, name: str = "") -> ApprovedClient:
        """Approve ``path`` as it is now, under ``name`` (default: the file's stem)."""
        path = path.resolve()
        if not path.is_file():
            raise ConfigError(f"client file {path} does not exist")
        name = name or default_name(path)
        if not _NAME.match(name):
            raise ConfigError(f"client plan name {name!r} must match {_NAME.pattern}")
        entry = ApprovedClient(name, str(path), file_sha256(path.read_bytes()))
        self._write([*(e for e in self.approved() if e.name != name), entry])
        return entry

    def revoke(self, name: str) -> None:
        self._write([e for e in self.approved() if e.name != name])

    def entry(self, name: str) -> ApprovedClient:
        for entry in self.approved():
            if entry.name == name:
                return entry
        raise PolicyError(
            "plan_not_approved",
            f"client plan {name!r} is not approved by this hospital (approve its file with "
            f"`medfed node plan approve-client path/to/client.py --name {name}`)",
        )

    def for_file(self, path: Path) -> ApprovedClient:
        """The approval of the file at ``path`` (the drop-in runner's check)."""
        wanted = str(path.resolve())
        for entry in self.approved():
            if entry.path == wanted:
                return entry
        raise PolicyError(
            "plan_not_approved",
            f"client file {wanted} is not approved by this hospital (approve it with "
            f"`medfed node plan approve-client {path}`)",
        )

    def _write(self, entries: list[ApprovedClient]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"approved_clients": [asdict(e) for e in entries]}
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".client-plans-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2)
        os.replace(tmp, self._path)


def read_approved(entry: ApprovedClient, requested_sha256: str = "") -> bytes:
    """The file's bytes, if they are the ones approved (and the study's pin, if it pins one);
    PolicyError with the reason otherwise. The caller runs these bytes, not a re-read file."""
    try:
        data = Path(entry.path).read_bytes()
    except OSError as exc:
        raise PolicyError(
            "plan_changed", f"approved client file {entry.path} cannot be read: {exc}"
        ) from exc
    found = file_sha256(data)
    if found != entry.sha256:
        raise PolicyError(
            "plan_changed",
            f"client file {entry.path} changed since it was approved (approved sha256 "
            f"{entry.sha256[:12]}…, now {found[:12]}…); re-approve it to run it",
        )
    if requested_sha256 and requested_sha256 != found:
        raise PolicyError(
            "plan_hash_mismatch",
            f"study asks for client plan {entry.name!r} with hash {requested_sha256[:12]}…, "
            f"this hospital's file is {found[:12]}…",
        )
    return data
