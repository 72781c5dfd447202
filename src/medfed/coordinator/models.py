"""Models ready to serve: the store's own files, opened in place, for the few hashes in play."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

from medfed.protocol import framing, tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.mapped import StoredModel
from medfed.store.models import ModelStore


class ServedModels:
    """An LRU of opened models in front of the content-addressed store.

    A served model is its store file (:mod:`medfed.store.mapped`): its arrays are a read-only map
    of the file and a download reads the file's bytes chunk by chunk, so the coordinator keeps no
    private copy of a global model between rounds (at 10M float32 parameters that copy was 40 MB
    of its peak); the bytes sit in the OS page cache, shared and reclaimable.
    """

    def __init__(self, store: ModelStore, capacity: int = 1) -> None:
        self._store = store
        self._capacity = capacity
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[pb.ModelManifest, StoredModel]] = OrderedDict()

    def put(self, weights: tensors.Weights) -> str:
        """Store ``weights``; ``get`` of the returned hash gives the stored file's arrays, so a
        caller that keeps the model keeps those and lets its own copy go."""
        stored = self._store.put_and_open(weights)
        self._remember(stored)
        return stored.sha256

    def get(self, sha: str) -> tensors.Weights:
        return self._loaded(sha)[1].weights

    def put_private(self, weights: tensors.Weights) -> str:
        """Store server-only tensors (a strategy's state) without caching them for serving."""
        return self._store.put(weights)

    def get_private(self, sha: str) -> tensors.Weights:
        return self._store.get(sha)

    def frames(self, sha: str) -> Iterator[bytes]:
        """The model as framed ``ModelChunk`` messages (:mod:`medfed.protocol.framing`); a
        model that is not in the store fails here, before the first message."""
        manifest, stored = self._loaded(sha)
        return _frames(manifest, stored)

    def _loaded(self, sha: str) -> tuple[pb.ModelManifest, StoredModel]:
        with self._lock:
            hit = self._cache.get(sha)
            if hit is not None:
                self._cache.move_to_end(sha)
                return hit
        return self._remember(self._store.open(sha))

    def _remember(self, stored: StoredModel) -> tuple[pb.ModelManifest, StoredModel]:
        entry = (tensors.manifest_to_proto(stored.manifest, stored.sha256), stored)
        with self._lock:
            self._cache[stored.sha256] = entry
            self._cache.move_to_end(stored.sha256)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return entry


def _frames(manifest: pb.ModelManifest, stored: StoredModel) -> Iterator[bytes]:
    yield framing.frame_message(framing.MODEL_MANIFEST, manifest)
    for piece in stored.data_chunks():
        yield framing.frame(framing.MODEL_DATA, piece)
