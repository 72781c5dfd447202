"""The hospital's local policy: which training plans its data steward approved, and whether a
study's pinned cohort spec is the one registered here.

A plan is approved by name, version and the SHA-256 of its installed code. If the code changes
(an upgrade, a tampered file), the hash changes and the node refuses until the steward re-approves.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medfed.errors import PolicyError
from medfed.training.registry import get_plan, plan_sha256

if TYPE_CHECKING:
    from medfed.data.registry import DatasetEntry


@dataclass(frozen=True)
class ApprovedPlan:
    name: str
    version: str
    sha256: str


class LocalPolicy:
    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "policy.json"

    def approved(self) -> list[ApprovedPlan]:
        if not self._path.exists():
            return []
        doc = json.loads(self._path.read_text())
        return [ApprovedPlan(**entry) for entry in doc.get("approved_plans", [])]

    def approve(self, name: str, version: str) -> ApprovedPlan:
        """Approve the plan as installed here now (its current code hash)."""
        plan = get_plan(name, version)
        entry = ApprovedPlan(name, version, plan_sha256(plan))
        kept = [p for p in self.approved() if (p.name, p.version) != (name, version)]
        self._write([*kept, entry])
        return entry

    def revoke(self, name: str, version: str) -> None:
        self._write([p for p in self.approved() if (p.name, p.version) != (name, version)])

    def check(self, name: str, version: str, requested_sha256: str) -> None:
        """Raise PolicyError unless this exact plan is approved and installed unchanged."""
        match = [p for p in self.approved() if (p.name, p.version) == (name, version)]
        if not match:
            raise PolicyError(
                "plan_not_approved",
                f"training plan {name} {version} is not approved by this hospital "
                f"(approve it with `medfed node plan approve {name} {version}`)",
            )
        installed = plan_sha256(get_plan(name, version))
        if installed != match[0].sha256:
            raise PolicyError(
                "plan_changed",
                f"installed code of plan {name} {version} changed since it was approved",
            )
        if requested_sha256 and requested_sha256 != installed:
            raise PolicyError(
                "plan_hash_mismatch",
                f"study asks for plan {name} {version} with hash {requested_sha256[:12]}…, "
                f"this hospital runs {installed[:12]}…",
            )

    def _write(self, plans: list[ApprovedPlan]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"approved_plans": [asdict(p) for p in plans]}
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".policy-")
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, indent=2)
        os.replace(tmp, self._path)


def check_cohort(entry: DatasetEntry, pinned: str) -> None:
    """Refuse a task whose study pins an OMOP cohort/feature spec other than the one this
    hospital's steward registered under the dataset's name (``pinned`` "": any)."""
    if not pinned:
        return
    if entry.kind != "omop":
        raise PolicyError(
            "cohort_mismatch",
            f"the study pins cohort spec {pinned[:16]}…, but dataset {entry.name!r} is a "
            f"{entry.kind} dataset here, not an OMOP cohort",
        )
    if entry.sha256 != pinned:
        raise PolicyError(
            "cohort_mismatch",
            f"the study pins cohort spec {pinned[:16]}…, but dataset {entry.name!r} is registered "
            f"here with spec {entry.sha256[:16]}…: the steward registers the study's spec "
            "(`medfed node dataset add-omop`) or the study is refused at this hospital",
        )
