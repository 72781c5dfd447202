from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from medfed.coordinator.spec import StudySpec
from medfed.errors import BundleError
from medfed.model.bundle import (
    FORMAT,
    ModelBundle,
    bundle_from_status,
    read_bundle,
    recorded_metrics,
    write_bundle,
)
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from tests.model.heart import ROUNDS, finished_study, heart_bundle


def written(tmp_path: Path, bundle: ModelBundle | None = None) -> Path:
    path = tmp_path / "model.safetensors"
    write_bundle(bundle or heart_bundle(), path)
    return path


def header(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(str(path), framework="numpy") as handle:
        return dict(handle.metadata()), {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118


def rewrite(path: Path, edit_document) -> None:
    """Re-save the file with its document edited by ``edit_document(doc)``."""
    metadata, arrays = header(path)
    doc = json.loads(metadata["bundle"])
    edit_document(doc)
    save_file(arrays, str(path), {"format": FORMAT, "bundle": json.dumps(doc)})


def test_round_trip_keeps_weights_order_and_document(tmp_path: Path) -> None:
    status, weights, spec_json = finished_study()

    loaded = read_bundle(written(tmp_path))

    info = loaded.info
    assert list(loaded.weights) == list(weights) == ["weight", "bias"]
    for name, array in weights.items():
        np.testing.assert_array_equal(loaded.weights[name], array)
        assert loaded.weights[name].dtype == array.dtype
    assert info == heart_bundle().info
    assert info.model_sha256 == status.model_sha256 == tensors.weights_sha256(loaded.weights)
    assert (info.plan, info.plan_version, info.plan_sha256) == (
        "logistic_regression", "1", status.spec.plan.sha256,
    )  # fmt: skip
    assert len(info.plan_sha256) == 64
    assert info.features == tuple(status.spec.dataset.features) and info.label == "target"
    assert (info.input_kind, info.preprocessing) == ("table", "site_standardization")
    assert StudySpec.from_json(info.spec_json).rounds == ROUNDS
    assert info.spec_json == spec_json


def test_recorded_metrics_are_the_final_rounds_per_site(tmp_path: Path) -> None:
    status, _, _ = finished_study()

    metrics = read_bundle(written(tmp_path)).info.metrics

    last = status.rounds[-1]
    assert metrics.round == ROUNDS
    assert [s.site for s in metrics.sites] == sorted(m.node for m in last.per_node)
    for node in last.per_node:
        site = metrics.site(node.node)
        assert site.num_examples == node.num_examples
        assert dict(site.metrics) == dict(node.metrics)
    assert metrics.aggregate["accuracy"] == last.metrics["accuracy"]


def test_metrics_of_another_model_are_not_recorded() -> None:
    status, _, _ = finished_study()
    running = pb.StudyStatus()
    running.CopyFrom(status)
    running.completed_rounds = ROUNDS + 1  # a newer model, not evaluated yet
    running.model_sha256 = "f" * 64

    assert recorded_metrics(running).sites == ()
    assert recorded_metrics(running).round == 0
    with pytest.raises(BundleError, match="no metrics for site 'cleveland'"):
        recorded_metrics(running).site("cleveland")


def test_weights_that_are_not_the_studys_model_are_refused() -> None:
    status, weights, spec_json = finished_study()
    other = {k: v + np.float32(1) for k, v in weights.items()}

    with pytest.raises(BundleError, match="not the study's current model"):
        bundle_from_status(status, other, spec_json)


def test_altered_weights_fail_the_model_hash(tmp_path: Path) -> None:
    path = written(tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # last byte of the tensor data
    path.write_bytes(bytes(data))

    with pytest.raises(BundleError, match="model hash mismatch"):
        read_bundle(path)


def test_an_edited_model_hash_is_refused(tmp_path: Path) -> None:
    path = written(tmp_path)
    rewrite(path, lambda doc: doc.update(model_sha256="0" * 64))

    with pytest.raises(BundleError, match="model hash mismatch"):
        read_bundle(path)


def test_an_edited_spec_fails_its_hash(tmp_path: Path) -> None:
    path = written(tmp_path)

    def more_rounds(doc: dict) -> None:
        doc["spec"]["json"] = doc["spec"]["json"].replace('"rounds": 3', '"rounds": 30')

    rewrite(path, more_rounds)

    with pytest.raises(BundleError, match="study spec does not match its SHA-256"):
        read_bundle(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["plan"].pop("sha256"), "bundle field plan.sha256 is missing"),
        (lambda d: d.update(round="3"), "bundle field round must be a whole number"),
        (lambda d: d["metrics"]["sites"][0].update(metrics={"accuracy": "high"}),
         r"bundle field metrics.sites\[0\].metrics must hold numbers"),
        (lambda d: d["preprocessing"].update(kind="quantile_normalization"),
         "preprocessing.kind is 'quantile_normalization', which this medfed does not know"),
        (lambda d: d["preprocessing"].update(kind="pooled_standardization"),
         "preprocessing 'pooled_standardization' does not fit table inputs"),
        (lambda d: d["preprocessing"].update(kind="image_scale"),
         "preprocessing 'image_scale' does not fit table inputs"),
        (lambda d: d["inputs"].update(kind="image"), "inputs.feature is missing"),
        (lambda d: d["inputs"].update(features=[]), "list no usable features"),
        (lambda d: d.update(tensors=["weight"]), "the file holds tensors"),
    ],
)  # fmt: skip
def test_a_malformed_document_is_refused_naming_the_field(
    tmp_path: Path, edit, message: str
) -> None:
    path = written(tmp_path)
    rewrite(path, edit)

    with pytest.raises(BundleError, match=message):
        read_bundle(path)


def test_a_spec_that_is_not_json_is_refused_even_with_its_hash(tmp_path: Path) -> None:
    path = written(tmp_path)

    def garbage(doc: dict) -> None:
        doc["spec"] = {"json": "rounds: 3", "sha256": hashlib.sha256(b"rounds: 3").hexdigest()}

    rewrite(path, garbage)

    with pytest.raises(BundleError, match=r"spec\.json is not a JSON object"):
        read_bundle(path)


def test_weights_only_files_and_other_files_are_told_apart(tmp_path: Path) -> None:
    _, weights, _ = finished_study()
    bare = tmp_path / "weights.safetensors"
    save_file(dict(weights), str(bare), {"sha256": "x"})
    text = tmp_path / "notes.safetensors"
    text.write_text("not a model\n")
    foreign = tmp_path / "foreign.safetensors"
    save_file(dict(weights), str(foreign), {"format": "other/v9", "bundle": "{}"})

    with pytest.raises(BundleError, match="holds weights only, not a model bundle"):
        read_bundle(bare)
    with pytest.raises(BundleError, match="is not a safetensors file"):
        read_bundle(text)
    with pytest.raises(BundleError, match="bundle format 'other/v9' is not"):
        read_bundle(foreign)
    with pytest.raises(BundleError, match="cannot read"):
        read_bundle(tmp_path / "missing.safetensors")


def test_an_imaging_bundle_declares_its_image_shape_and_scale(tmp_path: Path) -> None:
    status, weights, spec_json = finished_study()
    imaging = pb.StudyStatus()
    imaging.CopyFrom(status)
    del imaging.spec.dataset.features[:]
    imaging.spec.dataset.features.append("image:1x28x28")
    bundle = bundle_from_status(imaging, weights, spec_json)

    info = read_bundle(written(tmp_path, dataclasses.replace(bundle))).info
    metadata, _ = header(tmp_path / "model.safetensors")

    assert (info.input_kind, info.image_shape, info.preprocessing) == (
        "image", (1, 28, 28), "image_scale",
    )  # fmt: skip
    assert json.loads(metadata["bundle"])["inputs"] == {
        "kind": "image", "feature": "image:1x28x28", "shape": [1, 28, 28], "dtype": "float32",
    }  # fmt: skip
