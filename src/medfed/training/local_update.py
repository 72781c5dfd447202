"""What a hospital computes in one round, from the global model it received to the reply it sends.

The same function runs in the node's task executor and in the in-process simulator
(``medfed.simulation``), so a simulated study and a networked one compute identical updates:

    received = model + broadcast state (names with "/": e.g. SCAFFOLD's "scaffold/c/<name>")
    -> personalization: keep this site's own BatchNorm layers (FedBN, Li et al. ICLR 2021)
    -> train the plan (SCAFFOLD: gradient corrected by c - c_i, Karimireddy et al. ICML 2020)
    -> SCAFFOLD: new client control variate c_i+ (option II), its change travels as an extra
    -> compress the model delta (8-bit or top-k, error feedback kept here, never sent)

Site state that must survive between rounds (c_i, the FedBN layers, the compression residual) is
kept by a ``ClientState``: on disk at a node, in memory in a simulation. It is versioned by round
(``RoundView``): training round r reads the state saved by the latest round before r and writes
version r, so a round that is retried (a node restarted mid-round, a round the coordinator could
not commit) starts again from the same state instead of advancing it twice. Model tensor names
never contain "/"; names with "/" are the strategies' own tensors.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from medfed.compression.codec import CompressionConfig, encode
from medfed.data.dataset import Dataset
from medfed.errors import TrainingError
from medfed.protocol.tensors import Weights
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainingPlan

NDArray = npt.NDArray[np.generic]
Algorithm = Literal["default", "scaffold"]
Personalization = Literal["none", "fedbn"]
ALGORITHMS: tuple[Algorithm, ...] = ("default", "scaffold")
PERSONALIZATIONS: tuple[Personalization, ...] = ("none", "fedbn")
SCAFFOLD_C = "scaffold/c/"
SCAFFOLD_DC = "scaffold/dc/"
_BN_STATS = (".running_mean", ".running_var", ".num_batches_tracked")


@dataclass(frozen=True)
class ClientSettings:
    """How a site turns training into a reply, as the study asks (sent with every task)."""

    algorithm: Algorithm = "default"
    personalization: Personalization = "none"
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    finetune_steps: int = 0
    clip_norm: float = 0.0
    """> 0: clip the model change to this L2 norm before sending (norm bounding done by the site,
    which is how it composes with secure aggregation)."""
    noise_std: float = 0.0
    """> 0: add N(0, noise_std^2) to every coordinate of the clipped change (distributed DP-FedAvg:
    each site adds its share of the noise, so the sum carries the whole)."""

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise TrainingError(f"client algorithm {self.algorithm!r} is not one of {ALGORITHMS}")
        if self.personalization not in PERSONALIZATIONS:
            raise TrainingError(
                f"personalization {self.personalization!r} is not one of {PERSONALIZATIONS}"
            )
        if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise TrainingError(f"noise_std must be finite and >= 0, got {self.noise_std}")
        if self.noise_std > 0 and self.clip_norm <= 0:
            raise TrainingError("client-side DP noise needs a clip_norm to bound sensitivity")
        if not (math.isfinite(self.clip_norm) and self.clip_norm >= 0):
            raise TrainingError(f"clip_norm must be finite and >= 0, got {self.clip_norm}")
        if self.finetune_steps < 0:
            raise TrainingError(f"finetune_steps must be >= 0, got {self.finetune_steps}")


class ClientState(Protocol):
    """Tensors a site keeps between rounds of one study (one version per key)."""

    def load(self, key: str) -> Weights | None: ...

    def save(self, key: str, weights: Mapping[str, NDArray]) -> None: ...


class VersionedState(Protocol):
    """Tensors a site keeps between rounds, one version per (key, round)."""

    def load(self, key: str, before_round: int | None = None) -> Weights | None:
        """The version saved by the latest round < ``before_round`` (None: the latest)."""
        ...

    def save(self, key: str, weights: Mapping[str, NDArray], server_round: int = 0) -> None:
        """Save the version of ``server_round``, replacing any for that round or later."""
        ...


KEEP_VERSIONS = 2


class RoundView:
    """The ``ClientState`` of one round: reads what earlier rounds saved, writes this round's."""

    def __init__(self, state: VersionedState, server_round: int) -> None:
        self._state = state
        self._round = server_round

    def load(self, key: str) -> Weights | None:
        return self._state.load(key, before_round=self._round)

    def save(self, key: str, weights: Mapping[str, NDArray]) -> None:
        self._state.save(key, weights, server_round=self._round)


def kept_rounds(rounds: list[int], server_round: int) -> list[int]:
    """The versions to keep after saving ``server_round``: the newest few not after it."""
    return sorted(r for r in {*rounds, server_round} if r <= server_round)[-KEEP_VERSIONS:]


def latest_before(rounds: list[int], before_round: int | None) -> int | None:
    eligible = [r for r in rounds if before_round is None or r < before_round]
    return max(eligible) if eligible else None


class MemoryClientState:
    """A ``VersionedState`` in a dict, for simulations and tests."""

    def __init__(self) -> None:
        self._items: dict[str, dict[int, Weights]] = {}

    def load(self, key: str, before_round: int | None = None) -> Weights | None:
        versions = self._items.get(key, {})
        found = latest_before(list(versions), before_round)
        return None if found is None else {k: v.copy() for k, v in versions[found].items()}

    def save(self, key: str, weights: Mapping[str, NDArray], server_round: int = 0) -> None:
        versions = self._items.setdefault(key, {})
        versions[server_round] = {k: np.array(v, copy=True) for k, v in weights.items()}
        keep = kept_rounds(list(versions), server_round)
        self._items[key] = {r: versions[r] for r in keep}


@dataclass(frozen=True)
class LocalUpdate:
    wire: Weights
    """The tensors to send: the (possibly compressed) model, then the strategy's extras."""
    num_examples: int
    metrics: dict[str, float]


def split_received(received: Mapping[str, NDArray]) -> tuple[Weights, Weights]:
    """(model tensors, strategy tensors): strategy tensors are the ones whose name has a "/"."""
    model = {k: v for k, v in received.items() if "/" not in k}
    aux = {k: v for k, v in received.items() if "/" in k}
    return model, aux


def local_bn_names(model: Mapping[str, NDArray]) -> list[str]:
    """The BatchNorm tensors FedBN keeps at the site: running statistics and the affine weight
    and bias of every layer that has running statistics."""
    prefixes = {k[: -len(".running_mean")] for k in model if k.endswith(".running_mean")}
    return [
        k
        for k in model
        if k.endswith(_BN_STATS) or any(k in (f"{p}.weight", f"{p}.bias") for p in prefixes)
    ]


def personalized_start(
    model: Mapping[str, NDArray], settings: ClientSettings, state: ClientState
) -> Weights:
    """The model this site trains or evaluates from: the global one, with its own BN layers
    under FedBN once it has any."""
    start = dict(model)
    if settings.personalization == "fedbn":
        own = state.load("fedbn") or {}
        for name, value in own.items():
            if name in start and start[name].shape == value.shape:
                start[name] = value
    return start


def local_update(
    plan: TrainingPlan,
    data: Dataset,
    received: Mapping[str, NDArray],
    config: LocalTrainConfig,
    settings: ClientSettings,
    state: ClientState,
    rng: np.random.Generator,
) -> LocalUpdate:
    """Train from ``received`` and build the reply; ``rng`` drives stochastic quantization."""
    model, aux = split_received(received)
    start = personalized_start(model, settings, state)
    extras: Weights = {}
    if settings.algorithm == "scaffold":
        c, c_i = _control_variates(model, aux, state)
        correction = {k: np.asarray(c[k], np.float32) - np.asarray(c_i[k], np.float32) for k in c}
        config = dataclasses.replace(config, correction=correction)
    result = plan.train(start, data, config)
    if settings.algorithm == "scaffold":
        steps = result.metrics.get("steps", 0.0)
        c_new = scaffold_client_control(start, result.weights, c, c_i, steps, config.learning_rate)
        state.save("scaffold", c_new)
        extras = {
            SCAFFOLD_DC + k: np.asarray(c_new[k], np.float32) - np.asarray(c_i[k], np.float32)
            for k in c_new
        }
    if settings.personalization == "fedbn":
        state.save("fedbn", {k: result.weights[k] for k in local_bn_names(result.weights)})
    new = result.weights
    metrics = dict(result.metrics)
    if settings.clip_norm:
        norm = change_norm(model, new)
        metrics["update_norm_below_clip"] = float(norm <= settings.clip_norm)
        new = clip_change(model, new, settings.clip_norm)
    if settings.noise_std:
        new = add_noise(model, new, settings.noise_std, secure_rng())
    residual = state.load("residual") if settings.compression.error_feedback else None
    wire, new_residual = encode(settings.compression, new, model, residual, rng)
    if new_residual:
        state.save("residual", new_residual)
    return LocalUpdate(wire | extras, result.num_examples, metrics)


def secure_rng() -> np.random.Generator:
    """A generator seeded from the OS's CSPRNG: DP noise must not be reproducible by anyone,
    least of all the coordinator, which knows the round seed and could subtract seeded noise."""
    return np.random.default_rng(secrets.randbits(128))


def change_norm(x: Mapping[str, NDArray], y: Mapping[str, NDArray]) -> float:
    """L2 norm of y - x over the float tensors."""
    total = 0.0
    for k, v in y.items():
        if np.dtype(v.dtype).kind == "f":
            d = np.asarray(v, np.float64) - np.asarray(x[k], np.float64)
            total += float(np.vdot(d, d))
    return math.sqrt(total)


def add_noise(
    x: Mapping[str, NDArray], y: Mapping[str, NDArray], std: float, rng: np.random.Generator
) -> Weights:
    """y + N(0, std^2) on every float coordinate (Gaussian mechanism on the site's change)."""
    out = dict(y)
    for k, v in y.items():
        if np.dtype(v.dtype).kind == "f":
            out[k] = (np.asarray(v, np.float64) + rng.normal(0.0, std, v.shape)).astype(v.dtype)
    return out


def clip_change(x: Mapping[str, NDArray], y: Mapping[str, NDArray], max_norm: float) -> Weights:
    """y moved back toward x so that ||y - x|| <= max_norm over the float tensors (Sun et al.
    2019, norm bounding); integer tensors (BatchNorm's step counter) are left as trained."""
    floats = [k for k in y if np.dtype(y[k].dtype).kind == "f"]
    deltas = {k: np.asarray(y[k], np.float64) - np.asarray(x[k], np.float64) for k in floats}
    norm = math.sqrt(sum(float(np.vdot(d, d)) for d in deltas.values()))
    if norm <= max_norm:
        return dict(y)
    scale = max_norm / norm
    out = dict(y)
    for k, d in deltas.items():
        out[k] = (np.asarray(x[k], np.float64) + d * scale).astype(y[k].dtype)
    return out


def scaffold_client_control(
    x: Mapping[str, NDArray],
    y: Mapping[str, NDArray],
    c: Mapping[str, NDArray],
    c_i: Mapping[str, NDArray],
    steps: float,
    learning_rate: float,
) -> Weights:
    """SCAFFOLD option II (Karimireddy et al., ICML 2020, eq. 4): c_i+ = c_i - c + (x - y)/(K lr),
    with K local steps of plain SGD at ``learning_rate`` from the global model ``x`` to ``y``."""
    if steps <= 0:
        raise TrainingError("SCAFFOLD needs the number of local steps the plan took")
    scale = 1.0 / (steps * learning_rate)
    return {
        k: (
            np.asarray(c_i[k], np.float64)
            - np.asarray(c[k], np.float64)
            + (np.asarray(x[k], np.float64) - np.asarray(y[k], np.float64)) * scale
        ).astype(np.float32)
        for k in c
    }


def local_evaluate(
    plan: TrainingPlan,
    data: Dataset,
    received: Mapping[str, NDArray],
    config: LocalTrainConfig,
    settings: ClientSettings,
    state: ClientState,
) -> EvalResult:
    """The global model's test metrics, plus ``personal_*`` ones for the site's personalized
    model when the study personalizes (FedBN layers and/or ``finetune_steps`` of local tuning).
    The score histogram stays the global model's: pooled metrics describe the one shared model."""
    model, _ = split_received(received)
    result = plan.evaluate(model, data)
    metrics = dict(result.metrics)
    if settings.personalization == "none" and settings.finetune_steps == 0:
        return result
    personal = personalized_start(model, settings, state)
    if settings.finetune_steps > 0:
        tune = dataclasses.replace(config, epochs=0, steps=settings.finetune_steps, correction=None)
        personal = plan.train(personal, data, tune).weights
    for key, value in plan.evaluate(personal, data).metrics.items():
        metrics[f"personal_{key}"] = value
    return EvalResult(result.num_examples, metrics, result.histogram)


def _control_variates(
    model: Mapping[str, NDArray], aux: Mapping[str, NDArray], state: ClientState
) -> tuple[Weights, Weights]:
    names = [k for k in model if np.dtype(model[k].dtype).kind == "f"]
    missing = [k for k in names if SCAFFOLD_C + k not in aux]
    if missing:
        raise TrainingError(f"SCAFFOLD task is missing the server control variate for {missing}")
    c = {k: aux[SCAFFOLD_C + k] for k in names}
    c_i = state.load("scaffold") or {k: np.zeros_like(v, dtype=np.float32) for k, v in c.items()}
    if set(c_i) != set(c):
        c_i = {k: np.zeros_like(v, dtype=np.float32) for k, v in c.items()}
    return c, c_i
