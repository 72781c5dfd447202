from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.data.dicom.connector import DicomSource
from medfed.data.pneumonia import HospitalImages, load_split
from medfed.data.registry import DatasetRegistry
from medfed.demo.imaging import LABEL, write_hospital_folder
from medfed.model.bundle import bundle_from_status, write_bundle
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.registry import get_plan, plan_sha256
from tests.e2e.harness import Network, small_study
from tests.model.heart import heart_bundle, site_csvs

runner = CliRunner()


def medfed(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(root, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def csvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return site_csvs(tmp_path_factory.mktemp("sites"))


@pytest.fixture
def bundle_file(tmp_path: Path) -> Path:
    path = tmp_path / "heart.safetensors"
    write_bundle(heart_bundle(), path)
    return path


def test_evaluate_reproduces_what_each_site_reported(
    bundle_file: Path, csvs: dict[str, Path]
) -> None:
    for site, path in csvs.items():
        shown = medfed("model", "evaluate", bundle_file, "--csv", path, "--split-column",
                       "split", "--site", site)  # fmt: skip

        assert f"reproduces what {site} reported at round 3" in shown
        assert "NO" not in shown


def test_evaluate_on_another_sites_data_exits_1(bundle_file: Path, csvs: dict[str, Path]) -> None:
    shown = medfed("model", "evaluate", bundle_file, "--csv", csvs["switzerland"],
                   "--split-column", "split", "--site", "cleveland", code=1)  # fmt: skip

    assert "differs from what cleveland reported" in shown


def test_inspect_shows_plan_inputs_preprocessing_and_sites(bundle_file: Path) -> None:
    shown = medfed("model", "inspect", bundle_file)
    document = json.loads(medfed("model", "inspect", bundle_file, "--json"))

    info = heart_bundle().info
    for text in ("logistic_regression 1", "installed here, same code", "site_standardization",
                 "cp_2", "restecg_2", "va_long_beach", "recorded at round 3",
                 info.model_sha256[:16]):  # fmt: skip
        assert text in shown
    assert document["model_sha256"] == info.model_sha256
    assert [f["name"] for f in document["inputs"]["features"]] == list(info.features)
    assert len(document["metrics"]["sites"]) == 4


def test_a_csv_with_other_columns_is_refused_naming_them(bundle_file: Path, tmp_path: Path) -> None:
    info = heart_bundle().info
    header = [f for f in info.features if f != "chol"] + ["cholesterol", "target", "split"]
    path = tmp_path / "renamed.csv"
    path.write_text(",".join(header) + "\n")

    shown = medfed("model", "evaluate", bundle_file, "--csv", path, "--split-column", "split",
                   code=2)  # fmt: skip

    assert "missing ['chol'], extra ['cholesterol']" in " ".join(shown.split())


def test_a_tampered_bundle_is_refused(bundle_file: Path, csvs: dict[str, Path]) -> None:
    data = bytearray(bundle_file.read_bytes())
    data[-2] ^= 0x40
    bundle_file.write_bytes(bytes(data))

    shown = medfed("model", "evaluate", bundle_file, "--csv", csvs["hungary"], code=2)

    assert "model hash mismatch" in shown


def test_predict_writes_one_probability_per_row(
    bundle_file: Path, csvs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "predictions.csv"
    new = tmp_path / "new.csv"
    features = heart_bundle().info.features
    with csvs["cleveland"].open(newline="") as handle:
        site_rows = list(csv.DictReader(handle))
    with new.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(features)
        writer.writerows([r[f] for f in features] for r in site_rows[:5])

    medfed("model", "predict", bundle_file, "--csv", csvs["cleveland"], "--split-column", "split",
           "--out", out)  # fmt: skip
    with out.open(newline="") as handle:
        predicted = list(csv.DictReader(handle))
    medfed("model", "predict", bundle_file, "--csv", csvs["cleveland"], "--split-column", "split",
           "--rows", new, "--out", out)  # fmt: skip
    with out.open(newline="") as handle:
        scored = list(csv.DictReader(handle))

    assert len(predicted) == len(site_rows) == 303
    assert list(predicted[0]) == ["split", "target", "probability"]
    test = [r for r in predicted if r["split"] == "test"]
    hits = [(float(r["probability"]) > 0.5) == (r["target"] == "1") for r in test]
    recorded = heart_bundle().info.metrics.site("cleveland").metrics["accuracy"]
    assert np.mean(hits) == pytest.approx(recorded, abs=1e-12)
    assert [r["line"] for r in scored] == ["2", "3", "4", "5", "6"]
    train = [float(r["probability"]) for r in predicted if r["split"] == "train"][:5]
    # The first five file rows are training rows; float32 sums over 5 rows or 199 may differ
    # in the last bit, so the probabilities agree to float32 precision.
    np.testing.assert_allclose([float(r["probability"]) for r in scored], train, rtol=1e-6)


def test_an_imaging_bundle_evaluates_dicom_as_the_node_does(tmp_path: Path) -> None:
    images = load_split("val")
    hospital = HospitalImages(images.subset(np.arange(24)), images.subset(np.arange(24, 40)))
    folder = tmp_path / "dicom"
    labels = write_hospital_folder(folder, "riverside", hospital)
    registry = DatasetRegistry(tmp_path / "node")
    registry.add_dicom("cxr", DicomSource(folder, labels, LABEL, "split", 28), now=time.time())
    plan = get_plan("cnn", "1")
    weights = plan.init_weights(1, 0, {})
    node_result = plan.evaluate(weights, registry.load("cxr"))  # what the node reports
    sha = tensors.weights_sha256(weights)
    status = pb.StudyStatus(
        study_id="cxr-1", state="completed", completed_rounds=1, model_sha256=sha,
        spec=pb.StudySpec(
            name="cxr", dataset=pb.DatasetRef(name="cxr", features=["image:1x28x28"], label=LABEL),
            plan=pb.PlanRef(name="cnn", version="1", sha256=plan_sha256(plan)),
        ),
        rounds=[pb.RoundSummary(round=1, model_sha256=sha, per_node=[pb.NodeMetrics(
            node="riverside", num_examples=node_result.num_examples, metrics=node_result.metrics,
        )])],
    )  # fmt: skip
    bundle = tmp_path / "cxr.safetensors"
    write_bundle(bundle_from_status(status, weights, "{}"), bundle)

    shown = medfed("model", "evaluate", bundle, "--dicom", folder, "--labels", labels,
                   "--split-column", "split", "--site", "riverside")  # fmt: skip
    refused = medfed("model", "evaluate", bundle, "--csv", labels, code=2)

    assert "reproduces what riverside reported" in shown
    assert "takes images (image:1x28x28), not --csv" in refused


def test_a_downloaded_bundle_reproduces_the_coordinators_record(
    network: Network, tmp_path: Path
) -> None:
    network.start_coordinator()
    network.start_nodes()
    status = network.wait_done(network.submit(small_study(rounds=2)), timeout_s=60)
    admin = network.consortium.admin_config
    bundle, bare = tmp_path / "model.safetensors", tmp_path / "weights.safetensors"

    medfed("study", "download", status.study_id, "--config", admin, "--out", bundle)
    medfed("study", "download", status.study_id, "--config", admin, "--out", bare,
           "--weights-only")  # fmt: skip
    site_csv = network.consortium.node_state("cleveland").parent / "data" / "cleveland.csv"
    shown = medfed("model", "evaluate", bundle, "--csv", site_csv, "--split-column", "split",
                   "--site", "cleveland")  # fmt: skip

    assert status.state == "completed"
    assert "reproduces what cleveland reported at round 2" in shown
    recorded = {m.node: dict(m.metrics) for m in status.rounds[-1].per_node}["cleveland"]
    inspected = json.loads(medfed("model", "inspect", bundle, "--json"))
    assert {s["site"]: s["metrics"] for s in inspected["metrics"]["sites"]}["cleveland"] == recorded
    assert inspected["model_sha256"] == status.model_sha256
    assert list(load_file(str(bare))) == ["bias", "weight"]
