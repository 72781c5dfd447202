from __future__ import annotations

import math

import pytest

from medfed.coordinator.claims import (
    check_examples,
    check_metrics,
    claim_limit,
    metric_range,
    round_weight_cap,
    site_share_metrics,
    site_weight_cap,
)
from medfed.coordinator.directory import NodeDirectory, SplitSizes
from medfed.coordinator.rounds import Rejected
from medfed.coordinator.spec import StudySpec
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.state import NodeRoundMetrics


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("accuracy", (0.0, 1.0)),
        ("balanced_accuracy", (0.0, 1.0)),
        ("personal_accuracy", (0.0, 1.0)),
        ("auc", (0.0, 1.0)),
        ("personal_auc", (0.0, 1.0)),
        ("auprc", (0.0, 1.0)),
        ("sensitivity", (0.0, 1.0)),
        ("specificity", (0.0, 1.0)),
        ("loss", (0.0, math.inf)),
        ("train_loss", (0.0, math.inf)),
        ("initial_loss", (0.0, math.inf)),
        ("epsilon", (-math.inf, math.inf)),
        ("steps", (-math.inf, math.inf)),
        ("lossy", (-math.inf, math.inf)),
    ],
)
def test_metric_ranges_follow_the_family_of_the_name(
    name: str, expected: tuple[float, float]
) -> None:
    assert metric_range(name) == expected


def test_metrics_in_range_pass() -> None:
    check_metrics(
        {"accuracy": 1.0, "auc": 0.0, "loss": 0.0, "balanced_accuracy": 0.5, "steps": -3.0}
    )


@pytest.mark.parametrize(
    ("metrics", "named"),
    [
        ({"accuracy": 1e300}, "accuracy=1e+300"),
        ({"accuracy": 1e308, "loss": 0.1}, "accuracy"),
        ({"personal_auc": -0.01}, "personal_auc"),
        ({"auprc": 1.0000001}, "auprc"),
        ({"loss": -1.0}, "loss"),
        ({"train_loss": math.inf}, "train_loss"),
        ({"steps": math.nan}, "steps"),
        ({"epsilon": -math.inf}, "epsilon"),
    ],
)
def test_metrics_out_of_range_are_rejected_by_name(metrics: dict[str, float], named: str) -> None:
    with pytest.raises(Rejected, match="out of range") as caught:
        check_metrics(metrics)
    assert named in str(caught.value)


def test_a_reply_must_count_at_least_one_example() -> None:
    with pytest.raises(Rejected, match="at least one example"):
        check_examples(0, None, "test")
    check_examples(1, None, "test")


def test_a_claim_beyond_the_announced_rows_is_rejected() -> None:
    check_examples(120, 120, "train")
    with pytest.raises(Rejected, match=r"999999999 examples.*announced 120 train rows"):
        check_examples(999_999_999, 120, "train")
    with pytest.raises(Rejected, match="announced 0 test rows"):
        check_examples(5, 0, "test")


def test_claim_limit_is_the_announced_split() -> None:
    directory = NodeDirectory(10.0)
    directory.seen("a", ["heart"], sizes={"heart": SplitSizes(200, 100)})
    directory.seen("b", ["heart"])

    assert claim_limit(directory, "a", "heart", pb.TASK_KIND_TRAIN) == 200
    assert claim_limit(directory, "a", "heart", pb.TASK_KIND_EVALUATE) == 100
    assert claim_limit(directory, "a", "heart", pb.TASK_KIND_SECAGG) is None
    assert claim_limit(directory, "b", "heart", pb.TASK_KIND_TRAIN) == 0
    assert claim_limit(directory, "a", "other", pb.TASK_KIND_TRAIN) == 0


def test_round_weight_cap_from_announced_rows() -> None:
    assert round_weight_cap(0.0, [100, 10**9]) == 0
    assert round_weight_cap(0.5, [100, 100, 100]) == 0  # nobody above half
    assert round_weight_cap(0.5, [200, 100, 10**9]) == 300  # capped at the others' sum
    assert round_weight_cap(0.5, [0, 200, 100, 10**9]) == 300  # nothing announced: left out
    assert round_weight_cap(0.45, [3, 3, 6]) == 4  # 4.909... rounded down: share 0.4


def test_site_share_is_reported_for_the_folded_weights() -> None:
    per_node = [
        NodeRoundMetrics("a", "train", 100, {}),
        NodeRoundMetrics("b", "train", 10**9, {}),
        NodeRoundMetrics("a", "eval", 10**6, {}),
    ]

    assert site_share_metrics(per_node, 100) == {"max_site_share": 0.5}
    assert site_share_metrics(per_node, 0)["max_site_share"] == pytest.approx(1.0, abs=1e-6)
    assert site_share_metrics([], 5) == {}


def test_site_weight_cap_uses_the_selected_nodes_announced_training_rows() -> None:
    directory = NodeDirectory(10.0)
    for node, train in (("a", 200), ("b", 100), ("c", 10**9)):
        directory.seen(node, ["heart"], sizes={"heart": SplitSizes(train, 50)})
    spec = StudySpec(
        name="s", dataset="heart", features=(), label="y", plan="p", plan_version="1",
        rounds=1, min_nodes=2, max_site_weight=0.5,
    )  # fmt: skip

    assert site_weight_cap(spec, directory, ["a", "b", "c"]) == 300
    assert site_weight_cap(spec, directory, ["a", "b"]) == 100  # two sites: equal weight
