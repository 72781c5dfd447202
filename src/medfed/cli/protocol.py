"""``medfed study protocol``: the study as the protocol appendix of the Data Use Agreement.

The spec is pinned exactly as ``medfed study submit`` pins it (the installed plan's code hash and,
with ``--encrypt-metrics KEY``, the store hash of the CKKS public context the coordinator will
record), so the hash printed here is ``StudySpec.sha256`` of the spec the coordinator stores: the
hash the ledger records at submission and each hospital's data steward approves. No certificate
or network is needed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from medfed.cli.common import medfed_errors, out
from medfed.errors import ConfigError

if TYPE_CHECKING:
    from medfed.coordinator.spec import StudySpec
    from medfed.ledger.protocol_document import ModelSummary
    from medfed.protocol.tensors import Weights


def protocol(
    spec: Annotated[Path, typer.Argument(help="Study spec (TOML).")],
    fmt: Annotated[
        Literal["md", "html", "pdf"],
        typer.Option("--format", help="Markdown, a standalone HTML page, or a PDF (needs --out)."),
    ] = "md",
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of standard output.")
    ] = None,
    consortium: Annotated[str, typer.Option(help="The consortium's name, for the title.")] = "",
    encrypt_metrics: Annotated[
        Path | None,
        typer.Option(help="The CKKS key you will submit with (study submit --encrypt-metrics)."),
    ] = None,
    show_hash: Annotated[
        bool, typer.Option("--hash", help="Print only the protocol's SHA-256.")
    ] = False,
) -> None:
    """Render a study spec as the protocol appendix for the Data Use Agreement, with the hash
    each hospital's data steward approves."""
    from medfed.cli.study import prepare
    from medfed.coordinator.spec import load_spec
    from medfed.ledger.protocol_document import render

    with medfed_errors():
        if fmt == "pdf" and out_file is None and not show_hash:
            raise ConfigError("a PDF is written to a file: add --out FILE.pdf")
        pinned, weights = prepare(load_spec(spec))
        if encrypt_metrics is not None:
            he_sha = context_sha256(encrypt_metrics.read_bytes())
            pinned = dataclasses.replace(pinned, he_context_sha256=he_sha)
        if show_hash:
            out.print(pinned.sha256, markup=False, highlight=False)
            return
        summary = model_summary(pinned, weights)
        if fmt == "pdf":
            from medfed.ledger.protocol_pdf import render_pdf

            assert out_file is not None  # refused above
            out_file.write_bytes(render_pdf(pinned, summary, consortium))
        else:
            text = render(pinned, summary, fmt, consortium)
            if out_file is None:
                sys.stdout.write(text)
                return
            out_file.write_text(text, encoding="utf-8")
        out.print(f"wrote {out_file}", markup=False, highlight=False)


def context_sha256(secret_key: bytes) -> str:
    """What the coordinator records as the study's ``he_context_sha256``: the content hash under
    which its model store keeps the public context (``encrypted_eval.store_context``)."""
    from medfed.protocol.tensors import weights_sha256
    from medfed.secagg import ckks

    public = ckks.ResearcherKeys.load(secret_key).public_context()
    return weights_sha256(ckks.as_blob(ckks.CONTEXT_TENSOR, public))


def model_summary(spec: StudySpec, weights: Weights) -> ModelSummary:
    """The plan's own description (its module docstring's first paragraph) and the initial
    model's tensors, in the order the plan builds them."""
    import inspect

    from medfed.ledger.protocol_document import ModelSummary
    from medfed.training.registry import get_plan

    plan = get_plan(spec.plan, spec.plan_version)
    doc = inspect.getdoc(sys.modules[type(plan).__module__]) or f"training plan {spec.plan}"
    first = " ".join(doc.split("\n\n")[0].split())
    tensors = tuple((name, tuple(int(d) for d in array.shape)) for name, array in weights.items())
    return ModelSummary(first, tensors)


def register(app: typer.Typer) -> None:
    """Add ``protocol`` to the ``medfed study`` group."""
    app.command("protocol")(protocol)
