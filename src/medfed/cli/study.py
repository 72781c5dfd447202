"""``medfed study``: what a researcher does with an admin certificate."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live

from medfed.cli.audit_study import register as register_audit
from medfed.cli.common import medfed_errors, out
from medfed.cli.contribution_table import contribution_table, contributions_of
from medfed.cli.progress import WatchLines, round_sites_table, site_table, status_json
from medfed.cli.protocol import register as register_protocol
from medfed.cli.report import report as report_command
from medfed.cli.stats import register as register_stats
from medfed.cli.tables import encrypted_eval_table, node_table, privacy_table, round_table
from medfed.coordinator.config import load_client_config

if TYPE_CHECKING:  # gRPC, numpy, TenSEAL load inside the commands (tests/cli/test_imports.py)
    from medfed.coordinator.client import AdminClient
    from medfed.coordinator.spec import StudySpec
    from medfed.protocol import tensors
    from medfed.secagg import ckks

app = typer.Typer(help="Submit and follow studies (admin certificate).", no_args_is_help=True)
ConfigOption = Annotated[Path, typer.Option(help="Admin TOML config (coordinator + TLS).")]
register_stats(app)  # medfed study stats | stats-show (medfed.cli.stats)
register_protocol(app)  # medfed study protocol (medfed.cli.protocol)
app.command("report")(report_command)  # medfed study report (medfed.cli.report)
register_audit(app)  # medfed study audit (medfed.cli.audit_study)


def prepare(spec: StudySpec) -> tuple[StudySpec, tensors.Weights]:
    """Pin the plan's code hash and build the initial model from the locally installed plan."""
    from medfed.training.registry import get_plan, plan_sha256

    if spec.client_plan:  # a hospital's own code: the declared layout, zeros or `init`
        from medfed.compat.layout import initial_weights

        init = Path(spec.plan_init) if spec.plan_init else None
        return spec, initial_weights(spec.plan_layout, init)
    plan = get_plan(spec.plan, spec.plan_version)
    pinned = dataclasses.replace(spec, plan_sha256=spec.plan_sha256 or plan_sha256(plan))
    weights = plan.init_weights(len(spec.features), spec.seed, spec.plan_options)
    return pinned, weights


def _client(config: Path) -> AdminClient:
    from medfed.coordinator.client import AdminClient

    cfg = load_client_config(config)
    return AdminClient(cfg.coordinator, cfg.tls, cfg.server_name)


@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(help="Study spec (TOML).")],
    config: ConfigOption,
    watch: Annotated[bool, typer.Option(help="Follow progress until the study ends.")] = False,
    encrypt_metrics: Annotated[
        Path | None,
        typer.Option(help="Your CKKS key (medfed study keygen): sites encrypt their metrics."),
    ] = None,
) -> None:
    """Submit a study; prints its id."""
    from medfed.coordinator.spec import load_spec
    from medfed.secagg import ckks

    with medfed_errors():
        pinned, weights = prepare(load_spec(spec))
        public = b""
        if encrypt_metrics is not None:
            public = ckks.ResearcherKeys.load(encrypt_metrics.read_bytes()).public_context()
        with _client(config) as client:
            study_id = client.submit(pinned, weights, he_public_context=public)
            out.print(study_id)
            if watch:
                _follow(client, study_id)


def _follow(client: AdminClient, study_id: str) -> None:
    """The round table, live, with a line above it whenever the study's state or message or a
    hospital's status changes (a study that waits says for whom and why)."""
    lines = WatchLines()
    with Live(console=out, auto_refresh=False) as live:
        for status in client.watch(study_id):
            for line in lines.update(status):
                live.console.print(line, markup=False, highlight=False)
            live.update(round_table(status), refresh=True)


@app.command()
def watch(study_id: str, config: ConfigOption) -> None:
    """Follow a study's rounds live."""
    with medfed_errors(), _client(config) as client:
        _follow(client, study_id)


@app.command()
def status(
    study_id: str,
    config: ConfigOption,
    sites: Annotated[
        bool, typer.Option("--sites", help="Each hospital now, and per round with reasons.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The full status as JSON.")] = False,
) -> None:
    """A study's rounds and metrics; why hospitals are missing, refusals in full (--sites)."""
    with medfed_errors(), _client(config) as client:
        current = client.status(study_id)
        record = contributions_of(client, study_id) if sites else None
    if as_json:
        typer.echo(status_json(current))
        return
    out.print(round_table(current))
    if sites:
        out.print(site_table(current))
        out.print(round_sites_table(current))
        if record is not None:
            out.print(contribution_table(record))
    privacy = privacy_table(current)
    if privacy is not None:
        out.print(privacy)
    if current.message:
        out.print(current.message)


@app.command()
def cancel(
    study_id: str,
    config: ConfigOption,
    reason: Annotated[str, typer.Option(help="Why, recorded with your name.")] = "",
) -> None:
    """Cancel a study: recorded with who and why; an open round closes without committing."""
    with medfed_errors(), _client(config) as client:
        final = client.cancel(study_id, reason)
    out.print(f"{final.study_id} {final.state}: {final.message}", markup=False)


@app.command("list")
def list_studies(config: ConfigOption) -> None:
    with medfed_errors(), _client(config) as client:
        studies = client.studies()
    for s in studies:
        out.print(f"{s.study_id}  {s.spec.name}  {s.state}  {s.completed_rounds}/{s.spec.rounds}")


@app.command()
def strategies() -> None:
    """The aggregation strategies a study spec may name, with their parameters."""
    from rich.table import Table

    from medfed.strategies.registry import secure_aggregation, strategy_parameters

    table = Table("strategy", "required", "optional (default)", "secure aggregation")
    for name, (required, optional) in strategy_parameters().items():
        support = secure_aggregation(name)
        table.add_row(
            name,
            ", ".join(required) or "-",
            ", ".join(f"{k} ({v:g})" for k, v in optional.items()) or "-",
            f"{'composes' if support.composes else 'refused'}: {support.why}",
        )
    out.print(table)


@app.command()
def nodes(config: ConfigOption) -> None:
    """Nodes the coordinator has seen, and whether they are online."""
    with medfed_errors(), _client(config) as client:
        out.print(node_table(client.nodes()))


@app.command()
def download(
    study_id: str,
    config: ConfigOption,
    out_file: Annotated[Path, typer.Option("--out", help="Where to write .safetensors")],
    weights_only: Annotated[
        bool, typer.Option("--weights-only", help="The raw weights, without the bundle document.")
    ] = False,
) -> None:
    """Download a study's current global model as a model bundle: the weights with the plan,
    features, label, preprocessing, spec and each site's metrics (see `medfed model`)."""
    from medfed.cli.model import save_download

    with medfed_errors(), _client(config) as client:
        status = client.status(study_id)
        weights = client.download(status.model_sha256)
    with medfed_errors():
        save_download(status, weights, out_file, weights_only)


@app.command()
def keygen(
    key_file: Annotated[Path, typer.Argument(help="Where to write the secret key (mode 0600).")],
) -> None:
    """Make a CKKS key pair for encrypted evaluation metrics; only this file can decrypt them."""
    from medfed.secagg import ckks

    with medfed_errors():
        keys = ckks.ResearcherKeys.generate()
        key_file.touch(mode=0o600, exist_ok=False)
        key_file.write_bytes(keys.secret_context())
    out.print(f"wrote {key_file} (public fingerprint {keys.fingerprint[:16]})")


@app.command()
def decrypt(
    study_id: str,
    config: ConfigOption,
    key: Annotated[Path, typer.Option(help="The secret key from medfed study keygen.")],
) -> None:
    """Decrypt a study's encrypted evaluation sums, round by round."""
    from medfed.secagg import ckks

    with medfed_errors():
        keys = ckks.ResearcherKeys.load(key.read_bytes())
        with _client(config) as client:
            rows = decrypted_rounds(client, study_id, keys)
    out.print(encrypted_eval_table(rows))


def decrypted_rounds(
    client: AdminClient, study_id: str, keys: ckks.ResearcherKeys
) -> list[tuple[int, int, dict[str, float]]]:
    """(round, sites, weighted means) for every round with an encrypted evaluation."""
    from medfed.secagg import ckks

    rows = []
    for r in client.status(study_id).rounds:
        sealed = r.encrypted_eval
        if sealed.sha256:
            blob = ckks.blob_bytes(client.download(sealed.sha256), ckks.SUM_TENSOR)
            rows.append((r.round, sealed.sites, ckks.weighted_means(keys, blob, sealed.names)))
    return rows
