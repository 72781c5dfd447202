"""``medfed pki``: run the consortium CA and request certificates, as thin commands over
:mod:`medfed.pki`.

The CA operator runs ``init``, ``issue``, ``sign``, ``revoke``, ``crl`` and ``list`` on the
offline CA machine; a hospital runs only ``csr``, so its private key never leaves it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medfed.cli.common import medfed_errors
from medfed.cli.common import out as console
from medfed.pki.identity import Role

if TYPE_CHECKING:  # cryptography loads in the commands, not with ``medfed --help``
    from medfed.pki.ca import CertificateAuthority
    from medfed.pki.index import IssuedRecord

app = typer.Typer(
    help="Consortium PKI: create the CA, issue and sign certificates, revoke them.",
    no_args_is_help=True,
)

CaOption = Annotated[Path, typer.Option("--ca", help="CA directory made by `medfed pki init`.")]
SanOption = Annotated[
    list[str] | None,
    typer.Option("--san", help="Extra subjectAltName, DNS name or IP (repeatable)."),
]
DaysOption = Annotated[int, typer.Option("--valid-days", min=1, help="Validity in days.")]


@app.command()
def init(
    consortium: Annotated[str, typer.Option(help="Consortium name, the O of every certificate.")],
    out: Annotated[Path, typer.Option(help="New CA directory.")],
    valid_days: DaysOption = 3650,
) -> None:
    """Create the consortium root CA (ca.crt, ca.key, index.json, crl.pem)."""
    from medfed.pki.ca import CertificateAuthority

    with medfed_errors():
        ca = CertificateAuthority.init(out, consortium, valid_days=valid_days)
    console.print(f"created CA {escape(consortium)!r} in {escape(str(out))}")
    console.print(f"distribute {escape(str(ca.ca_cert_path))}; keep ca.key offline")


@app.command()
def issue(
    *,
    ca: CaOption,
    name: Annotated[str, typer.Option(help="Identity name, e.g. cleveland.")],
    role: Annotated[Role, typer.Option(help="Role of the certificate holder.")],
    out: Annotated[Path, typer.Option(help="Directory for <name>.crt, <name>.key, ca.crt.")],
    san: SanOption = None,
    valid_days: DaysOption = 825,
) -> None:
    """Generate a key at the CA and issue its certificate (test beds, the coordinator)."""
    from medfed.pki.files import read_file
    from medfed.pki.identity import identity_from_pem

    with medfed_errors():
        authority = _load(ca)
        files = authority.issue(name, role, out, sans=san or [], valid_days=valid_days)
        identity = identity_from_pem(read_file(files.cert, "certificate"))
    console.print(f"issued {role.value} {name!r} serial {identity.serial:x}")
    console.print(
        f"certificate {escape(str(files.cert))}, key {escape(str(files.key))} (mode 0600)"
    )


@app.command()
def csr(
    name: Annotated[str, typer.Option(help="Identity name, e.g. cleveland.")],
    role: Annotated[Role, typer.Option(help="Role to request.")],
    out: Annotated[Path, typer.Option(help="Directory for <name>.key and <name>.csr.")],
    san: SanOption = None,
    consortium: Annotated[str, typer.Option(help="Consortium name to request (O).")] = "",
) -> None:
    """Hospital side: generate a key here and a CSR to send to the CA operator."""
    from medfed.pki.csr import make_csr

    with medfed_errors():
        key_path, csr_path = make_csr(name, role, out, consortium=consortium, sans=san or [])
    console.print(f"private key {escape(str(key_path))} stays on this machine (mode 0600)")
    console.print(f"send {escape(str(csr_path))} to the CA operator")


@app.command()
def sign(
    *,
    ca: CaOption,
    csr: Annotated[Path, typer.Option("--csr", help="CSR file from `medfed pki csr`.")],
    out: Annotated[Path, typer.Option(help="Certificate file to write.")],
    role: Annotated[Role | None, typer.Option(help="Role; default: the CSR's OU.")] = None,
    san: SanOption = None,
    valid_days: DaysOption = 825,
) -> None:
    """Sign a hospital's CSR; ca.crt is copied next to the certificate."""
    from medfed.pki.files import read_file, write_new
    from medfed.pki.identity import identity_from_pem

    with medfed_errors():
        authority = _load(ca)
        pem = authority.sign_csr(
            read_file(csr, "CSR"), role=role, sans=san or [], valid_days=valid_days
        )
        write_new(out, pem)
        authority.copy_ca_cert(out.parent)
        identity = identity_from_pem(pem)
    console.print(f"signed {identity.role.value} {identity.name!r} serial {identity.serial:x}")
    console.print(f"send {escape(str(out))} and {escape(str(out.parent / 'ca.crt'))} back")


@app.command()
def revoke(
    ca: CaOption,
    name: Annotated[str, typer.Argument(help="Identity whose certificates to revoke.")],
) -> None:
    """Revoke every certificate of NAME and re-sign the CRL."""
    with medfed_errors():
        authority = _load(ca)
        count = authority.revoke(name)
    console.print(f"revoked {count} certificate(s) of {name!r}")
    console.print(f"distribute {escape(str(authority.crl_path))} to the coordinator")


@app.command()
def crl(ca: CaOption) -> None:
    """Re-sign the CRL with a fresh next-update date (run at least weekly)."""
    with medfed_errors():
        path = _load(ca).write_crl()
    console.print(f"re-signed {escape(str(path))}")


@app.command("list")
def list_certificates(ca: CaOption) -> None:
    """Show every certificate this CA issued."""
    with medfed_errors():
        records = _load(ca).issued()
    console.print(_issued_table(records, datetime.now(UTC)))


def _load(ca: Path) -> CertificateAuthority:
    from medfed.pki.ca import CertificateAuthority

    return CertificateAuthority.load(ca)


def _issued_table(records: list[IssuedRecord], now: datetime) -> Table:
    table = Table(title=f"{len(records)} certificate(s) issued")
    table.add_column(
        "serial", overflow="fold"
    )  # folded, never cut: revocation tools need all of it
    for column in ("name", "role", "expires", "status"):
        table.add_column(column, no_wrap=True)
    for record in records:
        table.add_row(
            f"{record.serial:x}",
            record.name,
            record.role.value,
            f"{record.not_after:%Y-%m-%d}",
            _status(record, now),
        )
    return table


def _status(record: IssuedRecord, now: datetime) -> str:
    if record.revoked_at is not None:
        return f"[red]revoked {record.revoked_at:%Y-%m-%d}[/red]"
    if record.not_after <= now:
        return "[yellow]expired[/yellow]"
    return "[green]valid[/green]"
