"""Reading a researcher's study submission: everything is checked before anything is stored.

A submission that cannot run must be refused at once with its reason, never accepted to fail
later (before round 1, or with a traceback from the model store): the spec and its strategy, the
initial model's manifest (size computed exactly, capped), its bytes and hash, and its tensor names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from medfed.coordinator.replies import build_strategy
from medfed.coordinator.spec import StudySpec, spec_from_proto
from medfed.errors import ConfigError, ProtocolError
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb

MAX_INITIAL_MODEL_BYTES = 4 << 30
RESERVED_NAMES = {
    "__metadata__": "reserved by the safetensors format the model store writes",
}
"""Tensor names a model may not use, and why."""
RESERVED_CHARACTERS = {
    "/": "marks a strategy's own tensors (SCAFFOLD's 'scaffold/c/<name>') at the nodes",
}


def read_submission(
    chunks: Iterator[pb.SubmitStudyChunk],
) -> tuple[StudySpec, tensors.Weights, bytes]:
    """Spec, then optionally the researcher's CKKS public context, then the initial model."""
    first = next(chunks, None)
    if first is None or first.WhichOneof("part") != "spec":
        raise ProtocolError("a study submission starts with its spec")
    spec = spec_from_proto(first.spec)
    if spec.min_nodes > 10_000:
        raise ConfigError("min_nodes is implausibly large")
    build_strategy(spec)
    second = next(chunks, None)
    he_context = b""
    if second is not None and second.WhichOneof("part") == "he_public_context":
        he_context = second.he_public_context
        second = next(chunks, None)
    if second is None or second.WhichOneof("part") != "manifest":
        raise ProtocolError("the spec must be followed by the initial model's manifest")
    manifest = tensors.manifest_from_proto(second.manifest, max_bytes=MAX_INITIAL_MODEL_BYTES)
    check_tensor_names(t.name for t in manifest.tensors)
    data = bytearray()
    for message in chunks:
        if message.WhichOneof("part") != "data":
            raise ProtocolError("only data chunks may follow the manifest")
        data += message.data
        if len(data) > manifest.total_bytes:
            raise ProtocolError("initial model is larger than its manifest")
    weights = tensors.decode(manifest, data)
    tensors.check_finite(weights)
    if tensors.weights_sha256(weights) != second.manifest.sha256:
        raise ProtocolError("initial model does not match the SHA-256 in its manifest")
    return spec, weights, he_context


def check_tensor_names(names: Iterable[str]) -> None:
    """Refuse a model whose tensor names the coordinator or the nodes give a meaning of their
    own, naming each offending tensor and the reason."""
    problems = []
    for name in names:
        if name in RESERVED_NAMES:
            problems.append(f"{name!r} is {RESERVED_NAMES[name]}")
        for character, why in RESERVED_CHARACTERS.items():
            if character in name:
                problems.append(f"{name!r} contains {character!r}, which {why}")
    if problems:
        raise ProtocolError("the initial model's tensor names are refused: " + "; ".join(problems))
