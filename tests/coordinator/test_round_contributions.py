"""What a study may ask of contributions, and one round's measurement against a known utility."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping

import numpy as np
import pytest

from medfed.coordinator.coalitions import RoundUpdates
from medfed.coordinator.contributions import study_record
from medfed.coordinator.round_contributions import measure_round, per_round_values
from medfed.coordinator.spec import StudySpec, spec_from_mapping, spec_from_proto, spec_to_proto
from medfed.demo.heart import heart_study
from medfed.errors import ConfigError
from medfed.store.records import NodeRoundMetrics, RoundRecord
from medfed.strategies.base import Reply

SITES = ("a", "b", "c")


def _spec(**changes: object) -> StudySpec:
    return dataclasses.replace(heart_study(), **changes)  # type: ignore[arg-type]


def test_the_method_and_metric_travel_and_change_the_protocol_hash() -> None:
    spec = _spec(contributions="shapley", contributions_metric="accuracy")
    back = spec_from_proto(spec_to_proto(spec))
    assert (back.contributions, back.contributions_metric) == ("shapley", "accuracy")
    assert spec.sha256 != heart_study().sha256


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"secure_aggregation": True}, "secure aggregation hides every single update"),
        ({"he_context_sha256": "0" * 64}, "encrypted metrics"),
        ({"strategy": "dpfedavg"}, "client-level DP"),
        ({"strategy": "krum"}, "Krum"),
        ({"strategy": "cyclic"}, "no coalition"),
    ],
)
def test_a_study_that_cannot_build_coalition_models_is_refused(
    changes: dict[str, object], said: str
) -> None:
    with pytest.raises(ConfigError, match=said):
        _spec(contributions="shapley", **changes)
    _spec(contributions="data_size", **changes)  # the default is always allowed


def test_the_spec_file_takes_a_name_or_a_table() -> None:
    text = 'name = "s"\nrounds = 1\n[dataset]\nname = "heart"\n'
    base = tomllib.loads(text + '[plan]\nname = "logreg"\nversion = "1"\n')
    assert spec_from_mapping(base | {"contributions": "leave_one_out"}).contributions == (
        "leave_one_out"
    )
    table = spec_from_mapping(base | {"contributions": {"method": "shapley", "metric": "loss"}})
    assert (table.contributions, table.contributions_metric) == ("shapley", "loss")
    with pytest.raises(ConfigError, match="contributions must be"):
        spec_from_mapping(base | {"contributions": "banzhaf"})
    with pytest.raises(ConfigError, match="method"):
        spec_from_mapping(base | {"contributions": {"method": "shapley", "budget": 3}})


def _updates() -> RoundUpdates:
    """Three one-parameter updates: the coalition's FedAvg model is its mean."""
    model = {"w": np.zeros(1, dtype=np.float32)}
    replies = {s: Reply(s, {"w": np.array([i + 1.0], dtype=np.float32)}, 10)
               for i, s in enumerate(SITES)}  # fmt: skip
    return RoundUpdates(1, model, {}, replies)


class _Network:
    """Stores models by a made-up hash; every site "evaluates" a model as its weight."""

    def __init__(self, silent: str = "") -> None:
        self.models: dict[str, float] = {"before": 0.0, "after": 2.0}
        self.silent = silent
        self.evaluated: list[str] = []

    def store(self, weights: Mapping[str, np.ndarray]) -> str:
        sha = f"m{len(self.models)}"
        self.models[sha] = float(weights["w"][0])
        return sha

    def evaluate(self, sha: str) -> dict[str, NodeRoundMetrics]:
        self.evaluated.append(sha)
        value = self.models[sha]
        return {s: NodeRoundMetrics(s, "eval", 5, {"auc": value})
                for s in SITES if s != self.silent or sha in ("before", "after")}  # fmt: skip


def test_a_round_is_split_exactly_by_the_coalitions_mean_update() -> None:
    net = _Network()
    spec = _spec(contributions="shapley", strategy="fedavg")
    out = measure_round(spec, _updates(), ("before", "after"), SITES, net.evaluate, net.store)
    assert out["method"] == "exact" and out["evaluations"] == 8
    assert out["before"] == 0.0 and out["after"] == 2.0
    assert sum(out["values"].values()) == pytest.approx(2.0)
    assert out["values"]["a"] < out["values"]["b"] < out["values"]["c"]
    assert net.evaluated.count("before") == 1 and net.evaluated.count("after") == 1


def test_a_hospital_that_misses_an_evaluation_is_named_and_nothing_is_estimated() -> None:
    net = _Network(silent="b")
    spec = _spec(contributions="leave_one_out")
    out = measure_round(spec, _updates(), ("before", "after"), SITES, net.evaluate, net.store)
    assert "values" not in out and "b did not evaluate" in out["error"]
    assert per_round_values([out]) == {}


def test_a_study_record_sums_the_measured_rounds() -> None:
    rounds = [
        RoundRecord(study_id="s", round=r, model_sha256="0" * 64, selected=2, accepted=2,
                    rejected=0, duration_s=1.0, committed_unix=0.0, metrics={}, rejections=(),
                    per_node=tuple(NodeRoundMetrics(s, "train", 10, {}) for s in ("a", "b")),
                    selected_nodes=("a", "b"))
        for r in (1, 2)
    ]  # fmt: skip
    measured = {1: {"a": 0.3, "b": -0.1}, 2: {"a": 0.1, "b": 0.05}}
    record = study_record(rounds, "shapley", measured)
    assert record["method"] == "shapley" and record["measured_rounds"] == [1, 2]
    assert record["sites"]["a"]["value"] == pytest.approx(0.4)
    assert record["sites"]["b"]["value"] == pytest.approx(-0.05)
    assert record["sites"]["b"]["reward_points"] == 0 and record["sites"]["b"]["contribution"] == 0
    assert record["sites"]["a"]["reputation"] > record["sites"]["b"]["reputation"]
    plain = study_record(rounds)
    assert plain["method"] == "data_size" and "value" not in plain["sites"]["a"]
    assert plain["sites"]["a"]["contribution"] == 0.5
