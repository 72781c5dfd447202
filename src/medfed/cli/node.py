"""``medfed node``: run a hospital node; the data steward's dataset and plan commands."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medfed.cli import consent, dicom, node_protocol, omop
from medfed.cli.common import err, medfed_errors, out, setup_logging
from medfed.cli.config_files import CertsOption, ForceOption, config_path, tls_values, write_config
from medfed.errors import AuthError
from medfed.node.config import load_node_config

if TYPE_CHECKING:
    from medfed.privacy.ledger import PrivacyLedger
from medfed.transport.runtime import tune_for_bulk_transfer

app = typer.Typer(help="Run a hospital node and manage what it may do.", no_args_is_help=True)
dataset_app = typer.Typer(help="The local dataset registry (data steward).", no_args_is_help=True)
plan_app = typer.Typer(help="Approve the training plans this hospital runs.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(plan_app, name="plan")
privacy_app = typer.Typer(help="Privacy budgets per dataset (data steward).", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")
app.add_typer(dicom.app, name="dicom")
app.add_typer(omop.app, name="omop")
app.add_typer(consent.app, name="consent")
app.add_typer(node_protocol.app, name="protocol")

ConfigOption = Annotated[Path, typer.Option(help="Node TOML config (`medfed node init`).")]


@app.command()
def init(
    name: Annotated[str, typer.Option(help="This hospital's certificate name, e.g. cleveland.")],
    coordinator: Annotated[str, typer.Option(help="The coordinator's host:port.")],
    certs: CertsOption,
    server_name: Annotated[
        str, typer.Option(help="Name in the coordinator's certificate, if not its host.")
    ] = "",
    state_dir: Annotated[
        Path | None, typer.Option(help="Local state (default: state/ beside --out).")
    ] = None,
    out_file: Annotated[Path, typer.Option("--out", help="File to write.")] = Path("node.toml"),
    force: ForceOption = False,
) -> None:
    """Write a commented node config (every key, with its default) from these flags."""
    from medfed.node.config import NODE_KEYS

    values = {
        "coordinator": coordinator,
        "state_dir": config_path(state_dir, out_file) if state_dir else Path("state"),
        **tls_values(certs, name, out_file),
    }
    if server_name:
        values["server_name"] = server_name
    with medfed_errors():
        write_config(out_file, "node", NODE_KEYS, values, force=force)
    out.print(f"next: medfed node start --config {out_file}", highlight=False, markup=False)


@app.command()
def start(
    config: ConfigOption, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False
) -> None:
    """Dial out to the coordinator and serve tasks until SIGINT/SIGTERM."""
    from medfed.node.service import build_agent

    setup_logging(verbose)
    with medfed_errors():
        identity, agent = build_agent(load_node_config(config))
    tune_for_bulk_transfer()
    failure: list[AuthError] = []

    def serve() -> None:
        try:
            agent.run()
        except AuthError as exc:
            failure.append(exc)

    worker = threading.Thread(target=serve, name="agent")
    worker.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: agent.stop.set())
    out.print(f"node {identity.name} started", highlight=False)
    while worker.is_alive() and not agent.stop.is_set():
        agent.stop.wait(0.5)
    agent.shutdown()
    worker.join()
    if failure:
        err.print(f"[red]fatal:[/red] {escape(str(failure[0]))}")
        raise typer.Exit(code=3)


@dataset_app.command("add")
def dataset_add(
    name: str,
    config: ConfigOption,
    csv: Annotated[Path | None, typer.Option(help="CSV file with a header row.")] = None,
    dicom: Annotated[
        Path | None, typer.Option(help="Folder of DICOM radiographs (CR/DX); needs --labels.")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="With --dicom: CSV keyed by 'file' (relative path) or 'sop_instance_uid'."
        ),
    ] = None,
    label: Annotated[str, typer.Option(help="Label column (0/1).")] = "label",
    features: Annotated[
        str | None, typer.Option(help="CSV: comma-separated feature columns (default: all others).")
    ] = None,
    split_column: Annotated[
        str | None, typer.Option(help="Column holding train/test per row.")
    ] = None,
    image_size: Annotated[int, typer.Option(help="DICOM: images are resized to N x N.")] = 28,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="DICOM: leave out unreadable images (listed).")
    ] = False,
    epsilon_budget: Annotated[
        float | None,
        typer.Option(help="Record-level DP budget for this dataset, across all studies."),
    ] = None,
    delta: Annotated[float, typer.Option(help="The largest delta a study may use.")] = 1e-5,
) -> None:
    """Register a local dataset -- a CSV file, or a DICOM folder plus a labels file. It is
    checked now (schema; for DICOM: every image decoded and PHI-gated) and on every load."""
    from medfed.data.dicom.connector import DicomSource
    from medfed.data.registry import DatasetRegistry
    from medfed.errors import ConfigError

    with medfed_errors():
        if (csv is None) == (dicom is None):
            raise ConfigError("give exactly one of --csv FILE or --dicom DIR")
        if dicom is not None and labels is None:
            raise ConfigError("--dicom needs --labels (a CSV of file or sop_instance_uid, label)")
        state_dir = load_node_config(config).state_dir
        registry = DatasetRegistry(state_dir)
        if dicom is not None and labels is not None:
            source = DicomSource(dicom, labels, label, split_column, image_size, skip_bad)
            entry = registry.add_dicom(name, source, now=time.time(), warn=_warn)
        elif csv is not None:
            entry = registry.add(
                name,
                csv.resolve(),
                label=label,
                features=features.split(",") if features else None,
                split_column=split_column,
                now=time.time(),
                warn=_warn,
            )
        if epsilon_budget is not None:
            _ledger(state_dir).set_budget(name, epsilon_budget, delta, now=time.time())
    for skipped in entry.skipped:
        err.print(f"[yellow]left out:[/yellow] {escape(skipped)}")
    what = entry.features[0] if entry.kind == "dicom" else f"{len(entry.features)} features"
    out.print(f"registered {entry.name}: {entry.rows} rows, {what}")


@dataset_app.command("add-omop")
def dataset_add_omop(
    name: str,
    config: ConfigOption,
    spec: Annotated[
        Path, typer.Option(help="Cohort/feature spec (TOML) to run on the OMOP store.")
    ],
    consent_study: Annotated[
        str,
        typer.Option(help="Read every load through this study's consent (medfed node consent)."),
    ] = "",
) -> None:
    """Register a cohort/feature spec over this node's OMOP store (node config: omop_store,
    omop_schema). The matrix is built once now; the spec's hash is pinned, so a changed spec is
    refused until registered again."""
    from medfed.data.registry import DatasetRegistry

    with medfed_errors():
        node = load_node_config(config)
        entry = DatasetRegistry(node.state_dir).add_omop(
            name,
            spec,
            location=node.omop_location,
            schema=node.omop_schema,
            consent_study=consent_study,
            now=time.time(),
            warn=_warn,
        )
    out.print(
        f"registered {entry.name}: {entry.rows} rows ({entry.train_rows} train, "
        f"{entry.test_rows} test), {len(entry.features)} features, spec sha256 {entry.sha256}"
    )


def _warn(message: str) -> None:
    """A registration warning (accepted, but worth the steward's look), on stderr."""
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


def _ledger(state_dir: Path) -> PrivacyLedger:
    from medfed.privacy.ledger import PrivacyLedger

    return PrivacyLedger(state_dir / "privacy.sqlite")


@privacy_app.command("budget")
def privacy_budget(
    dataset: str,
    config: ConfigOption,
    epsilon: Annotated[float, typer.Option(help="Total epsilon for this dataset.")],
    delta: Annotated[float, typer.Option(help="The largest delta a study may use.")] = 1e-5,
) -> None:
    """Set (or change) a dataset's privacy budget. Only here, at the hospital: no network call
    can set or reset it."""
    with medfed_errors():
        _ledger(load_node_config(config).state_dir).set_budget(
            dataset, epsilon, delta, now=time.time()
        )
    out.print(f"{dataset}: epsilon budget {epsilon:g} at delta {delta:g}")


@privacy_app.command("show")
def privacy_show(config: ConfigOption, dataset: str) -> None:
    """The budget, what each study has spent, and what is left."""
    with medfed_errors():
        ledger = _ledger(load_node_config(config).state_dir)
        budget = ledger.budget(dataset)
        studies = ledger.studies(dataset)
        spent = ledger.spent(dataset)
    if budget is None:
        out.print(f"{dataset}: no privacy budget set (DP studies are refused)")
        return
    table = Table("study", "noise multiplier", "sample rate", "steps", "epsilon", "delta")
    for s in studies:
        table.add_row(s.study_id, f"{s.noise_multiplier:.3f}", f"{s.sample_rate:.4f}",
                      str(s.steps), f"{s.epsilon:.4f}", f"{s.delta:g}")  # fmt: skip
    out.print(table)
    out.print(
        f"{dataset}: spent {spent:.4f} of {budget.epsilon:g} (left {budget.epsilon - spent:.4f}),"
        f" delta per study <= {budget.delta:g}; studies compose additively"
    )


@dataset_app.command("list")
def dataset_list(config: ConfigOption) -> None:
    from medfed.data.registry import DatasetRegistry

    with medfed_errors():
        entries = DatasetRegistry(load_node_config(config).state_dir).list()
    table = Table("name", "kind", "rows", "features", "label", "source")
    for e in entries:
        what = e.features[0] if e.kind == "dicom" else str(len(e.features))
        table.add_row(e.name, e.kind, str(e.rows), what, e.label, str(e.path))
    out.print(table)


@dataset_app.command("remove")
def dataset_remove(name: str, config: ConfigOption) -> None:
    from medfed.data.registry import DatasetRegistry

    with medfed_errors():
        DatasetRegistry(load_node_config(config).state_dir).remove(name)
    out.print(f"removed {name}")


@plan_app.command("approve")
def plan_approve(name: str, version: str, config: ConfigOption) -> None:
    """Approve a plan as installed now (name, version and code hash)."""
    from medfed.node.policy import LocalPolicy

    with medfed_errors():
        entry = LocalPolicy(load_node_config(config).state_dir).approve(name, version)
    out.print(f"approved {entry.name} {entry.version} sha256 {entry.sha256}")


@plan_app.command("approve-client")
def plan_approve_client(
    path: Annotated[Path, typer.Argument(help="The hospital's own client file (Python).")],
    config: ConfigOption,
    name: Annotated[str, typer.Option(help="Plan name studies use (default: file stem).")] = "",
) -> None:
    """Approve this hospital's own (Flower-style) client file as it is now, by SHA-256; studies
    with plan = { kind = "client", name = NAME } run it here (medfed.compat)."""
    from medfed.compat.approval import ClientApprovals

    with medfed_errors():
        entry = ClientApprovals(load_node_config(config).state_dir).approve(path, name)
    out.print(f"approved client {entry.name} {entry.path} sha256 {entry.sha256}", highlight=False)


@plan_app.command("revoke-client")
def plan_revoke_client(name: str, config: ConfigOption) -> None:
    """Withdraw the approval of a client plan."""
    from medfed.compat.approval import ClientApprovals

    with medfed_errors():
        ClientApprovals(load_node_config(config).state_dir).revoke(name)
    out.print(f"revoked client {name}", highlight=False)


@plan_app.command("list")
def plan_list(config: ConfigOption) -> None:
    """Installed plans and whether this hospital approved them."""
    from medfed.node.policy import LocalPolicy
    from medfed.training.registry import installed_plans, plan_sha256

    with medfed_errors():
        approved = {
            (p.name, p.version): p.sha256
            for p in LocalPolicy(load_node_config(config).state_dir).approved()
        }
    table = Table("plan", "version", "installed sha256", "approved")
    for plan in installed_plans():
        sha = plan_sha256(plan)
        ok = approved.get((plan.name, plan.version))
        state = "yes" if ok == sha else ("CHANGED" if ok else "no")
        table.add_row(plan.name, plan.version, sha[:16] + "…", state)
    out.print(table)
