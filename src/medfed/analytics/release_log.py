"""The site's record of what it has released for a study: the cross-query differencing guard.

Two releases over subsets A and B give, by subtraction, statistics over A \\ B and B \\ A. The site
therefore refuses a subset when either one-sided difference with any earlier released subset of the
same study holds between 1 and k - 1 persons. This implies the symmetric-difference rule
(``0 < |A ^ B| < k`` refused) and also catches "same cohort minus one, plus ten others".

The log also pins the study to one set of bin edges (their fingerprint): re-asking with shifted
edges would difference two histograms of the same persons into a sliver bin. Changing the group
column is allowed: its strata are subsets like any other and pass the same check.

Members are kept as sorted person ids. The file lives in the node's state directory and never
leaves the site; it holds nothing the site's own database does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medfed.errors import DisclosureError, StoreError


@dataclass(frozen=True)
class Release:
    """One released subset: its name in the query and its members."""

    name: str
    members: npt.NDArray[np.int64]

    @property
    def size(self) -> int:
        return int(self.members.size)


class ReleaseLog:
    """Released subsets of one study at one site; in memory, or persisted to a JSON file."""

    def __init__(self, study: str, path: Path | None = None) -> None:
        self.study = study
        self.path = path
        self.spec_fingerprint: str | None = None
        self.releases: list[Release] = []
        if path is not None and path.exists():
            self._load(path)

    @classmethod
    def in_state_dir(cls, state_dir: Path, study: str) -> ReleaseLog:
        """The log of ``study`` under ``state_dir/analytics/``."""
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in study)
        return cls(study, state_dir / "analytics" / f"{safe}.releases.json")

    def check(
        self, subsets: Mapping[str, npt.NDArray[np.int64]], spec_fingerprint: str, k: int
    ) -> None:
        """Refuse the query if it would difference against an earlier release."""
        if self.spec_fingerprint not in (None, spec_fingerprint):
            raise DisclosureError(
                f"study {self.study!r} already released histograms with other bin edges: "
                "shifted edges could difference two releases into a sliver bin"
            )
        for name, raw in subsets.items():
            members = np.unique(raw.astype(np.int64))
            for earlier in self.releases:
                only_new = int(np.setdiff1d(members, earlier.members, assume_unique=True).size)
                only_old = int(np.setdiff1d(earlier.members, members, assume_unique=True).size)
                if 0 < only_new < k or 0 < only_old < k:
                    raise DisclosureError(
                        f"subset {name!r} differs from the earlier released {earlier.name!r} by "
                        f"{only_new} added and {only_old} removed persons: below k={k}, refused"
                    )

    def record(self, subsets: Mapping[str, npt.NDArray[np.int64]], spec_fingerprint: str) -> None:
        """Remember released subsets (an identical one is kept once) and persist the log."""
        self.spec_fingerprint = spec_fingerprint
        for name, raw in subsets.items():
            members = np.unique(raw.astype(np.int64))
            if not any(np.array_equal(members, r.members) for r in self.releases):
                self.releases.append(Release(name, members))
        if self.path is not None:
            self._save(self.path)

    def _save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "study": self.study,
            "spec": self.spec_fingerprint,
            "releases": [{"name": r.name, "members": r.members.tolist()} for r in self.releases],
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text())
            if doc["study"] != self.study:
                raise StoreError(f"{path} is the release log of {doc['study']!r}")
            self.spec_fingerprint = doc["spec"]
            self.releases = [
                Release(str(r["name"]), np.asarray(r["members"], dtype=np.int64))
                for r in doc["releases"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"release log {path} is unreadable: {exc}") from exc
