"""Signed key advertisements against a real throwaway consortium CA (the project's own pki)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from medfed.errors import SecAggError
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.pki.signer import CertificateSigner
from medfed.secagg.hazmat import keys
from medfed.secagg.messages import EVALUATE_PURPOSE, Advertisement, RoundParams
from medfed.secagg.protocol import ClientRound, ServerRound
from medfed.secagg.signing import CaVerifier

CONSORTIUM = "acme-health"
NODES = ("cleveland", "hungary", "switzerland", "va_long_beach")
DIM = 64


def _ca(root: Path, name: str) -> CertificateAuthority:
    return CertificateAuthority.init(root / name, CONSORTIUM)


def _signer(
    ca: CertificateAuthority, name: str, out: Path, role: Role = Role.NODE
) -> CertificateSigner:
    issued = ca.issue(name, role, out)
    assert issued.key is not None
    return CertificateSigner.from_files(issued.cert, issued.key)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return _ca(tmp_path, "ca")


@pytest.fixture
def signers(ca: CertificateAuthority, tmp_path: Path) -> dict[str, CertificateSigner]:
    return {n: _signer(ca, n, tmp_path / "nodes" / n) for n in NODES}


@pytest.fixture
def params() -> RoundParams:
    return RoundParams("study-1", 2, NODES, 3, len(NODES) - 1, b"graph", 1.0, DIM)


def _clients(
    params: RoundParams, signers: dict[str, CertificateSigner], verifier: CaVerifier
) -> dict[str, ClientRound]:
    return {n: ClientRound(params, n, signers[n], verifier) for n in NODES}


def test_a_round_with_real_signatures_sums_exactly(
    ca: CertificateAuthority, signers: dict[str, CertificateSigner], params: RoundParams
) -> None:
    clients = _clients(params, signers, CaVerifier(ca.certificate))
    server = ServerRound(params)
    rng = np.random.default_rng(0)
    inputs = {n: rng.integers(0, 2**32, DIM, dtype=np.uint32) for n in NODES}
    forwarded = server.forward_advertisements({n: c.advertise() for n, c in clients.items()})
    u2, routed = server.route_shares({n: c.share(forwarded[n]) for n, c in clients.items()})
    for n in u2:
        server.add_masked(n, clients[n].mask(u2, routed[n], inputs[n]))
    total = server.unmask({n: clients[n].reveal(server.survivors) for n in server.survivors})
    np.testing.assert_array_equal(total, np.sum(list(inputs.values()), axis=0, dtype=np.uint32))


def test_a_correctly_signed_advertisement_verifies(
    ca: CertificateAuthority, signers: dict[str, CertificateSigner], params: RoundParams
) -> None:
    ad = ClientRound(params, "hungary", signers["hungary"], CaVerifier(ca.certificate)).advertise()
    CaVerifier(ca.certificate)(ad, params)
    CaVerifier.from_file(ca.ca_cert_path)(ad, params)


def test_an_advertisement_of_another_round_is_refused(
    ca: CertificateAuthority, signers: dict[str, CertificateSigner], params: RoundParams
) -> None:
    ad = ClientRound(params, "hungary", signers["hungary"], CaVerifier(ca.certificate)).advertise()
    replay = dataclasses.replace(params, round=params.round + 1)
    with pytest.raises(SecAggError, match="not signed by its certificate key"):
        CaVerifier(ca.certificate)(ad, replay)


@pytest.mark.parametrize("swapped", ["cipher_public", "mask_public"])
def test_a_coordinator_swapping_a_key_aborts_the_round_at_share(
    ca: CertificateAuthority,
    signers: dict[str, CertificateSigner],
    params: RoundParams,
    swapped: str,
) -> None:
    clients = _clients(params, signers, CaVerifier(ca.certificate))
    server = ServerRound(params)
    forwarded = server.forward_advertisements({n: c.advertise() for n, c in clients.items()})
    victim, honest = "hungary", "cleveland"
    own_key = keys.public_bytes(X25519PrivateKey.generate())  # the coordinator's own key
    forwarded[honest][victim] = dataclasses.replace(forwarded[honest][victim], **{swapped: own_key})
    for n in NODES:
        if n != honest:
            clients[n].share(forwarded[n])  # untouched: accepted
    with pytest.raises(SecAggError, match="'hungary' is not signed by its certificate key"):
        clients[honest].share(forwarded[honest])


def test_a_coordinator_resigning_with_its_own_certificate_is_refused(
    ca: CertificateAuthority,
    signers: dict[str, CertificateSigner],
    params: RoundParams,
    tmp_path: Path,
) -> None:
    coordinator = _signer(ca, "coordinator", tmp_path / "coord", Role.COORDINATOR)
    forged = Advertisement(
        "hungary",
        keys.public_bytes(X25519PrivateKey.generate()),
        keys.public_bytes(X25519PrivateKey.generate()),
        b"",
        coordinator.certificate_pem,
    )
    forged = dataclasses.replace(forged, signature=coordinator.sign(forged.signed_bytes(params)))
    with pytest.raises(SecAggError, match="'coordinator' was sent for 'hungary'"):
        CaVerifier(ca.certificate)(forged, params)


def _advert(params: RoundParams, name: str, signer: CertificateSigner, pem: bytes) -> Advertisement:
    unsigned = Advertisement(
        name,
        keys.public_bytes(X25519PrivateKey.generate()),
        keys.public_bytes(X25519PrivateKey.generate()),
        b"",
        pem,
    )
    return dataclasses.replace(unsigned, signature=signer.sign(unsigned.signed_bytes(params)))


def test_an_advertisement_signed_by_another_nodes_key_is_refused(
    ca: CertificateAuthority, signers: dict[str, CertificateSigner], params: RoundParams
) -> None:
    verify = CaVerifier(ca.certificate)
    # hungary's certificate, switzerland's signature
    ad = _advert(params, "hungary", signers["switzerland"], signers["hungary"].certificate_pem)
    with pytest.raises(SecAggError, match="'hungary' is not signed by its certificate key"):
        verify(ad, params)
    # switzerland's certificate and signature, claiming to be hungary
    pem = signers["switzerland"].certificate_pem
    ad = _advert(params, "hungary", signers["switzerland"], pem)
    with pytest.raises(SecAggError, match="'switzerland' was sent for 'hungary'"):
        verify(ad, params)


def test_a_certificate_of_another_ca_is_refused(
    ca: CertificateAuthority, params: RoundParams, tmp_path: Path
) -> None:
    rogue = _ca(tmp_path, "rogue-ca")  # same consortium name, different key
    impostor = _signer(rogue, "hungary", tmp_path / "rogue")
    ad = _advert(params, "hungary", impostor, impostor.certificate_pem)
    CaVerifier(rogue.certificate)(ad, params)  # fine for its own CA
    with pytest.raises(SecAggError, match="'hungary' carries no certificate of this consortium"):
        CaVerifier(ca.certificate)(ad, params)


def test_garbage_instead_of_a_certificate_is_refused(
    ca: CertificateAuthority, signers: dict[str, CertificateSigner], params: RoundParams
) -> None:
    ad = _advert(params, "hungary", signers["hungary"], b"-----BEGIN CERTIFICATE-----\nxx")
    with pytest.raises(SecAggError, match="carries no certificate of this consortium"):
        CaVerifier(ca.certificate)(ad, params)


def test_an_admin_certificate_is_refused(
    ca: CertificateAuthority, params: RoundParams, tmp_path: Path
) -> None:
    admin = _signer(ca, "hungary", tmp_path / "admin", Role.ADMIN)  # right name, wrong role
    ad = _advert(params, "hungary", admin, admin.certificate_pem)
    with pytest.raises(SecAggError, match="'hungary'"):
        CaVerifier(ca.certificate)(ad, params)


def test_an_expired_or_not_yet_valid_certificate_is_refused(
    ca: CertificateAuthority, signers: dict[str, CertificateSigner], params: RoundParams
) -> None:
    signer = signers["hungary"]
    ad = _advert(params, "hungary", signer, signer.certificate_pem)
    verify = CaVerifier(ca.certificate)
    cert = x509.load_pem_x509_certificate(signer.certificate_pem)
    verify(ad, params, now=cert.not_valid_after_utc - timedelta(seconds=1))
    with pytest.raises(SecAggError, match="certificate of 'hungary' is not valid now"):
        verify(ad, params, now=cert.not_valid_after_utc + timedelta(seconds=1))
    with pytest.raises(SecAggError, match="certificate of 'hungary' is not valid now"):
        verify(ad, params, now=cert.not_valid_before_utc - timedelta(days=1))


def test_a_node_refuses_to_share_after_one_bad_advertisement(
    ca: CertificateAuthority,
    signers: dict[str, CertificateSigner],
    params: RoundParams,
    tmp_path: Path,
) -> None:
    rogue = _ca(tmp_path, "rogue-ca")
    impostor = _signer(rogue, "hungary", tmp_path / "rogue")
    clients = _clients(params, signers, CaVerifier(ca.certificate))
    server = ServerRound(params)
    ads = {n: c.advertise() for n, c in clients.items()}
    ads["hungary"] = _advert(params, "hungary", impostor, impostor.certificate_pem)
    forwarded = server.forward_advertisements(ads)
    for n in NODES:
        if n == "hungary":
            continue
        with pytest.raises(SecAggError, match="no certificate of this consortium"):
            clients[n].share(forwarded[n])


def test_a_training_advertisement_does_not_verify_for_the_same_rounds_evaluation(
    ca: CertificateAuthority, signers: dict[str, CertificateSigner], params: RoundParams
) -> None:
    verifier = CaVerifier(ca.certificate)
    ad = ClientRound(params, "hungary", signers["hungary"], verifier).advertise()
    evaluation = dataclasses.replace(params, purpose=EVALUATE_PURPOSE)
    assert evaluation.context != params.context
    with pytest.raises(SecAggError):
        verifier(ad, evaluation)
