"""DP-FedAvg: client-level differential privacy (a whole hospital's contribution is protected).

McMahan, Ramage, Talwar, Zhang, ICLR 2018, "Learning Differentially Private Recurrent Language
Models": every site's model change is clipped to L2 norm C, the changes are averaged uniformly,
and Gaussian noise of standard deviation z C is added to their sum. Two placements:

* ``distributed = 0`` (central): the coordinator adds the noise; for a coordinator the hospitals
  trust with their clipped updates.
* ``distributed = 1``: each of the m selected sites adds N(0, z^2 C^2 / m) to its own clipped
  change, so the sum carries the full noise without the coordinator ever seeing an un-noised
  update; this is the placement that composes with secure aggregation. If only m' < m sites
  survive, the sum carries z^2 C^2 m'/m: the effective multiplier z sqrt(m'/m) is what is
  accounted (``client_epsilon`` uses the smallest multiplier any round had).

Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy, NeurIPS 2021, "Differentially Private
Learning with Adaptive Clipping"): each site reports whether its change was within C; the
coordinator adds N(0, sigma_b^2) to the count (sigma_b = m / 20 as in the paper) and moves C
geometrically toward the target quantile: C <- C exp(-eta (b - gamma)). To keep the total privacy
at multiplier z, the model updates use z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2) (their Thm. 1).

Sites clip (and, distributed, add noise) themselves; in the central placement the coordinator
clips again whatever it sees. The noise comes from the OS's CSPRNG, never from a seed anyone knows.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence

import numpy as np

from medfed.errors import StrategyError
from medfed.privacy.accounting import gaussian_epsilon
from medfed.protocol.tensors import Weights, manifest_of
from medfed.strategies.accumulators import cast_like, expect
from medfed.strategies.base import Accumulator, NDArray, Reply, StrategyDefaults
from medfed.strategies.byzantine import BoundedSums, bounded_mean

CLIP = "dpfedavg/clip"
MIN_MULTIPLIER = "dpfedavg/min_multiplier"
ROUNDS = "dpfedavg/rounds"
NoiseSource = np.random.Generator


class ClippedMean(BoundedSums):
    """Uniform mean of clipped changes, plus the count of sites that were within the bound."""

    def __init__(self, model: Mapping[str, NDArray], clip: float) -> None:
        super().__init__(manifest_of(model), model, clip, weighted=False)
        self.below = 0.0

    def add(self, reply: Reply) -> None:
        super().add(reply)
        self.below += float(reply.metrics.get("update_norm_below_clip", 0.0))


class DpFedAvg(StrategyDefaults):
    name = "dpfedavg"

    def __init__(
        self,
        clip_norm: float,
        noise_multiplier: float,
        distributed: bool = False,
        adaptive: bool = False,
        target_quantile: float = 0.5,
        clip_learning_rate: float = 0.2,
        delta: float = 1e-5,
        rng: NoiseSource | None = None,
    ) -> None:
        if not (math.isfinite(clip_norm) and clip_norm > 0):
            raise StrategyError(f"dpfedavg clip_norm must be > 0, got {clip_norm}")
        if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
            raise StrategyError(f"dpfedavg noise_multiplier must be >= 0, got {noise_multiplier}")
        if not 0 < target_quantile < 1:
            raise StrategyError(f"target_quantile must be in (0, 1), got {target_quantile}")
        self.clip_norm = float(clip_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.distributed = distributed
        self.adaptive = adaptive
        self.target_quantile = target_quantile
        self.clip_learning_rate = clip_learning_rate
        self.delta = delta
        self._rng = rng
        self._selected = 0
        self._clip = self.clip_norm

    def init_state(self, model: Mapping[str, NDArray]) -> Weights:
        return {
            CLIP: np.array([self.clip_norm], np.float64),
            MIN_MULTIPLIER: np.array([math.inf], np.float64),
            ROUNDS: np.array([0], np.int64),
        }

    def select(self, server_round: int, nodes: Sequence[str]) -> list[str]:
        self._selected = len(nodes)
        return list(nodes)

    def start_round(
        self, model: Mapping[str, NDArray], state: Mapping[str, NDArray]
    ) -> Accumulator:
        self._clip = float(state[CLIP][0])
        # Distributed: the sites' changes arrive clipped *and* noised, so their norms exceed C by
        # design; clipping them again would strip the noise. Central: the coordinator clips.
        return ClippedMean(model, math.inf if self.distributed else self._clip)

    def configure_train(self, server_round: int) -> dict[str, float]:
        settings = {"clip_norm": self._clip}
        if self.distributed and self.noise_multiplier > 0:
            per_site = self.model_multiplier() * self._clip / math.sqrt(max(1, self._selected))
            settings["noise_std"] = per_site
        return settings

    def bit_noise(self) -> float:
        return max(1, self._selected) / 20.0 if self.adaptive else 0.0

    def model_multiplier(self) -> float:
        """z for the model updates, after the share adaptive clipping's count takes."""
        z, sigma_b = self.noise_multiplier, self.bit_noise()
        if not self.adaptive or z == 0:
            return z
        if 2 * sigma_b <= z:
            raise StrategyError(
                f"adaptive clipping with {self._selected} sites cannot reach noise multiplier "
                f"{z}: the clip count's noise m/20 must exceed z/2 (select more sites)"
            )
        return float((z**-2 - (2 * sigma_b) ** -2) ** -0.5)

    def aggregate(
        self,
        server_round: int,
        acc: Accumulator,
        model: Mapping[str, NDArray],
        state: Mapping[str, NDArray],
    ) -> tuple[Weights, Weights]:
        sums = expect(acc, ClippedMean)
        mean = bounded_mean(sums, model)
        rng = self._rng or np.random.default_rng(secrets.randbits(128))  # OS entropy
        m = sums.count
        z = self.model_multiplier()
        if self.distributed:
            effective = z * math.sqrt(m / max(1, self._selected))
        else:
            effective = z
            std = z * self._clip / m
            for k, v in mean.items():
                if np.dtype(model[k].dtype).kind == "f":
                    mean[k] = v + rng.normal(0.0, std, v.shape)
        clip = self._clip
        if self.adaptive:
            below = (sums.below + rng.normal(0.0, self.bit_noise())) / m
            clip = clip * math.exp(-self.clip_learning_rate * (below - self.target_quantile))
        new_state = {
            CLIP: np.array([clip], np.float64),
            MIN_MULTIPLIER: np.array([min(float(state[MIN_MULTIPLIER][0]), effective)]),
            ROUNDS: np.array([int(state[ROUNDS][0]) + 1], np.int64),
        }
        return cast_like(mean, model), new_state

    def round_metrics(self, state: Mapping[str, NDArray]) -> dict[str, float]:
        """Client-level epsilon so far (at ``delta``), the clip bound and the smallest noise
        multiplier any round's sum carried (distributed: only surviving sites add noise)."""
        rounds = int(state[ROUNDS][0])
        z = float(state[MIN_MULTIPLIER][0])
        if rounds == 0:
            return {}
        epsilon = gaussian_epsilon(z, rounds, self.delta) if z > 0 else math.inf
        return {
            "client_epsilon": epsilon,
            "client_noise_multiplier": z,
            "clip_norm": float(state[CLIP][0]),
        }
