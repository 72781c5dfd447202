"""One study's thread: a small state machine per round.

    waiting for nodes -> dispatch -> collect (until all answered or deadline) -> close
        -> enough accepted?  yes: aggregate -> store model -> commit (one transaction) -> evaluate
                             no:  record why, dispatch the same round again

A round is committed or it did not happen: the new model is written to the content-addressed
store first (atomically, by hash), then one database transaction advances the study. A coordinator
killed at any instant restarts from the last committed round with bit-identical weights.
Statistics and privacy-audit studies hand their single round to ``stats`` and ``audit``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from medfed.coordinator.approvals import approval_gate
from medfed.coordinator.audit import follow_up_audit, run_audit
from medfed.coordinator.claims import claim_limit, site_share_metrics, site_weight_cap
from medfed.coordinator.coalitions import RoundUpdates
from medfed.coordinator.contributions import study_record
from medfed.coordinator.evaluation import encrypted_sum, run_evaluation
from medfed.coordinator.replies import build_strategy, reply_layout, reply_unpacker, task_config
from medfed.coordinator.round_contributions import measure_round, per_round_values
from medfed.coordinator.round_metrics import eval_metrics, train_metrics
from medfed.coordinator.rounds import OpenRound, TaskSlot
from medfed.coordinator.secure_round import SecureRound, Stages, example_weighted
from medfed.coordinator.sites import EVALUATION_PREFIX, waiting_message
from medfed.coordinator.spec import StudySpec, dataset_ref, standardization_of
from medfed.coordinator.stats import StatsHooks, run_stats
from medfed.errors import SecAggError, StoreError
from medfed.ledger import kinds
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.state import NodeRoundMetrics, RoundRecord
from medfed.strategies.base import Strategy
from medfed.strategies.flags import round_flags

if TYPE_CHECKING:
    from medfed.coordinator.engine import EngineParts

log = logging.getLogger("medfed.coordinator")

WAITING_REFRESH_S = 1.0
"""How often a waiting study looks again at why hospitals are missing."""
MAX_FAILED_ATTEMPTS = 10
"""Consecutive attempts at one round that may fail (too few valid updates) before the study is
marked failed: a consortium whose hospitals all refuse a plan should hear so, not retry forever."""


class StudyRunner(threading.Thread):
    def __init__(
        self, study_id: str, parts: EngineParts, start: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(name=f"study-{study_id}", daemon=True)
        self.study_id = study_id
        self._p = parts
        self._start = start
        """Starts another study (the audit a completed study asks for)."""
        self._halt = threading.Event()

    def halt(self) -> None:
        """Stop at the next step: an open round closes without committing."""
        self._halt.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a study failing must never take the coordinator down
            if self._halt.is_set():  # cancelled or shutting down mid-step: nothing to report
                log.info("study %s stopped (%s)", self.study_id, exc)
                return
            log.exception("study %s failed", self.study_id)
            self._set_state("failed", f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        record = self._p.state.study(self.study_id)
        spec = StudySpec.from_json(record.spec_json)
        if spec.stats_spec:  # a statistics study: one round of site summaries, no model
            hooks = StatsHooks(self.study_id, self._p, self._select, self._set_state, self._halt)
            run_stats(hooks, spec, record.completed_rounds)
            return
        if spec.audit_of:  # a privacy audit: one round of membership-inference aggregates
            hooks = StatsHooks(self.study_id, self._p, self._select, self._set_state, self._halt)
            run_audit(hooks, spec, record)
            return
        strategy = build_strategy(spec)
        model = self._p.models.get(record.model_sha256)
        if record.state_sha256:
            state = self._p.models.get_private(record.state_sha256)
        else:
            state = strategy.init_state(model)
        sha = record.model_sha256
        next_round = record.completed_rounds + 1
        self._p.progress.seed(
            self.study_id,
            ((node, why) for r, node, why in self._p.state.rejections(self.study_id)
             if r == next_round),
        )  # fmt: skip
        if self._evaluation_pending(spec, record.completed_rounds) and self._select(spec):
            self._evaluate(spec, record.completed_rounds, sha)
        failures = 0
        while next_round <= spec.rounds and not self._halt.is_set():
            outcome = self._train_round(spec, strategy, next_round, model, state, sha)
            if outcome is None:
                failures += 1
                if failures >= MAX_FAILED_ATTEMPTS:
                    self._set_state("failed", self._give_up_message(next_round, failures))
                    return
                continue
            failures = 0
            model, state, sha = outcome
            if _evaluates(spec, next_round):
                self._evaluate(spec, next_round, sha)
            next_round += 1
        if not self._halt.is_set():
            self._record_contributions(spec)
            self._set_state("completed", f"{spec.rounds} rounds committed")
            if spec.audit_on_complete:
                self._submit_audit(spec)

    def _submit_audit(self, spec: StudySpec) -> None:
        """``[privacy] audit_on_complete``: the study's privacy audit, submitted as the
        coordinator (recorded in the ledger as any submission) and started."""

        def create(audit_id: str, audit: StudySpec, model_sha256: str) -> None:
            self._p.state.create_study(
                audit_id, audit.name, audit.to_json(), model_sha256, now=self._p.wall(),
                by="coordinator", spec_sha256=audit.sha256,
            )  # fmt: skip

        audit_id = follow_up_audit(spec, self._p.state.study(self.study_id), create)
        log.info("study %s completed: privacy audit %s submitted", self.study_id, audit_id)
        if self._start is not None:
            self._start(audit_id)

    def _record_contributions(self, spec: StudySpec) -> None:
        """Each hospital's contribution, reputation and reward points, in the ledger once."""
        rounds = self._p.state.rounds(self.study_id)
        if rounds:
            measured = [e.payload for e in self._p.state.ledger_entries_of((kinds.CONTRIBUTION,))
                        if e.study == self.study_id]  # fmt: skip
            payload = study_record(rounds, spec.contributions, per_round_values(measured))
            self._p.state.append_once(kinds.REPUTATION, self.study_id, payload, self._p.wall())

    def _evaluation_pending(self, spec: StudySpec, done: int) -> bool:
        """Whether round ``done`` was due an evaluation that left no record: the coordinator
        stopped between the round's commit and its evaluation, which a restart must run."""
        if done == 0 or not _evaluates(spec, done):
            return False
        last = self._p.state.rounds(self.study_id)[-1]
        evaluated = any(m.kind == "eval" for m in last.per_node)
        return not evaluated and "eval_participation" not in last.metrics

    def _give_up_message(self, round_no: int, attempts: int) -> str:
        recent = [
            f"{node}: {reason}"
            for r, node, reason in self._p.state.rejections(self.study_id)
            if r == round_no
        ][-4:]
        return f"round {round_no} failed {attempts} times in a row; last reasons: " + "; ".join(
            recent
        )

    def _set_state(self, state: str, message: str) -> None:
        self._p.state.set_state(self.study_id, state, message, now=self._p.wall())
        self._p.events.bump(self.study_id)

    def _select(self, spec: StudySpec) -> list[str] | None:
        """Online nodes for the study, waiting (politely) until at least min_nodes are there.

        While it waits, the study's message names every hospital that cannot take part and why;
        it is rewritten (and watchers woken) whenever that changes, and only then."""
        shown = ""
        look_at = 0.0
        while not self._halt.is_set():
            suspended = self._p.suspended()
            online = [n for n in self._p.directory.online(spec.dataset, spec.nodes)
                      if n not in suspended]  # fmt: skip
            approved = self._p.state.approvals(spec.sha256) if spec.approvals else set()
            nodes, unapproved = approval_gate(spec, online, approved)
            if len(nodes) >= spec.min_nodes:
                return nodes
            if time.monotonic() >= look_at:
                sites = self._p.progress.sites(self.study_id, spec.dataset, spec.nodes)
                message = unapproved or waiting_message(sites, nodes, spec.min_nodes)
                if message != shown:
                    self._set_state("waiting", message)
                    shown = message
                look_at = time.monotonic() + WAITING_REFRESH_S
            self._halt.wait(0.2)
        return None

    def _train_round(
        self,
        spec: StudySpec,
        strategy: Strategy,
        round_no: int,
        model: tensors.Weights,
        state: tensors.Weights,
        sha: str,
    ) -> tuple[tensors.Weights, tensors.Weights, str] | None:
        eligible = self._select(spec)
        if eligible is None:
            return None
        nodes = strategy.select(round_no, eligible)
        self._set_state("running", f"round {round_no} of {spec.rounds}")
        layout = tensors.manifest_of(model)
        broadcast = strategy.broadcast(state)
        served_sha = self._p.models.put(model | broadcast) if broadcast else sha
        round_ = OpenRound(
            study_id=self.study_id,
            round=round_no,
            kind=pb.TASK_KIND_TRAIN,
            deadline=time.monotonic() + spec.round_deadline_s,
            manifest=reply_layout(spec, strategy, layout),
            acc=strategy.start_round(model, state),
            unpack=reply_unpacker(spec, strategy, model),
            weight_cap=site_weight_cap(spec, self._p.directory, nodes),
            kept={} if spec.contributions != "data_size" else None,
        )
        extra = strategy.configure_train(round_no)
        client = strategy.client_settings()
        if spec.secure_aggregation:
            if not self._secure(spec, strategy, round_, nodes, model, served_sha, extra, client):
                return None
        else:
            self._dispatch(spec, round_, nodes, served_sha, extra, client)
        if self._halt.is_set():
            return None
        needed = min(spec.min_nodes, len(nodes))
        if round_.accepted < needed:
            self._record_failed(round_, needed, len(nodes))
            return None
        assert round_.acc is not None
        new_model, new_state = strategy.aggregate(round_no, round_.acc, model, state)
        flags = round_flags(strategy, round_.acc)
        round_.acc = None  # the float64 sums are no longer needed: free them before storing
        new_sha = self._p.models.put(new_model)
        state_sha = self._p.models.put_private(new_state) if new_state else ""
        metrics = train_metrics(round_.per_node, len(nodes))
        metrics["upload_bytes"] = float(round_.upload_bytes)
        metrics.update(round_.round_metrics)
        metrics.update(strategy.round_metrics(new_state))
        if spec.max_site_weight:
            metrics.update(site_share_metrics(round_.per_node, round_.weight_cap))
        self._p.state.commit_round(
            RoundRecord(
                study_id=self.study_id,
                round=round_no,
                model_sha256=new_sha,
                selected=len(nodes),
                accepted=round_.accepted,
                rejected=len(nodes) - round_.accepted,
                duration_s=time.monotonic() - round_.started,
                committed_unix=self._p.wall(),
                metrics=metrics,
                per_node=tuple(round_.per_node),
                rejections=tuple(round_.rejections),
                state_sha256=state_sha,
                selected_nodes=tuple(nodes),
                updates=round_.proofs(),
                flags=flags,
            )
        )
        self._p.events.bump(self.study_id)
        log.info("study %s round %d committed (%s)", self.study_id, round_no, new_sha[:12])
        if round_.kept:
            updates = RoundUpdates(round_no, model, state, round_.kept)
            round_.kept = None
            self._measure_contributions(spec, updates, (sha, new_sha))
        # the stored file's read-only map: no private copy of the model is kept between rounds
        return self._p.models.get(new_sha), new_state, new_sha

    def _secure(
        self,
        spec: StudySpec,
        strategy: Strategy,
        round_: OpenRound,
        nodes: Sequence[str],
        model: tensors.Weights,
        sha: str,
        extra: Mapping[str, float],
        client: Mapping[str, str],
    ) -> bool:
        """Run the round under SecAgg+; on success ``round_.acc`` holds the strategy's
        accumulator with the survivors' sum. False (nothing committed) when it aborts."""
        strategy_acc = round_.acc

        def dispatch(r: OpenRound, to: Sequence[str], stage: Stages) -> None:
            self._dispatch(spec, r, to, sha, extra, client, stage)
            if self._halt.is_set():
                raise SecAggError("the coordinator is stopping")

        try:
            secure_sum = SecureRound(
                spec, self.study_id, round_.round, nodes, model, example_weighted(strategy),
                strategy.reply_extras(tensors.manifest_of(model)),
            )  # fmt: skip
            reply = secure_sum.run(round_, dispatch)
        except SecAggError as exc:
            if self._halt.is_set():
                return False
            self._record_aborted(round_, f"secure aggregation aborted: {exc}")
            return False
        assert strategy_acc is not None
        strategy_acc.add(reply)
        round_.acc = strategy_acc
        return True

    def _measure_contributions(
        self, spec: StudySpec, updates: RoundUpdates, models: tuple[str, str]
    ) -> None:
        """Each site's contribution to the round just committed, in the ledger (one entry)."""
        evaluators = self._p.directory.online(spec.dataset, spec.nodes)
        if not evaluators:
            return

        def evaluate(sha: str) -> dict[str, NodeRoundMetrics]:
            round_ = OpenRound(
                study_id=self.study_id,
                round=updates.round,
                kind=pb.TASK_KIND_EVALUATE,
                deadline=time.monotonic() + spec.round_deadline_s,
            )
            self._dispatch(spec, round_, evaluators, sha, {}, {})
            if self._halt.is_set():
                raise SecAggError("the coordinator is stopping")  # nothing is recorded
            return {m.node: m for m in round_.per_node if m.kind == "eval"}

        payload = measure_round(spec, updates, models, evaluators, evaluate, self._p.models.put)
        if "error" in payload:
            log.warning("study %s round %d: no contribution estimate: %s",
                        self.study_id, updates.round, payload["error"])  # fmt: skip
        try:
            self._p.state.append_ledger(kinds.CONTRIBUTION, self.study_id, payload, self._p.wall())
        except StoreError as exc:  # a coordinator run without its ledger (a benchmark)
            log.warning("study %s: contribution estimate not kept: %s", self.study_id, exc)

    def _evaluate(self, spec: StudySpec, round_no: int, sha: str) -> None:
        nodes = self._p.directory.online(spec.dataset, spec.nodes)
        if not nodes:
            return
        round_ = OpenRound(
            study_id=self.study_id,
            round=round_no,
            kind=pb.TASK_KIND_EVALUATE,
            deadline=time.monotonic() + spec.round_deadline_s,
        )

        def dispatch(r: OpenRound, to: Sequence[str], stage: Stages | None) -> None:
            self._dispatch(spec, r, to, sha, {}, {}, stage)

        pooled = run_evaluation(spec, round_, nodes, dispatch)
        if self._halt.is_set():
            return
        now = self._p.wall()
        for rejection in round_.rejections:  # a refused evaluation is a reason the researcher sees
            node, _, cause = rejection.partition(": ")
            self._p.state.record_rejection(
                self.study_id, round_no, node, EVALUATION_PREFIX + cause, now=now
            )
        metrics = eval_metrics(round_.per_node, len(nodes)) | pooled
        self._p.state.add_eval(self.study_id, round_no, round_.per_node, metrics)
        sealed = encrypted_sum(self._p.models, spec, round_)
        if sealed is not None:
            self._p.state.add_encrypted_eval(self.study_id, round_no, sealed)
        self._p.events.bump(self.study_id)

    def _dispatch(
        self,
        spec: StudySpec,
        round_: OpenRound,
        nodes: Sequence[str],
        sha: str,
        extra: Mapping[str, float],
        client: Mapping[str, str],
        stage: Stages | None = None,
    ) -> None:
        """One task per node (with its secure-aggregation ``stage`` payload, if any), then wait
        until all have answered or ``round_``'s deadline passes."""
        deadline_ms = int((self._p.wall() + round_.deadline - time.monotonic()) * 1000)
        cap = round_.manifest.total_bytes if round_.manifest else 0
        for node in nodes:
            task = pb.Task(
                task_id=secrets.token_hex(16),
                study_id=self.study_id,
                round=round_.round,
                kind=round_.kind,  # type: ignore[arg-type]
                model_sha256=sha,
                dataset=dataset_ref(spec),
                plan=pb.PlanRef(name=spec.plan, version=spec.plan_version, sha256=spec.plan_sha256),
                config=task_config(spec, round_.round, extra, client),
                deadline_unix_ms=deadline_ms,
                max_update_bytes=cap,
            )
            if round_.kind == pb.TASK_KIND_EVALUATE:
                task.he_context_sha256 = spec.he_context_sha256
            pooled = standardization_of(spec)  # federated standardization (stats_result.py)
            if pooled is not None:
                task.standardization.CopyFrom(pooled)
            if stage is not None:
                task.secagg.CopyFrom(stage(node))
            limit = claim_limit(self._p.directory, node, spec.dataset, round_.kind)
            round_.slots[task.task_id] = TaskSlot(task, node, max_examples=limit)
        self._p.board.open(round_)
        try:
            round_.wait(stop=self._halt)
        finally:
            self._p.board.close(round_)
        self._p.progress.record(round_)

    def _record_failed(self, round_: OpenRound, needed: int, selected: int) -> None:
        self._record_aborted(
            round_,
            f"{round_.accepted} of {selected} updates accepted, at least {needed} needed",
        )

    def _record_aborted(self, round_: OpenRound, why: str) -> None:
        now = self._p.wall()
        reason = f"round {round_.round} not committed: {why}; retrying"
        log.warning("study %s: %s", self.study_id, reason)
        for rejection in round_.rejections:
            node, _, cause = rejection.partition(": ")
            self._p.state.record_rejection(self.study_id, round_.round, node, cause, now=now)
        self._set_state("running", reason)
        self._halt.wait(0.5)


def _evaluates(spec: StudySpec, round_no: int) -> bool:
    if round_no == spec.rounds:
        return True
    return spec.eval_every > 0 and round_no % spec.eval_every == 0
