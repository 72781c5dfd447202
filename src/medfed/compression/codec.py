"""Compressed model updates: what a node sends instead of its dense weights, and the way back.

A node sends its *delta*, ``local - global``, because a delta compresses far better than weights
(small, centred on zero) and because dropping part of a delta only delays it (error feedback),
where dropping part of the weights would corrupt them. The coordinator rebuilds dense weights
``global + decoded delta`` and aggregates them as usual. Only floating-point tensors are
compressed; integer and bool tensors (BatchNorm's ``num_batches_tracked``) travel whole.

- ``"q8"``: 8-bit stochastic quantization per tensor (``quantize``), about 4x smaller than float32.
- ``"topk"``: the ``ratio`` largest coordinates per tensor as int32 index + float32 value
  (``topk``), ``2 * ratio`` of float32's size.

With ``error_feedback`` the node keeps its residual, ``(delta + old residual) - decoded``, and adds
it to the next delta (Stich et al., 2018, "Sparsified SGD with Memory"; Karimireddy et al., 2019,
"Error Feedback Fixes SignSGD"): what one round drops or rounds away is sent in a later one.

Every compressed update has a fixed layout, ``wire_manifest``, known before the upload starts, so
the coordinator checks a manifest exactly as it does for dense weights. Wire tensor names are
``q8/NAME/codes`` and ``q8/NAME/range`` (lo, scale), or ``topk/NAME/index`` and
``topk/NAME/value``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from medfed.compression.quantize import dequantize8, quantize8
from medfed.compression.topk import MAX_ELEMENTS, densify, sparsify, topk_count
from medfed.errors import ConfigError, NonFiniteError, ProtocolError
from medfed.protocol.tensors import (
    Manifest,
    TensorSpec,
    Weights,
    check_finite,
    manifest_of,
    same_layout,
)

NDArray = npt.NDArray[np.generic]
Compression = Literal["none", "q8", "topk"]


@dataclass(frozen=True)
class CompressionConfig:
    """How a study's nodes compress their updates; node and coordinator must hold the same one."""

    kind: Compression = "none"
    topk_ratio: float = 0.01
    """Fraction of each float tensor's coordinates a ``"topk"`` update carries, in (0, 1]."""
    error_feedback: bool = True
    """Carry what compression lost into the next round (``"q8"`` and ``"topk"``)."""

    def __post_init__(self) -> None:
        if self.kind not in get_args(Compression):
            raise ConfigError(
                f"unknown compression {self.kind!r}; use one of {list(get_args(Compression))}"
            )
        ratio = self.topk_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float):
            raise ConfigError(f"topk_ratio must be a number, got {type(ratio).__name__}")
        if not (math.isfinite(ratio) and 0 < ratio <= 1):
            raise ConfigError(f"topk_ratio must be in (0, 1], got {ratio}")
        if not isinstance(self.error_feedback, bool):
            raise ConfigError(f"error_feedback must be true or false, got {self.error_feedback!r}")


def wire_manifest(config: CompressionConfig, model: Manifest) -> Manifest:
    """The exact layout of a ``config`` update for a model of layout ``model``."""
    if config.kind == "none":
        return model
    specs: list[TensorSpec] = []
    for spec in model.tensors:
        if not _is_float(spec):
            specs.append(spec)
        elif config.kind == "q8":
            specs.append(TensorSpec(_name("q8", spec.name, "codes"), "uint8", spec.shape))
            specs.append(TensorSpec(_name("q8", spec.name, "range"), "float32", (2,)))
        else:
            if spec.size > MAX_ELEMENTS:
                raise ConfigError(f"tensor {spec.name!r} is too large for top-k int32 indices")
            k = topk_count(spec.size, config.topk_ratio)
            specs.append(TensorSpec(_name("topk", spec.name, "index"), "int32", (k,)))
            specs.append(TensorSpec(_name("topk", spec.name, "value"), "float32", (k,)))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        raise ProtocolError(f"model tensor names collide with {config.kind} wire names: {clash}")
    return Manifest(tuple(specs))


def wire_bytes(config: CompressionConfig, model: Manifest) -> int:
    """Bytes of tensor data in one ``config`` update for a model of layout ``model``."""
    return wire_manifest(config, model).total_bytes


def encode(
    config: CompressionConfig,
    new: Mapping[str, NDArray],
    global_: Mapping[str, NDArray],
    residual: Mapping[str, NDArray] | None,
    rng: np.random.Generator,
) -> tuple[Weights, Weights]:
    """The wire tensors (in ``wire_manifest`` order) of the update ``new - global_``, and the
    residual to pass to the next call.

    ``residual`` is the previous call's (None or empty in the first round; ignored without
    error feedback). The new residual holds one float32 tensor per float tensor of the model,
    and is empty for ``"none"`` or without error feedback.
    """
    if config.kind == "none":
        return dict(new), {}
    model = manifest_of(global_)
    same_layout(model, manifest_of(new))
    carried = _carried(residual, model) if config.error_feedback else None
    wire: Weights = {}
    kept: Weights = {}
    for spec in model.tensors:
        name = spec.name
        if not _is_float(spec):
            wire[name] = np.asarray(new[name])
            continue
        target = _delta(new[name], global_[name])
        if carried is not None:
            target = target + carried[name]
        if not bool(np.isfinite(target).all()):
            raise NonFiniteError(f"tensor {name!r}: the update holds NaN or infinity")
        if config.kind == "q8":
            codes, lo, scale = quantize8(target, rng)
            wire[_name("q8", name, "codes")] = codes
            wire[_name("q8", name, "range")] = np.array([lo, scale], dtype=np.float32)
            decoded = dequantize8(codes, lo, scale)
        else:
            index, value = sparsify(target, topk_count(spec.size, config.topk_ratio))
            wire[_name("topk", name, "index")] = index
            wire[_name("topk", name, "value")] = value
            decoded = densify(index, value, spec.shape)
        if carried is not None:
            kept[name] = target - decoded
    return wire, kept


def decode(
    config: CompressionConfig, wire: Mapping[str, NDArray], global_: Mapping[str, NDArray]
) -> Weights:
    """Dense weights ``global_ + decoded delta``, each cast to its ``global_`` tensor's dtype.

    The wire layout is checked against ``wire_manifest`` first, and every value after it:
    a malformed update raises ``ProtocolError`` (``NonFiniteError`` for NaN or infinity).
    """
    model = manifest_of(global_)
    try:
        same_layout(wire_manifest(config, model), manifest_of(wire))
    except ProtocolError as exc:
        raise ProtocolError(
            f"{config.kind!r} update does not have the expected layout: {exc}"
        ) from None
    if config.kind == "none":
        out = dict(wire)
    else:
        out = {}
        for spec in model.tensors:
            if not _is_float(spec):
                out[spec.name] = np.asarray(wire[spec.name])
                continue
            delta = _decoded_delta(config, wire, spec)
            with np.errstate(over="ignore"):
                dense = np.asarray(global_[spec.name], dtype=np.float64) + delta
                out[spec.name] = dense.astype(spec.numpy_dtype)
    check_finite(out)
    return out


def _decoded_delta(
    config: CompressionConfig, wire: Mapping[str, NDArray], spec: TensorSpec
) -> npt.NDArray[np.float32]:
    try:
        if config.kind == "q8":
            lo, scale = (float(x) for x in wire[_name("q8", spec.name, "range")])
            codes = np.asarray(wire[_name("q8", spec.name, "codes")], dtype=np.uint8)
            return dequantize8(codes, lo, scale)
        index = np.asarray(wire[_name("topk", spec.name, "index")])
        value = np.asarray(wire[_name("topk", spec.name, "value")])
        return densify(index, value, spec.shape)
    except ProtocolError as exc:
        raise type(exc)(f"tensor {spec.name!r}: {exc}") from None


def _carried(
    residual: Mapping[str, NDArray] | None, model: Manifest
) -> dict[str, npt.NDArray[np.float32]]:
    """The residual to add, zeros in the first round; refused if it belongs to another model."""
    floats = [s for s in model.tensors if _is_float(s)]
    if not residual:
        return {s.name: np.zeros(s.shape, dtype=np.float32) for s in floats}
    expected = Manifest(tuple(TensorSpec(s.name, "float32", s.shape) for s in floats))
    try:
        same_layout(expected, manifest_of(residual))
    except ProtocolError as exc:
        raise ProtocolError(
            f"the error-feedback residual does not fit this model ({exc}); "
            "start from an empty residual when the model changes"
        ) from None
    return {name: np.asarray(array, dtype=np.float32) for name, array in residual.items()}


def _delta(new: NDArray, old: NDArray) -> npt.NDArray[np.float32]:
    """``new - old`` computed in float64, then float32 (which may overflow to inf: caught later)."""
    with np.errstate(over="ignore"):
        diff = np.asarray(new, dtype=np.float64) - np.asarray(old, dtype=np.float64)
        return diff.astype(np.float32)


def _is_float(spec: TensorSpec) -> bool:
    return np.dtype(spec.dtype).kind == "f"


def _name(kind: str, tensor: str, part: str) -> str:
    return f"{kind}/{tensor}/{part}"
