"""The node's main loop: dial out, heartbeat, pull a task, admit it, run it, reply.

The node never listens. When the coordinator is unreachable it retries with exponential backoff
and full jitter (so a hospital fleet does not reconnect in lockstep after an outage); when the
coordinator refuses its certificate it stops at once with the reason, since retrying cannot help.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from medfed.data.registry import DatasetSizes
from medfed.errors import (
    AuthError,
    DisclosureError,
    MedfedError,
    PolicyError,
    SecAggError,
    TransportError,
)
from medfed.node.audit import AuditResponder
from medfed.node.client import CoordinatorClient
from medfed.node.executor import TaskExecutor
from medfed.node.ledger import NodeLedger, task_head
from medfed.node.secure import SecureAggregationClient
from medfed.node.stats import StatsResponder, with_pooled_standardization
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.secagg import ckks
from medfed.secagg.ckks import CONTEXT_TENSOR, blob_bytes
from medfed.secagg.messages import STATS_PURPOSE

log = logging.getLogger("medfed.node")


@dataclass
class Backoff:
    """Exponential backoff with full jitter.

    See M. Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class NodeAgent:
    def __init__(
        self,
        client: CoordinatorClient,
        executor: TaskExecutor,
        datasets: Callable[[], Sequence[str | DatasetSizes]],
        *,
        heartbeat_interval_s: float = 5.0,
        poll_wait_s: float = 20.0,
        backoff: Backoff | None = None,
        secure: SecureAggregationClient | None = None,
        stats: StatsResponder | None = None,
        ledger: NodeLedger | None = None,
        audit: AuditResponder | None = None,
    ) -> None:
        """``ledger``: verify the ledger before each task (:mod:`medfed.node.ledger`)."""
        self._ledger = ledger
        self._client = client
        self._stats = stats
        self._audit = audit
        self._secure = secure
        self._contexts: dict[str, bytes] = {}
        self._executor = executor
        self._datasets = datasets
        self._heartbeat_s = heartbeat_interval_s
        self._poll_s = poll_wait_s
        self._backoff = backoff or Backoff()
        self.stop = threading.Event()
        self.fatal: AuthError | None = None
        self.completed_tasks = 0

    def run(self) -> None:
        """Serve until stopped; raises AuthError if the coordinator refuses this node."""
        beat = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        beat.start()
        try:
            while not self.stop.is_set() and self.fatal is None:
                try:
                    task = self._client.pull(self._poll_s)
                    self._backoff.reset()
                    if task is not None:
                        self._handle(task)
                except AuthError as exc:
                    self.fatal = exc
                except TransportError as exc:
                    if self.stop.is_set():
                        break
                    delay = self._backoff.next_delay()
                    log.warning("coordinator unreachable (%s); retrying in %.1f s", exc, delay)
                    self.stop.wait(delay)
                except Exception:  # a node daemon outlives any one bad task or reply
                    log.exception("unexpected error serving tasks; continuing")
                    self.stop.wait(self._backoff.next_delay())
        finally:
            self.stop.set()
            beat.join(timeout=2.0)
        if self.fatal is not None:
            raise self.fatal

    def shutdown(self) -> None:
        """Stop from another thread: cancels the in-flight long-poll by closing the channel."""
        self.stop.set()
        self._client.close()

    def _heartbeats(self) -> None:
        while not self.stop.is_set():
            try:
                if self._ledger is None:
                    self._client.heartbeat(self._datasets())
                else:  # gossip: say which head this node verified, check the others'
                    reply = self._client.heartbeat(
                        self._datasets(),
                        verified=self._ledger.head,
                        approvals=self._ledger.approvals(),
                    )
                    self._ledger.keep_up(reply)
            except AuthError as exc:
                self.fatal = exc
                self.stop.set()
                return
            except MedfedError as exc:
                log.debug("heartbeat failed: %s", exc)
            self.stop.wait(self._heartbeat_s)

    def _handle(self, task: pb.Task) -> None:
        what = f"study {task.study_id} round {task.round}"
        if not self._ledger_verifies(task, what):
            return
        if task.kind in (pb.TASK_KIND_STATS, pb.TASK_KIND_AUDIT):  # no training plan to run
            (self._answer_stats if task.kind == pb.TASK_KIND_STATS else self._answer_audit)(
                task, what
            )
            return
        try:
            if task.kind == pb.TASK_KIND_SECAGG and task.secagg.params.purpose == STATS_PURPOSE:
                if self._stats is None:  # a statistics query's stage: no training plan to admit
                    raise PolicyError(
                        "stats_unsupported", "this node answers no statistics queries"
                    )
            elif task.kind == pb.TASK_KIND_SECAGG:
                self._executor.admit_stage(task)
            else:
                plan, data = self._executor.admit(task)
                data = with_pooled_standardization(task, data)
        except PolicyError as exc:
            log.warning("refusing %s: %s (%s)", what, exc, exc.code)
            self._client.refuse(task, exc.code, str(exc))
            return
        if task.kind == pb.TASK_KIND_SECAGG:
            self._secure_stage(task, what)
            return
        try:
            weights = self._client.fetch_model(task.model_sha256)
            outcome = self._executor.run(task, plan, data, weights)
            upload, metrics = outcome.weights, outcome.metrics
            if task.HasField("secagg") and upload is not None:
                upload, clipped = self._require_secure().mask(
                    task, weights, upload, outcome.num_examples
                )
                metrics = metrics | {"secagg_clipped": float(clipped)}
            elif task.HasField("secagg"):  # an evaluation: its histogram joins a masked sum
                upload = self._require_secure().mask_histogram(task, outcome.histogram)
        except (TransportError, AuthError):
            raise
        except MedfedError as exc:
            code = _refusal_code(exc)
            log.error("task for %s failed: %s (%s)", what, exc, code)
            self._client.refuse(task, code, str(exc))
            return
        if task.kind == pb.TASK_KIND_EVALUATE and task.he_context_sha256:
            try:
                sealed = self._encrypt(task, outcome.num_examples, metrics)
            except MedfedError as exc:
                log.error("encrypting the evaluation of %s failed: %s", what, exc)
                self._client.refuse(task, "he_failed", str(exc))
                return
            reply = self._client.submit(task, 0, {}, None, encrypted=sealed)
        else:
            clear = None if task.HasField("secagg") else outcome.histogram
            reply = self._client.submit(
                task, outcome.num_examples, metrics, upload, histogram=clear
            )
        self._replied(task, what, reply)

    def _replied(self, task: pb.Task, what: str, reply: pb.SubmitReply) -> None:
        self.completed_tasks += 1
        if reply.accepted and task.kind == pb.TASK_KIND_TRAIN and self._audit is not None:
            self._audit.participation.record(task)  # this study may later be audited here
        if reply.accepted:
            log.info("%s: reply accepted", what)
        else:
            log.warning("%s: reply rejected by coordinator: %s", what, reply.reason)

    def _ledger_verifies(self, task: pb.Task, what: str) -> bool:
        """No task runs on a coordinator whose ledger this node cannot verify up to the task."""
        if self._ledger is None:
            return True
        try:
            self._ledger.sync(task_head(task))
            self._ledger.check_rules(task)
        except PolicyError as exc:
            log.error("refusing %s: %s (%s)", what, exc, exc.code)
            self._client.refuse(task, exc.code, str(exc))
            return False
        return True

    def _answer_stats(self, task: pb.Task, what: str) -> None:
        """A statistics task (medfed.node.stats): refused with the reason, or one upload."""
        try:
            if self._stats is None:
                raise PolicyError("stats_unsupported", "this node answers no statistics queries")
            if task.HasField("secagg"):  # only the masked vector leaves, and no row count
                words = self._stats.secure_words(task)
                n, summary = 0, self._require_secure().mask_words(task, words)
            else:
                n, summary = self._stats.answer(task)
        except (TransportError, AuthError):
            raise
        except MedfedError as exc:
            code = "disclosure" if isinstance(exc, DisclosureError) else _refusal_code(exc)
            log.warning("refusing statistics for %s: %s (%s)", what, exc, code)
            self._client.refuse(task, code, str(exc))
            return
        reply = self._client.submit(task, n, {}, summary)
        self.completed_tasks += 1
        if not reply.accepted:
            log.warning("%s: summary rejected by coordinator: %s", what, reply.reason)

    def _answer_audit(self, task: pb.Task, what: str) -> None:
        """A privacy audit (medfed.node.audit): refused with the reason, or aggregates only."""
        try:
            if self._audit is None:
                raise PolicyError("audit_unsupported", "this node runs no privacy audits")
            plan, data = self._audit.admit(task)  # refused before the model is fetched
            weights = self._client.fetch_model(task.model_sha256)
            rows, metrics = self._audit.answer(task, plan, data, weights)
        except (TransportError, AuthError):
            raise
        except MedfedError as exc:
            code = _refusal_code(exc)
            log.warning("refusing the audit %s: %s (%s)", what, exc, code)
            self._client.refuse(task, code, str(exc))
            return
        reply = self._client.submit(task, rows, metrics, None)
        self.completed_tasks += 1
        if not reply.accepted:
            log.warning("%s: audit rejected by coordinator: %s", what, reply.reason)

    def _encrypt(
        self, task: pb.Task, num_examples: int, metrics: Mapping[str, float]
    ) -> tuple[list[str], bytes]:
        """[n, n x metric ...] under the researcher's CKKS key: nothing here in the clear."""
        context = self._contexts.get(task.he_context_sha256)
        if context is None:
            blob = self._client.fetch_model(task.he_context_sha256)  # checked against its hash
            context = blob_bytes(blob, CONTEXT_TENSOR)
            self._contexts = {task.he_context_sha256: context}
        names = sorted(k for k, v in metrics.items() if math.isfinite(v))
        values = [float(num_examples)] + [num_examples * metrics[k] for k in names]
        return ["num_examples", *names], ckks.encrypt_metrics(context, values)

    def _require_secure(self) -> SecureAggregationClient:
        if self._secure is None:
            raise PolicyError("secagg_unsupported", "this node runs without secure aggregation")
        return self._secure

    def _secure_stage(self, task: pb.Task, what: str) -> None:
        try:
            answer = self._require_secure().answer(task)
        except MedfedError as exc:
            code = _refusal_code(exc)
            log.error("secure aggregation for %s refused: %s (%s)", what, exc, code)
            self._client.refuse(task, code, str(exc))
            return
        reply = self._client.submit_secagg(answer)
        if not reply.accepted:
            log.warning("%s: secure-aggregation answer rejected: %s", what, reply.reason)


def _refusal_code(exc: MedfedError) -> str:
    if isinstance(exc, PolicyError):
        return exc.code
    return "secagg_aborted" if isinstance(exc, SecAggError) else "task_failed"
