"""Rich tables for ``medfed model``: what a bundle says, and what evaluating it here gave."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from medfed.model.apply import Comparison
from medfed.model.bundle import PREPROCESSING

if TYPE_CHECKING:
    from medfed.model.bundle import BundleInfo, RecordedMetrics

_FIRST = ("accuracy", "auc", "loss")


def bundle_table(info: BundleInfo, plan_note: str) -> Table:
    """The bundle's identity, plan, inputs and preprocessing, one row each."""
    table = Table("field", "value", title="model bundle", show_header=False)
    table.columns[1].overflow = "fold"
    shape = info.image_shape
    inputs = (
        f"image {shape[0]}x{shape[1]}x{shape[2]}, float32"
        if shape
        else (f"table of {len(info.features)} float32 features (below, in model order)")
    )
    rows = (
        ("study", f"{info.study_id} · {info.study_name} · {info.study_state}"),
        ("model", f"round {info.round} · sha256 {info.model_sha256}"),
        ("plan", f"{info.plan} {info.plan_version} · sha256 {info.plan_sha256} · {plan_note}"),
        ("inputs", inputs),
        ("label", info.label),
        ("trained", _training(info.spec_json)),
        ("preprocessing", f"{info.preprocessing}: {PREPROCESSING[info.preprocessing]}"),
        ("spec", f"sha256 {info.spec_sha256}"),
        ("tensors", ", ".join(info.tensors)),
    )
    for key, value in rows:
        table.add_row(key, escape(value))
    return table


def _training(spec_json: str) -> str:
    """The spec's strategy, rounds and personalization: under FedBN or fine-tuning the sites'
    ``personal_*`` metrics are of models that stayed at each hospital, not of this one."""
    spec = json.loads(spec_json)
    personal = spec.get("personalization", "none")
    if spec.get("finetune_steps"):
        personal += f" + {spec['finetune_steps']} fine-tuning steps"
    rounds = spec.get("rounds", "?")
    return f"{spec.get('strategy', '?')}, {rounds} rounds, personalization: {personal}"


def features_table(info: BundleInfo) -> Table:
    table = Table("#", "feature", "dtype", title="inputs, in model order")
    for i, name in enumerate(info.features, start=1):
        table.add_row(str(i), escape(name), "float32")
    return table


def site_metrics_table(metrics: RecordedMetrics) -> Table:
    """Each site's recorded test metrics for this model, and the coordinator's aggregate."""
    keys = _ordered({k for s in metrics.sites for k in s.metrics})
    table = Table("site", "examples", *keys, title=f"recorded at round {metrics.round}")
    table.columns[0].no_wrap = True
    for site in metrics.sites:
        table.add_row(escape(site.site), str(site.num_examples), *_cells(site.metrics, keys))
    if metrics.sites:
        total = metrics.aggregate.get("eval_examples")
        shown = "-" if total is None else str(round(total))
        table.add_row("[b]all (weighted)[/b]", shown, *_cells(metrics.aggregate, keys))
    return table


def evaluation_table(
    num_examples: int,
    measured: Mapping[str, float],
    recorded: Mapping[str, float] | None,
    recorded_examples: int | None,
) -> Table:
    """Metrics computed here; with a site's record, side by side with what it reported."""
    columns = ["metric", "here"] + (["recorded", "match"] if recorded is not None else [])
    table = Table(*columns, title="test split")
    examples = [str(num_examples)]
    if recorded is not None:
        same = recorded_examples == num_examples
        examples += [str(recorded_examples), "yes" if same else "[red]NO[/red]"]
    table.add_row("examples", *examples)
    for key in _ordered(measured):
        cells = [key, _number(measured[key])]
        if recorded is not None:
            other = recorded.get(key)
            cells += ["-", "-"] if other is None else [_number(other), _tick(measured[key], other)]
        table.add_row(*cells)
    return table


def _ordered(keys: Iterable[str]) -> list[str]:
    present = set(keys)
    return [k for k in _FIRST if k in present] + sorted(present - set(_FIRST))


def _cells(metrics: Mapping[str, float], keys: list[str]) -> list[str]:
    return [_number(metrics[k]) if k in metrics else "-" for k in keys]


def _number(value: float) -> str:
    return f"{value:.6f}"


def _tick(here: float, recorded: float) -> str:
    return "yes" if Comparison("", here, recorded).matches else "[red]NO[/red]"
