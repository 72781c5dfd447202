"""Properties and known answers of the dangerous primitives: masks, Shamir, PRG, sealing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from medfed.errors import SecAggError
from medfed.secagg.hazmat import keys, prg, shamir
from medfed.secagg.quantize import FixedPoint

PROPERTY = settings(deadline=None, max_examples=40)
CONTEXT = b"study|round-1"
seeds16 = st.binary(min_size=16, max_size=16)
seeds32 = st.binary(min_size=32, max_size=32)


@PROPERTY
@given(st.lists(seeds16, min_size=2, max_size=6, unique=True), st.integers(0, 300))
def test_pairwise_masks_cancel_in_the_sum(key_seeds: list[bytes], dimension: int) -> None:
    private = [keys.private_key_from_seed(s, CONTEXT) for s in key_seeds]
    public = [keys.public_bytes(k) for k in private]
    total = np.zeros(dimension, dtype=np.uint32)
    for u, v in itertools.permutations(range(len(private)), 2):
        seed = keys.agree(private[u], public[v], keys.MASK_INFO, CONTEXT)
        assert seed == keys.agree(private[v], public[u], keys.MASK_INFO, CONTEXT)
        (np.add if u < v else np.subtract)(total, prg.expand(seed, dimension), out=total)
    assert not total.any()


@PROPERTY
@given(seeds16)
def test_derived_keys_are_separated_by_purpose_and_round(secret: bytes) -> None:
    derived = {
        keys.derive(secret, purpose, context)
        for purpose in (keys.MASK_INFO, keys.SHARE_KEY_INFO, keys.SELF_MASK_INFO)
        for context in (b"round-1", b"round-2")
    }
    assert len(derived) == 6


@PROPERTY
@given(seeds16, st.data())
def test_shamir_round_trips_from_any_threshold_subset(secret: bytes, data: st.DataObject) -> None:
    holders = data.draw(st.integers(1, 20))
    threshold = data.draw(st.integers(1, holders))
    shares = shamir.split(secret, threshold, holders)
    assert sorted(i for i, _ in shares) == list(range(1, holders + 1))
    subset = data.draw(st.permutations(shares))[: data.draw(st.integers(threshold, holders))]
    assert shamir.combine(subset, threshold) == secret


@PROPERTY
@given(seeds16, st.data())
def test_more_shares_than_the_threshold_expose_an_altered_one(
    secret: bytes, data: st.DataObject
) -> None:
    threshold = data.draw(st.integers(1, 10))
    shares = shamir.split(secret, threshold, data.draw(st.integers(threshold, 12)))
    assert shamir.consistent(shares, threshold)
    if len(shares) == threshold:
        return  # t shares fit a polynomial whatever their values: nothing to expose
    at = data.draw(st.integers(0, len(shares) - 1))
    x, y = shares[at]
    delta = data.draw(st.integers(1, 2**64))
    wrong = ((int.from_bytes(y, "big") + delta) % shamir.PRIME).to_bytes(17, "big")
    altered = [*shares[:at], (x, wrong), *shares[at + 1 :]]
    assert not shamir.consistent(data.draw(st.permutations(altered)), threshold)


@PROPERTY
@given(seeds16, st.data())
def test_shamir_combine_with_fewer_than_t_shares_raises(secret: bytes, data: st.DataObject) -> None:
    threshold = data.draw(st.integers(2, 20))
    shares = shamir.split(secret, threshold, data.draw(st.integers(threshold, 20)))
    few = shares[: data.draw(st.integers(0, threshold - 1))]
    with pytest.raises(SecAggError, match="cannot recover"):
        shamir.combine(few, threshold)
    with pytest.raises(SecAggError, match="cannot recover"):  # a repeated share counts once
        shamir.combine([*few, *few], threshold)


@pytest.mark.parametrize("threshold", [2, 3])
def test_fewer_than_t_shares_look_the_same_whatever_the_secret(threshold: int) -> None:
    """Each of the t-1 shares (and their XOR) has one byte distribution for two very different
    secrets, and that distribution is uniform: t-1 shares are consistent with every secret."""
    splits = 600
    samples: dict[bytes, list[np.ndarray]] = {}
    for secret in (bytes(16), b"\xff" * 16):
        rows = []
        for _ in range(splits):
            few = [s for _, s in shamir.split(secret, threshold, threshold)[: threshold - 1]]
            xor = bytes(a ^ b for a, b in zip(*few, strict=True)) if len(few) > 1 else few[0]
            rows.append(np.frombuffer(b"".join([*few, xor]), dtype=np.uint8))
        samples[secret] = rows
    zero, ones = (np.stack(samples[s]) for s in (bytes(16), b"\xff" * 16))
    # A share is a value mod 2^130 - 5 in 17 bytes: its top byte holds 2 bits; the low 16 bytes
    # of each share (and of the XOR) are uniform.
    size = shamir.SHARE_BYTES
    for column in range(zero.shape[1] // size):
        low = slice(size * column + 1, size * (column + 1))
        a = np.bincount(zero[:, low].ravel(), minlength=256)
        b = np.bincount(ones[:, low].ravel(), minlength=256)
        assert stats.chi2_contingency(np.stack([a, b])).pvalue > 1e-6
        assert stats.chisquare(a).pvalue > 1e-6 and stats.chisquare(b).pvalue > 1e-6


def test_shamir_refuses_malformed_input() -> None:
    with pytest.raises(SecAggError, match="16 bytes"):
        shamir.split(b"short", 2, 3)
    with pytest.raises(SecAggError, match="between 1 and"):
        shamir.split(bytes(16), 4, 3)
    with pytest.raises(SecAggError, match="malformed"):
        shamir.combine([(1, bytes(17)), (0, bytes(17))], 2)
    with pytest.raises(SecAggError, match="malformed"):
        shamir.combine([(1, bytes(17)), (2, bytes(16))], 2)
    with pytest.raises(SecAggError, match="malformed"):
        shamir.combine([(1, b"\xff" * 17), (2, bytes(17))], 2)  # not a field element


@PROPERTY
@given(
    st.integers(1, 20),
    st.floats(0.01, 100.0),
    st.integers(0, 64),
    st.integers(0, 2**32 - 1),
    st.data(),
)
def test_quantize_sum_dequantize_stays_within_the_error_bound(
    nodes: int, clip: float, dimension: int, seed: int, data: st.DataObject
) -> None:
    encoding = FixedPoint(clip=clip, nodes=nodes)
    unit = st.floats(-1.0, 1.0, allow_nan=False)
    values = (
        np.array(
            data.draw(st.lists(unit, min_size=nodes * dimension, max_size=nodes * dimension)),
            dtype=np.float64,
        ).reshape(nodes, dimension)
        * clip
    )
    rng = np.random.default_rng(seed)
    total = np.zeros(dimension, dtype=np.uint32)
    for row in values:
        words, clipped = encoding.encode(row, rng)
        assert clipped == 0
        total += words  # wraps mod 2^32
    error = np.abs(encoding.decode(total) - values.sum(axis=0))
    assert float(error.max(initial=0.0)) <= encoding.error_bound + 1e-9 * clip * nodes


def test_quantize_counts_what_the_clip_cut() -> None:
    encoding = FixedPoint(clip=1.0, nodes=3)
    words, clipped = encoding.encode([2.0, -5.0, 0.5], np.random.default_rng(0))
    assert clipped == 2
    assert encoding.decode(words)[:2] == pytest.approx([1.0, -1.0])


def _ctr_by_hand(seed: bytes, count: int) -> np.ndarray:
    """AES-256-CTR from the block cipher alone: E(seed, 0), E(seed, 1), ... (big-endian)."""
    blocks = -(-4 * count // 16)
    counters = b"".join(i.to_bytes(16, "big") for i in range(blocks))
    stream = Cipher(algorithms.AES(seed), modes.ECB()).encryptor().update(counters)
    return np.frombuffer(stream[: 4 * count], dtype="<u4")


def test_prg_known_answer() -> None:
    # FIPS-197 AES-256 with the all-zero key on the all-zero block (the first counter block).
    first = bytes.fromhex("dc95c078a2408989ad48a21492842087")
    assert prg.expand(bytes(32), 4).tobytes() == first
    np.testing.assert_array_equal(prg.expand(bytes(32), 4), np.frombuffer(first, "<u4"))


@PROPERTY
@given(seeds32, st.integers(0, 1000), st.integers(0, 1000))
def test_prg_is_aes_ctr_and_prefix_stable(seed: bytes, count: int, prefix: int) -> None:
    words = prg.expand(seed, count)
    assert words.dtype == np.uint32 and words.shape == (count,)
    np.testing.assert_array_equal(words, _ctr_by_hand(seed, count))
    np.testing.assert_array_equal(prg.expand(seed, min(prefix, count)), words[:prefix])


def test_prg_refuses_a_wrong_seed_or_count() -> None:
    with pytest.raises(SecAggError, match="32 bytes"):
        prg.expand(bytes(16), 4)
    with pytest.raises(SecAggError, match="cannot expand"):
        prg.expand(bytes(32), -1)


@PROPERTY
@given(seeds32, st.binary(max_size=200), st.binary(max_size=64), st.binary(max_size=64))
def test_open_sealed_refuses_a_wrong_aad(
    key: bytes, plaintext: bytes, aad: bytes, other: bytes
) -> None:
    sealed = keys.seal(key, plaintext, aad)
    assert keys.open_sealed(key, sealed, aad) == plaintext
    if other != aad:
        with pytest.raises(SecAggError, match="does not decrypt"):
            keys.open_sealed(key, sealed, other)
    with pytest.raises(SecAggError, match="does not decrypt"):
        keys.open_sealed(bytes(a ^ 1 for a in key), sealed, aad)
    with pytest.raises(SecAggError, match="truncated"):
        keys.open_sealed(key, sealed[: keys.NONCE_BYTES], aad)


def test_agree_refuses_an_invalid_public_key() -> None:
    own = keys.private_key_from_seed(bytes(16), CONTEXT)
    with pytest.raises(SecAggError, match="invalid"):
        keys.agree(own, b"short", keys.MASK_INFO, CONTEXT)
    with pytest.raises(SecAggError, match="invalid"):
        keys.agree(own, bytes(32), keys.MASK_INFO, CONTEXT)  # the all-zero point
