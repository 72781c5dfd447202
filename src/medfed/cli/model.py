"""``medfed model``: use a downloaded model bundle at a hospital -- inspect, evaluate, predict.

A bundle (``medfed study download``) carries the weights with the plan, features, label,
preprocessing and each site's recorded metrics; ``evaluate`` and ``predict`` read the site's raw
data through the node's own connectors and plan code (``medfed.model.apply``).
"""

from __future__ import annotations

import csv as csv_module
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from medfed.cli.common import err, medfed_errors, out
from medfed.errors import BundleError, ConfigError, MedfedError

if TYPE_CHECKING:  # numpy, safetensors and the plans load inside the commands
    from medfed.data.dataset import Dataset
    from medfed.model.bundle import BundleInfo
    from medfed.protocol import tensors
    from medfed.protocol.v1 import medfed_pb2 as pb
    from medfed.training.plan import TrainingPlan

app = typer.Typer(
    help="Use a downloaded model bundle on local raw data: inspect, evaluate, predict.",
    no_args_is_help=True,
)
BundleArg = Annotated[Path, typer.Argument(help="Model bundle from `medfed study download`.")]
CsvOption = Annotated[
    Path | None,
    typer.Option(help="The site's CSV as registered at its node: features, label, split."),
]
DicomOption = Annotated[
    Path | None, typer.Option(help="Imaging models: the site's DICOM folder (needs --labels).")
]
LabelsOption = Annotated[
    Path | None, typer.Option(help="With --dicom: the labels CSV the node registered.")
]
SplitOption = Annotated[
    str | None,
    typer.Option(help="Column holding train/test, as at registration (else the node's split)."),
]
SkipBadOption = Annotated[
    bool, typer.Option("--skip-bad", help="DICOM: leave out unreadable images (listed).")
]


@app.command()
def inspect(
    bundle: BundleArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bundle document.")] = False,
) -> None:
    """Show what a bundle holds: study, plan, inputs, preprocessing, recorded metrics."""
    from medfed.cli.model_tables import bundle_table, features_table, site_metrics_table
    from medfed.model.bundle import document_json, read_bundle

    with medfed_errors():
        info = read_bundle(bundle).info
    if as_json:
        typer.echo(document_json(info))
        return
    out.print(bundle_table(info, _plan_note(info)))
    if info.input_kind == "table":
        out.print(features_table(info))
    out.print(site_metrics_table(info.metrics))


@app.command()
def evaluate(
    bundle: BundleArg,
    csv: CsvOption = None,
    dicom: DicomOption = None,
    labels: LabelsOption = None,
    split_column: SplitOption = None,
    skip_bad: SkipBadOption = False,
    site: Annotated[
        str | None,
        typer.Option(
            help="Compare with what this site reported to the coordinator (exit 1 if not)."
        ),
    ] = None,
) -> None:
    """Test-split metrics on the site's raw data, prepared as its node prepared them."""
    from medfed.cli.model_tables import evaluation_table
    from medfed.model import apply
    from medfed.model.bundle import read_bundle

    with medfed_errors():
        loaded = read_bundle(bundle)
        plan = _plan(loaded.info)
        data = _site_data(loaded.info, csv, dicom, labels, split_column, skip_bad)
        result = apply.evaluate(loaded, plan, data)
        record = loaded.info.metrics.site(site) if site is not None else None
    recorded = None if record is None else record.metrics
    recorded_n = None if record is None else record.num_examples
    out.print(evaluation_table(result.num_examples, result.metrics, recorded, recorded_n))
    if record is None:
        return
    compared = apply.compare(result.metrics, record.metrics)  # none in common proves nothing
    same = recorded_n == result.num_examples and bool(compared) and all(c.matches for c in compared)
    if not same:
        err.print(
            f"[red]differs[/red] from what {escape(record.site)} reported at round "
            f"{loaded.info.metrics.round}: is this the data, and split, it registered?"
        )
        raise typer.Exit(code=1)
    out.print(
        f"reproduces what {escape(record.site)} reported at round {loaded.info.metrics.round}"
    )


@app.command()
def predict(
    bundle: BundleArg,
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the predictions (CSV).")],
    csv: CsvOption = None,
    dicom: DicomOption = None,
    labels: LabelsOption = None,
    split_column: SplitOption = None,
    skip_bad: SkipBadOption = False,
    rows: Annotated[
        Path | None,
        typer.Option(help="Score this CSV's rows (features only) with the site's statistics."),
    ] = None,
) -> None:
    """Each row's probability of the label. Without --rows: every row of the site's data
    (columns split, label, probability; training rows first, each split in file order). With
    --rows FILE: FILE's rows (columns line, probability; line 1 is the header)."""
    from medfed.model import apply
    from medfed.model.bundle import read_bundle

    with medfed_errors():
        loaded = read_bundle(bundle)
        plan = _plan(loaded.info)
        data = _site_data(loaded.info, csv, dicom, labels, split_column, skip_bad)
        if rows is not None:
            x, lines = apply.load_rows(loaded.info, rows, split_column)
            scores = apply.predict_rows(loaded, plan, data, x)
            count = _write(out_file, ["line", "probability"], zip(lines, scores, strict=True))
        else:
            scored = apply.predict_site(loaded, plan, data)
            header = ["split", loaded.info.label, "probability"]
            count = _write(out_file, header, ((s, f"{y:g}", p) for s, y, p in scored))
    out.print(f"wrote {count} predictions to {escape(str(out_file))}")


def _plan(info: BundleInfo) -> TrainingPlan:
    """The installed plan; a code hash other than the pinned one is said, not refused."""
    from medfed.model.apply import installed_plan

    plan, same_code = installed_plan(info)
    if not same_code:
        err.print(f"[yellow]note:[/yellow] {_plan_note(info)}")
    return plan


def _plan_note(info: BundleInfo) -> str:
    from medfed.model.apply import installed_plan

    try:
        _, same_code = installed_plan(info)
    except MedfedError:
        return "not installed here"
    if same_code:
        return "installed here, same code"
    return "installed here with different code than the study pinned; results may differ"


def _site_data(
    info: BundleInfo,
    csv: Path | None,
    dicom: Path | None,
    labels: Path | None,
    split_column: str | None,
    skip_bad: bool,
) -> Dataset:
    from medfed.model import apply

    if (csv is None) == (dicom is None):
        raise ConfigError("give exactly one of --csv FILE or --dicom DIR")
    if csv is not None:
        return apply.load_table(info, csv, split_column)
    if labels is None or dicom is None:
        raise ConfigError("--dicom needs --labels (the labels CSV the node registered)")
    data, bad = apply.load_images(info, dicom, labels, split_column, skip_bad)
    for file, reason in bad:
        err.print(f"[yellow]left out:[/yellow] {escape(file)}: {escape(reason)}")
    return data


def _write(path: Path, header: Sequence[str], rows: Iterable[Iterable[object]]) -> int:
    count = 0
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv_module.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                count += 1
    except OSError as exc:
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}") from None
    return count


def save_download(
    status: pb.StudyStatus, weights: tensors.Weights, out_file: Path, weights_only: bool
) -> None:
    """Write what ``medfed study download`` fetched: the bundle, or the bare weights."""
    from safetensors.numpy import save_file

    from medfed.coordinator.spec import spec_from_proto
    from medfed.model.bundle import bundle_from_status, write_bundle

    sha = status.model_sha256
    if weights_only:
        save_file({k: v.copy() for k, v in weights.items()}, str(out_file), {"sha256": sha})
        out.print(f"wrote {escape(str(out_file))} (weights only, {sha})")
        return
    bundle = bundle_from_status(status, weights, spec_from_proto(status.spec).to_json())
    write_bundle(bundle, out_file)
    out.print(
        f"wrote {escape(str(out_file))}: model bundle of round {bundle.info.round} ({sha}), "
        f"metrics of {len(bundle.info.metrics.sites)} site(s)"
    )
    if status.state != "completed":
        err.print(f"[yellow]note:[/yellow] the study is {status.state}: not its final model")
