"""Flower's ``NumPyClient`` contract, for hospitals that write their client without ``flwr``.

The method signatures are Flower's (flwr 1.x, ``flwr.client.NumPyClient``): parameters travel
as an ordered list of NumPy arrays, ``config`` is a dict of scalars chosen by the study, and

    fit(parameters, config) -> (parameters, num_examples, metrics)
    evaluate(parameters, config) -> (loss, num_examples, metrics)

A client written against the real ``flwr`` works unchanged: medfed only calls these methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Scalar = bool | bytes | float | int | str
Config = dict[str, Scalar]
NDArrays = list[npt.NDArray[Any]]
FitRes = tuple[NDArrays, int, dict[str, Scalar]]
EvaluateRes = tuple[float, int, dict[str, Scalar]]


class NumPyClient:
    """Subclass and override ``fit`` and ``evaluate`` (and ``get_parameters``, used by
    ``medfed flower layout`` to print the study's parameter layout)."""

    def get_properties(self, config: Config) -> dict[str, Scalar]:
        return {}

    def get_parameters(self, config: Config) -> NDArrays:
        raise NotImplementedError("this client does not implement get_parameters")

    def fit(self, parameters: NDArrays, config: Config) -> FitRes:
        raise NotImplementedError("this client does not implement fit")

    def evaluate(self, parameters: NDArrays, config: Config) -> EvaluateRes:
        raise NotImplementedError("this client does not implement evaluate")

    def to_client(self) -> WrappedClient:
        """Flower's ``NumPyClient.to_client()``; medfed unwraps it again (``numpy_client``)."""
        return WrappedClient(self)


class WrappedClient:
    """What ``to_client()`` returns: a holder of the NumPy client, as Flower's wrapper is."""

    def __init__(self, numpy_client: NumPyClient) -> None:
        self.numpy_client = numpy_client


def unwrap(client: object) -> object:
    """The NumPy client behind ``client``: itself, or the one a ``to_client()`` wrapper holds
    (medfed's, or the real flwr's, which keeps it in ``numpy_client`` too)."""
    inner = getattr(client, "numpy_client", None)
    return client if inner is None else inner


def is_numpy_client(client: object) -> bool:
    """Duck-typed: anything with callable ``fit`` and ``evaluate`` is served."""
    return callable(getattr(client, "fit", None)) and callable(getattr(client, "evaluate", None))


def as_arrays(parameters: object) -> list[npt.NDArray[Any]]:
    """``parameters`` as a list of arrays (a tuple or any sequence of array-likes is accepted)."""
    if isinstance(parameters, np.ndarray) or not isinstance(parameters, list | tuple):
        raise TypeError(
            f"parameters must be a list of NumPy arrays, got {type(parameters).__name__}"
        )
    return [np.asarray(p) for p in parameters]
