import dataclasses
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.cli.protocol import context_sha256, model_summary
from medfed.cli.study import prepare
from medfed.coordinator.spec import load_spec, spec_from_proto, spec_to_proto
from medfed.demo.heart import STUDY_SPEC as HEART
from medfed.demo.imaging import STUDY_SPEC as IMAGING
from medfed.ledger.protocol_document import ModelSummary, render
from medfed.ledger.protocol_pdf import render_pdf
from medfed.privacy.accounting import gaussian_epsilon


def pinned(path: Path, **changes):
    spec, weights = prepare(dataclasses.replace(load_spec(path), **changes))
    return spec, model_summary(spec, weights)


@pytest.fixture(scope="module")
def heart():
    return pinned(HEART)


def test_the_heart_protocol_states_the_key_facts_and_the_hash(heart):
    spec, model = heart
    text = render(spec, model, "md", consortium="Heart Consortium")
    sha = spec.sha256
    assert len(sha) == 64
    assert text.count(sha) == 2  # at the top and in the closing paragraph
    for fact in (
        "# Study protocol: heart-disease-demo",
        "Heart Consortium consortium",
        "| dataset (as each hospital registered it) | `heart_disease` |",
        "| label | `target` |",
        "| features | 13: `age`, `sex`,",
        f"| plan code SHA-256 | `{spec.plan_sha256}` |",
        "| training plan | `logistic_regression` version `1` |",
        "| parameters | 14 in 2 tensors |",  # 13 weights + 1 bias
        "| `weight` | 1 x 13 |",
        "| aggregation strategy | `fedavg` |",
        "| rounds | 20 |",
        "| local training | 1 local epoch per round, batch size 8, sgd at learning rate 0.1 |",
        "| record-level differential privacy (DP-SGD) | not used |",
        "| secure aggregation (SecAgg+) | off",
        "| minimum sites per round | 3 |",
        "| evaluation | every round, on each site's held-out test split",
    ):
        assert fact in text, fact


def test_the_imaging_protocol_counts_the_cnns_parameters():
    spec, model = pinned(IMAGING)
    text = render(spec, model, "md")
    _, weights = prepare(spec)
    assert model.parameters == sum(int(a.size) for a in weights.values()) > 10_000
    assert f"| parameters | {model.parameters:,} in {len(weights)} tensors |" in text
    assert "| input | one image per example, `1x28x28`" in text
    assert "| training plan | `cnn` version `1` |" in text
    assert "| plan option `width` | 16 |" in text
    assert "adam at learning rate 0.001" in text
    assert spec.sha256 in text
    assert "standardization" not in text


def test_privacy_settings_are_spelled_out(heart):
    spec, model = heart
    private = dataclasses.replace(
        spec,
        dp_epsilon=3.0,
        dp_delta=1e-6,
        strategy="dpfedavg",
        strategy_params={"clip_norm": 1.0, "noise_multiplier": 1.2, "distributed": 1.0},
        secure_aggregation=True,
        nodes=("cleveland", "hungary"),
    )
    text = render(dataclasses.replace(private, he_context_sha256="c" * 64), model, "md")
    client = gaussian_epsilon(1.2, spec.rounds, 1e-5)
    assert "ε = 3 per site for the whole study, δ = 1e-06, per-example clipping 1" in text
    assert f"ε = {client:.6g} over 20 rounds at δ = 1e-05" in text
    assert "| strategy option `noise_multiplier` | 1.2 |" in text
    assert "| strategy option `adaptive` | 0 (default) |" in text
    assert "| secure aggregation (SecAgg+) | on: the coordinator sees only the sum" in text
    assert "| encrypted evaluation metrics (CKKS) | on" in text
    assert f"(public context `{'c' * 64}`)" in text
    assert "| sites | `cleveland`, `hungary` |" in text
    assert "masked model updates" in text
    assert math.isfinite(client)


@pytest.mark.parametrize(
    "change",
    [
        {"rounds": 21},
        {"dp_epsilon": 8.0},
        {"features": ("sex", "age")},
        {"nodes": ("cleveland",)},
        {"seed": 1},
        {"plan_sha256": "0" * 64},
        {"strategy": "fedprox", "strategy_params": {"mu": 0.1}},
        {"secure_aggregation": True},
        {"cohort_sha256": "a" * 64},
    ],
)
def test_any_change_to_the_spec_changes_the_hash_and_the_document(heart, change):
    spec, model = heart
    changed = dataclasses.replace(spec, **change)
    assert changed.sha256 != spec.sha256
    assert changed.sha256 in render(changed, model) and spec.sha256 not in render(changed, model)


def test_the_coordinators_view_of_the_submitted_spec_has_the_same_hash(heart):
    """The coordinator receives the spec through protobuf and records ``StudySpec.sha256``."""
    spec, _ = heart
    assert spec_from_proto(spec_to_proto(spec)).sha256 == spec.sha256


def test_a_pooled_standardization_study_keeps_its_hash_at_submission(heart):
    spec, model = heart
    pooled = dataclasses.replace(spec, standardize="pooled:s-1")
    filled = dataclasses.replace(pooled, pooled_standardization={"age": (54.0, 9.0)})
    assert filled.sha256 == pooled.sha256 != spec.sha256
    assert pooled.sha256 in render(pooled, model)


@pytest.fixture(scope="module")
def ckks_key(tmp_path_factory):
    from medfed.secagg.ckks import CkksParams, ResearcherKeys

    small = CkksParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 49))
    path = tmp_path_factory.mktemp("ckks") / "researcher.ckks"
    path.write_bytes(ResearcherKeys.generate(small).secret_context())
    return path


def test_encrypted_metrics_hash_the_context_as_the_coordinator_stores_it(tmp_path, ckks_key):
    from medfed.coordinator.encrypted_eval import store_context
    from medfed.coordinator.models import ServedModels
    from medfed.secagg.ckks import ResearcherKeys
    from medfed.store.models import ModelStore

    public = ResearcherKeys.load(ckks_key.read_bytes()).public_context()
    stored = store_context(ServedModels(ModelStore(tmp_path / "models")), public)
    assert context_sha256(ckks_key.read_bytes()) == stored


def test_html_is_a_page_and_escapes_what_the_spec_and_options_say(heart):
    spec, _ = heart
    hostile = dataclasses.replace(spec, features=("age", "<script>x</script>", "a|b`c"))
    model = ModelSummary("a <b>bold</b> | plan", (("w", (1, 3)),))
    page = render(hostile, model, "html", consortium="<img src=x onerror=alert(1)>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Study protocol: heart-disease-demo</title>" in page
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert f"<code>{hostile.sha256}</code>" in page
    assert "<table>" in page
    rows = [line for line in render(hostile, model, "md").splitlines() if "| features |" in line]
    assert rows == ["| features | 3: `age`, `<script>x</script>`, `a\\|b'c` |"]


def test_an_unknown_format_is_refused(heart):
    spec, model = heart
    with pytest.raises(ValueError, match="md or html"):
        render(spec, model, "pdf")  # type: ignore[arg-type]


def test_the_command_prints_the_hash_and_writes_html(tmp_path, heart, ckks_key):
    spec, _ = heart
    runner = CliRunner()
    result = runner.invoke(root, ["study", "protocol", str(HEART), "--hash"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == spec.sha256
    page = tmp_path / "protocol.html"
    result = runner.invoke(
        root, ["study", "protocol", str(HEART), "--format", "html", "--out", str(page)]
    )
    assert result.exit_code == 0, result.output
    assert spec.sha256 in page.read_text()
    args = ["study", "protocol", str(HEART), "--encrypt-metrics", str(ckks_key)]
    result = runner.invoke(root, args)
    assert result.exit_code == 0, result.output
    encrypted = dataclasses.replace(spec, he_context_sha256=context_sha256(ckks_key.read_bytes()))
    assert encrypted.sha256 in result.output
    assert "| encrypted evaluation metrics (CKKS) | on" in result.output


def test_the_command_names_a_bad_spec(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nrounds = 1\n')
    result = CliRunner().invoke(root, ["study", "protocol", str(bad)])
    assert result.exit_code == 2
    assert "dataset" in result.output


def test_the_pdf_is_the_same_document_with_the_hash_on_every_page(tmp_path, heart):
    from pypdf import PdfReader

    spec, model = heart
    private = dataclasses.replace(spec, dp_epsilon=3.0, dp_delta=1e-6)
    path = tmp_path / "protocol.pdf"
    path.write_bytes(render_pdf(private, model, consortium="Heart Consortium"))
    reader = PdfReader(path)
    pages = [page.extract_text() for page in reader.pages]
    assert len(pages) >= 2
    for page in pages:
        assert f"protocol SHA-256 {private.sha256}" in page
    text = " ".join(" ".join(pages).split())
    assert "Study protocol: heart-disease-demo" in text
    assert "Heart Consortium consortium" in text
    assert "ε = 3 per site for the whole study, δ = 1e-06" in text
    assert "training plan logistic_regression version 1" in text
    assert reader.metadata is not None
    assert reader.metadata.title == "Study protocol: heart-disease-demo"
    assert reader.metadata.subject == f"protocol SHA-256 {private.sha256}"


def test_the_command_writes_a_pdf_only_to_a_file(tmp_path, heart):
    from pypdf import PdfReader

    spec, _ = heart
    runner = CliRunner()
    result = runner.invoke(root, ["study", "protocol", str(HEART), "--format", "pdf"])
    assert result.exit_code == 2
    assert "--out" in result.output
    path = tmp_path / "protocol.pdf"
    args = ["study", "protocol", str(HEART), "--format", "pdf", "--out", str(path)]
    result = runner.invoke(root, args)
    assert result.exit_code == 0, result.output
    assert path.read_bytes().startswith(b"%PDF-")
    assert PdfReader(path).metadata.subject == f"protocol SHA-256 {spec.sha256}"
