"""What a training reply must look like for a study, and how it turns back into a model.

A reply is the node's model, compressed as the study asks (``medfed.compression``), followed by
the strategy's extra tensors (SCAFFOLD's control-variate change). Its exact layout is fixed
before the round opens, so an upload is checked tensor by tensor before a byte is stored.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from medfed.compression.codec import CompressionConfig, decode, wire_manifest
from medfed.coordinator.rounds import Unpack
from medfed.coordinator.secure_round import check_supported
from medfed.coordinator.spec import StudySpec, record_dp_of
from medfed.errors import StrategyError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.strategies.base import Strategy
from medfed.strategies.registry import StudyContext, make_strategy
from medfed.training.plan import round_seed

NDArray = npt.NDArray[np.generic]


def compression_of(spec: StudySpec) -> CompressionConfig:
    return CompressionConfig(
        kind=spec.compression, topk_ratio=spec.topk_ratio, error_feedback=spec.error_feedback
    )


def build_strategy(spec: StudySpec) -> Strategy:
    """The study's strategy, refusing combinations that cannot work before any hospital spends
    a round on them."""
    strategy = make_strategy(
        spec.strategy,
        spec.strategy_params,
        StudyContext(spec.seed, spec.learning_rate, spec.local_steps),
    )
    if strategy.client_settings().get("algorithm") == "scaffold" and spec.optimizer != "sgd":
        raise StrategyError("SCAFFOLD's control variates assume plain local SGD (optimizer = sgd)")
    if spec.dp_epsilon or spec.dp_noise_multiplier:
        refused = {
            "scaffold": "its gradient correction is not part of DP-SGD's per-sample clipping",
            "fedprox": "its proximal term is not a per-sample gradient",
            "qfedavg": "it weighs sites by their exact loss, which DP-SGD sites withhold",
        }
        if strategy.name in refused:
            raise StrategyError(
                f"record-level DP cannot run with {strategy.name}: {refused[strategy.name]}"
            )
    if spec.secure_aggregation:
        check_supported(spec, strategy)
    return strategy


def reply_layout(spec: StudySpec, strategy: Strategy, model: tensors.Manifest) -> tensors.Manifest:
    wire = wire_manifest(compression_of(spec), model)
    return tensors.Manifest(wire.tensors + strategy.reply_extras(model).tensors)


def reply_unpacker(
    spec: StudySpec, strategy: Strategy, model: Mapping[str, NDArray]
) -> Unpack | None:
    """None when a reply is exactly the model (the zero-copy path); otherwise a function that
    decodes the wire tensors back into a full model plus the strategy's extras."""
    config = compression_of(spec)
    extras = {t.name for t in strategy.reply_extras(tensors.manifest_of(model)).tensors}
    if config.kind == "none" and not extras:
        return None

    def unpack(
        wire: Mapping[str, NDArray],
    ) -> tuple[Mapping[str, NDArray], Mapping[str, NDArray]]:
        coded = {k: v for k, v in wire.items() if k not in extras}
        weights = decode(config, coded, model) if config.kind != "none" else coded
        tensors.check_finite(weights)
        return weights, {k: v for k, v in wire.items() if k in extras}

    return unpack


def task_config(
    spec: StudySpec, round_no: int, extra: Mapping[str, float], client: Mapping[str, str]
) -> pb.TrainConfig:
    """The local-training settings every node gets in ``round_no``."""
    return pb.TrainConfig(
        local_epochs=spec.local_epochs,
        local_steps=spec.local_steps,
        batch_size=spec.batch_size,
        optimizer=spec.optimizer,
        learning_rate=spec.learning_rate,
        proximal_mu=float(extra.get("proximal_mu", 0.0)),
        seed=round_seed(spec.seed, round_no),
        plan_options=dict(spec.plan_options),
        algorithm=client.get("algorithm", "default"),
        personalization=spec.personalization,
        compression=spec.compression,
        topk_ratio=spec.topk_ratio,
        error_feedback=spec.error_feedback,
        finetune_steps=spec.finetune_steps,
        clip_norm=float(extra.get("clip_norm", 0.0)),
        noise_std=float(extra.get("noise_std", 0.0)),
        record_dp=record_dp_of(spec),
        total_rounds=spec.rounds,
    )
