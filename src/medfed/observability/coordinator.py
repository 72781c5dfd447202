"""The coordinator's Prometheus metrics, read from its state store at scrape time.

A committed round is a row in the state store, so the numbers Prometheus sees are the numbers
``medfed study status`` shows: rounds committed, replies accepted and rejected (by reason),
round durations, upload bytes and secure-aggregation stage timings come from the store when
Prometheus asks, not from counters kept beside it that a restart would reset or a bug could let
drift (prometheus_client's "custom collector" pattern). Liveness comes from the node directory
(the coordinator's memory of heartbeats). Only what the store does not hold is counted directly:
the model bytes the coordinator sends.

Committed rounds never change, so each study's round summary is cached by its round count and a
scrape reads only what moved; a finished study's rejections are cached too.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from medfed.coordinator.models import ServedModels
from medfed.coordinator.sites import outcome_status
from medfed.store.models import ModelStore
from medfed.store.state import FINISHED_STATES, RoundRecord, StateStore, StudyRecord

if TYPE_CHECKING:
    from medfed.coordinator.directory import NodeDirectory

ROUND_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SECAGG_STAGES = ("advertise", "share", "train_mask", "reveal", "unmask")
"""``secagg_<stage>_s`` in a secure round's metrics (coordinator/secure_round.py)."""
STUDY_STATES = ("pending", "waiting", "running", "completed", "failed", "cancelled")
STUDY_COUNTERS = {
    "rounds_committed": "Training rounds committed.",
    "replies_accepted": "Training replies aggregated into committed rounds.",
    "upload_bytes": "Update bytes received in committed rounds.",
    "secagg_dropouts": "Hospitals selected for a secure round whose input is not in its sum.",
}
"""``medfed_<name>_total{study}``, read from the study's committed rounds."""


@dataclass(frozen=True)
class RoundSummary:
    """What the metrics need from a study's committed rounds (cached per round count)."""

    rounds: int
    accepted: int
    upload_bytes: float
    durations: tuple[float, ...]
    stages: dict[str, tuple[float, ...]] = field(default_factory=dict)
    dropouts: float = 0.0

    def counters(self) -> dict[str, float]:
        """The per-study counters (:data:`STUDY_COUNTERS`) this summary gives."""
        return {
            "rounds_committed": self.rounds,
            "replies_accepted": self.accepted,
            "upload_bytes": self.upload_bytes,
            "secagg_dropouts": self.dropouts,
        }


def summarize(rounds: Sequence[RoundRecord]) -> RoundSummary:
    stages = {
        s: tuple(r.metrics[f"secagg_{s}_s"] for r in rounds if f"secagg_{s}_s" in r.metrics)
        for s in SECAGG_STAGES
    }
    return RoundSummary(
        rounds=len(rounds),
        accepted=sum(r.accepted for r in rounds),
        upload_bytes=sum(r.metrics.get("upload_bytes", 0.0) for r in rounds),
        durations=tuple(r.duration_s for r in rounds),
        stages={s: v for s, v in stages.items() if v},
        dropouts=sum(r.metrics.get("secagg_dropouts", 0.0) for r in rounds),
    )


def histogram(
    name: str,
    doc: str,
    buckets: Sequence[float],
    observed: Iterable[tuple[tuple[str, ...], float]],
    labels: Sequence[str] = (),
) -> HistogramMetricFamily:
    """A histogram family from raw observations, one series per label tuple."""
    series: dict[tuple[str, ...], list[float]] = {}
    for key, value in observed:
        series.setdefault(key, []).append(value)
    family = HistogramMetricFamily(name, doc, labels=list(labels), unit="seconds")
    for key, values in sorted(series.items()):
        cumulative = [(repr(float(b)), float(sum(v <= b for v in values))) for b in buckets]
        cumulative.append(("+Inf", float(len(values))))
        family.add_metric(list(key), cumulative, sum_value=sum(values))
    return family


class StoreCollector(Collector):
    """Reads the state store and the node directory on every scrape."""

    def __init__(self, state: StateStore, directory: NodeDirectory) -> None:
        self._state = state
        self._directory = directory
        self._lock = threading.Lock()
        self._rounds: dict[str, RoundSummary] = {}
        self._finished_rejections: dict[str, Tally[str]] = {}

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # two scrapes at once share the caches
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        studies = self._state.studies()
        states = GaugeMetricFamily("medfed_studies", "Studies by state.", labels=["state"])
        by_state = Tally(s.state for s in studies)
        for state in sorted(set(STUDY_STATES) | set(by_state)):
            states.add_metric([state], by_state.get(state, 0))
        yield states
        yield from self._studies(studies)
        yield from self._nodes()

    def _studies(self, studies: Sequence[StudyRecord]) -> Iterator[Metric]:
        """Per-study counters, and the histograms over every committed round."""
        per_study = {
            name: CounterMetricFamily(f"medfed_{name}", doc, labels=["study"])
            for name, doc in STUDY_COUNTERS.items()
        }
        rejected = CounterMetricFamily(
            "medfed_replies_rejected",
            "Tasks refused by a hospital and replies the coordinator rejected, by reason.",
            labels=["study", "reason"],
        )
        durations: list[tuple[tuple[str, ...], float]] = []
        stages: list[tuple[tuple[str, ...], float]] = []
        for study in studies:
            summary = self._summary(study.study_id, study.completed_rounds)
            for name, value in summary.counters().items():
                per_study[name].add_metric([study.study_id], value)
            durations.extend(((), d) for d in summary.durations)
            stages.extend(((s,), v) for s, vs in summary.stages.items() for v in vs)
            tally = self._rejections(study.study_id, study.state in FINISHED_STATES)
            for reason, count in sorted(tally.items()):
                rejected.add_metric([study.study_id, reason], count)
        yield from per_study.values()
        yield rejected
        yield histogram(
            "medfed_round_duration", "Time from a round's start to its commit.", ROUND_BUCKETS,
            durations,
        )  # fmt: skip
        yield histogram(
            "medfed_secagg_stage_duration", "Secure-aggregation stage durations.",
            STAGE_BUCKETS, stages, labels=["stage"],
        )  # fmt: skip

    def _summary(self, study_id: str, completed: int) -> RoundSummary:
        cached = self._rounds.get(study_id)
        if cached is None or cached.rounds != completed:
            cached = summarize(self._state.rounds(study_id))
            self._rounds[study_id] = cached
        return cached

    def _rejections(self, study_id: str, finished: bool) -> Tally[str]:
        """Reasons as the bounded set of site statuses (plan_not_approved, no_reply, rejected,
        ...): the node's own words stay in ``medfed study status``, not in label values."""
        if study_id in self._finished_rejections:
            return self._finished_rejections[study_id]
        tally = Tally(outcome_status(why).value for _, _, why in self._state.rejections(study_id))
        if finished:
            self._finished_rejections[study_id] = tally
        return tally

    def _nodes(self) -> Iterator[Metric]:
        statuses = self._directory.statuses()
        online = GaugeMetricFamily(
            "medfed_nodes", "Hospital nodes the coordinator knows, by status.", labels=["status"]
        )
        counts = Tally(
            "revoked" if s.revoked else "online" if s.online else "offline" for s in statuses
        )
        for status in ("online", "offline", "revoked"):
            online.add_metric([status], counts.get(status, 0))
        yield online
        seen = GaugeMetricFamily(
            "medfed_node_last_heartbeat_timestamp_seconds",
            "When each node last called the coordinator (Unix time).",
            labels=["node"],
        )
        for s in statuses:
            seen.add_metric([s.name], s.last_seen)
        yield seen


class CountedModels(ServedModels):
    """The served models, counting every byte sent (node fetches and admin downloads)."""

    def __init__(self, store: ModelStore, sent: Callable[[int], None]) -> None:
        super().__init__(store)
        self._sent = sent

    def frames(self, sha: str) -> Iterator[bytes]:
        inner = super().frames(sha)  # fails here, before the first frame, on an unknown model
        return self._counted(inner)

    def _counted(self, frames: Iterator[bytes]) -> Iterator[bytes]:
        for frame in frames:
            self._sent(len(frame))
            yield frame


class CoordinatorMetrics:
    """One registry per coordinator (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.model_bytes_sent = Counter(
            "medfed_model_bytes_sent", "Model bytes sent to nodes and admins.",
            registry=self.registry,
        )  # fmt: skip
        self._server: object | None = None
        self.port = 0

    def count_sent(self, n: int) -> None:
        self.model_bytes_sent.inc(n)

    def watch(self, state: StateStore, directory: NodeDirectory) -> None:
        self.registry.register(StoreCollector(state, directory))

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host:port`` (loopback); returns the bound port."""
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        self.port = int(server.server_address[1])
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            server = self._server
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
            self._server = None
