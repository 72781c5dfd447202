"""A model update as one vector in Z_(2^32), and the survivors' sum back as a model.

Example-weighted FedAvg under secure aggregation: each node folds its weight in before masking,
encoding ``w_u * (local_u - global)`` (fixed point, :mod:`medfed.secagg.quantize`) followed by
``w_u`` itself as an exact integer; the coordinator learns only ``sum w_u (local_u - global)`` and
``sum w_u``, whose ratio added to the global model is FedAvg's weighted mean.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from medfed.errors import SecAggError
from medfed.secagg.quantize import FixedPoint

NDArray = npt.NDArray[np.generic]
U32 = npt.NDArray[np.uint32]
MASKED = "secagg.masked"
"""The one tensor a secure training reply carries."""


def dimension(model: Mapping[str, NDArray]) -> int:
    """Words of a round's vector: every model element, plus the weight."""
    return sum(int(np.asarray(a).size) for a in model.values()) + 1


def encode_update(
    global_model: Mapping[str, NDArray],
    local_model: Mapping[str, NDArray],
    weight: int,
    encoding: FixedPoint,
    rng: np.random.Generator,
) -> tuple[U32, int]:
    """The node's vector before masking, and how many coordinates the clip range cut."""
    if list(local_model) != list(global_model):
        raise SecAggError("the local model's tensors differ from the global model's")
    if not 0 < weight < 2**32:
        raise SecAggError(f"an update's weight must be in 1..2^32-1, got {weight}")
    change = np.concatenate(
        [
            (np.asarray(local_model[k], np.float64) - np.asarray(g, np.float64)).ravel()
            for k, g in global_model.items()
        ]
        or [np.zeros(0)]
    )
    words, clipped = encoding.encode(change * weight, rng)
    return np.concatenate([words, np.array([weight], np.uint32)]), clipped


def decode_sum(
    total: U32, global_model: Mapping[str, NDArray], encoding: FixedPoint
) -> tuple[dict[str, npt.NDArray[np.float64]], int]:
    """The survivors' weighted-mean model (float64) and their total weight."""
    if total.shape != (dimension(global_model),):
        raise SecAggError("the unmasked sum does not have the model's length")
    weight = int(total[-1])
    if weight == 0:
        raise SecAggError("the unmasked total weight is zero")
    change = encoding.decode(total[:-1]) / weight
    out: dict[str, npt.NDArray[np.float64]] = {}
    at = 0
    for name, g in global_model.items():
        array = np.asarray(g)
        out[name] = array.astype(np.float64) + change[at : at + array.size].reshape(array.shape)
        at += array.size
    return out, weight
