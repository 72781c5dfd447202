"""``medfed study audit ID``: how much does a completed study's model reveal about its patients?

The command submits a privacy audit of the study (with no model: the coordinator audits the
study's final model from its own store, so the researcher needs no copy of a model whose release
may be blocked), waits, and prints each
site's membership-inference numbers: the loss attack's AUC and TPR at 1 % FPR, and the LiRA and
calibrated-loss attacks' where the site trained reference models. Sites send only these
aggregates (medfed.node.audit); a site that did not train in the study refuses, with the reason.
An AUC near 0.5 means the attack cannot tell training patients from others.

A site whose AUC is above its steward's ``audit_auc_threshold`` asks that the model not be
released: the coordinator then refuses ``medfed study download`` of it until the council votes
the block down (``medfed governance vote N no``) or, without a council, the hospital withdraws it
(medfed.governance.release); the table's last column says BLOCK for such a site.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medfed.cli.common import err, medfed_errors, out
from medfed.cli.stats import admin_client, follow_until_done
from medfed.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from medfed.coordinator.spec import StudySpec
    from medfed.protocol.v1 import medfed_pb2 as pb

ConfigOption = Annotated[Path, typer.Option(help="Admin TOML config (coordinator + TLS).")]
COLUMNS = (
    ("loss_auc", "loss AUC"),
    ("loss_tpr_at_low_fpr", "loss TPR@1%"),
    ("lira_auc", "LiRA AUC"),
    ("lira_tpr_at_low_fpr", "LiRA TPR@1%"),
    ("calibrated_auc", "calibrated AUC"),
)


def audit(
    study_id: Annotated[str, typer.Argument(help="The completed study to audit.")],
    config: ConfigOption,
    node: Annotated[
        list[str] | None, typer.Option(help="Ask only these sites (default: its participants).")
    ] = None,
    deadline_s: Annotated[float, typer.Option(help="Seconds sites have to answer.")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run a membership-inference audit of a completed study and print the per-site table."""
    with medfed_errors(), admin_client(config) as client:
        target = client.status(study_id)
        if target.state != "completed":
            raise ConfigError(f"study {study_id} is {target.state}; only a completed study's "
                              "model can be audited")  # fmt: skip
        spec = audit_spec(target, tuple(node or ()), deadline_s)
        audit_id = client.submit(spec, {})  # by reference: the study's own final model
        err.print(f"privacy audit {audit_id} of study {study_id} submitted", markup=False)
        follow_until_done(client, audit_id, deadline_s + 120.0)
        final = client.status(audit_id)
    show(final, as_json)


def audit_spec(target: pb.StudyStatus, nodes: tuple[str, ...], deadline_s: float) -> StudySpec:
    """The audit's study spec: the audited study's data and plan, one round, no training knobs
    that would need anything else (strategy, secure aggregation, DP are the audited study's)."""
    from medfed.coordinator.audit import audit_spec_for
    from medfed.coordinator.spec import spec_from_proto

    return audit_spec_for(spec_from_proto(target.spec), target.study_id, nodes, deadline_s)


def rows_of(status: pb.StudyStatus) -> list[dict[str, Any]]:
    """One dict per site that answered: its name and its aggregate numbers."""
    if not status.rounds:
        return []
    return [
        {"site": m.node, **{k: float(v) for k, v in sorted(m.metrics.items())}}
        for m in sorted(status.rounds[0].per_node, key=lambda m: m.node)
    ]


def show(status: pb.StudyStatus, as_json: bool) -> None:
    refusals = [{"site": r.node, "code": r.code, "reason": r.reason} for r in status.refusals]
    rows = rows_of(status)
    if as_json:
        doc = {"audit_id": status.study_id, "audited_study": status.spec.audit_of,
               "state": status.state, "sites": rows, "refusals": refusals}  # fmt: skip
        typer.echo(json.dumps(doc, indent=1, sort_keys=True))
    else:
        out.print(_table(status, rows), markup=False, highlight=False)
        for r in refusals:
            err.print(f"{r['site']} refused ({r['code']}): {r['reason']}", markup=False)
    if status.state != "completed":
        raise StoreError(f"audit {status.study_id} is {status.state}: {status.message}")


def _table(status: pb.StudyStatus, rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title=f"privacy audit of study {status.spec.audit_of} (membership inference)")
    for header in ("site", "members", "non-members", *(h for _, h in COLUMNS), "release"):
        table.add_column(header, justify="left" if header == "site" else "right")
    for row in rows:
        numbers = [f"{row[k]:.3f}" if k in row else "—" for k, _ in COLUMNS]
        flag = "BLOCK" if row.get("block_release") == 1.0 else "ok"
        if row.get("auc_threshold"):
            flag += f" (>{row['auc_threshold']:.2f})"
        table.add_row(row["site"], str(int(row["members"])), str(int(row["non_members"])),
                      *numbers, flag)  # fmt: skip
    return table


def register(app: typer.Typer) -> None:
    """Add ``audit`` to the ``medfed study`` group."""
    app.command("audit")(audit)
