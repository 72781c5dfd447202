"""Tensors a hospital keeps between the rounds of one study, on its own disk.

SCAFFOLD's client control variate, the FedBN layers and the compression residual are the site's
own: they never leave the node. Each version (one per round, the newest two kept) is stored
content-addressed (the same atomic, hash-checked safetensors store the coordinator uses) with a
small JSON index per study, replaced atomically, so a node killed mid-write keeps the previous
state, and a restarted node carries on from the round it was in.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medfed.errors import StoreError
from medfed.protocol.tensors import Weights
from medfed.store.models import ModelStore
from medfed.training.local_update import kept_rounds, latest_before

_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")  # no leading dot: never "." or ".."


class FileClientState:
    """A ``medfed.training.local_update.VersionedState`` for one study, under ``root/<id>``."""

    def __init__(self, root: Path, study_id: str) -> None:
        if not _SAFE.fullmatch(study_id):
            raise StoreError(f"study id {study_id!r} cannot name a state folder")
        self._dir = Path(root) / study_id
        self._store = ModelStore(self._dir / "tensors")
        self._index_path = self._dir / "index.json"

    def load(self, key: str, before_round: int | None = None) -> Weights | None:
        versions = self._index().get(key, {})
        found = latest_before(list(versions), before_round)
        return None if found is None else self._store.get(versions[found])

    def save(
        self, key: str, weights: Mapping[str, npt.NDArray[np.generic]], server_round: int = 0
    ) -> None:
        index = self._index()
        versions = index.setdefault(key, {})
        versions[server_round] = self._store.put(weights)
        index[key] = {r: versions[r] for r in kept_rounds(list(versions), server_round)}
        self._dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".index-")
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {k: {str(r): sha for r, sha in v.items()} for k, v in index.items()},
                handle,
                sort_keys=True,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._index_path)

    def _index(self) -> dict[str, dict[int, str]]:
        try:
            doc = json.loads(self._index_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read study state index {self._index_path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise StoreError(f"study state index {self._index_path} is not a JSON object")
        try:
            return {str(k): {int(r): str(sha) for r, sha in v.items()} for k, v in doc.items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise StoreError(f"study state index {self._index_path} is malformed: {exc}") from exc
