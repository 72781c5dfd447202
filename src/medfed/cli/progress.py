"""What ``medfed study status --sites / --json`` and ``--watch`` show of a study's hospitals.

A researcher cannot reach into hospitals' logs: every reason a hospital is missing, refused a task
or had a reply rejected has to be readable here, in full, next to what each hospital measured.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # protobuf loads with the admin client, not with ``medfed --help``
    from medfed.protocol.v1 import medfed_pb2 as pb

EVAL_COLUMNS = ("accuracy", "auc", "loss")


def _label(status: str) -> str:
    return status.replace("_", " ")


def site_table(status: pb.StudyStatus) -> Table:
    """Every hospital the study could use, now: ready, or why not."""
    table = Table("site", "status", "reason", title=f"hospitals · study {status.study_id}")
    table.columns[2].overflow = "fold"  # a reason is read whole, never cut with an ellipsis
    for s in status.sites:
        table.add_row(s.node, _label(s.status), Text(s.reason))  # Text: no markup in reasons
    return table


def round_sites_table(status: pb.StudyStatus) -> Table:
    """Per round and hospital: trained or not, its evaluation, and every refusal with its reason
    (failed attempts of a round included)."""
    caption = "consented: patients consenting to the study @ the consent-log position read"
    table = Table("round", "site", "train", "examples", "consented", *EVAL_COLUMNS, "refusals",
                  title="per round and hospital", caption=caption)  # fmt: skip
    table.columns[-1].overflow = "fold"
    for row in _site_rows(status):
        table.add_row(
            str(row.round),
            row.node,
            row.train,
            str(row.examples) if row.examples else "-",
            row.consent,
            *(f"{row.eval[k]:.3f}" if k in row.eval else "-" for k in EVAL_COLUMNS),
            Text("\n".join(row.refusals) or "-"),
        )
    return table


@dataclass
class _SiteRow:
    round: int
    node: str
    train: str = "-"
    examples: int = 0
    consent: str = "-"
    eval: dict[str, float] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)


def _site_rows(status: pb.StudyStatus) -> Iterator[_SiteRow]:
    rows: dict[tuple[int, str], _SiteRow] = {}

    def row(round_no: int, node: str) -> _SiteRow:
        return rows.setdefault((round_no, node), _SiteRow(round_no, node))

    for r in status.rounds:
        for m in r.train_per_node:
            trained = row(r.round, m.node)
            trained.train, trained.examples = "accepted", int(m.num_examples)
            if "consented_n" in m.metrics:
                trained.consent = (
                    f"{m.metrics['consented_n']:.0f} @ {m.metrics.get('consent_watermark', 0):.0f}"
                )
        for m in r.per_node:
            row(r.round, m.node).eval = dict(m.metrics)
    for refusal in status.refusals:
        refused = row(refusal.round, refusal.node)
        refused.refusals.append(refusal.reason)
        if refused.train == "-":
            refused.train = f"refused ({refusal.code})" if refusal.code else "rejected"
    yield from (rows[key] for key in sorted(rows))


def status_json(status: pb.StudyStatus) -> str:
    """The whole status as JSON: proto field names, every field present (zeros included), keys
    sorted, integers as numbers, so scripts can rely on the keys."""
    from google.protobuf import json_format

    return json_format.MessageToJson(
        status,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        sort_keys=True,
        indent=2,
        unquote_int64_if_possible=True,
    )


class WatchLines:
    """The lines ``--watch`` prints as a study moves: one when its state or message changes,
    one when a hospital's status changes (with the reason), nothing otherwise."""

    def __init__(self) -> None:
        self._state: tuple[str, str] | None = None
        self._sites: dict[str, str] = {}

    def update(self, status: pb.StudyStatus) -> list[str]:
        lines = []
        state = (status.state, status.message)
        if state != self._state:
            lines.append(f"{status.state}: {status.message}" if status.message else status.state)
            self._state = state
        for s in status.sites:
            if self._sites.get(s.node) != s.status:
                lines.append(f"  {s.node}: {_label(s.status)} ({s.reason})")
                self._sites[s.node] = s.status
        return lines
