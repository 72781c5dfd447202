"""``medfed study stats`` and ``stats-show``: a federated Table 1 with disclosure control.

The query is given on the command line (one clean form, no spec file): the dataset every site
registered, bin edges per continuous feature (``--bins age=20:80:5`` means edges 20, 25, ..., 80;
``--bins chol=0,200,240,600`` lists them), an optional ``--group`` (a 0/1 column such as the
label) and the study's k floor. Each site applies its own k (node config ``stats_k``) on top,
and keeps a release log per dataset: a later query over nearly the same rows, or with other bin
edges for the same dataset, is refused by the site with the reason.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medfed.cli.common import err, medfed_errors, out
from medfed.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from medfed.coordinator.client import AdminClient
    from medfed.coordinator.stats_result import StatsResult
    from medfed.protocol.v1 import medfed_pb2 as pb

ConfigOption = Annotated[Path, typer.Option(help="Admin TOML config (coordinator + TLS).")]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Write table1.csv and table1.json into this folder.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print Table 1 as JSON (long format).")]
MAX_EDGES = 1000


def parse_bins(items: list[str]) -> dict[str, tuple[float, ...]]:
    """``NAME=START:STOP:STEP`` (STOP included when on the grid) or ``NAME=E1,E2,...``."""
    bins: dict[str, tuple[float, ...]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--bins {item!r}: write NAME=START:STOP:STEP or NAME=E1,E2,...")
        try:
            if ":" in text:
                start, stop, step = (float(v) for v in text.split(":"))
                if not (step > 0 and stop > start) or (stop - start) / step > MAX_EDGES:
                    raise ConfigError(f"--bins {item!r}: need STOP > START and a step > 0")
                count = math.floor((stop - start) / step + 1e-9)
                edges = tuple(start + i * step for i in range(count + 1))
            else:
                edges = tuple(float(v) for v in text.split(","))
        except ValueError as exc:
            raise ConfigError(f"--bins {item!r}: {exc}") from exc
        if name in bins:
            raise ConfigError(f"--bins given twice for {name!r}")
        bins[name] = edges
    return bins


def stats(
    config: ConfigOption,
    dataset: Annotated[str, typer.Option(help="Dataset name every site registered.")],
    bins: Annotated[
        list[str],
        typer.Option(help="Continuous feature and its bin edges: age=20:80:5 or chol=0,200,600."),
    ],
    group: Annotated[str | None, typer.Option(help="Stratify by this 0/1 column.")] = None,
    features: Annotated[
        str, typer.Option(help="Comma-separated columns to report (default: binned + all 0/1).")
    ] = "",
    k_floor: Annotated[int, typer.Option(help="The study's minimum k (sites may use more).")] = 3,
    min_nodes: Annotated[int, typer.Option(help="Sites that must answer.")] = 1,
    node: Annotated[list[str] | None, typer.Option(help="Ask only these sites.")] = None,
    deadline_s: Annotated[float, typer.Option(help="Seconds sites have to answer.")] = 120.0,
    secure: Annotated[
        bool,
        typer.Option(help="Secure aggregation: only the sites' sum is seen (needs --features)."),
    ] = False,
    name: Annotated[str, typer.Option(help="Study name.")] = "stats",
    cohort_spec: Annotated[
        Path | None,
        typer.Option(
            help="Cohort/feature spec the dataset is pinned by: its attrition steps are reported."
        ),
    ] = None,
    out_dir: OutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a statistics query, wait for it, print Table 1 (per site and pooled).

    Every count a site releases is 0 or at least its k. A suppressed cell shows as '—' ('hidden'
    in CSV/JSON); a pooled count that some site hid part of is a lower bound ('≥').

    With --secure each site sends its summary's additive parts through SecAgg+ and the
    coordinator sees only their sum: a pooled-only Table 1 (no per-site columns; quartiles from
    the pooled fixed-bin histogram and, with --cohort-spec, attrition, both protected at the
    coordinator). The query must name its --features and ask --min-nodes of at least 2.
    """
    import dataclasses

    from medfed.analytics.spec import StatsSpec
    from medfed.coordinator.stats_result import query_blob, stats_study

    with medfed_errors():
        steps, pin = _cohort_steps(cohort_spec)
        query = StatsSpec(bins=parse_bins(bins), group=group, k_floor=k_floor, attrition=steps)
        spec = stats_study(
            query, dataset, name=name, min_nodes=min_nodes, nodes=node or (),
            deadline_s=deadline_s, features=[f for f in features.split(",") if f],
            cohort_sha256=pin,
        )  # fmt: skip
        if secure:  # StudySpec says what a secure query still needs, here and at the coordinator
            spec = dataclasses.replace(spec, secure_aggregation=True)
        with admin_client(config) as client:
            study_id = client.submit(spec, query_blob(spec))
            err.print(f"statistics study {study_id} submitted", markup=False)
            final = follow_until_done(client, study_id, deadline_s + 60.0)
            result = _result(client, final)
    _show(study_id, result, out_dir, as_json)


def _cohort_steps(path: Path | None) -> tuple[tuple[str, ...], str]:
    """The attrition steps and hash of the cohort spec at ``path`` (none without one)."""
    if path is None:
        return (), ""
    from medfed.data.omop.features import attrition_names
    from medfed.data.omop.spec import load_spec

    cohort = load_spec(path)
    return attrition_names(cohort), cohort.sha256


def stats_show(
    study_id: Annotated[str, typer.Argument(help="The statistics study's id.")],
    config: ConfigOption,
    out_dir: OutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-read a stored statistics result (it is kept with the study at the coordinator)."""
    with medfed_errors(), admin_client(config) as client:
        result = _result(client, client.status(study_id))
    _show(study_id, result, out_dir, as_json)


def admin_client(config: Path) -> AdminClient:
    from medfed.coordinator.client import AdminClient
    from medfed.coordinator.config import load_client_config

    cfg = load_client_config(config)
    return AdminClient(cfg.coordinator, cfg.tls, cfg.server_name)


def follow_until_done(client: AdminClient, study_id: str, timeout_s: float) -> pb.StudyStatus:
    """Follow the study, printing each change of state or message, until it ends."""
    shown = ""
    deadline = time.monotonic() + timeout_s
    for status in client.watch(study_id, timeout_s=timeout_s):
        line = f"{status.state}: {status.message}" if status.message else status.state
        if line != shown:
            err.print(line, markup=False)
            shown = line
        if status.state in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return status
    return client.status(study_id)


def _result(client: AdminClient, status: pb.StudyStatus) -> StatsResult:
    from medfed.coordinator.stats_result import read_result

    if not status.spec.HasField("stats"):
        raise ConfigError(f"study {status.study_id} is not a statistics study")
    refusals = "; ".join(f"{r.node}: {r.reason}" for r in status.refusals)
    if status.state != "completed":
        raise StoreError(
            f"study {status.study_id} is {status.state}: {status.message}"
            + (f" (refusals: {refusals})" if refusals else "")
        )
    if refusals:
        err.print(f"sites that did not contribute: {refusals}", markup=False)
    return read_result(client.download(status.model_sha256))


def _show(study_id: str, result: StatsResult, out_dir: Path | None, as_json: bool) -> None:
    from medfed.analytics import report

    if out_dir is not None:
        csv_path, json_path = report.write(result.table, out_dir)
        err.print(f"wrote {csv_path} and {json_path}", markup=False)
    if as_json:
        typer.echo(json.dumps({"study_id": study_id, **result.document}, indent=1))
        return
    if not result.table.sites:
        err.print("secure aggregation: pooled only, no per-site columns", markup=False)
    out.print(report.render(result.table), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``stats`` and ``stats-show`` to the ``medfed study`` group."""
    app.command("stats")(stats)
    app.command("stats-show")(stats_show)
