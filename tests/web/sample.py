"""A study status as the admin API returns it, built by hand: three hospitals, one refusing,
record-level DP and secure-aggregation timings, for tests that need no running consortium."""

from __future__ import annotations

import dataclasses

from medfed.coordinator.spec import spec_to_proto
from medfed.demo.heart import heart_study
from medfed.protocol.v1 import medfed_pb2 as pb

HOSPITALS = ("cleveland", "hungary", "va_long_beach")
REFUSAL = (
    "refused (plan_not_approved): training plan logistic_regression 1 is not approved by this "
    "hospital <script>alert(1)</script>"
)


def sample_status(rounds: int = 3, state: str = "completed") -> pb.StudyStatus:
    spec = dataclasses.replace(heart_study(), rounds=rounds, plan_sha256="ab" * 32)
    status = pb.StudyStatus(
        study_id="s-0123456789ab",
        spec=spec_to_proto(spec),
        state=state,
        completed_rounds=rounds,
        model_sha256="cd" * 32,
        message="",
    )
    status.spec.secure_aggregation.enabled = True
    for n in range(1, rounds + 1):
        summary = status.rounds.add(
            round=n, model_sha256=f"{n:02d}" * 32, selected=4, accepted=3, rejected=1,
            committed_unix_ms=1_700_000_000_000 + n * 1000, duration_s=0.5 + n / 10,
        )  # fmt: skip
        accuracy = 0.6 + n / 50
        summary.metrics.update({
            "accuracy": accuracy, "auc_pooled": accuracy + 0.05, "loss": 0.7 - n / 20,
            "accuracy_min": accuracy - 0.1, "accuracy_max": accuracy + 0.1, "accuracy_std": 0.05,
            "participation": 0.75, "upload_bytes": 4096.0 * n, "secagg_advertise_s": 0.01,
            "secagg_share_s": 0.02, "secagg_train_mask_s": 0.3, "secagg_reveal_s": 0.01,
            "secagg_unmask_s": 0.005, "secagg_dropouts": 1.0,
        })  # fmt: skip
        for i, node in enumerate(HOSPITALS):
            summary.per_node.add(
                node=node, num_examples=50,
                metrics={"accuracy": accuracy + i / 100, "auc": 0.8 + i / 100, "loss": 0.6},
            )  # fmt: skip
            summary.train_per_node.add(
                node=node, num_examples=100,
                metrics={"epsilon": 0.5 * n, "epsilon_budget_left": 10 - 0.5 * n},
            )  # fmt: skip
        summary.rejections.append(f"switzerland: {REFUSAL}")
        status.refusals.add(round=n, node="switzerland", reason=REFUSAL, code="plan_not_approved")
    for node in HOSPITALS:
        status.sites.add(node=node, status="ready", reason="", last_seen_unix_ms=1_700_000_000_000)
    status.sites.add(node="switzerland", status="plan_not_approved", reason=REFUSAL)
    return status
