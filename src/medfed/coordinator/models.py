"""Models ready to serve: manifest message + raw bytes, kept for the few hashes in play."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

from medfed.protocol import tensors
from medfed.protocol.streams import model_frames
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.models import ModelStore


class ServedModels:
    """An LRU of models in front of the content-addressed store, kept as arrays and cut into
    chunks on the fly, so serving a model never needs a second copy of it."""

    def __init__(self, store: ModelStore, capacity: int = 1) -> None:
        self._store = store
        self._capacity = capacity
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[pb.ModelManifest, tensors.Weights]] = OrderedDict()

    def put(self, weights: tensors.Weights) -> str:
        sha = self._store.put(weights)
        self._remember(sha, tensors.manifest_to_proto(tensors.manifest_of(weights), sha), weights)
        return sha

    def get(self, sha: str) -> tensors.Weights:
        return self._loaded(sha)[1]

    def put_private(self, weights: tensors.Weights) -> str:
        """Store server-only tensors (a strategy's state) without caching them for serving."""
        return self._store.put(weights)

    def get_private(self, sha: str) -> tensors.Weights:
        return self._store.get(sha)

    def frames(self, sha: str) -> Iterator[bytes]:
        """The model as framed ``ModelChunk`` messages (:mod:`medfed.protocol.framing`)."""
        manifest, weights = self._loaded(sha)
        return model_frames(manifest, weights)

    def _loaded(self, sha: str) -> tuple[pb.ModelManifest, tensors.Weights]:
        with self._lock:
            hit = self._cache.get(sha)
            if hit is not None:
                self._cache.move_to_end(sha)
                return hit
        weights = self._store.get(sha)
        for array in weights.values():
            array.flags.writeable = False
        manifest = tensors.manifest_to_proto(tensors.manifest_of(weights), sha)
        self._remember(sha, manifest, weights)
        return manifest, weights

    def _remember(self, sha: str, manifest: pb.ModelManifest, weights: tensors.Weights) -> None:
        with self._lock:
            self._cache[sha] = (manifest, weights)
            self._cache.move_to_end(sha)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
