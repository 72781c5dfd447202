"""Receiving one node's reply: judged on its own, staged, folded only once fully valid.

An update is received into a staging buffer, checked whole (exact layout and size, hash when the
sender gave one, every value finite) and only then added to the round's running sum; a NaN in the
last byte costs nothing but that node's own contribution. Staging buffers come from a small fixed
pool (:mod:`medfed.coordinator.staging`), so coordinator memory stays O(model) however many
hospitals upload at once: an upload the pool cannot take yet waits, and gRPC flow control holds
its sender back meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from medfed.coordinator.audit import receive_audit
from medfed.coordinator.claims import check_examples, check_metrics
from medfed.coordinator.rounds import OpenRound, Rejected, TaskBoard, TaskSlot
from medfed.coordinator.staging import StagingPool
from medfed.coordinator.stats import receive_summary
from medfed.errors import LedgerError, ProtocolError, StrategyError, TrainingError
from medfed.protocol import framing, streams, tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.score_histogram import ScoreHistogram

Attribute = Callable[[pb.UpdateHeader, str], Mapping[str, object]]
"""(header, SHA-256 of the data received) -> the signed proof to record, or LedgerError."""
MAX_EXAMPLES = 1_000_000_000
MAX_METRICS = 64


def receive(
    frames: Iterator[bytes],
    node: str,
    board: TaskBoard,
    pool: StagingPool,
    on_round: Callable[[OpenRound], None] | None = None,
    attribute: Attribute | None = None,
) -> pb.SubmitReply:
    """Validate and apply one reply; never raises for bad input, answers with the reason instead.

    ``frames`` are framed ``UpdateChunk`` messages (:mod:`medfed.protocol.framing`);
    ``on_round`` learns the round the reply claimed a slot in (to cut the upload when it closes);
    ``attribute`` checks the reply's signature against what arrived and returns the proof the
    ledger records (:class:`medfed.ledger.updates.UpdateVerifier`); None: replies are not checked.
    """
    try:
        header = _read_header(frames)
    except ProtocolError as exc:
        return pb.SubmitReply(accepted=False, reason=str(exc))
    round_ = board.find(header.task_id)
    if round_ is None and board.cancelled(header.study_id):
        return pb.SubmitReply(
            accepted=False, reason=f"study {header.study_id!r} was cancelled: reply dropped"
        )
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
    if on_round is not None:
        on_round(round_)
    try:
        _apply(round_, slot, header, frames, pool, attribute)
    except (Rejected, ProtocolError, StrategyError) as exc:
        round_.reject(slot, str(exc))
        return pb.SubmitReply(accepted=False, reason=str(exc))
    return pb.SubmitReply(accepted=True)


def _read_header(frames: Iterator[bytes]) -> pb.UpdateHeader:
    first = next(frames, None)
    field, payload = framing.unframe(first) if first is not None else (0, memoryview(b""))
    if field != framing.UPDATE_HEADER:
        raise ProtocolError("an update must start with its header")
    return framing.parse_header(payload)


def _apply(
    round_: OpenRound,
    slot: TaskSlot,
    header: pb.UpdateHeader,
    frames: Iterator[bytes],
    pool: StagingPool,
    attribute: Attribute | None = None,
) -> None:
    metrics = _check_header(header)
    if slot.task.kind == pb.TASK_KIND_STATS:  # a site's Table 1 summary, not a model update
        receive_summary(round_, slot, header, frames, pool)
        return
    if slot.task.kind == pb.TASK_KIND_AUDIT:  # aggregate numbers only (coordinator/audit.py)
        receive_audit(round_, slot, header, frames)
        return
    plain_eval = slot.task.kind == pb.TASK_KIND_EVALUATE and not slot.task.HasField("secagg")
    if header.HasField("score_histogram") and (not plain_eval or slot.task.he_context_sha256):
        raise Rejected("a score histogram travels in the clear only with a plain evaluation")
    if plain_eval:
        if next(frames, None) is not None:
            raise Rejected("an evaluation reply carries no weights")
        sealed = None
        if slot.task.he_context_sha256:
            if not header.encrypted_metrics or metrics:
                raise Rejected("this study's evaluation metrics must arrive encrypted (CKKS) only")
            sealed = (tuple(header.encrypted_metric_names), bytes(header.encrypted_metrics))
        else:  # under CKKS the count travels inside the ciphertext
            check_examples(header.num_examples, slot.max_examples, "test")
        histogram = _histogram(header) if header.HasField("score_histogram") else None
        _attribute(attribute, slot, header, "")
        round_.accept_eval(slot, header.num_examples, metrics, sealed, histogram)
        return
    split = "test" if slot.task.kind == pb.TASK_KIND_EVALUATE else "train"
    check_examples(header.num_examples, slot.max_examples, split)
    if round_.manifest is None:
        raise Rejected("round has no model layout")
    second = next(frames, None)
    field, payload = framing.unframe(second) if second is not None else (0, memoryview(b""))
    if field != framing.UPDATE_MANIFEST:
        raise Rejected("the update header must be followed by its manifest")
    wire_manifest = framing.parse_manifest(payload)
    manifest = tensors.manifest_from_proto(wire_manifest)
    tensors.same_layout(round_.manifest, manifest)  # exact layout, so also the per-study size cap
    wait_s = max(0.1, round_.deadline - time.monotonic())
    with pool.buffer(manifest.total_bytes, wait_s, owner=slot.node) as staging:
        streams.fill(staging.frames(frames), staging.view, framing.UPDATE_DATA)
        staging.received()  # the next upload may stream in while this one is checked and folded
        staged = staging.view
        digest = tensors.sha256_of(manifest, [staged]) if wire_manifest.sha256 or attribute else ""
        if wire_manifest.sha256 and digest != wire_manifest.sha256:
            raise ProtocolError("update data does not match the SHA-256 in its manifest")
        _attribute(attribute, slot, header, digest)
        weights = tensors.decode(manifest, staged)
        tensors.check_finite(weights)
        round_.accept_update(slot, weights, header.num_examples, metrics)
        del weights


def _attribute(
    attribute: Attribute | None, slot: TaskSlot, header: pb.UpdateHeader, digest: str
) -> None:
    if attribute is None:
        return
    try:
        slot.proof = attribute(header, digest)
    except LedgerError as exc:
        raise Rejected(f"signature: {exc}") from None


def _histogram(header: pb.UpdateHeader) -> ScoreHistogram:
    """The reply's score histogram, which must count exactly the examples it reports."""
    wire = header.score_histogram
    if max((*wire.positives, *wire.negatives), default=0) > header.num_examples:
        raise Rejected("a score histogram bin counts more rows than the reply reports")
    try:
        histogram = ScoreHistogram(
            np.array(wire.positives, dtype=np.int64), np.array(wire.negatives, dtype=np.int64)
        )
    except TrainingError as exc:
        raise Rejected(f"bad score histogram: {exc}") from None
    if histogram.total != header.num_examples:
        raise Rejected(
            f"the score histogram counts {histogram.total} rows, the reply {header.num_examples}"
        )
    return histogram


def _check_header(header: pb.UpdateHeader) -> dict[str, float]:
    if header.num_examples > MAX_EXAMPLES:
        raise Rejected(f"implausible example count {header.num_examples}")
    if len(header.metrics) > MAX_METRICS:
        raise Rejected(f"too many metrics ({len(header.metrics)} > {MAX_METRICS})")
    metrics = dict(header.metrics)
    check_metrics(metrics)
    return metrics
