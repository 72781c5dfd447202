"""The node's side of secure aggregation: one SecAgg+ client round per study round, in memory.

Keys and seeds never touch disk: a node that restarts mid-round has simply dropped out, which the
protocol survives. Stages arrive as tasks; the masked input rides on the round's TRAIN task.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import numpy as np

from medfed.errors import SecAggError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.secagg import wire
from medfed.secagg.messages import EVALUATE_PURPOSE, STATS_PURPOSE, RoundParams
from medfed.secagg.protocol import ClientRound, Signer, Verifier
from medfed.secagg.quantize import FixedPoint
from medfed.secagg.updates import MASKED, U32, NDArray, encode_update, split_reply
from medfed.training.score_histogram import SCORE_BINS, ScoreHistogram


class SecureAggregationClient:
    def __init__(self, me: str, signer: Signer, verifier: Verifier) -> None:
        self.me = me
        self._signer = signer
        self._verifier = verifier
        self._rounds: dict[str, tuple[int, ClientRound]] = {}
        """Per study: the round in progress (a new round replaces an unfinished one)."""

    def _round(self, task: pb.Task, stage: int) -> ClientRound:
        params = wire.params_from_pb(task.secagg.params, task.study_id, task.round)
        held = self._rounds.get(task.study_id)
        if held is None or held[0] != task.round:
            raise SecAggError(
                f"no secure-aggregation keys for study {task.study_id} round {task.round} "
                f"(stage {stage}): this node restarted or missed stage 1"
            )
        if held[1].params != params:
            raise SecAggError("the coordinator changed the round's parameters mid-round")
        return held[1]

    def answer(self, task: pb.Task) -> pb.SecAggAnswer:
        """Stages 1 (advertise), 2 (share) and 4 (reveal)."""
        stage = task.secagg.stage
        if stage == 1:
            params = wire.params_from_pb(task.secagg.params, task.study_id, task.round)
            client = ClientRound(params, self.me, self._signer, self._verifier)
            self._rounds[task.study_id] = (task.round, client)
            ad = wire.ad_to_pb(client.advertise())
            return pb.SecAggAnswer(task_id=task.task_id, advertisement=ad)
        client = self._round(task, stage)
        if stage == 2:
            ads = {a.node: wire.ad_from_pb(a) for a in task.secagg.advertisements}
            sealed = client.share(ads)
            return pb.SecAggAnswer(task_id=task.task_id, shares=wire.shares_to_pb(sealed))
        if stage == 4:
            reveal = client.reveal(list(task.secagg.survivors))
            del self._rounds[task.study_id]
            return wire.reveal_to_pb(reveal, task.task_id)
        raise SecAggError(f"unknown secure-aggregation stage {stage}")

    def mask(
        self,
        task: pb.Task,
        global_model: Mapping[str, NDArray],
        local_model: Mapping[str, NDArray],
        num_examples: int,
    ) -> tuple[tensors.Weights, int]:
        """Stage 3: the trained update, weighted, encoded and masked; and the clipped count."""
        if task.secagg.stage != 3:
            raise SecAggError("a secure TRAIN task must carry stage 3")
        client = self._round(task, 3)
        if client.params.purpose:
            raise SecAggError("this secure sum is not for a training update")
        params: RoundParams = client.params
        fetched, local, extras = split_reply(global_model, local_model)
        words, clipped = encode_update(
            fetched,
            local,
            num_examples if task.secagg.params.example_weighted else 1,
            FixedPoint(params.clip, len(params.nodes)),
            np.random.default_rng(secrets.randbits(128)),
            extras,
        )
        sealed = wire.shares_from_pb(task.secagg.shares, len(params.nodes))
        masked = client.mask(list(task.secagg.survivors), sealed, words)
        return {MASKED: masked}, clipped

    def mask_histogram(self, task: pb.Task, histogram: ScoreHistogram | None) -> tensors.Weights:
        """Stage 3 of an evaluation: the score histogram's counts, masked as exact integers
        (a plan that scores nothing sends zeros, and the coordinator reports no pooled metrics)."""
        if task.kind != pb.TASK_KIND_EVALUATE or task.secagg.stage != 3:
            raise SecAggError("a secure EVALUATE task must carry stage 3")
        client = self._round(task, 3)
        if client.params.purpose != EVALUATE_PURPOSE:
            raise SecAggError("this secure sum is not for an evaluation's histograms")
        words = (
            histogram.as_words() if histogram is not None else np.zeros(2 * SCORE_BINS, np.uint32)
        )
        sealed = wire.shares_from_pb(task.secagg.shares, len(client.params.nodes))
        return {MASKED: client.mask(list(task.secagg.survivors), sealed, words)}

    def mask_words(self, task: pb.Task, words: U32) -> tensors.Weights:
        """Stage 3 of a statistics query: the site's vector (analytics.secure_table), masked."""
        if task.kind != pb.TASK_KIND_STATS or task.secagg.stage != 3:
            raise SecAggError("a secure STATS task must carry stage 3")
        client = self._round(task, 3)
        if client.params.purpose != STATS_PURPOSE:
            raise SecAggError("this secure sum is not for statistics")
        if words.shape != (client.params.dimension,):
            raise SecAggError(
                f"the statistics vector has {words.size} words, the round {client.params.dimension}"
            )
        sealed = wire.shares_from_pb(task.secagg.shares, len(client.params.nodes))
        return {MASKED: client.mask(list(task.secagg.survivors), sealed, words)}
