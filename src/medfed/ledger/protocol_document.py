"""The study protocol for the Data Use Agreement, rendered from the study spec, with its hash.

Each hospital's data steward approves a protocol by its hash (``StudySpec.sha256``: the SHA-256 of
the spec's canonical JSON, the hash the coordinator records at submission), and the ledger records
the approval; this document is what the steward reads before approving. Every field is hashed, so
any change to what will run (data, features, plan code, strategy, schedule, privacy, participants,
seed) is a new protocol that needs approving again.

Render the spec as it will be submitted: ``medfed study protocol`` pins the plan's code hash as
``medfed study submit`` does, and with ``--encrypt-metrics KEY`` sets the CKKS context's hash as
the coordinator will. The pooled statistics a ``standardize = "pooled:…"`` study gets at
submission are not hashed (the statistics study they come from is), so that hash is final too.

Rendering takes a ``ModelSummary`` (parameter count, tensors, the plan's own description) so this
module needs no torch: the command builds the initial model and summarizes it.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from medfed.governance.rules import CLIENT_DP_STRATEGY, facts_from_spec

if TYPE_CHECKING:
    from medfed.coordinator.spec import StudySpec

Format = Literal["md", "html"]
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|<>])")
"""What could start markup inside a table cell or a line of text (escaped with a backslash)."""


@dataclass(frozen=True)
class ModelSummary:
    """What the initial model is: the plan's description, its tensors and parameter count."""

    description: str
    tensors: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensors)


def render(spec: StudySpec, model: ModelSummary, fmt: Format = "md", consortium: str = "") -> str:
    """The protocol appendix as Markdown or as a standalone HTML page (a PDF:
    :func:`medfed.ledger.protocol_pdf.render_pdf`, from the same HTML body)."""
    if fmt not in ("md", "html"):
        raise ValueError(f"format must be md or html, not {fmt!r}")
    if fmt == "md":
        return _markdown(spec, model, consortium, _md_text)
    title = html.escape(f"Study protocol: {spec.name}")
    return _PAGE.format(title=title, body=html_body(spec, model, consortium))


def html_body(spec: StudySpec, model: ModelSummary, consortium: str = "") -> str:
    """The document's HTML, without the page around it."""
    import markdown

    markdown_text = _markdown(spec, model, consortium, _html_text)
    return markdown.markdown(markdown_text, extensions=["tables"], output_format="html")


Text = Callable[[object], str]
Rows = list[tuple[str, str]]


def _markdown(spec: StudySpec, model: ModelSummary, consortium: str, t: Text) -> str:
    sha = spec.sha256
    of = f" of the {t(consortium)} consortium" if consortium else ""
    lines = [
        f"# Study protocol: {t(spec.name)}",
        "",
        f"Appendix to the Data Use Agreement{of}. Each participating hospital's data steward "
        "approves this protocol by its hash; a study whose spec differs in any field has a "
        "different hash and needs approving again.",
        "",
        f"**Protocol SHA-256:** {_code(sha)}",
    ]
    sections = (
        ("Data", _data(spec)),
        ("Model", _model(spec, model, t)),
        ("Training", _training(spec)),
        ("Privacy", _privacy(spec)),
        ("Participation and evaluation", _participation(spec)),
    )
    for title, rows in sections:
        lines += ["", f"## {title}", "", "| | |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in rows]
        if title == "Model":
            lines += ["", "| tensor | shape |", "|---|---|"]
            lines += [f"| {_code(name)} | {_shape(shape)} |" for name, shape in model.tensors]
    lines += [
        "",
        "## Hash",
        "",
        f"This document describes the study whose protocol SHA-256 is {_code(sha)}: the SHA-256 "
        "of the study spec's canonical JSON, which the coordinator records in the ledger when the "
        "study is submitted. `medfed study protocol STUDY.toml --hash` prints it.",
    ]
    lines.append("")
    return "\n".join(lines)


def _data(spec: StudySpec) -> Rows:
    rows = [("dataset (as each hospital registered it)", _code(spec.dataset))]
    if spec.cohort_sha256:
        rows.append(
            ("cohort and feature spec (OMOP CDM)",
             f"SHA-256 {_code(spec.cohort_sha256)}: every site must have registered this spec")
        )  # fmt: skip
    rows.append(("label", _code(spec.label) if spec.label else "none"))
    image = _image_input(spec.features)
    if image:
        rows.append(("input", f"one image per example, {_code(image)} (channels x height x width)"))
    else:
        names = ", ".join(_code(f) for f in spec.features)
        rows.append(("features", f"{len(spec.features)}: {names}"))
    pooled = spec.standardize.removeprefix("pooled:")
    if not image:
        rows.append(
            ("standardization",
             f"pooled statistics of statistics study {_code(pooled)}" if spec.standardize
             else "each site with its own training statistics")
        )  # fmt: skip
    moved = "masked model updates" if spec.secure_aggregation else "model updates"
    rows.append(("what leaves a hospital", f"{moved} and evaluation metrics, never records"))
    return rows


def _model(spec: StudySpec, model: ModelSummary, t: Text) -> Rows:
    rows = [
        ("training plan", f"{_code(spec.plan)} version {_code(spec.plan_version)}"),
        ("plan code SHA-256", _code(spec.plan_sha256) if spec.plan_sha256 else "not pinned"),
        ("architecture", t(model.description)),
        ("parameters", f"{model.parameters:,} in {len(model.tensors)} tensors"),
    ]
    rows += [(f"plan option {_code(k)}", _number(v)) for k, v in sorted(spec.plan_options.items())]
    return rows


def _training(spec: StudySpec) -> Rows:
    from medfed.strategies.registry import strategy_parameters

    _, defaults = strategy_parameters().get(spec.strategy, ([], {}))
    rows = [("aggregation strategy", _code(spec.strategy))]
    for key, value in sorted({**defaults, **spec.strategy_params}.items()):
        note = "" if key in spec.strategy_params else " (default)"
        rows.append((f"strategy option {_code(key)}", _number(value) + note))
    if spec.local_steps > 0:
        work = f"{spec.local_steps} local steps per round"
    else:
        work = f"{spec.local_epochs} local epoch{'s' if spec.local_epochs != 1 else ''} per round"
    ratio = f" (ratio {_number(spec.topk_ratio)})" if spec.compression == "topk" else ""
    tuning = f", {spec.finetune_steps} fine-tuning steps" if spec.finetune_steps else ""
    rows += [
        ("rounds", str(spec.rounds)),
        ("local training", f"{work}, batch size {spec.batch_size}, {spec.optimizer} at "
                           f"learning rate {_number(spec.learning_rate)}"),
        ("round deadline", f"{_number(spec.round_deadline_s)} s"),
        ("seed", str(spec.seed)),
        ("update compression", spec.compression + ratio),
        ("personalization", spec.personalization + tuning),
    ]  # fmt: skip
    if spec.max_site_weight:
        rows.append(("most weight one site may hold", _number(spec.max_site_weight)))
    return rows


def _privacy(spec: StudySpec) -> Rows:
    facts = facts_from_spec(spec)
    if spec.dp_epsilon:
        budget = f"ε = {_number(spec.dp_epsilon)} per site for the whole study"
    else:
        budget = f"noise multiplier {_number(spec.dp_noise_multiplier)} (each site accounts its ε)"
    record = (
        f"{budget}, δ = {_number(spec.dp_delta)}, per-example clipping "
        f"{_number(spec.dp_max_grad_norm)}, {spec.dp_accountant} accountant"
    )
    client = (
        f"ε = {_client_epsilon(spec)} over {spec.rounds} rounds at δ = "
        f"{_number(spec.strategy_params.get('delta', 1e-5))} (every site in every round)"
    )
    secure = (
        "on: the coordinator sees only the sum of the updates; "
        f"{_number(spec.secagg_threshold)} of each neighbourhood must survive a round"
    )
    return [
        ("record-level differential privacy (DP-SGD)", record if facts.record_dp else "not used"),
        ("client-level differential privacy (DP-FedAvg)",
         client if facts.client_dp else "not used"),
        ("secure aggregation (SecAgg+)",
         secure if spec.secure_aggregation else "off: the coordinator sees each site's update"),
        ("encrypted evaluation metrics (CKKS)",
         f"on: only the researcher's key decrypts the sites' metrics (public context "
         f"{_code(spec.he_context_sha256)})" if spec.he_context_sha256 else "off"),
        ("contribution estimate", _contributions(spec)),
    ]  # fmt: skip


def _contributions(spec: StudySpec) -> str:
    if spec.contributions == "data_size":
        return "each site's share of the examples (no model beyond the global one leaves)"
    method = "leave-one-out" if spec.contributions == "leave_one_out" else "Shapley values"
    return (
        f"{method} of {_code(spec.contributions_metric)} after every round: the coordinator "
        "builds models from subsets of the sites' updates, including each site's update alone, "
        "and every site evaluates them"
    )


def _participation(spec: StudySpec) -> Rows:
    sites = ", ".join(_code(n) for n in spec.nodes)
    if spec.eval_every:
        when = "every round" if spec.eval_every == 1 else f"every {spec.eval_every} rounds"
    else:
        when = "after the last round"
    rows = [
        ("minimum sites per round", str(spec.min_nodes)),
        ("sites", sites or "every consortium member that registered the dataset"),
        ("evaluation", f"{when}, on each site's held-out test split: accuracy, loss, and AUC, "
                       "balanced accuracy and AUPRC where defined, weighted by examples"),
    ]  # fmt: skip
    if spec.stats_spec:
        rows.append(("statistics query", _code(spec.stats_spec)))
    return rows


def _client_epsilon(spec: StudySpec) -> str:
    if spec.strategy != CLIENT_DP_STRATEGY:
        return ""
    facts = facts_from_spec(dataclasses.replace(spec, dp_epsilon=0.0, dp_noise_multiplier=0.0))
    return "unbounded (no noise)" if math.isinf(facts.epsilon) else _number(facts.epsilon)


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape) or "scalar"


def _image_input(features: tuple[str, ...]) -> str:
    if len(features) == 1 and features[0].startswith("image:"):
        return features[0].removeprefix("image:")
    return ""


def _number(value: float) -> str:
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _md_text(value: object) -> str:
    return _MD_SPECIAL.sub(r"\\\1", str(value))


def _html_text(value: object) -> str:
    return _md_text(html.escape(str(value), quote=False))


def _code(value: object) -> str:
    """A code span (Python-Markdown escapes HTML inside it); a backtick cannot end it early."""
    text = str(value).replace("`", "'").replace("|", "\\|")
    return f"`{text}`"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 52em; margin: 2em auto; line-height: 1.45; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #bbb; padding: .2em .6em; }}
code {{ font-size: 95%; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
