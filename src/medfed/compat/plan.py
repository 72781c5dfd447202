"""An approved client as a training plan of the node's executor.

``ClientPlans.admit(task)`` checks the approval (by file hash, at every task), loads the client
once per file version, and returns a ``ClientPlan``: a :class:`~medfed.training.plan.TrainingPlan`
whose ``train`` calls the client's ``fit`` and ``evaluate`` its ``evaluate``. Everything after
training is medfed's own, unchanged: norm clipping and client-level DP noise, compression,
secure-aggregation masking, signing and the coordinator's checks all act on the returned arrays
(:func:`medfed.training.local_update.local_update`).

What a client returns is checked before it leaves the node, and a bad answer fails that task
alone (the node refuses it with the reason and serves the next one): the number of arrays and
each shape must be the study's layout (the received model's), floats are cast to the layout's
dtype (``same_kind`` casting: float64 to float32, never float to int), and arrays, the loss and
the metrics must be finite; string metrics are dropped (medfed's metrics are numbers).

Refused for client plans, with the reason: record-level DP (DP-SGD clips and noises each
record's gradient inside the training loop, which is the client's own code), SCAFFOLD (its
gradient correction acts inside the loop too). FedProx's proximal term is left to the client:
``config["proximal_mu"]`` tells it the study's mu.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from medfed.compat import numpy_client
from medfed.compat.approval import ClientApprovals, read_approved
from medfed.compat.layout import CLIENT_PLAN_VERSION
from medfed.compat.loader import load_client
from medfed.data.dataset import Dataset
from medfed.errors import ClientPlanError, PolicyError, TrainingError
from medfed.protocol.tensors import Weights
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.plan import EvalResult, LocalTrainConfig, TrainResult

log = logging.getLogger("medfed.node")
RECORD_DP_REFUSAL = (
    "record-level DP (DP-SGD) clips and noises every record's gradient inside the training "
    "loop, and a client plan's loop is the hospital's own code, which medfed cannot make "
    "private; use client-level DP (strategy dpfedavg), which acts on the returned arrays"
)
SCAFFOLD_REFUSAL = (
    "SCAFFOLD corrects every gradient step inside the training loop, which a client plan's "
    "fit does not expose; use fedavg, fedprox (mu reaches the client as config['proximal_mu']), "
    "fedopt or a robust aggregator"
)


@dataclass(frozen=True)
class LiveClient:
    """A client a drop-in script already started, and the file version it came from."""

    sha256: str
    client: object


class ClientPlans:
    """The node's client plans: approvals in ``state_dir``, clients loaded once per version."""

    def __init__(self, state_dir: Path, live: Mapping[str, LiveClient] | None = None) -> None:
        self._approvals = ClientApprovals(state_dir)
        self._live = dict(live or {})
        self._loaded: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def admit(self, task: pb.Task) -> ClientPlan:
        """The task's client plan, or PolicyError with the reason it is refused here."""
        refuse_unsupported(task.config)
        entry = self._approvals.entry(task.plan.name)
        source = read_approved(entry, task.plan.sha256)
        live = self._live.get(entry.name)
        if live is not None:
            if live.sha256 != entry.sha256:
                raise PolicyError(
                    "plan_changed",
                    f"client plan {entry.name!r} was re-approved after this runner started "
                    "its script; restart `medfed flower run` to run the approved version",
                )
            client = live.client
        else:
            client = self._load(entry.name, entry.sha256, source, Path(entry.path))
        return ClientPlan(entry.name, client, task_config(task))

    def _load(self, name: str, sha256: str, source: bytes, path: Path) -> object:
        with self._lock:
            key = (name, sha256)
            if key not in self._loaded:
                try:
                    self._loaded = {k: v for k, v in self._loaded.items() if k[0] != name}
                    self._loaded[key] = load_client(source, path)
                except ClientPlanError as exc:
                    raise PolicyError("client_load_failed", str(exc)) from exc
            return self._loaded[key]


def refuse_unsupported(config: pb.TrainConfig) -> None:
    if config.record_dp.epsilon or config.record_dp.noise_multiplier:
        raise PolicyError("unsupported_settings", "client plans refuse " + RECORD_DP_REFUSAL)
    if config.algorithm == "scaffold":
        raise PolicyError("unsupported_settings", "client plans refuse " + SCAFFOLD_REFUSAL)


def task_config(task: pb.Task) -> dict[str, numpy_client.Scalar]:
    """The ``config`` dict ``fit``/``evaluate`` receive: the study's settings and plan options."""
    c = task.config
    return {
        "server_round": int(task.round),
        "total_rounds": int(c.total_rounds),
        "local_epochs": int(c.local_epochs),
        "local_steps": int(c.local_steps),
        "batch_size": int(c.batch_size),
        "optimizer": c.optimizer or "sgd",
        "learning_rate": float(c.learning_rate),
        "proximal_mu": float(c.proximal_mu),
        "seed": int(c.seed),
        **{k: float(v) for k, v in c.plan_options.items()},
    }


class ClientPlan:
    """One task's view of a hospital's client (see the module docstring for what is checked)."""

    version = CLIENT_PLAN_VERSION

    def __init__(self, name: str, client: object, config: Mapping[str, numpy_client.Scalar]):
        self.name = name
        self._client = client
        self._config = dict(config)

    def init_weights(self, n_features: int, seed: int, options: Mapping[str, float]) -> Weights:
        raise TrainingError("a client plan's initial model is the study's declared layout")

    def train(self, weights: Weights, data: Dataset, config: LocalTrainConfig) -> TrainResult:
        if config.dp is not None:
            raise ClientPlanError("client plans refuse " + RECORD_DP_REFUSAL)
        if config.correction is not None:
            raise ClientPlanError("client plans refuse " + SCAFFOLD_REFUSAL)
        settings = self._config | {
            "local_epochs": config.epochs,
            "local_steps": config.steps,
            "batch_size": config.batch_size,
            "optimizer": config.optimizer,
            "learning_rate": config.learning_rate,
            "proximal_mu": config.proximal_mu,
            "seed": config.seed,
        }
        answer = self._call("fit", weights, settings)
        arrays, num_examples, metrics = _three(answer, "fit", "(parameters, num_examples, metrics)")
        new = check_arrays(weights, arrays, self.name)
        n = check_count(num_examples, "fit", self.name)
        return TrainResult(new, n, check_metrics(metrics, self.name))

    def evaluate(self, weights: Weights, data: Dataset) -> EvalResult:
        answer = self._call("evaluate", weights, dict(self._config))
        loss, num_examples, metrics = _three(answer, "evaluate", "(loss, num_examples, metrics)")
        if not _number(loss):
            raise ClientPlanError(f"client {self.name!r}: evaluate's loss {loss!r} is not a number")
        checked = check_metrics({"loss": float(loss), **_mapping(metrics, self.name)}, self.name)
        return EvalResult(check_count(num_examples, "evaluate", self.name), checked)

    def predict(self, weights: Weights, data: Dataset) -> npt.NDArray[np.float64]:
        raise TrainingError(
            f"client plan {self.name!r} has no predict: its model is the hospital's own code"
        )

    def _call(self, method: str, weights: Weights, config: dict[str, Any]) -> object:
        function: Callable[..., object] = getattr(self._client, method)
        parameters = [np.array(a, copy=True) for a in weights.values()]
        try:
            return function(parameters, config)
        except (Exception, SystemExit) as exc:  # the hospital's code must not take the node down
            log.exception("client plan %s: %s raised", self.name, method)
            raise ClientPlanError(f"client {self.name!r}: {method} raised {exc!r}") from exc


def _three(answer: object, method: str, shape: str) -> tuple[Any, Any, Any]:
    if not isinstance(answer, tuple | list) or len(answer) != 3:
        raise ClientPlanError(f"client {method} must return {shape}, got {type(answer).__name__}")
    return answer[0], answer[1], answer[2]


def check_arrays(layout: Weights, returned: object, name: str) -> Weights:
    """The returned arrays named by the layout, after checking count, shapes, dtypes, finiteness."""
    try:
        arrays = numpy_client.as_arrays(returned)
    except TypeError as exc:
        raise ClientPlanError(f"client {name!r}: fit: {exc}") from exc
    names = list(layout)
    if len(arrays) != len(names):
        raise ClientPlanError(
            f"client {name!r} returned {len(arrays)} arrays; the study's layout has "
            f"{len(names)} ({', '.join(names)})"
        )
    out: Weights = {}
    for key, array in zip(names, arrays, strict=True):
        want = layout[key]
        if array.shape != want.shape:
            raise ClientPlanError(
                f"client {name!r} returned shape {array.shape} for {key!r}; "
                f"the study's layout says {want.shape}"
            )
        if not np.can_cast(array.dtype, want.dtype, casting="same_kind"):
            raise ClientPlanError(
                f"client {name!r} returned dtype {array.dtype} for {key!r}, "
                f"which does not cast to the layout's {want.dtype}"
            )
        value = np.ascontiguousarray(array, dtype=want.dtype)
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise ClientPlanError(f"client {name!r} returned NaN or infinity in {key!r}")
        out[key] = value
    return out


def check_count(value: object, method: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ClientPlanError(
            f"client {name!r}: {method}'s num_examples must be a positive integer, got {value!r}"
        )
    return int(value)


def check_metrics(metrics: object, name: str) -> dict[str, float]:
    """Numeric metrics as floats (strings and bytes are dropped); non-finite ones refused."""
    out: dict[str, float] = {}
    for key, value in _mapping(metrics, name).items():
        if not _number(value):
            continue
        number = float(value)
        if not math.isfinite(number):
            raise ClientPlanError(f"client {name!r}: metric {key!r} is {number}")
        out[str(key)] = number
    return out


def _mapping(metrics: object, name: str) -> Mapping[str, object]:
    if not isinstance(metrics, Mapping):
        raise ClientPlanError(f"client {name!r}: metrics must be a dict, got {metrics!r}")
    return metrics


def _number(value: object) -> TypeGuard[int | float | np.integer[Any] | np.floating[Any]]:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
