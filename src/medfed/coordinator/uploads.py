"""Receiving one node's reply: judged on its own, staged, folded only once fully valid.

An update is received into a staging buffer, checked whole (exact layout and size, hash when the
sender gave one, every value finite) and only then added to the round's running sum; a NaN in the
last byte costs nothing but that node's own contribution. Staging buffers come from a small fixed
pool, so coordinator memory stays O(model) however many hospitals upload at once: an upload that
finds the pool empty waits, and gRPC flow control holds its sender back meanwhile.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from medfed.coordinator.rounds import OpenRound, Rejected, TaskBoard, TaskSlot
from medfed.errors import ProtocolError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb

MAX_EXAMPLES = 1_000_000_000
MAX_METRICS = 64


class StagingPool:
    """At most ``size`` staging buffers, allocated on demand and freed when no upload waits."""

    def __init__(self, size: int = 2) -> None:
        self._free: list[bytearray] = [bytearray() for _ in range(size)]
        self._waiting = 0
        self._cond = threading.Condition()

    @contextmanager
    def buffer(self, nbytes: int, timeout_s: float) -> Iterator[memoryview]:
        with self._cond:
            self._waiting += 1
            try:
                if not self._cond.wait_for(lambda: bool(self._free), timeout=timeout_s):
                    raise Rejected("coordinator busy: no staging buffer free before the deadline")
            finally:
                self._waiting -= 1
            buf = self._free.pop()
        try:
            if len(buf) < nbytes:
                buf = bytearray(nbytes)
            yield memoryview(buf)[:nbytes]
        finally:
            with self._cond:
                self._free.append(buf if self._waiting else bytearray())
                self._cond.notify()


def receive(
    chunks: Iterator[pb.UpdateChunk], node: str, board: TaskBoard, pool: StagingPool
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
        _apply(round_, slot, header, chunks, pool)
    except (Rejected, ProtocolError) as exc:
        round_.reject(slot, str(exc))
        return pb.SubmitReply(accepted=False, reason=str(exc))
    return pb.SubmitReply(accepted=True)


def _apply(
    round_: OpenRound,
    slot: TaskSlot,
    header: pb.UpdateHeader,
    chunks: Iterator[pb.UpdateChunk],
    pool: StagingPool,
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
    wait_s = max(0.1, round_.deadline - time.monotonic())
    with pool.buffer(manifest.total_bytes, wait_s) as staged:
        _fill(chunks, staged)
        if first.manifest.sha256 and tensors.sha256_of(manifest, [staged]) != first.manifest.sha256:
            raise ProtocolError("update data does not match the SHA-256 in its manifest")
        weights = tensors.decode(manifest, staged)
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


def _fill(chunks: Iterator[pb.UpdateChunk], staged: memoryview) -> None:
    expected, filled = len(staged), 0
    for message in chunks:
        if message.WhichOneof("part") != "data":
            raise ProtocolError("only data chunks may follow the manifest")
        data = message.data
        end = filled + len(data)
        if end > expected:
            raise ProtocolError(f"update is larger than its manifest's {expected} bytes")
        staged[filled:end] = data
        filled = end
    if filled != expected:
        raise ProtocolError(f"update ended after {filled} of {expected} bytes")
