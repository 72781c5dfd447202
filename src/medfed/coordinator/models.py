"""Models ready to serve: manifest message + raw bytes, kept for the few hashes in play."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.models import ModelStore


class ServedModels:
    """An LRU of encoded models in front of the content-addressed store."""

    def __init__(self, store: ModelStore, capacity: int = 2) -> None:
        self._store = store
        self._capacity = capacity
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[pb.ModelManifest, bytes]] = OrderedDict()

    def put(self, weights: tensors.Weights) -> tuple[str, tensors.Weights]:
        """Store ``weights``; returns the hash and read-only views of the one copy kept to serve.

        The caller should drop its own arrays and keep the views: one model in memory, not two.
        """
        layout = tensors.manifest_of(weights)
        blob = b"".join(tensors.iter_data(weights))
        views = tensors.decode(layout, blob)
        sha = self._store.put(views)
        self._remember(sha, tensors.manifest_to_proto(layout, sha), blob)
        return sha, views

    def get(self, sha: str) -> tensors.Weights:
        manifest, blob = self._encoded(sha)
        return tensors.decode(tensors.manifest_from_proto(manifest), blob)

    def chunks(self, sha: str) -> Iterator[pb.ModelChunk]:
        manifest, blob = self._encoded(sha)
        yield pb.ModelChunk(manifest=manifest)
        view = memoryview(blob)
        for start in range(0, len(view), tensors.CHUNK_BYTES):
            yield pb.ModelChunk(data=bytes(view[start : start + tensors.CHUNK_BYTES]))

    def has(self, sha: str) -> bool:
        return self._store.has(sha)

    def _encoded(self, sha: str) -> tuple[pb.ModelManifest, bytes]:
        with self._lock:
            hit = self._cache.get(sha)
            if hit is not None:
                self._cache.move_to_end(sha)
                return hit
        weights = self._store.get(sha)
        manifest = tensors.manifest_to_proto(tensors.manifest_of(weights), sha)
        blob = b"".join(tensors.iter_data(weights))
        self._remember(sha, manifest, blob)
        return manifest, blob

    def _remember(self, sha: str, manifest: pb.ModelManifest, blob: bytes) -> None:
        with self._lock:
            self._cache[sha] = (manifest, blob)
            self._cache.move_to_end(sha)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
