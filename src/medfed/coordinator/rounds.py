"""Rounds in flight and the task board nodes pull from.

An :class:`OpenRound` is one dispatch of tasks (a training round, or an evaluation phase) with a
deadline. Every reply is judged on its own: a bad one is rejected and recorded, the others go on.
Once closed, a round accepts nothing more, so a late or replayed update can never leak into the
aggregate of a later round.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from medfed.protocol.tensors import Manifest
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.records import MetricsKind
from medfed.store.state import NodeRoundMetrics
from medfed.strategies.base import Accumulator, Reply
from medfed.training.score_histogram import ScoreHistogram


class TaskStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RECEIVING = "receiving"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REFUSED = "refused"


_FINISHED = {TaskStatus.ACCEPTED, TaskStatus.REJECTED, TaskStatus.REFUSED}


class Rejected(Exception):
    """A reply that is refused; the message goes back to the node and into the study record."""


Unpack = Callable[
    [Mapping[str, npt.NDArray[np.generic]]],
    tuple[Mapping[str, npt.NDArray[np.generic]], Mapping[str, npt.NDArray[np.generic]]],
]


@dataclass
class TaskSlot:
    task: pb.Task
    node: str
    status: TaskStatus = TaskStatus.PENDING
    max_examples: int | None = None
    """The most examples the reply may claim: the rows the node announced in the task's split
    when it was sent (0: none announced; None: not checked)."""
    proof: Mapping[str, object] | None = None
    """The reply's signed proof, which the round's ledger entry records once it is accepted."""


@dataclass
class OpenRound:
    study_id: str
    round: int
    kind: int
    deadline: float  # monotonic seconds
    manifest: Manifest | None = None
    """The exact layout every training reply must have (the model, maybe compressed, + extras)."""
    acc: Accumulator | None = None
    unpack: Unpack | None = None
    """Wire tensors -> (model weights, strategy extras); None: the wire is the model itself."""
    upload_bytes: int = 0
    weight_cap: int = 0
    """The most a training reply weighs in the aggregate (0 = its example count, uncapped);
    set from the study's ``max_site_weight`` (:mod:`medfed.strategies.site_weight`)."""
    slots: dict[str, TaskSlot] = field(default_factory=dict)
    per_node: list[NodeRoundMetrics] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    answers: dict[str, pb.SecAggAnswer] = field(default_factory=dict)
    """Secure-aggregation stages: each node's answer."""
    encrypted: dict[str, tuple[tuple[str, ...], bytes]] = field(default_factory=dict)
    """Evaluation under CKKS: each site's metric names and ciphertext."""
    histograms: dict[str, ScoreHistogram] = field(default_factory=dict)
    """Evaluation in the clear: each site's score histogram (for the pooled metrics)."""
    kept: dict[str, Reply] | None = None
    """Set (empty) to keep a copy of every accepted training reply: the coalition models of a
    study that measures contributions (:mod:`medfed.coordinator.round_contributions`)."""
    round_metrics: dict[str, float] = field(default_factory=dict)
    """Measured while the round ran, recorded with it (secure aggregation's stage seconds and
    dropouts, ``secagg_*``; read by the dashboard, the report and /metrics)."""
    closed: bool = False
    started: float = field(default_factory=time.monotonic)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def accepted(self) -> int:
        return sum(s.status is TaskStatus.ACCEPTED for s in self.slots.values())

    def proofs(self) -> tuple[Mapping[str, object], ...]:
        """The signed proofs of the accepted replies, in node order."""
        with self.cond:
            done = [s for s in self.slots.values() if s.status is TaskStatus.ACCEPTED and s.proof]
            return tuple(s.proof for s in sorted(done, key=lambda s: s.node) if s.proof)

    def all_finished(self) -> bool:
        return all(s.status in _FINISHED for s in self.slots.values())

    def begin(self, task_id: str, node: str, study_id: str, round_: int) -> TaskSlot:
        """Claim a slot for an incoming reply, or say precisely why it is refused."""
        with self.cond:
            slot = self.slots.get(task_id)
            if slot is None or slot.node != node:
                raise Rejected(f"task {task_id!r} was not issued to {node!r}")
            if study_id != self.study_id or round_ != self.round:
                raise Rejected(
                    f"reply names study {study_id!r} round {round_}, but task {task_id!r} is "
                    f"for study {self.study_id!r} round {self.round}"
                )
            if self.closed:
                raise Rejected(f"round {self.round} is already closed (stale update)")
            if slot.status in (TaskStatus.RECEIVING, *_FINISHED):
                raise Rejected(f"duplicate submission for task {task_id!r} (already {slot.status})")
            slot.status = TaskStatus.RECEIVING
            return slot

    def accept_update(
        self,
        slot: TaskSlot,
        weights: Mapping[str, npt.NDArray[np.generic]],
        num_examples: int,
        metrics: Mapping[str, float],
    ) -> None:
        with self.cond:
            if self.closed or self.acc is None:
                slot.status = TaskStatus.REJECTED
                raise Rejected(f"round {self.round} closed while the update was arriving")
            model, extras = self.unpack(weights) if self.unpack else (weights, {})
            weight = min(num_examples, self.weight_cap) if self.weight_cap else num_examples
            reply = Reply(slot.node, model, weight, dict(metrics), extras)
            self.acc.add(reply)
            if self.kept is not None:  # the receive buffers are reused: keep copies
                self.kept[slot.node] = _copied(reply)
            self.upload_bytes += sum(int(a.nbytes) for a in weights.values())
            self._finish(slot, TaskStatus.ACCEPTED)
            kind: MetricsKind = "eval" if self.kind == pb.TASK_KIND_EVALUATE else "train"
            self.per_node.append(NodeRoundMetrics(slot.node, kind, num_examples, dict(metrics)))

    def accept_eval(
        self,
        slot: TaskSlot,
        num_examples: int,
        metrics: Mapping[str, float],
        encrypted: tuple[tuple[str, ...], bytes] | None = None,
        histogram: ScoreHistogram | None = None,
    ) -> None:
        with self.cond:
            if self.closed:
                slot.status = TaskStatus.REJECTED
                raise Rejected(f"evaluation of round {self.round} already closed")
            if encrypted is not None:
                self.encrypted[slot.node] = encrypted
            if histogram is not None:
                self.histograms[slot.node] = histogram
            self._finish(slot, TaskStatus.ACCEPTED)
            self.per_node.append(NodeRoundMetrics(slot.node, "eval", num_examples, dict(metrics)))

    def accept_secagg(self, slot: TaskSlot, answer: pb.SecAggAnswer) -> None:
        with self.cond:
            if self.closed:
                slot.status = TaskStatus.REJECTED
                raise Rejected(f"secure-aggregation stage of round {self.round} already closed")
            self.answers[slot.node] = answer
            self.upload_bytes += answer.ByteSize()
            self._finish(slot, TaskStatus.ACCEPTED)

    def reject(self, slot: TaskSlot, reason: str, status: TaskStatus = TaskStatus.REJECTED) -> None:
        with self.cond:
            if slot.status in _FINISHED:
                return
            self.rejections.append(f"{slot.node}: {reason}")
            self._finish(slot, status)

    def _finish(self, slot: TaskSlot, status: TaskStatus) -> None:
        slot.status = status
        self.cond.notify_all()

    def wait(
        self,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        """Block until every task has an answer or the deadline passes (or ``stop`` is set),
        then close the round."""
        with self.cond:
            while not self.all_finished():
                remaining = self.deadline - clock()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    break
                self.cond.wait(timeout=min(remaining, 0.2))
            self.closed = True
            for slot in self.slots.values():
                if slot.status not in _FINISHED:
                    self.rejections.append(f"{slot.node}: no reply before the round deadline")


def _copied(reply: Reply) -> Reply:
    return Reply(
        reply.node,
        {name: np.array(a, copy=True) for name, a in reply.weights.items()},
        reply.num_examples,
        dict(reply.metrics),
        {name: np.array(a, copy=True) for name, a in reply.extras.items()},
        reply.represents,
    )


class TaskBoard:
    """Per-node queues of tasks; nodes long-poll :meth:`pull`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, deque[str]] = {}
        self._rounds: dict[str, OpenRound] = {}
        self._models: dict[str, set[str]] = {}
        self._cancelled: set[str] = set()

    def withdraw(self, study_id: str) -> None:
        """Remember a cancelled study, so that a node replying late to one of its tasks (one it
        pulled before the cancel) is told why its reply is dropped."""
        with self._cond:
            self._cancelled.add(study_id)

    def cancelled(self, study_id: str) -> bool:
        with self._cond:
            return study_id in self._cancelled

    def open(self, round_: OpenRound) -> None:
        with self._cond:
            for task_id, slot in round_.slots.items():
                self._rounds[task_id] = round_
                self._queues.setdefault(slot.node, deque()).append(task_id)
                fetchable = self._models.setdefault(slot.node, set())
                fetchable.add(slot.task.model_sha256)
                if slot.task.he_context_sha256:
                    fetchable.add(slot.task.he_context_sha256)
            self._cond.notify_all()

    def close(self, round_: OpenRound) -> None:
        with self._cond:
            for task_id, slot in round_.slots.items():
                self._rounds.pop(task_id, None)
                queue = self._queues.get(slot.node)
                if queue and task_id in queue:
                    queue.remove(task_id)

    def pull(self, node: str, timeout_s: float, keep_waiting: Callable[[], bool]) -> pb.Task | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                queue = self._queues.get(node)
                while queue:
                    task_id = queue.popleft()
                    round_ = self._rounds.get(task_id)
                    if round_ is None or round_.closed:
                        continue
                    if not keep_waiting():  # the caller hung up (a restarted node's old poll):
                        queue.appendleft(task_id)  # the task waits for its next pull instead
                        return None
                    round_.slots[task_id].status = TaskStatus.DELIVERED
                    return round_.slots[task_id].task
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not keep_waiting():
                    return None
                self._cond.wait(timeout=min(remaining, 0.5))

    def find(self, task_id: str) -> OpenRound | None:
        with self._cond:
            return self._rounds.get(task_id)

    def may_fetch(self, node: str, sha256: str) -> bool:
        with self._cond:
            return sha256 in self._models.get(node, set())
