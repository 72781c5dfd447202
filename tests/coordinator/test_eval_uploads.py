from __future__ import annotations

import numpy as np
import pytest

from medfed.coordinator.rounds import OpenRound, TaskBoard, TaskSlot
from medfed.coordinator.uploads import StagingPool, receive
from medfed.protocol import framing
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.score_histogram import SCORE_BINS, score_histogram


def _eval_round(secure: bool = False) -> tuple[TaskBoard, OpenRound]:
    round_ = OpenRound("s-1", 3, pb.TASK_KIND_EVALUATE, deadline=1e12)
    task = pb.Task(task_id="t0", study_id="s-1", round=3, kind=pb.TASK_KIND_EVALUATE)
    if secure:
        task.secagg.stage = 3
    round_.slots["t0"] = TaskSlot(task, "a")
    board = TaskBoard()
    board.open(round_)
    return board, round_


def _reply(num_examples: int, positives: list[int], negatives: list[int]) -> list[bytes]:
    header = pb.UpdateHeader(task_id="t0", study_id="s-1", round=3, num_examples=num_examples)
    header.metrics["accuracy"] = 0.5
    header.score_histogram.positives.extend(positives)
    header.score_histogram.negatives.extend(negatives)
    return [framing.frame_message(framing.UPDATE_HEADER, header)]


def _counts(y: list[float], p: list[float]) -> tuple[list[int], list[int]]:
    hist = score_histogram(np.array(y), np.array(p))
    return hist.positives.tolist(), hist.negatives.tolist()


def test_an_evaluation_reply_brings_its_histogram() -> None:
    board, round_ = _eval_round()
    pos, neg = _counts([1, 0, 0], [0.9, 0.2, 0.7])
    reply = receive(iter(_reply(3, pos, neg)), "a", board, StagingPool())
    assert reply.accepted, reply.reason
    assert round_.histograms["a"].positives.tolist() == pos
    assert round_.per_node[0].metrics == {"accuracy": 0.5}


@pytest.mark.parametrize(
    ("n", "positives", "negatives", "why"),
    [
        (4, *_counts([1, 0, 0], [0.9, 0.2, 0.7]), "counts 3 rows, the reply 4"),
        (3, [1, 2], [0, 0], "must be 1000 int64 counts"),
        (3, [2**63] + [0] * (SCORE_BINS - 1), [0] * SCORE_BINS, "more rows than the reply"),
    ],
)
def test_a_histogram_that_does_not_add_up_is_rejected(n, positives, negatives, why) -> None:
    board, round_ = _eval_round()
    reply = receive(iter(_reply(n, positives, negatives)), "a", board, StagingPool())
    assert not reply.accepted and why in reply.reason
    assert not round_.histograms


def test_a_secure_evaluation_refuses_a_histogram_in_the_clear() -> None:
    board, _ = _eval_round(secure=True)
    pos, neg = _counts([1, 0], [0.9, 0.2])
    reply = receive(iter(_reply(2, pos, neg)), "a", board, StagingPool())
    assert not reply.accepted and "only with a plain evaluation" in reply.reason
