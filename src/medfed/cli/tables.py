"""Rich tables for study progress, shared by ``medfed study`` and ``medfed demo``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:  # protobuf loads with the admin client, not with ``medfed --help``
    from medfed.protocol.v1 import medfed_pb2 as pb


def _fmt(metrics: dict[str, float], key: str, digits: int = 3) -> str:
    return f"{metrics[key]:.{digits}f}" if key in metrics else "-"


ROUND_CAPTION = (
    "pooled: over all hospitals' test patients at once (summed score histograms); "
    "site mean: example-weighted mean of each hospital's own value; "
    "acc and loss: all patients at once, which for them equals the site mean"
)
ROUND_COLUMNS = (
    "round", "acc", "bal acc\npooled", "auc\npooled", "auc\nsite mean", "auprc\npooled",
    "loss", "nodes", "acc min", "acc max", "rejected", "s",
)  # fmt: skip


def round_table(status: pb.StudyStatus) -> Table:
    """One row per round. AUC, AUPRC and balanced accuracy are labelled pooled or site mean:
    the two differ (a site mean never ranks one hospital's patient against another's)."""
    table = Table(
        title=f"study {status.study_id} · {status.spec.name} · {status.state}",
        caption=ROUND_CAPTION,
    )
    for column in ROUND_COLUMNS:
        table.add_column(column, justify="right")
    for r in status.rounds:
        m = dict(r.metrics)
        table.add_row(
            str(r.round),
            _fmt(m, "accuracy"),
            _fmt(m, "balanced_accuracy_pooled"),
            _fmt(m, "auc_pooled"),
            _fmt(m, "auc_site_mean"),
            _fmt(m, "auprc_pooled"),
            _fmt(m, "loss"),
            f"{r.accepted}/{r.selected}",
            _fmt(m, "accuracy_min"),
            _fmt(m, "accuracy_max"),
            str(r.rejected),
            f"{r.duration_s:.2f}",
        )
    return table


def privacy_table(status: pb.StudyStatus) -> Table | None:
    """Record-level epsilon each hospital has spent on this study, per round (None without DP)."""
    sites = sorted({m.node for r in status.rounds for m in r.train_per_node
                    if "epsilon" in m.metrics})  # fmt: skip
    if not sites:
        return None
    table = Table(title="privacy: epsilon spent per hospital (budget left)")
    table.add_column("round", justify="right")
    for site in sites:
        table.add_column(site, justify="right")
    for r in status.rounds:
        spent = {m.node: dict(m.metrics) for m in r.train_per_node}
        cells = [
            f"{spent[s]['epsilon']:.3f} ({spent[s].get('epsilon_budget_left', 0.0):.3f})"
            if s in spent and "epsilon" in spent[s]
            else "-"
            for s in sites
        ]
        table.add_row(str(r.round), *cells)
    return table


def node_table(nodes: list[pb.NodeInfo]) -> Table:
    table = Table("node", "online", "datasets")
    for n in nodes:
        online = "revoked" if n.revoked else "yes" if n.online else "no"
        table.add_row(n.name, online, ", ".join(n.datasets))
    return table


def encrypted_eval_table(rows: Sequence[tuple[int, int, Mapping[str, float]]]) -> Table:
    """Decrypted evaluation sums: example-weighted means over the sites, per round (for AUC,
    AUPRC and balanced accuracy that is a site mean, and labelled so: CKKS carries no
    histograms, hence no pooled values)."""
    from medfed.training.metrics import NOT_POOLABLE  # numpy: not for ``medfed --help``

    metrics = sorted({k for _, _, values in rows for k in values} - {"num_examples"})
    headers = [
        f"{k} (site mean)" if k.removeprefix("personal_") in NOT_POOLABLE else k for k in metrics
    ]
    table = Table("round", "sites", "examples", *headers, title="encrypted evaluation (CKKS)")
    for round_no, sites, values in rows:
        cells = [f"{values[k]:.4f}" if k in values else "-" for k in metrics]
        table.add_row(str(round_no), str(sites), str(int(values["num_examples"])), *cells)
    return table
