from __future__ import annotations

import stat
from pathlib import Path

import pytest
import typer
from cryptography import x509
from typer.testing import CliRunner, Result

from medfed.cli import pki
from medfed.pki.identity import Role, identity_from_pem
from medfed.pki.revocation import RevocationList

root = typer.Typer()
root.add_typer(pki.app, name="pki")


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(root, ["pki", *map(str, args)])


def _ok(*args: str | Path) -> Result:
    result = _run(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    _ok("init", "--consortium", "acme-health", "--out", tmp_path / "ca")
    return tmp_path / "ca"


def test_init_creates_the_ca(ca_dir: Path) -> None:
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.crt", "ca.key", "crl.pem", "index.json"]


def test_issue_writes_certificate_and_key(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "coordinator"
    result = _ok(
        "issue", "--ca", ca_dir, "--name", "coordinator", "--role", "coordinator",
        "--out", out, "--san", "coord.example", "--san", "10.0.0.7", "--valid-days", "90",
    )  # fmt: skip
    identity = identity_from_pem((out / "coordinator.crt").read_bytes())
    assert identity.role is Role.COORDINATOR
    assert f"{identity.serial:x}" in result.output
    assert stat.S_IMODE((out / "coordinator.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((out / "coordinator.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "coord.example"]


def test_csr_then_sign(ca_dir: Path, tmp_path: Path) -> None:
    hospital = tmp_path / "hospital"
    _ok("csr", "--name", "cleveland", "--role", "node", "--out", hospital)
    assert sorted(p.name for p in hospital.iterdir()) == ["cleveland.csr", "cleveland.key"]
    cert_path = tmp_path / "signed" / "cleveland.crt"

    _ok("sign", "--ca", ca_dir, "--csr", hospital / "cleveland.csr", "--out", cert_path)

    identity = identity_from_pem(cert_path.read_bytes())
    assert (identity.name, identity.role) == ("cleveland", Role.NODE)
    assert (cert_path.parent / "ca.crt").read_bytes() == (ca_dir / "ca.crt").read_bytes()


def test_sign_with_role_override(ca_dir: Path, tmp_path: Path) -> None:
    _ok("csr", "--name", "alice", "--role", "node", "--out", tmp_path)
    cert_path = tmp_path / "alice.crt"
    _ok("sign", "--ca", ca_dir, "--csr", tmp_path / "alice.csr", "--out", cert_path,
        "--role", "admin", "--valid-days", "30")  # fmt: skip
    assert identity_from_pem(cert_path.read_bytes()).role is Role.ADMIN


def test_revoke_crl_and_list(ca_dir: Path, tmp_path: Path) -> None:
    _ok("issue", "--ca", ca_dir, "--name", "mayo", "--role", "node", "--out", tmp_path / "m")
    _ok("issue", "--ca", ca_dir, "--name", "cleveland", "--role", "node", "--out", tmp_path / "c")
    serial = identity_from_pem((tmp_path / "c" / "cleveland.crt").read_bytes()).serial

    assert "revoked 1 certificate" in _ok("revoke", "--ca", ca_dir, "cleveland").output
    crl_before = RevocationList.load(ca_dir / "crl.pem", ca_dir / "ca.crt")
    _ok("crl", "--ca", ca_dir)
    crl_after = RevocationList.load(ca_dir / "crl.pem", ca_dir / "ca.crt")
    listing = _ok("list", "--ca", ca_dir).output

    assert crl_before.is_revoked(serial)
    assert crl_after.is_revoked(serial)
    assert crl_after.number is not None and crl_before.number is not None
    assert crl_after.number > crl_before.number
    assert "2 certificate(s) issued" in listing
    assert "mayo" in listing
    assert "valid" in listing
    assert "revoked" in listing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["issue", "--name", "Bad Name", "--role", "node"], "invalid identity name"),
        (["revoke", "ghost"], "no unrevoked certificate"),
        (["sign", "--csr", "missing.csr"], "cannot read CSR"),
    ],
)
def test_library_errors_are_one_red_line_and_exit_2(
    ca_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    command, *rest = args
    extra = ["--out", str(tmp_path / "out")] if command in {"issue", "sign"} else []
    result = _run(command, "--ca", ca_dir, *rest, *extra)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error:")


def test_init_twice_exits_2(ca_dir: Path) -> None:
    result = _run("init", "--consortium", "acme-health", "--out", ca_dir)
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.stderr


def test_unknown_role_is_a_usage_error(ca_dir: Path, tmp_path: Path) -> None:
    result = _run("csr", "--name", "x", "--role", "researcher", "--out", tmp_path)
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == [ca_dir]


def test_no_arguments_shows_help() -> None:
    result = _run()
    assert "issue" in result.output
    assert "revoke" in result.output
