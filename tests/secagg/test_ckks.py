import math

import numpy as np
import pytest
import tenseal as ts
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medfed.errors import SecAggError
from medfed.secagg.ckks import (
    MAX_CIPHERTEXT_BYTES,
    MAX_CONTEXT_BYTES,
    CkksError,
    CkksParams,
    ResearcherKeys,
    add_ciphertexts,
    add_vectors,
    check_public_context,
    context_fingerprint,
    encrypt_metrics,
    encrypt_vector,
    precision_report,
)

# N = 4096 with a 109-bit modulus: still 128-bit secure, and four times cheaper than the defaults.
SMALL = CkksParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 49), global_scale_bits=40)
HEADER = 37


def tolerance(params: CkksParams, n_sites: int, magnitude: float) -> float:
    # Fresh-encryption noise is about N / scale per site (measured: ~1.4 N / scale for 4 sites);
    # allow 4x per site, plus float64 rounding of the encoded magnitude.
    scale = 2.0**params.global_scale_bits
    return 4 * n_sites * params.poly_modulus_degree / scale + 1e-12 * magnitude


@pytest.fixture(scope="module")
def keys() -> ResearcherKeys:
    return ResearcherKeys.generate(SMALL)


@pytest.fixture(scope="module")
def default_keys() -> ResearcherKeys:
    return ResearcherKeys.generate()


@pytest.fixture(scope="module")
def ciphertext(keys: ResearcherKeys) -> bytes:
    return encrypt_metrics(keys.public_context(), [1.0, 2.0, 3.0])


def test_ckks_error_is_a_secagg_error() -> None:
    assert issubclass(CkksError, SecAggError)


def test_default_params_are_the_128_bit_set() -> None:
    params = CkksParams()
    assert (params.poly_modulus_degree, sum(params.coeff_mod_bit_sizes)) == (8192, 200)
    assert params.slot_count == 4096


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"poly_modulus_degree": 5000}, "poly_modulus_degree"),
        ({"coeff_mod_bit_sizes": (60, 60, 60, 60)}, "128-bit security"),
        ({"coeff_mod_bit_sizes": (60,)}, "at least two"),
        ({"coeff_mod_bit_sizes": (61, 40, 60)}, "20 to 60 bits"),
        ({"global_scale_bits": 10}, "global_scale_bits"),
        ({"coeff_mod_bit_sizes": (30, 60), "global_scale_bits": 40}, "data modulus"),
    ],
)
def test_params_refuse_insecure_or_unusable_choices(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(CkksError, match=message):
        CkksParams(**kwargs)  # type: ignore[arg-type]


def test_four_sites_sum_decrypts_within_ckks_precision(keys: ResearcherKeys) -> None:
    public = keys.public_context()
    rng = np.random.default_rng(7)
    # loss sum, example count, positives, negatives at four hospitals
    sites = [np.array([rng.uniform(0, 500), n, n // 7, n - n // 7]) for n in (120, 48, 311, 9)]

    aggregate = add_ciphertexts(public, [encrypt_metrics(public, s.tolist()) for s in sites])
    decrypted = np.array(keys.decrypt(aggregate, 4))

    expected = np.sum(sites, axis=0)
    error = np.abs(decrypted - expected).max()
    assert 0 < error <= tolerance(SMALL, 4, float(np.abs(expected).max()))
    assert precision_report(expected, decrypted)["relative_error"] < 1e-3


def test_public_context_passes_the_check_and_the_secret_one_fails(keys: ResearcherKeys) -> None:
    check_public_context(keys.public_context())
    with pytest.raises(CkksError, match="secret key"):
        check_public_context(keys.secret_context())


def test_coordinator_refuses_a_context_that_could_decrypt(
    keys: ResearcherKeys, ciphertext: bytes
) -> None:
    with pytest.raises(CkksError, match="secret key"):
        add_ciphertexts(keys.secret_context(), [ciphertext, ciphertext])
    with pytest.raises(CkksError, match="secret key"):
        encrypt_metrics(keys.secret_context(), [1.0])


def test_public_context_cannot_decrypt(keys: ResearcherKeys, ciphertext: bytes) -> None:
    with pytest.raises(CkksError, match="no secret key"):
        ResearcherKeys.load(keys.public_context())
    # Nor can the coordinator go around our API: TenSEAL itself has nothing to decrypt with.
    context = ts.context_from(keys.public_context())
    assert not context.has_secret_key()
    vector = ts.ckks_vector_from(context, ciphertext[HEADER:])
    with pytest.raises(ValueError, match="secret_key"):
        vector.decrypt()


def test_ciphertext_does_not_carry_the_plaintext(keys: ResearcherKeys) -> None:
    values = np.array([0.731, 1250.0, 0.0625, -3.5, 17.0])
    blob = encrypt_metrics(keys.public_context(), values.tolist())
    assert values.tobytes() not in blob
    assert values.astype(np.float32).tobytes() not in blob
    for value in values:
        assert np.float64(value).tobytes() not in blob


def test_secret_context_round_trips(keys: ResearcherKeys, ciphertext: bytes) -> None:
    restored = ResearcherKeys.load(keys.secret_context())
    assert restored.public_context() == keys.public_context()
    assert restored.fingerprint == context_fingerprint(keys.public_context())
    assert restored.decrypt(ciphertext, 3) == pytest.approx([1.0, 2.0, 3.0], abs=1e-6)


def test_default_sizes_stay_under_the_caps(default_keys: ResearcherKeys) -> None:
    public = default_keys.public_context()
    blob = encrypt_metrics(public, [1.0, 2.0])
    # Measured with TenSEAL 0.3.18: ~465 kB public context, ~331 kB ciphertext.
    assert len(public) < len(default_keys.secret_context()) < MAX_CONTEXT_BYTES
    assert len(blob) < MAX_CIPHERTEXT_BYTES


def test_model_mode_round_trips_the_sum_of_three_sites(default_keys: ResearcherKeys) -> None:
    public = default_keys.public_context()
    rng = np.random.default_rng(3)
    updates = [rng.uniform(-1, 1, 20_000) for _ in range(3)]

    site_chunks = [encrypt_vector(public, u) for u in updates]
    assert [len(c) for c in site_chunks] == [math.ceil(20_000 / 4096)] * 3
    decrypted = default_keys.decrypt_vector(add_vectors(public, site_chunks), 20_000)

    report = precision_report(np.sum(updates, axis=0), decrypted)
    assert 0 < report["max_abs_error"] < 1e-3
    assert report["mean_abs_error"] <= report["max_abs_error"]


def test_ciphertext_from_another_study_is_refused(keys: ResearcherKeys) -> None:
    other = ResearcherKeys.generate(SMALL)
    foreign = encrypt_metrics(other.public_context(), [1.0, 2.0, 3.0])
    mine = encrypt_metrics(keys.public_context(), [1.0, 2.0, 3.0])
    with pytest.raises(CkksError, match="different public context"):
        add_ciphertexts(keys.public_context(), [mine, foreign])
    with pytest.raises(CkksError, match="different public context"):
        keys.decrypt(foreign, 3)


def test_ciphertext_under_other_parameters_is_refused(
    keys: ResearcherKeys, default_keys: ResearcherKeys
) -> None:
    foreign = encrypt_metrics(default_keys.public_context(), [1.0])
    # Even with the envelope rewritten to this study's fingerprint, SEAL refuses the parameters.
    forged = foreign[:5] + bytes.fromhex(keys.fingerprint) + foreign[HEADER:]
    with pytest.raises(CkksError, match="malformed or does not match"):
        keys.decrypt(forged, 1)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:HEADER] + b"not a ciphertext", "malformed"),
        (lambda b: b[:-100], "malformed"),
        (lambda b: b[:20], "too short"),
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (lambda b: b[:4] + b"\x02" + b[5:], "version 2"),
        (lambda b: b"", "empty"),
        (lambda b: b"\0" * (MAX_CIPHERTEXT_BYTES + 1), "limit"),
    ],
)
def test_bad_ciphertext_bytes_are_refused(
    keys: ResearcherKeys, ciphertext: bytes, mangle: object, message: str
) -> None:
    bad = mangle(ciphertext)  # type: ignore[operator]
    with pytest.raises(CkksError, match=message):
        add_ciphertexts(keys.public_context(), [ciphertext, bad])
    with pytest.raises(CkksError, match=message):
        keys.decrypt(bad, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage" * 10, "not a valid TenSEAL context"),
        (b"\0" * (MAX_CONTEXT_BYTES + 1), "limit"),
        (b"", "empty"),
    ],
)
def test_bad_context_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CkksError, match=message):
        check_public_context(data)
    with pytest.raises(CkksError, match=message):
        encrypt_metrics(data, [1.0])


def test_truncated_context_is_refused(keys: ResearcherKeys) -> None:
    with pytest.raises(CkksError, match="not a valid TenSEAL context"):
        check_public_context(keys.public_context()[:-100])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, math.nan], "NaN or infinite"),
        ([math.inf], "NaN or infinite"),
        ([], "empty"),
        ([[1.0, 2.0]], "flat vector"),
        (["one"], "real numbers"),
        ([1e30], "cannot encrypt"),
        ([0.0] * 2049, "2048 slots"),
    ],
)
def test_bad_plaintexts_are_refused(
    keys: ResearcherKeys, values: list[object], message: str
) -> None:
    with pytest.raises(CkksError, match=message):
        encrypt_metrics(keys.public_context(), values)  # type: ignore[arg-type]


def test_vector_mode_refuses_non_finite_values(keys: ResearcherKeys) -> None:
    update = np.zeros(5000)
    update[4321] = np.nan
    with pytest.raises(CkksError, match="1 of 5000 values"):
        encrypt_vector(keys.public_context(), update)


def test_coordinator_refuses_mismatched_lengths_and_lone_sites(
    keys: ResearcherKeys, ciphertext: bytes
) -> None:
    public = keys.public_context()
    with pytest.raises(CkksError, match="different numbers of values"):
        add_ciphertexts(public, [ciphertext, encrypt_metrics(public, [1.0, 2.0])])
    with pytest.raises(CkksError, match="at least 2"):
        add_ciphertexts(public, [ciphertext])
    with pytest.raises(CkksError, match="different numbers of chunks"):
        add_vectors(public, [encrypt_vector(public, np.ones(3000)), [ciphertext]])


def test_researcher_refuses_a_wrong_length(keys: ResearcherKeys, ciphertext: bytes) -> None:
    with pytest.raises(CkksError, match="holds 3 values, expected 4"):
        keys.decrypt(ciphertext, 4)
    with pytest.raises(CkksError, match="need 2 chunks"):
        keys.decrypt_vector([ciphertext], 3000)


def test_precision_report_known_answer() -> None:
    report = precision_report(np.array([3.0, 4.0]), np.array([3.0, 4.5]))
    assert report == {"max_abs_error": 0.5, "mean_abs_error": 0.25, "relative_error": 0.1}
    assert precision_report(np.zeros(2), np.zeros(2))["relative_error"] == 0.0
    with pytest.raises(CkksError, match="shapes"):
        precision_report(np.zeros(2), np.zeros(3))


@settings(max_examples=10, deadline=None)
@given(
    sites=st.integers(min_value=2, max_value=5).flatmap(
        lambda n: st.lists(
            hnp.arrays(np.float64, 8, elements=st.floats(-1e3, 1e3)), min_size=n, max_size=n
        )
    )
)
def test_sum_of_random_vectors_decrypts_within_tolerance(
    keys: ResearcherKeys, sites: list[np.ndarray]
) -> None:
    public = keys.public_context()
    aggregate = add_ciphertexts(public, [encrypt_metrics(public, s.tolist()) for s in sites])
    decrypted = np.array(keys.decrypt(aggregate, 8))
    expected = np.sum(sites, axis=0)
    bound = tolerance(SMALL, len(sites), float(np.abs(expected).max()))
    assert np.abs(decrypted - expected).max() <= bound
