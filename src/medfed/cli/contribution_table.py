"""The contributions, reputation and reward points a finished study recorded in the ledger."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from medfed.coordinator.client import AdminClient


def contributions_of(client: AdminClient, study_id: str) -> dict[str, Any] | None:
    """The study's ``governance.reputation`` ledger payload, or None before it completes."""
    for line in reversed(client.ledger(study_id)):
        entry = json.loads(line)
        if entry["kind"] == "governance.reputation":
            payload: dict[str, Any] = entry["payload"]
            return payload
    return None


def contribution_table(record: dict[str, Any]) -> Table:
    table = Table(
        "hospital", "rounds accepted", "rejected", "examples", "contribution", "reputation",
        "reward points",
        title=f"contributions ({record['method'].replace('_', ' ')}), reputation, rewards "
        f"(pot {record['reward_pot']})",
    )  # fmt: skip
    for site, s in sorted(record["sites"].items()):
        table.add_row(site, f"{s['accepted']}/{s['rounds']}", str(s["rejected"]),
                      str(s["examples"]), f"{s['contribution']:.3f}", f"{s['reputation']:.3f}",
                      str(s["reward_points"]))  # fmt: skip
    return table
