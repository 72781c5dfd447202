from __future__ import annotations

import numpy as np
import pytest

from medfed.coordinator.round_metrics import eval_metrics
from medfed.coordinator.rounds import OpenRound, Rejected, TaskBoard, TaskSlot, TaskStatus
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.state import NodeRoundMetrics
from medfed.strategies.fedavg import ExampleWeightedMean


def _round(nodes: list[str], deadline: float = 1e12) -> OpenRound:
    manifest = tensors.manifest_of({"w": np.zeros(3, dtype=np.float32)})
    round_ = OpenRound(
        "s-1", 2, pb.TASK_KIND_TRAIN, deadline, manifest, ExampleWeightedMean(manifest)
    )
    for i, node in enumerate(nodes):
        task = pb.Task(task_id=f"t{i}", study_id="s-1", round=2, model_sha256="m")
        round_.slots[task.task_id] = TaskSlot(task, node)
    return round_


def test_reply_is_bound_to_the_node_the_task_was_issued_to() -> None:
    round_ = _round(["a", "b"])
    with pytest.raises(Rejected, match="not issued to 'b'"):
        round_.begin("t0", "b", "s-1", 2)


def test_reply_naming_another_round_is_refused() -> None:
    round_ = _round(["a"])
    with pytest.raises(Rejected, match="round 1"):
        round_.begin("t0", "a", "s-1", 1)


def test_second_reply_for_a_task_is_a_duplicate() -> None:
    round_ = _round(["a"])
    slot = round_.begin("t0", "a", "s-1", 2)
    round_.accept_update(slot, {"w": np.ones(3, dtype=np.float32)}, 5, {})
    with pytest.raises(Rejected, match="duplicate"):
        round_.begin("t0", "a", "s-1", 2)


def test_closed_round_refuses_late_replies_and_records_silent_nodes() -> None:
    round_ = _round(["a", "b"], deadline=0.0)
    round_.wait(clock=lambda: 1.0)
    assert round_.closed
    assert round_.rejections == [
        "a: no reply before the round deadline",
        "b: no reply before the round deadline",
    ]
    with pytest.raises(Rejected, match="closed"):
        round_.begin("t0", "a", "s-1", 2)


def test_accepted_updates_are_example_weighted() -> None:
    round_ = _round(["a", "b"])
    round_.accept_update(round_.begin("t0", "a", "s-1", 2), {"w": np.ones(3, np.float32)}, 1, {})
    round_.accept_update(round_.begin("t1", "b", "s-1", 2), {"w": np.zeros(3, np.float32)}, 3, {})
    assert round_.all_finished()
    assert round_.acc is not None
    assert np.allclose(round_.acc.sum.mean()["w"], 0.25)


def test_board_delivers_each_task_once_and_forgets_closed_rounds() -> None:
    board = TaskBoard()
    round_ = _round(["a"])
    board.open(round_)
    assert board.may_fetch("a", "m")
    assert not board.may_fetch("b", "m")

    task = board.pull("a", 0.01, lambda: True)

    assert task is not None and task.task_id == "t0"
    assert round_.slots["t0"].status is TaskStatus.DELIVERED
    assert board.pull("a", 0.01, lambda: True) is None
    board.close(round_)
    assert board.find("t0") is None


def test_a_task_is_not_handed_to_a_caller_that_hung_up() -> None:
    """A restarted node's old long-poll, still open at the coordinator, must not take the task
    its new agent is about to ask for (it would be lost until the round's deadline)."""
    board = TaskBoard()
    board.open(_round(["a"]))
    assert board.pull("a", 0.01, lambda: False) is None
    task = board.pull("a", 0.01, lambda: True)
    assert task is not None and task.task_id == "t0"


def test_eval_metrics_are_example_weighted_with_spread() -> None:
    per_node = [
        NodeRoundMetrics("a", "eval", 100, {"accuracy": 0.9, "loss": 0.2}),
        NodeRoundMetrics("b", "eval", 300, {"accuracy": 0.5, "loss": 0.6}),
    ]

    out = eval_metrics(per_node, selected=4)

    assert out["accuracy"] == pytest.approx(0.6)
    assert out["accuracy_min"] == 0.5
    assert out["accuracy_max"] == 0.9
    assert out["accuracy_std"] == pytest.approx(np.std([0.9, 0.5]))
    assert out["eval_participation"] == 0.5
    assert out["eval_examples"] == 400
