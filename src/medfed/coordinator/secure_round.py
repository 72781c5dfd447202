"""A training round under secure aggregation: the coordinator drives SecAgg+ stage by stage.

    1 advertise keys -> 2 exchange encrypted shares -> 3 train + masked input -> 4 reveal shares
    -> unmask: the sum of the survivors' updates, never one hospital's

Each stage is a dispatch of tasks with its own deadline (``secagg_stage_deadline_s``; training
keeps ``round_deadline_s``); nodes that miss one are dropouts. Any :class:`SecAggError` (too few
survivors, a bad signature reported by a node, shares that do not rebuild a key) aborts the
round before anything is committed; the engine retries it with fresh keys.

The stages themselves are :class:`SecureSum`; an evaluation uses them too, to sum the sites' score
histograms (``coordinator/evaluation.py``, purpose "evaluate" in every key's context).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from medfed.coordinator.rounds import OpenRound
from medfed.coordinator.spec import StudySpec
from medfed.errors import SecAggError, StrategyError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.secagg import wire
from medfed.secagg.graph import default_degree
from medfed.secagg.messages import RoundParams
from medfed.secagg.protocol import ServerRound
from medfed.secagg.quantize import FixedPoint
from medfed.secagg.updates import MASKED, U32, decode_sum, dimension
from medfed.strategies.accumulators import cast_like
from medfed.strategies.base import NDArray, Reply, Strategy
from medfed.strategies.dpfedavg import DpFedAvg
from medfed.strategies.registry import STRATEGY_NAMES, secure_aggregation

log = logging.getLogger("medfed.coordinator")
T = TypeVar("T")
Stages = Callable[[str], pb.SecAggStage]
Dispatch = Callable[[OpenRound, Sequence[str], Stages], None]
"""Send each node its task (with its stage payload) and wait for the round to close."""


def example_weighted(strategy: Strategy) -> bool:
    """FedAvg and its kin weigh a site by its examples; DP-FedAvg weighs every site 1."""
    return not isinstance(strategy, DpFedAvg)


def check_supported(spec: StudySpec, strategy: Strategy) -> None:
    """Refuse, at submission, what secure aggregation cannot run."""
    support = secure_aggregation(strategy.name)
    if not support.composes:
        usable = [name for name in STRATEGY_NAMES if secure_aggregation(name).composes]
        raise StrategyError(
            f"secure aggregation reveals only the weighted sum of the updates; strategy "
            f"{strategy.name!r} {support.why} (use one of {', '.join(usable)})"
        )
    if isinstance(strategy, DpFedAvg) and (not strategy.distributed or strategy.adaptive):
        raise StrategyError(
            "secure aggregation with dpfedavg needs distributed = 1 (the sites add the noise: "
            "the coordinator never sees an update to noise) and adaptive = 0 (the clip count "
            "is per site)"
        )
    if spec.compression != "none" or spec.personalization != "none":
        raise StrategyError(
            "secure aggregation sends fixed-point words in Z_2^32: compression and "
            "personalization must be none"
        )


def round_params(
    spec: StudySpec,
    study_id: str,
    round_no: int,
    nodes: Sequence[str],
    dim: int,
    purpose: str = "",
) -> RoundParams:
    n = len(nodes)
    if n < 2:
        raise SecAggError(f"secure aggregation needs at least 2 nodes, {n} selected")
    degree = min(spec.secagg_degree or default_degree(n), n - 1)
    if degree < n - 1 and degree % 2:
        degree += 1  # SecAgg+'s ring graph wants an even degree
    threshold = min(max(2, math.ceil(spec.secagg_threshold * (degree + 1))), degree + 1)
    return RoundParams(
        study_id, round_no, tuple(sorted(nodes)), threshold, degree, os.urandom(16),
        spec.secagg_clip, dim, purpose,
    )  # fmt: skip


class MaskedSum:
    """The training round's accumulator: each masked input goes straight into the running sum."""

    def __init__(self, server: ServerRound) -> None:
        self._server = server

    @property
    def count(self) -> int:
        return len(self._server.survivors)

    def add(self, reply: Reply) -> None:
        try:
            self._server.add_masked(reply.node, reply.weights[MASKED])  # type: ignore[arg-type]
        except (SecAggError, KeyError) as exc:
            raise StrategyError(f"masked input refused: {exc}") from None


class SecureSum:
    """SecAgg+ over vectors of ``params.dimension`` words in Z_(2^32): stages 1, 2 and 4 are
    SECAGG tasks of their own, stage 3 (the masked input) rides on the tasks of ``main``, the
    round whose replies are summed (a TRAIN round, or an EVALUATE round's score histograms)."""

    def __init__(self, spec: StudySpec, params: RoundParams, weighted: bool = True) -> None:
        self.params = params
        self._pb_params = wire.params_to_pb(self.params)
        self._pb_params.example_weighted = weighted
        self._spec = spec
        self.server = ServerRound(self.params)

    def _stage(self, number: int, **payload: object) -> pb.SecAggStage:
        return pb.SecAggStage(stage=number, params=self._pb_params, **payload)  # type: ignore[arg-type]

    def _run_stage(
        self, train: OpenRound, dispatch: Dispatch, to: Sequence[str], payload: Stages
    ) -> dict[str, pb.SecAggAnswer]:
        stage = OpenRound(
            study_id=train.study_id,
            round=train.round,
            kind=pb.TASK_KIND_SECAGG,
            deadline=time.monotonic() + self._spec.secagg_stage_deadline_s,
        )
        try:
            dispatch(stage, to, payload)
        finally:  # a node's refusal (say, a key that fails its signature) goes on record
            train.rejections.extend(stage.rejections)
            train.upload_bytes += stage.upload_bytes
        return stage.answers

    def _decoded(
        self, answers: Mapping[str, pb.SecAggAnswer], decode: Callable[[str, pb.SecAggAnswer], T]
    ) -> dict[str, T]:
        """Each node's answer decoded on its own: one that cannot be is refused, by name."""
        out: dict[str, T] = {}
        for node, answer in answers.items():
            try:
                out[node] = decode(node, answer)
            except SecAggError as exc:
                self.server.refuse(node, str(exc))
        return out

    def total(self, train: OpenRound, dispatch: Dispatch) -> tuple[U32, tuple[str, ...]]:
        """All four stages: the sum of the survivors' vectors, and who they are. Whatever the
        protocol refused on the way goes on ``train``'s record, whether or not the round ends."""
        try:
            return self._stages(train, dispatch)
        finally:
            train.rejections.extend(f"{n}: {why}" for n, why in self.server.refusals)

    def _stages(self, train: OpenRound, dispatch: Dispatch) -> tuple[U32, tuple[str, ...]]:
        server, p, most = self.server, self.params, len(self.params.nodes)
        clock = [time.perf_counter()]
        answers = self._run_stage(train, dispatch, p.nodes, lambda n: self._stage(1))
        clock.append(time.perf_counter())
        forwarded = server.forward_advertisements(
            {n: wire.ad_from_pb(a.advertisement) for n, a in answers.items()}
        )

        answers = self._run_stage(train, dispatch, sorted(forwarded), lambda n: self._stage(
            2, advertisements=[wire.ad_to_pb(a) for _, a in sorted(forwarded[n].items())]
        ))  # fmt: skip
        clock.append(time.perf_counter())
        u2, routed = server.route_shares(
            self._decoded(answers, lambda n, a: wire.shares_from_pb(a.shares, most))
        )

        train.manifest = tensors.Manifest((tensors.TensorSpec(MASKED, "uint32", (p.dimension,)),))
        train.acc, train.unpack = MaskedSum(server), None
        dispatch(train, u2, lambda n: self._stage(
            3, survivors=list(u2), shares=wire.shares_to_pb(routed[n])
        ))  # fmt: skip
        clock.append(time.perf_counter())
        u3 = server.close_inputs()
        if len(u3) < p.threshold:
            raise SecAggError(
                f"only {len(u3)} masked inputs arrived, under the threshold {p.threshold}: "
                "the round is aborted"
            )
        answers = self._run_stage(train, dispatch, u3, lambda n: self._stage(4, survivors=list(u3)))
        reveals = self._decoded(answers, lambda n, a: wire.reveal_from_pb(n, a, most))
        clock.append(time.perf_counter())
        total = server.unmask(reveals)
        clock.append(time.perf_counter())
        work = "evaluate" if train.kind == pb.TASK_KIND_EVALUATE else "train"
        stages = ("advertise", "share", f"{work}+mask", "reveal", "unmask")
        spans = list(zip(stages, clock[:-1], clock[1:], strict=True))
        log.info("study %s round %d secure aggregation: %s", train.study_id, train.round,
                 ", ".join(f"{s} {b - a:.3f} s" for s, a, b in spans))  # fmt: skip
        train.round_metrics.update(stage_metrics(spans, most, len(u3)))
        return total, u3


def stage_metrics(
    spans: Sequence[tuple[str, float, float]], selected: int, survivors: int
) -> dict[str, float]:
    """``secagg_<stage>_s`` per stage ("train+mask" -> ``train_mask``) and ``secagg_dropouts``:
    hospitals selected whose masked input is not in the sum."""
    out = {f"secagg_{s.replace('+', '_')}_s": b - a for s, a, b in spans}
    out["secagg_dropouts"] = float(selected - survivors)
    return out


class SecureRound(SecureSum):
    """A training round under SecAgg+: the survivors' sum decoded into the weighted mean model."""

    def __init__(
        self,
        spec: StudySpec,
        study_id: str,
        round_no: int,
        nodes: Sequence[str],
        model: Mapping[str, NDArray],
        weighted: bool = True,
        extras: tensors.Manifest | None = None,
    ) -> None:
        self.model = model
        self.extras = extras
        dim = dimension(model, extras)
        super().__init__(spec, round_params(spec, study_id, round_no, nodes, dim), weighted)

    def run(self, train: OpenRound, dispatch: Dispatch) -> Reply:
        """All four stages; returns the survivors' aggregate as one reply (the weighted mean
        model, weight = their total examples) for the strategy's accumulator."""
        total, u3 = self.total(train, dispatch)
        p = self.params
        encoding = FixedPoint(p.clip, len(p.nodes))
        mean, extras, weight = decode_sum(total, self.model, encoding, len(u3), self.extras)
        return Reply(
            "secure-sum",
            cast_like(mean, self.model),
            weight,
            extras={t.name: extras[t.name].astype(np.float32) for t in self.extras.tensors}
            if self.extras
            else {},
            represents=len(u3),
        )
