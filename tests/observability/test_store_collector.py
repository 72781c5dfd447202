from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from medfed.coordinator.directory import NodeDirectory
from medfed.observability.coordinator import CoordinatorMetrics
from medfed.store.state import RoundRecord, StateStore

MODEL = "ab" * 32


def _samples(metrics: CoordinatorMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _round(study: str, n: int, duration: float, **metrics: float) -> RoundRecord:
    return RoundRecord(
        study_id=study, round=n, model_sha256=MODEL, selected=3, accepted=2, rejected=1,
        duration_s=duration, committed_unix=1000.0 + n, metrics=metrics, per_node=(),
        rejections=("c: wrong shape",),
    )  # fmt: skip


def test_scrapes_follow_the_store_and_bucket_reasons(tmp_path: Path) -> None:
    state = StateStore.sqlite(tmp_path / "state.db")
    directory = NodeDirectory(20.0, clock=lambda: 100.0)
    directory.seen("a", ["heart"], wall=50.0)
    metrics = CoordinatorMetrics()
    metrics.watch(state, directory)
    state.create_study("s-1", "one", "{}", MODEL, now=1.0)

    first = _samples(metrics)
    state.commit_round(_round("s-1", 1, 0.7, upload_bytes=100.0))
    state.commit_round(_round("s-1", 2, 40.0, upload_bytes=50.0, secagg_share_s=0.2))
    state.record_rejection("s-1", 3, "b", "refused (privacy_budget_exhausted): spent", now=2.0)
    state.record_rejection("s-1", 3, "d", "refused (something_new): a node's own code", now=2.0)
    second = _samples(metrics)
    state.close()

    study = (("study", "s-1"),)
    assert first["medfed_rounds_committed_total"][study] == 0
    assert second["medfed_rounds_committed_total"][study] == 2
    assert second["medfed_replies_accepted_total"][study] == 4
    assert second["medfed_upload_bytes_total"][study] == 150
    rejected = {dict(k)["reason"]: v for k, v in second["medfed_replies_rejected_total"].items()}
    assert rejected == {"rejected": 2, "budget_exhausted": 1, "refused": 1}
    assert second["medfed_round_duration_seconds_bucket"][(("le", "1.0"),)] == 1
    assert second["medfed_round_duration_seconds_bucket"][(("le", "60.0"),)] == 2
    assert second["medfed_round_duration_seconds_sum"][()] == 40.7
    stage = second["medfed_secagg_stage_duration_seconds_count"]
    assert stage == {(("stage", "share"),): 1}
    assert second["medfed_nodes"][(("status", "online"),)] == 1
    assert second["medfed_node_last_heartbeat_timestamp_seconds"][(("node", "a"),)] == 50.0
    assert second["medfed_studies"][(("state", "pending"),)] == 1
