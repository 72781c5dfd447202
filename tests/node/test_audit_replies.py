from __future__ import annotations

import time

import pytest

from medfed.coordinator.audit import AuditRound, check_audit_metrics, participants, receive_audit
from medfed.coordinator.rounds import OpenRound, Rejected, TaskSlot
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.state import NodeRoundMetrics, RoundRecord

HONEST = {"loss_auc": 0.52, "loss_tpr_at_low_fpr": 0.0, "members": 50.0, "non_members": 50.0,
          "low_fpr": 0.01, "auc_threshold": 0.0, "block_release": 0.0}  # fmt: skip


def _round() -> tuple[AuditRound, TaskSlot]:
    task = pb.Task(task_id="t", study_id="s", round=1, kind=pb.TASK_KIND_AUDIT)
    round_ = AuditRound(study_id="s", round=1, kind=pb.TASK_KIND_AUDIT,
                        deadline=time.monotonic() + 30)  # fmt: skip
    slot = TaskSlot(task, "cleveland", max_examples=300)
    round_.slots["t"] = slot
    round_.begin("t", "cleveland", "s", 1)
    return round_, slot


def test_an_honest_reply_is_recorded_per_site() -> None:
    round_, slot = _round()
    header = pb.UpdateHeader(task_id="t", study_id="s", round=1, num_examples=100, metrics=HONEST)

    receive_audit(round_, slot, header, iter(()))

    assert round_.results == {"cleveland": HONEST}
    assert round_.per_node[0].node == "cleveland" and round_.per_node[0].num_examples == 100


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"row_17_loss": 0.3}, "aggregate numbers only"),
        ({"loss_auc": 1.2}, "must be in [0, 1]"),
        ({"members": 50.5}, "whole number"),
        ({"members": 0.0, "non_members": 100.0}, "at least one member"),
        ({"members": 50.0, "non_members": 50.0, "reference_models": -1.0}, "whole number"),
    ],
)
def test_anything_but_the_aggregates_is_rejected(change: dict, why: str) -> None:
    with pytest.raises(Rejected, match=why.replace("[", r"\[").replace("]", r"\]")):
        check_audit_metrics(HONEST | change, 100, 300)


def test_counts_must_match_and_fit_the_site() -> None:
    with pytest.raises(Rejected, match="samples add up"):
        check_audit_metrics(HONEST, 99, 300)
    with pytest.raises(Rejected, match="more than the 60"):
        check_audit_metrics(HONEST, 100, 60)
    with pytest.raises(Rejected, match="lacks"):
        check_audit_metrics({"loss_auc": 0.5}, 0, 300)


def test_a_reply_carrying_arrays_is_rejected() -> None:
    round_, slot = _round()
    header = pb.UpdateHeader(task_id="t", study_id="s", round=1, num_examples=100, metrics=HONEST)

    with pytest.raises(Rejected, match="header alone"):
        receive_audit(round_, slot, header, iter([b"per-row scores"]))
    assert not round_.results


def test_a_reply_for_another_kind_of_round_is_rejected() -> None:
    round_ = OpenRound(study_id="s", round=1, kind=pb.TASK_KIND_TRAIN, deadline=0.0)
    slot = TaskSlot(pb.Task(task_id="t"), "cleveland")
    with pytest.raises(Rejected, match="not an audit"):
        receive_audit(round_, slot, pb.UpdateHeader(), iter(()))


def test_participants_are_the_sites_with_accepted_training_replies() -> None:
    def record(round_no: int, *metrics: NodeRoundMetrics) -> RoundRecord:
        return RoundRecord(study_id="s", round=round_no, model_sha256="0" * 64, selected=3,
                           accepted=len(metrics), rejected=0, duration_s=1.0,
                           committed_unix=0.0, metrics={}, per_node=metrics,
                           rejections=())  # fmt: skip

    rounds = [
        record(1, NodeRoundMetrics("hungary", "train", 10, {}),
               NodeRoundMetrics("va", "eval", 5, {})),
        record(2, NodeRoundMetrics("cleveland", "train", 10, {})),
    ]  # fmt: skip

    assert participants(rounds) == ["cleveland", "hungary"]
