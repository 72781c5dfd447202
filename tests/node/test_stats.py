from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medfed.analytics import wire
from medfed.analytics.spec import ColumnKind, StatsSpec
from medfed.configfile import render
from medfed.data.omop.store import OmopStore
from medfed.data.registry import DatasetRegistry
from medfed.data.tabular import TabularDataset
from medfed.errors import ConfigError, DisclosureError, PolicyError
from medfed.node.config import NODE_KEYS, load_node_config
from medfed.node.stats import (
    META_TENSOR,
    StatsResponder,
    row_ids,
    tabular_table,
    with_pooled_standardization,
)
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.standardize import fit_standardizer
from tests.data.omop.test_features_registry import located, register  # noqa: F401 (a fixture)

QUERY = StatsSpec(bins={"age": (20.0, 40.0, 60.0, 80.0)}, group="target")


def dataset() -> TabularDataset:
    rng = np.random.default_rng(7)
    x = np.column_stack(
        [rng.uniform(25, 75, 80), rng.integers(0, 2, 80), rng.integers(100, 300, 80)]
    ).astype(np.float32)
    y = (rng.uniform(size=80) < 0.5).astype(np.float32)
    return TabularDataset(("age", "sex", "chol"), "target", x[:60], y[:60], x[60:], y[60:])


def write_csv(path: Path, rows: int, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["age,sex,target"]
    for _ in range(rows):
        lines.append(f"{rng.integers(25, 75)},{rng.integers(0, 2)},{rng.integers(0, 2)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def task(study: str = "s-1", query: StatsSpec = QUERY, dataset: str = "heart") -> pb.Task:
    spec_json = json.dumps(query.to_json())
    return pb.Task(
        task_id="t", study_id=study, round=1, kind=pb.TASK_KIND_STATS,
        dataset=pb.DatasetRef(name=dataset), stats=pb.StatsQuery(spec_json=spec_json),
    )  # fmt: skip


def test_all_rows_are_summarized_with_binned_and_binary_columns() -> None:
    data = dataset()

    table = tabular_table(data, QUERY)

    assert [(c.name, c.kind) for c in table.columns] == [
        ("age", ColumnKind.CONTINUOUS),
        ("sex", ColumnKind.BINARY),
        ("target", ColumnKind.BINARY),
    ]  # chol: neither binned nor 0/1, so left out
    assert table.matrix.shape == (80, 3)
    expected = np.concatenate([data.x_train[:, 0], data.x_test[:, 0]])
    assert np.array_equal(table.matrix[:, 0], expected.astype(np.float64))
    assert np.array_equal(table.matrix[:, 2], np.concatenate([data.y_train, data.y_test]))


def test_named_features_restrict_the_columns_and_need_bins_unless_binary() -> None:
    table = tabular_table(dataset(), QUERY, ("age",))
    assert [c.name for c in table.columns] == ["age", "target"]  # the group always comes along
    with pytest.raises(PolicyError, match="'chol' is not 0/1 and has no bins"):
        tabular_table(dataset(), QUERY, ("chol",))
    with pytest.raises(PolicyError, match="no columns \\['bmi'\\]"):
        tabular_table(dataset(), QUERY, ("bmi",))


def test_row_ids_survive_other_rows_leaving_and_tell_twins_apart() -> None:
    m = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [5.0, 6.0]])

    ids = row_ids(m)

    assert len(set(ids.tolist())) == 4
    assert row_ids(m[[0, 2, 3]]).tolist() == ids[[0, 2, 3]].tolist()


@pytest.fixture
def registry(tmp_path: Path) -> DatasetRegistry:
    registry = DatasetRegistry(tmp_path / "state")
    registry.add("heart", write_csv(tmp_path / "heart.csv", 120), label="target", now=0.0)
    return registry


def test_the_answer_is_the_sites_summary_under_its_own_k(
    registry: DatasetRegistry, tmp_path: Path
) -> None:
    responder = StatsResponder("a", registry, tmp_path / "state", k=7)

    n, upload = responder.answer(task())

    meta = json.loads(upload[META_TENSOR].tobytes())
    summary = wire.from_arrays({k: v for k, v in upload.items() if k != META_TENSOR}, meta)
    assert n == 120 == summary.totals[0]
    assert summary.site == "a" and summary.k == 7
    assert summary.columns == ("overall", "target=no", "target=yes")
    assert (tmp_path / "state" / "analytics" / "dataset-heart.releases.json").exists()


def test_a_second_query_over_fewer_than_k_changed_rows_is_refused(
    registry: DatasetRegistry, tmp_path: Path
) -> None:
    responder = StatsResponder("a", registry, tmp_path / "state")
    responder.answer(task("s-1"))
    lines = (tmp_path / "heart.csv").read_text().splitlines(keepends=True)
    (tmp_path / "heart.csv").write_text("".join(lines[:-3]))
    registry.remove("heart")
    registry.add("heart", tmp_path / "heart.csv", label="target", now=1.0)

    with pytest.raises(DisclosureError, match="3 removed persons"):
        responder.answer(task("s-2"))


def test_what_the_steward_did_not_register_is_refused(
    registry: DatasetRegistry, tmp_path: Path
) -> None:
    responder = StatsResponder("a", registry, tmp_path / "state")
    with pytest.raises(PolicyError) as refused:
        responder.answer(task(dataset="icu"))
    assert refused.value.code == "dataset_unavailable"
    bad = task()
    bad.stats.spec_json = "{"
    with pytest.raises(PolicyError) as unreadable:
        responder.answer(bad)
    assert unreadable.value.code == "bad_stats_query"
    with pytest.raises(ConfigError, match="below the floor of 3"):
        StatsResponder("a", registry, tmp_path / "state", k=2)


def test_the_node_config_refuses_a_stats_k_below_3(tmp_path: Path) -> None:
    keys = {k.name: k.default if k.default is not None else "f" for k in NODE_KEYS}
    keys["coordinator"] = "h:1"
    config = tmp_path / "node.toml"
    config.write_text(render("node", NODE_KEYS, keys))
    assert load_node_config(config).stats_k == 5

    config.write_text(render("node", NODE_KEYS, keys | {"stats_k": 2}))
    with pytest.raises(ConfigError, match="stats_k"):
        load_node_config(config)


def test_pooled_statistics_replace_the_sites_own_for_their_columns() -> None:
    data = dataset()
    train = pb.Task(kind=pb.TASK_KIND_TRAIN)
    assert with_pooled_standardization(train, data) is data
    train.standardization.CopyFrom(
        pb.Standardization(source="s-1", features=["age"], mean=[50.0], std=[10.0])
    )

    pooled = with_pooled_standardization(train, data)

    assert isinstance(pooled, TabularDataset) and pooled.standardization is not None
    mean, std = pooled.standardization
    own_mean, own_std = fit_standardizer(data.x_train)
    assert (mean[0], std[0]) == (50.0, 10.0)
    assert np.array_equal(mean[1:], own_mean[1:]) and np.array_equal(std[1:], own_std[1:])
    for features, means, stds, why in (
        (["bmi"], [1.0], [1.0], "columns the data does not have"),
        (["age"], [50.0], [0.0], "unusable"),
    ):
        train.standardization.CopyFrom(pb.Standardization(features=features, mean=means, std=stds))
        with pytest.raises(PolicyError, match=why):
            with_pooled_standardization(train, data)


def test_an_omop_dataset_is_summarized_with_its_cohort_attrition(
    located: tuple[OmopStore, str],  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    store, location = located
    registry = register(tmp_path, store, location)
    responder = StatsResponder("a", registry, tmp_path / "state", k=3)
    query = StatsSpec(bins={"age": (60.0, 70.0, 80.0, 90.0, 100.0)})

    n, upload = responder.answer(task(query=query))

    meta = json.loads(upload[META_TENSOR].tobytes())
    summary = wire.from_arrays({k: v for k, v in upload.items() if k != META_TENSOR}, meta)
    assert n == 12 == summary.totals[0]
    assert summary.attrition and summary.attrition[-1].count == 12
    assert {f.name for f in summary.features} == {"age", "sbp_missing", "target"}
