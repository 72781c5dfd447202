"""A model update as one vector in Z_(2^32), and the survivors' sum back as a model.

Example-weighted FedAvg under secure aggregation: each node folds its weight in before masking,
encoding ``w_u * (local_u - global)`` (fixed point, :mod:`medfed.secagg.quantize`) followed by
``w_u`` itself as an exact integer; the coordinator learns only ``sum w_u (local_u - global)`` and
``sum w_u``, whose ratio added to the global model is FedAvg's weighted mean.

A strategy's extra reply tensors (SCAFFOLD's control-variate change) ride in the same vector,
unweighted, after the model: the coordinator divides their sum by the number of survivors.
Layout: model change (model order) | extras (name order) | weight.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from medfed.errors import SecAggError
from medfed.protocol.tensors import Manifest
from medfed.secagg.quantize import FixedPoint

NDArray = npt.NDArray[np.generic]
U32 = npt.NDArray[np.uint32]
MASKED = "secagg.masked"
"""The one tensor a secure training reply carries."""


def dimension(model: Mapping[str, NDArray], extras: Manifest | None = None) -> int:
    """Words of a round's vector: every model and extra element, plus the weight."""
    size = sum(int(np.asarray(a).size) for a in model.values())
    return size + sum(t.size for t in (extras.tensors if extras else ())) + 1


def split_reply(
    fetched: Mapping[str, NDArray], wire: Mapping[str, NDArray]
) -> tuple[dict[str, NDArray], dict[str, NDArray], dict[str, NDArray]]:
    """(global model, local model, extras) from what the node fetched (model + broadcast
    state) and what it would send (model + extras): the model is what both hold."""
    names = [k for k in fetched if k in wire]
    extras = {k: wire[k] for k in sorted(wire) if k not in fetched}
    return {k: fetched[k] for k in names}, {k: wire[k] for k in names}, extras


def encode_update(
    global_model: Mapping[str, NDArray],
    local_model: Mapping[str, NDArray],
    weight: int,
    encoding: FixedPoint,
    rng: np.random.Generator,
    extras: Mapping[str, NDArray] | None = None,
) -> tuple[U32, int]:
    """The node's vector before masking, and how many coordinates the clip range cut."""
    if list(local_model) != list(global_model):
        raise SecAggError("the local model's tensors differ from the global model's")
    if not 0 < weight < 2**32:
        raise SecAggError(f"an update's weight must be in 1..2^32-1, got {weight}")
    parts = [
        weight * (np.asarray(local_model[k], np.float64) - np.asarray(g, np.float64)).ravel()
        for k, g in global_model.items()
    ]
    parts += [np.asarray(v, np.float64).ravel() for _, v in sorted((extras or {}).items())]
    words, clipped = encoding.encode(np.concatenate(parts or [np.zeros(0)]), rng)
    return np.concatenate([words, np.array([weight], np.uint32)]), clipped


def decode_sum(
    total: U32,
    global_model: Mapping[str, NDArray],
    encoding: FixedPoint,
    survivors: int = 1,
    extras: Manifest | None = None,
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, npt.NDArray[np.float64]], int]:
    """The survivors' weighted-mean model, the plain mean of their extras (float64), and their
    total weight."""
    if total.shape != (dimension(global_model, extras),):
        raise SecAggError("the unmasked sum does not have the round's length")
    weight = int(total[-1])
    if weight == 0:
        raise SecAggError("the unmasked total weight is zero")
    values = encoding.decode(total[:-1])
    model: dict[str, npt.NDArray[np.float64]] = {}
    at = 0
    for name, g in global_model.items():
        array = np.asarray(g)
        change = values[at : at + array.size].reshape(array.shape) / weight
        model[name] = array.astype(np.float64) + change
        at += array.size
    means: dict[str, npt.NDArray[np.float64]] = {}
    for spec in sorted(extras.tensors if extras else (), key=lambda t: t.name):
        means[spec.name] = values[at : at + spec.size].reshape(spec.shape) / survivors
        at += spec.size
    return model, means, weight
