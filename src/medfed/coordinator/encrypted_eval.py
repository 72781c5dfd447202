"""Evaluation metrics under CKKS: the coordinator adds ciphertexts it cannot decrypt.

The researcher submits a study with the public half of a CKKS key (``medfed study keygen``);
every site encrypts ``[n, n x metric ...]`` for its evaluation and sends no plaintext metrics;
the coordinator stores the sum of the ciphertexts; only the researcher's secret key turns it into
the example-weighted means (``medfed study decrypt``). Blobs live in the model store as uint8
tensors, by hash.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from medfed.coordinator.models import ServedModels
from medfed.secagg import ckks
from medfed.secagg.ckks import CONTEXT_TENSOR, SUM_TENSOR, as_blob, blob_bytes
from medfed.store.records import EncryptedEval

log = logging.getLogger("medfed.coordinator")


def store_context(models: ServedModels, public_context: bytes) -> str:
    """Check the researcher's public context (refusing one that carries the secret key) and
    store it; its hash goes into the study spec."""
    ckks.check_public_context(public_context)
    return models.put_private(as_blob(CONTEXT_TENSOR, public_context))


def aggregate(
    models: ServedModels,
    context_sha: str,
    encrypted: Mapping[str, tuple[tuple[str, ...], bytes]],
) -> EncryptedEval | None:
    """The sum of the sites' ciphertexts that share the most common layout, stored; None when
    fewer than two sites sent one (a lone site's "sum" is its own result)."""
    layouts: dict[tuple[str, ...], list[bytes]] = {}
    for names, blob in encrypted.values():
        layouts.setdefault(names, []).append(blob)
    if not layouts:
        return None
    names, blobs = max(layouts.items(), key=lambda item: len(item[1]))
    if len(blobs) < 2:
        log.warning("encrypted evaluation: only %d site(s) with layout %s", len(blobs), names)
        return None
    context = blob_bytes(models.get_private(context_sha), CONTEXT_TENSOR)
    total = ckks.add_ciphertexts(context, blobs)
    sha = models.put_private(as_blob(SUM_TENSOR, total))
    return EncryptedEval(sha, names, len(blobs))
