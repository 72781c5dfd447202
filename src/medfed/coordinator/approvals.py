"""Which hospitals may train in a study that requires protocol approval, and what the study says
while it waits for the rest."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from medfed.coordinator.spec import StudySpec


def approval_gate(
    spec: StudySpec, online: Sequence[str], approved: Collection[str]
) -> tuple[list[str], str]:
    """The online hospitals that approved, or ([], why the study waits)."""
    if not spec.approvals:
        return list(online), ""
    sha = spec.sha256
    how = f"each data steward runs `medfed node protocol approve {sha}`"
    if spec.approvals == "all":
        missing = [n for n in spec.nodes if n not in approved]
        if missing:
            return [], (
                f"waiting for protocol approval of spec {sha[:12]}… from every hospital; "
                f"missing: {', '.join(missing)} ({how})"
            )
    else:
        needed = int(spec.approvals)
        counted = [n for n in approved if not spec.nodes or n in spec.nodes]
        if len(counted) < needed:
            others = [n for n in spec.nodes if n not in approved]
            pending = f"; not yet: {', '.join(others)}" if others else ""
            return [], (
                f"waiting for protocol approval of spec {sha[:12]}…: {len(counted)} of the "
                f"{needed} hospitals needed approved{pending} ({how})"
            )
    return [n for n in online if n in approved], ""
