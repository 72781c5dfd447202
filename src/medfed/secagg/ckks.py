"""Additively homomorphic encryption (CKKS, via TenSEAL) for sensitive per-site metrics.

Roles
-----
* The **researcher** (study owner) runs :meth:`ResearcherKeys.generate` and is the only party that
  ever holds the CKKS secret key. It publishes :meth:`ResearcherKeys.public_context` (encryption
  parameters plus public key, serialized *without* the secret key, relinearization or Galois keys:
  addition needs none of them) and pins :func:`context_fingerprint` of it in the study spec.
* Each **node** (hospital) checks that fingerprint, then calls :func:`encrypt_metrics` on a short
  metric vector (loss sum, example counts of a rare-disease cohort, ...) or, in model mode,
  :func:`encrypt_vector` on a flat float vector split into chunks of ``poly_modulus_degree / 2``
  slots.
* The **coordinator** calls :func:`add_ciphertexts` / :func:`add_vectors`. It can add ciphertexts,
  check that they are well formed, the same length and made under the study's public context. It
  cannot decrypt: every function it uses refuses a context that carries a secret key. Only the
  sum is forwarded to the researcher, who calls :meth:`ResearcherKeys.decrypt`.

What this does not protect
--------------------------
* The researcher can decrypt any single ciphertext it is given, so a site's values stay private
  from the researcher only while the coordinator does not collude with it (``min_sites`` guards
  against honest mistakes, not against a malicious coordinator).
* CKKS gives confidentiality, not integrity: a node can encrypt any values it likes.
* A coordinator that swaps in its own public context could decrypt everything; nodes must compare
  :func:`context_fingerprint` with the value pinned in the researcher's signed study spec.
* CKKS decryption is approximate and its error depends on the secret key: publishing decrypted
  values at full precision lets an observer of many decryptions attack the key (Li & Micciancio,
  "On the Security of Homomorphic Encryption on Approximate Numbers", EUROCRYPT 2021). Round
  results to the precision the study needs before sharing them, and use one key per study.

Security level
--------------
The defaults (N = 8192, coefficient modulus 60 + 40 + 40 + 60 = 200 bits) give 128-bit classical
security: the HomomorphicEncryption.org standard (Albrecht et al., 2018, table 1, ternary secret)
allows at most 218 bits at N = 8192. :class:`CkksParams` refuses any choice beyond that table.

Serialization
-------------
TenSEAL serializes contexts and vectors as protobuf messages (``TenSEALContextProto``,
``CKKSVectorProto``) whose byte fields hold SEAL's own binary serialization (a SEAL header plus
zstd-compressed coefficient data). No pickle is involved, so loading untrusted bytes does not run
code; they can still be large or malformed, hence :data:`MAX_CONTEXT_BYTES` and
:data:`MAX_CIPHERTEXT_BYTES` and the checks below. Our ciphertexts add a 37-byte envelope: the magic
``MFCK``, a version byte and the SHA-256 fingerprint of the public context they were made under.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from medfed.errors import SecAggError

MAX_CONTEXT_BYTES: Final = 16 * 1024 * 1024
"""Largest serialized context accepted (a public context at the defaults is about 465 kB)."""
MAX_CIPHERTEXT_BYTES: Final = 8 * 1024 * 1024
"""Largest serialized ciphertext accepted (one at the defaults is about 330 kB)."""

_MAGIC: Final = b"MFCK"
_VERSION: Final = 1
_HEADER_LEN: Final = len(_MAGIC) + 1 + 32
# HE standard (Albrecht et al. 2018), 128-bit classical security, ternary secret.
_MAX_COEFF_BITS_128: Final = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
# Every TenSEAL/SEAL failure on bad input surfaces as one of these.
_TS_ERRORS: Final = (ValueError, RuntimeError, TypeError)

Vector = npt.NDArray[np.float64]


def _tenseal() -> Any:
    """TenSEAL (with SEAL's native library) loads on the first CKKS operation, not when the CLI,
    the coordinator or a node imports this module: most studies never encrypt their metrics."""
    import tenseal

    return tenseal


class CkksError(SecAggError):
    """A CKKS parameter set, context, plaintext or ciphertext is invalid or refused."""


@dataclass(frozen=True)
class CkksParams:
    """CKKS parameters; validated against the 128-bit row of the HE standard."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    global_scale_bits: int = 40

    def __post_init__(self) -> None:
        n, bits, scale = self.poly_modulus_degree, self.coeff_mod_bit_sizes, self.global_scale_bits
        if n not in _MAX_COEFF_BITS_128:
            raise CkksError(
                f"poly_modulus_degree must be one of {sorted(_MAX_COEFF_BITS_128)}, got {n}"
            )
        if not isinstance(bits, tuple) or len(bits) < 2:
            raise CkksError("coeff_mod_bit_sizes must be a tuple of at least two prime sizes")
        if any(not isinstance(b, int) or not 20 <= b <= 60 for b in bits):
            raise CkksError(f"every coefficient prime must be 20 to 60 bits, got {bits}")
        if sum(bits) > _MAX_COEFF_BITS_128[n]:
            raise CkksError(
                f"coefficient modulus of {sum(bits)} bits exceeds the {_MAX_COEFF_BITS_128[n]} "
                f"bits that keep 128-bit security at poly_modulus_degree={n}"
            )
        if not 20 <= scale <= 60 or scale >= sum(bits[:-1]):
            raise CkksError(
                f"global_scale_bits must be 20 to 60 and below the data modulus "
                f"({sum(bits[:-1])} bits), got {scale}"
            )

    @property
    def slot_count(self) -> int:
        """How many values one ciphertext holds."""
        return self.poly_modulus_degree // 2


def context_fingerprint(public_context: bytes) -> str:
    """SHA-256 of a public context, for the study spec to pin and nodes to compare."""
    return _digest(public_context).hex()


class ResearcherKeys:
    """The study owner's CKKS context, secret key included. Build with :meth:`generate` or
    :meth:`load`; never send anything but :meth:`public_context` off the researcher's machine."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._public: bytes = context.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        self._digest = _digest(self._public)
        self._slots = _slot_count(context)

    @classmethod
    def generate(cls, params: CkksParams | None = None) -> ResearcherKeys:
        """Draw a fresh key pair (SEAL's own CSPRNG) for one study."""
        p = params if params is not None else CkksParams()
        ts = _tenseal()
        try:
            context = ts.context(
                ts.SCHEME_TYPE.CKKS,
                poly_modulus_degree=p.poly_modulus_degree,
                coeff_mod_bit_sizes=list(p.coeff_mod_bit_sizes),
            )
        except _TS_ERRORS as exc:
            raise CkksError(f"SEAL rejected the parameters {p}: {exc}") from exc
        context.global_scale = float(2**p.global_scale_bits)
        return cls(context)

    @classmethod
    def load(cls, secret_context: bytes) -> ResearcherKeys:
        """Read back :meth:`secret_context`; refuses a public context, which cannot decrypt."""
        context = _load_context(secret_context, "secret context")
        if not context.has_secret_key():
            raise CkksError("this context holds no secret key: a public context cannot decrypt")
        return cls(context)

    def public_context(self) -> bytes:
        """Parameters and public key only: what nodes and the coordinator receive."""
        return self._public

    @property
    def fingerprint(self) -> str:
        """:func:`context_fingerprint` of :meth:`public_context`."""
        return context_fingerprint(self._public)

    @property
    def slot_count(self) -> int:
        """How many values one ciphertext holds."""
        return self._slots

    def secret_context(self) -> bytes:
        """Everything, secret key included, for the researcher's own disk (keep it 0600)."""
        data: bytes = self._context.serialize(
            save_public_key=True,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        return data

    def decrypt(self, ciphertext: bytes, length: int) -> list[float]:
        """Decrypt one ciphertext that must hold exactly ``length`` values."""
        vector = _load_vector(self._context, self._digest, ciphertext)
        if vector.size() != length:
            raise CkksError(f"the ciphertext holds {vector.size()} values, expected {length}")
        try:
            values: list[float] = vector.decrypt()
        except _TS_ERRORS as exc:
            raise CkksError(f"decryption failed: {exc}") from exc
        return [float(v) for v in values]

    def decrypt_vector(self, ciphertexts: Sequence[bytes], length: int) -> Vector:
        """Decrypt the chunks of :func:`encrypt_vector` (or :func:`add_vectors`) into one vector."""
        if length < 1:
            raise CkksError(f"length must be positive, got {length}")
        sizes = _chunk_sizes(length, self._slots)
        if len(ciphertexts) != len(sizes):
            raise CkksError(
                f"{length} values need {len(sizes)} chunks of {self._slots} slots, "
                f"got {len(ciphertexts)}"
            )
        parts = [self.decrypt(c, n) for c, n in zip(ciphertexts, sizes, strict=True)]
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


def check_public_context(data: bytes) -> None:
    """Refuse context bytes that are oversized, malformed, not CKKS, or carry the secret key."""
    _load_public(data)


def encrypt_metrics(public_context: bytes, values: Sequence[float]) -> bytes:
    """Node side: encrypt one short metric vector (at most one ciphertext's slots)."""
    context = _load_public(public_context)
    slots = _slot_count(context)
    array = _plain_vector(values)
    if array.size > slots:
        raise CkksError(
            f"{array.size} values do not fit the {slots} slots of one ciphertext; "
            "use encrypt_vector for longer vectors"
        )
    return _encrypt(context, _digest(public_context), array)


def encrypt_vector(public_context: bytes, values: npt.ArrayLike) -> list[bytes]:
    """Node side, model mode: encrypt a flat vector as chunks of ``slot_count`` values."""
    context = _load_public(public_context)
    slots = _slot_count(context)
    array = _plain_vector(values)
    digest = _digest(public_context)
    return [_encrypt(context, digest, array[i : i + slots]) for i in range(0, array.size, slots)]


def add_ciphertexts(
    public_context: bytes, ciphertexts: Sequence[bytes], *, min_sites: int = 2
) -> bytes:
    """Coordinator side: the encrypted sum of at least ``min_sites`` same-length ciphertexts."""
    context = _load_public(public_context)
    return _sum(context, _digest(public_context), ciphertexts, min_sites)


def add_vectors(
    public_context: bytes, site_chunks: Sequence[Sequence[bytes]], *, min_sites: int = 2
) -> list[bytes]:
    """Coordinator side, model mode: chunk-wise encrypted sum of :func:`encrypt_vector` outputs."""
    context = _load_public(public_context)
    if len(site_chunks) < max(min_sites, 1):
        raise CkksError(
            f"need at least {max(min_sites, 1)} sites to aggregate, got {len(site_chunks)}"
        )
    counts = {len(chunks) for chunks in site_chunks}
    if len(counts) != 1:
        raise CkksError(f"sites sent different numbers of chunks: {sorted(counts)}")
    digest = _digest(public_context)
    return [
        _sum(context, digest, [chunks[i] for chunks in site_chunks], min_sites)
        for i in range(counts.pop())
    ]


def precision_report(values: npt.ArrayLike, decrypted: npt.ArrayLike) -> dict[str, float]:
    """Max and mean absolute error, and norm-wise relative error ``norm(d - v) / norm(v)``."""
    v = np.asarray(values, dtype=np.float64)
    d = np.asarray(decrypted, dtype=np.float64)
    if v.shape != d.shape or v.size == 0:
        raise CkksError(f"cannot compare shapes {v.shape} and {d.shape}")
    err = np.abs(d - v)
    norm = float(np.linalg.norm(v))
    err_norm = float(np.linalg.norm(d - v))
    relative = err_norm / norm if norm > 0 else (0.0 if err_norm == 0 else math.inf)
    return {
        "max_abs_error": float(err.max()),
        "mean_abs_error": float(err.mean()),
        "relative_error": relative,
    }


def _digest(public_context: bytes) -> bytes:
    return hashlib.sha256(public_context).digest()


def _check_bytes(data: object, limit: int, what: str) -> bytes:
    if not isinstance(data, bytes):
        raise CkksError(f"{what} must be bytes, got {type(data).__name__}")
    if not data:
        raise CkksError(f"{what} is empty")
    if len(data) > limit:
        raise CkksError(f"{what} is {len(data)} bytes, over the {limit}-byte limit")
    return data


def _load_context(data: bytes, what: str) -> Any:
    _check_bytes(data, MAX_CONTEXT_BYTES, what)
    ts = _tenseal()
    try:
        context = ts.context_from(data)
        scheme = context.seal_context().data.key_context_data().parms().scheme()
        scale = context.global_scale
    except _TS_ERRORS as exc:
        raise CkksError(
            f"{what} is not a valid TenSEAL context (truncated or corrupt?): {exc}"
        ) from exc
    if scheme != ts.SCHEME_TYPE.CKKS.value:
        raise CkksError(f"{what} uses scheme {scheme}, not CKKS")
    if not (math.isfinite(scale) and 2.0**20 <= scale <= 2.0**60):
        raise CkksError(f"{what} has an unusable global scale {scale}")
    return context


def _load_public(data: bytes) -> Any:
    context = _load_context(data, "public context")
    if context.has_secret_key():
        raise CkksError(
            "public context holds the secret key: nodes and the coordinator must only receive "
            "ResearcherKeys.public_context()"
        )
    try:
        has_public_key = context.has_public_key()
    except _TS_ERRORS:  # symmetric-encryption contexts refuse the question
        has_public_key = False
    if not has_public_key:
        raise CkksError(
            "public context has no public key (symmetric context?): nodes cannot encrypt"
        )
    return context


def _slot_count(context: Any) -> int:
    degree: int = context.seal_context().data.key_context_data().parms().poly_modulus_degree()
    return degree // 2


def _plain_vector(values: object) -> Vector:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CkksError(f"values must be real numbers: {exc}") from exc
    if array.ndim != 1:
        raise CkksError(f"values must be a flat vector, got shape {array.shape} (use .ravel())")
    if array.size == 0:
        raise CkksError("values are empty: there is nothing to encrypt")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise CkksError(
            f"{bad} of {array.size} values are NaN or infinite; CKKS encodes only finite reals"
        )
    return array


def _encrypt(context: Any, digest: bytes, array: Vector) -> bytes:
    try:
        payload: bytes = _tenseal().ckks_vector(context, array.tolist()).serialize()
    except _TS_ERRORS as exc:
        raise CkksError(f"cannot encrypt: {exc} (values too large for the scale?)") from exc
    return _wrap(digest, payload)


def _wrap(digest: bytes, payload: bytes) -> bytes:
    return _MAGIC + bytes([_VERSION]) + digest + payload


def _load_vector(context: Any, digest: bytes, blob: bytes) -> Any:
    _check_bytes(blob, MAX_CIPHERTEXT_BYTES, "ciphertext")
    if len(blob) <= _HEADER_LEN or not blob.startswith(_MAGIC):
        raise CkksError("ciphertext is not a medfed CKKS ciphertext (bad magic or too short)")
    if blob[len(_MAGIC)] != _VERSION:
        raise CkksError(f"ciphertext has envelope version {blob[len(_MAGIC)]}, expected {_VERSION}")
    if blob[len(_MAGIC) + 1 : _HEADER_LEN] != digest:
        raise CkksError("ciphertext was made under a different public context than this study's")
    try:
        vector = _tenseal().ckks_vector_from(context, blob[_HEADER_LEN:])
        n_cipher = len(vector.data.ciphertext())
    except _TS_ERRORS as exc:
        raise CkksError(f"ciphertext is malformed or does not match the context: {exc}") from exc
    if n_cipher != 1 or not 1 <= vector.size() <= _slot_count(context):
        raise CkksError(
            f"ciphertext must be one SEAL ciphertext of at most {_slot_count(context)} values"
        )
    return vector


def _sum(context: Any, digest: bytes, blobs: Sequence[bytes], min_sites: int) -> bytes:
    if len(blobs) < max(min_sites, 1):
        raise CkksError(
            f"need at least {max(min_sites, 1)} ciphertexts to aggregate, got {len(blobs)}"
        )
    vectors = [_load_vector(context, digest, b) for b in blobs]
    sizes = [v.size() for v in vectors]
    if len(set(sizes)) != 1:
        raise CkksError(f"ciphertexts hold different numbers of values {sizes}: sites must agree")
    total = vectors[0]
    try:
        for other in vectors[1:]:
            total.add_(other)
        payload: bytes = total.serialize()
    except _TS_ERRORS as exc:
        raise CkksError(f"ciphertexts cannot be added (scale or level mismatch): {exc}") from exc
    return _wrap(digest, payload)


def _chunk_sizes(length: int, slots: int) -> list[int]:
    full, rest = divmod(length, slots)
    return [slots] * full + ([rest] if rest else [])


# -- blobs: ciphertexts and contexts stored and fetched as uint8 tensors ---------------------

CONTEXT_TENSOR = "ckks_public_context"
SUM_TENSOR = "ckks"


def as_blob(name: str, data: bytes) -> dict[str, npt.NDArray[np.generic]]:
    return {name: np.frombuffer(data, dtype=np.uint8).copy()}


def blob_bytes(weights: Mapping[str, npt.NDArray[Any]], name: str) -> bytes:
    if list(weights) != [name] or weights[name].dtype != np.uint8:
        raise CkksError(f"expected one uint8 tensor {name!r}")
    return weights[name].tobytes()


def weighted_means(keys: ResearcherKeys, total: bytes, names: Sequence[str]) -> dict[str, float]:
    """The researcher's view of an encrypted evaluation sum: the total example count and each
    metric's example-weighted mean (``names`` start with ``num_examples``)."""
    if not names or names[0] != "num_examples":
        raise CkksError("an encrypted evaluation must start with num_examples")
    values = keys.decrypt(total, len(names))
    n = values[0]
    if not n > 0.5:
        raise CkksError(f"the decrypted example count is {n:.3f}")
    return {"num_examples": round(n)} | {
        k: v / n for k, v in zip(names[1:], values[1:], strict=True)
    }
