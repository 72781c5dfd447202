from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medfed.errors import BundleError
from medfed.model import apply
from medfed.training.metrics import accuracy
from tests.model.heart import heart_bundle, site_csvs


@pytest.fixture(scope="module")
def csvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return site_csvs(tmp_path_factory.mktemp("sites"))


def test_evaluate_on_raw_csv_gives_each_sites_recorded_metrics(csvs: dict[str, Path]) -> None:
    bundle = heart_bundle()
    plan, same_code = apply.installed_plan(bundle.info)

    for site, path in csvs.items():
        data = apply.load_table(bundle.info, path, "split")
        result = apply.evaluate(bundle, plan, data)

        recorded = bundle.info.metrics.site(site)
        assert same_code
        assert result.num_examples == recorded.num_examples
        assert result.metrics == dict(recorded.metrics)


def test_another_sites_data_does_not_reproduce_the_record(csvs: dict[str, Path]) -> None:
    bundle = heart_bundle()
    plan, _ = apply.installed_plan(bundle.info)
    data = apply.load_table(bundle.info, csvs["cleveland"], "split")

    measured = apply.evaluate(bundle, plan, data).metrics
    compared = apply.compare(measured, bundle.info.metrics.site("hungary").metrics)

    assert {"accuracy", "auc", "loss"} <= {c.metric for c in compared}
    assert not all(c.matches for c in compared)


def test_predicted_test_probabilities_give_the_recorded_accuracy(csvs: dict[str, Path]) -> None:
    bundle = heart_bundle()
    plan, _ = apply.installed_plan(bundle.info)
    data = apply.load_table(bundle.info, csvs["va_long_beach"], "split")

    scored = apply.predict_site(bundle, plan, data)

    assert len(scored) == data.rows
    assert [s for s, _, _ in scored] == ["train"] * len(data.y_train) + ["test"] * len(data.y_test)
    test = [(y, p) for s, y, p in scored if s == "test"]
    labels, probabilities = np.array(test).T
    np.testing.assert_array_equal(labels, data.y_test)
    recorded = bundle.info.metrics.site("va_long_beach").metrics["accuracy"]
    assert accuracy(labels, probabilities) == recorded
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_new_rows_are_scored_with_the_sites_training_statistics(
    csvs: dict[str, Path], tmp_path: Path
) -> None:
    bundle = heart_bundle()
    plan, _ = apply.installed_plan(bundle.info)
    site = apply.load_table(bundle.info, csvs["hungary"], "split")
    with csvs["hungary"].open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    features = list(reversed(bundle.info.features))  # column order does not matter
    new = tmp_path / "new_patients.csv"
    with new.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(features)
        writer.writerows([r[f] for f in features] for r in rows)

    x, lines = apply.load_rows(bundle.info, new, None)
    scores = apply.predict_rows(bundle, plan, site, x)

    expected = [p for s, _, p in apply.predict_site(bundle, plan, site) if s == "test"]
    assert lines == list(range(2, len(rows) + 2))
    np.testing.assert_array_equal(scores, expected)


def test_columns_that_are_not_the_models_are_named(tmp_path: Path) -> None:
    info = heart_bundle().info
    header = [f for f in info.features if not f.startswith("cp_")] + ["cp", "target", "split"]
    path = tmp_path / "unencoded.csv"
    path.write_text(",".join(header) + "\n" + ",".join(["1"] * (len(header) - 1)) + ",train\n")

    with pytest.raises(BundleError) as refused:
        apply.load_table(info, path, "split")

    message = str(refused.value)
    assert "missing ['cp_2', 'cp_3', 'cp_4'], extra ['cp']" in message
    assert "'age', 'sex'" in message


def test_a_split_column_not_named_is_an_extra_column(csvs: dict[str, Path]) -> None:
    with pytest.raises(BundleError, match=r"missing \[\], extra \['split'\]"):
        apply.load_table(heart_bundle().info, csvs["cleveland"], None)


def test_a_table_model_refuses_images(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="takes a table of 13 features, not --dicom"):
        apply.load_images(heart_bundle().info, tmp_path, tmp_path / "labels.csv", None, False)
