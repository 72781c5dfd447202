"""Receiving one node's reply: judged on its own, spooled to disk, folded only once fully valid.

The raw bytes go to a spool file as they arrive, so memory stays O(chunk) per upload and the
aggregate stays O(model) however many hospitals reply at once. Only after the whole update has
arrived, matched its manifest and hash, and proved finite is it added to the round's sum; a NaN in
the last byte therefore costs nothing but that node's own contribution.
"""

from __future__ import annotations

import math
import threading
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medfed.coordinator.rounds import OpenRound, Rejected, TaskBoard, TaskSlot
from medfed.errors import ProtocolError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb

MAX_EXAMPLES = 1_000_000_000
MAX_METRICS = 64


def receive(
    chunks: Iterator[pb.UpdateChunk], node: str, board: TaskBoard, spool_dir: Path
) -> pb.SubmitReply:
    """Validate and apply one reply; never raises for bad input, answers with the reason instead."""
    first = next(chunks, None)
    if first is None or first.WhichOneof("part") != "header":
        return pb.SubmitReply(accepted=False, reason="an update must start with its header")
    header = first.header
    round_ = board.find(header.task_id)
    if round_ is None:
        return pb.SubmitReply(
            accepted=False,
            reason=f"unknown or expired task {header.task_id!r} "
            "(stale round or coordinator restart)",
        )
    try:
        slot = round_.begin(header.task_id, node, header.study_id, header.round)
    except Rejected as exc:
        return pb.SubmitReply(accepted=False, reason=str(exc))
    try:
        _apply(round_, slot, header, chunks, spool_dir, board.fold_lock)
    except (Rejected, ProtocolError) as exc:
        round_.reject(slot, str(exc))
        return pb.SubmitReply(accepted=False, reason=str(exc))
    return pb.SubmitReply(accepted=True)


def _apply(
    round_: OpenRound,
    slot: TaskSlot,
    header: pb.UpdateHeader,
    chunks: Iterator[pb.UpdateChunk],
    spool_dir: Path,
    fold_lock: threading.Lock,
) -> None:
    metrics = _check_header(header)
    if slot.task.kind == pb.TASK_KIND_EVALUATE:
        if next(chunks, None) is not None:
            raise Rejected("an evaluation reply carries no weights")
        round_.accept_eval(slot, header.num_examples, metrics)
        return
    if header.num_examples == 0:
        raise Rejected("a training update must report at least one example")
    if round_.manifest is None:
        raise Rejected("round has no model layout")
    first = next(chunks, None)
    if first is None or first.WhichOneof("part") != "manifest":
        raise Rejected("the update header must be followed by its manifest")
    manifest = tensors.manifest_from_proto(first.manifest)
    tensors.same_layout(round_.manifest, manifest)  # exact layout, so also the per-study size cap
    with tempfile.NamedTemporaryFile(dir=spool_dir, prefix="update-", suffix=".raw") as spool:
        digest = _spool(chunks, manifest, spool)
        if digest != first.manifest.sha256:
            raise ProtocolError("update data does not match the SHA-256 in its manifest")
        with fold_lock:
            weights = _memmap(manifest, Path(spool.name))
            tensors.check_finite(weights)
            round_.accept_update(slot, weights, header.num_examples, metrics)
            del weights


def _check_header(header: pb.UpdateHeader) -> dict[str, float]:
    if header.num_examples > MAX_EXAMPLES:
        raise Rejected(f"implausible example count {header.num_examples}")
    if len(header.metrics) > MAX_METRICS:
        raise Rejected(f"too many metrics ({len(header.metrics)} > {MAX_METRICS})")
    metrics = dict(header.metrics)
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise Rejected(f"metrics {bad} are not finite")
    return metrics


def _spool(chunks: Iterator[pb.UpdateChunk], manifest: tensors.Manifest, spool: object) -> str:
    digest = tensors.hasher(manifest)
    expected, received = manifest.total_bytes, 0
    write = spool.write  # type: ignore[attr-defined]
    for message in chunks:
        if message.WhichOneof("part") != "data":
            raise ProtocolError("only data chunks may follow the manifest")
        data = message.data
        received += len(data)
        if received > expected:
            raise ProtocolError(f"update is larger than its manifest's {expected} bytes")
        digest.update(data)
        write(data)
    if received != expected:
        raise ProtocolError(f"update ended after {received} of {expected} bytes")
    spool.flush()  # type: ignore[attr-defined]
    return digest.hexdigest()


def _memmap(manifest: tensors.Manifest, path: Path) -> tensors.Weights:
    out: tensors.Weights = {}
    for spec, offset in manifest.offsets():
        if spec.size == 0:
            out[spec.name] = np.zeros(spec.shape, dtype=spec.numpy_dtype)
            continue
        out[spec.name] = np.memmap(
            path, dtype=spec.numpy_dtype, mode="r", offset=offset, shape=spec.shape
        )
    return out
