"""A hospital node's Prometheus metrics: what only the node sees, for the hospital's own IT.

Tasks answered (by kind, and whether the coordinator accepted the reply), tasks refused (by the
node's refusal code: ``plan_not_approved``, ``privacy_budget_exhausted``, ...), seconds spent
training and evaluating, and the record-level privacy spent per study with the budget left, as
the node's own privacy ledger reports them. Counted where they happen, by subclasses of the
node's coordinator client and task executor that ``build_agent`` uses when ``metrics_port`` is
set; served on 127.0.0.1 only (the node never listens on another interface).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from medfed.node.client import CoordinatorClient
from medfed.node.executor import Outcome, TaskExecutor
from medfed.protocol.v1 import medfed_pb2 as pb

TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
MAX_CODE_CHARS = 64
"""Refusal codes are the node's own short identifiers; cut anything longer."""


def task_kind(task: pb.Task) -> str:
    name = pb.TaskKind.Name(task.kind) if task.kind in pb.TaskKind.values() else "unknown"
    return name.removeprefix("TASK_KIND_").lower()


class NodeMetrics:
    """One registry per node agent (tests run several agents in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tasks = Counter(
            "medfed_node_tasks", "Tasks answered, by kind and the coordinator's verdict.",
            ["kind", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.refused = Counter(
            "medfed_node_tasks_refused", "Tasks this node refused, by refusal code.",
            ["code"], registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "medfed_node_task_seconds", "Seconds spent running a task's plan (train, evaluate).",
            ["kind"], buckets=TASK_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.epsilon = Gauge(
            "medfed_node_privacy_epsilon_spent", "Record-level epsilon spent on a study.",
            ["study"], registry=self.registry,
        )  # fmt: skip
        self.budget_left = Gauge(
            "medfed_node_privacy_epsilon_budget_left", "Epsilon left in the study's budget.",
            ["study"], registry=self.registry,
        )  # fmt: skip
        self._server: Any = None
        self.port = 0

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        from prometheus_client import start_http_server

        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_address[1])
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ran(self, task: pb.Task, seconds: float, outcome: Outcome) -> None:
        self.seconds.labels(task_kind(task)).observe(seconds)
        if "epsilon" in outcome.metrics:
            self.epsilon.labels(task.study_id).set(outcome.metrics["epsilon"])
        if "epsilon_budget_left" in outcome.metrics:
            self.budget_left.labels(task.study_id).set(outcome.metrics["epsilon_budget_left"])


class MeteredExecutor(TaskExecutor):
    """The node's task executor, timing each plan run and noting the privacy it spent."""

    def __init__(self, *args: Any, metrics: NodeMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    def run(self, task: pb.Task, *args: Any, **kwargs: Any) -> Outcome:
        started = time.perf_counter()
        outcome = super().run(task, *args, **kwargs)
        self._metrics.ran(task, time.perf_counter() - started, outcome)
        return outcome


class MeteredClient(CoordinatorClient):
    """The node's coordinator client, counting replies (and their verdicts) and refusals."""

    def __init__(self, *args: Any, metrics: NodeMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    def submit(self, task: pb.Task, *args: Any, **kwargs: Any) -> pb.SubmitReply:
        reply = super().submit(task, *args, **kwargs)
        verdict = "accepted" if reply.accepted else "rejected"
        self._metrics.tasks.labels(task_kind(task), verdict).inc()
        return reply

    def refuse(self, task: pb.Task, code: str, message: str) -> None:
        self._metrics.refused.labels(code[:MAX_CODE_CHARS] or "unspecified").inc()
        super().refuse(task, code, message)


def metered(
    port: int,
) -> tuple[NodeMetrics, Callable[..., TaskExecutor], Callable[..., CoordinatorClient]]:
    """Start the node's /metrics on 127.0.0.1:``port`` and return the metrics with the
    executor and client constructors that feed them."""
    metrics = NodeMetrics()
    metrics.serve(port)
    return (
        metrics,
        functools.partial(MeteredExecutor, metrics=metrics),
        functools.partial(MeteredClient, metrics=metrics),
    )
