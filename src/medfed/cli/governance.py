"""``medfed governance``: the council proposes and votes on the consortium's rules.

A proposal or vote is signed here with the caller's admin certificate key and recorded by the
coordinator in the ledger, where every hospital checks the signature and derives the rules it
enforces (:mod:`medfed.ledger.governance`).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from medfed.cli.common import medfed_errors, out

app = typer.Typer(help="Council governance: propose, vote, show the rules in force.")

ConfigOption = Annotated[Path, typer.Option(help="Admin TOML config (coordinator + TLS).")]


class Kind(StrEnum):
    admit_member = "admit_member"
    suspend_member = "suspend_member"
    reinstate_member = "reinstate_member"
    set_max_epsilon = "set_max_epsilon"
    set_min_privacy = "set_min_privacy"
    blacklist_plan = "blacklist_plan"
    unblacklist_plan = "unblacklist_plan"


class Dp(StrEnum):
    none = "none"
    record = "record"
    client = "client"
    any = "any"


@app.command()
def propose(
    kind: Annotated[Kind, typer.Argument(help="What the proposal changes.")],
    config: ConfigOption,
    member: Annotated[str, typer.Option(help="The member to admit, suspend, reinstate.")] = "",
    plan_sha256: Annotated[str, typer.Option(help="The plan code hash to (un)blacklist.")] = "",
    max_epsilon: Annotated[float | None, typer.Option(help="Most ε a study may spend.")] = None,
    secure_aggregation: Annotated[
        bool, typer.Option(help="set_min_privacy: require secure aggregation.")
    ] = False,
    dp: Annotated[Dp, typer.Option(help="set_min_privacy: the DP every study needs.")] = Dp.none,
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")] = "",
) -> None:
    """Propose a rule change to the council (signed with your admin certificate key)."""
    from medfed.governance.council import Proposal, ProposalKind
    from medfed.governance.rules import PrivacyRequirement

    with medfed_errors():
        me = _me(config)
        proposal = Proposal(
            id=0,
            kind=ProposalKind(kind.value),
            proposer=me,
            member=member,
            plan_sha256=plan_sha256,
            max_epsilon=max_epsilon,
            privacy=PrivacyRequirement(secure_aggregation, dp.value)
            if kind is Kind.set_min_privacy
            else None,
            reason=reason,
        )
        reply = _send(config, proposal)
    out.print(f"proposal {reply.proposal_id}: {reply.message}")


@app.command()
def vote(
    proposal: Annotated[int, typer.Argument(help="The proposal's number.")],
    choice: Annotated[str, typer.Argument(help="yes or no")],
    config: ConfigOption,
) -> None:
    """Vote on a proposal (signed with your admin certificate key)."""
    from medfed.errors import ConfigError
    from medfed.governance.council import Vote

    with medfed_errors():
        if choice not in ("yes", "no"):
            raise ConfigError(f"vote yes or no, not {choice!r}")
        reply = _send(config, Vote(proposal, _me(config), choice == "yes"))
    out.print(reply.message)


@app.command()
def show(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """The council, the rules in force (with the proposal behind each) and every proposal."""
    with medfed_errors(), _client(config) as client:
        state = json.loads(client.govern().state_json)
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    _print(state)


def _print(state: dict[str, Any]) -> None:
    from rich.table import Table

    council = state["council"]
    if council is None:
        out.print("this consortium has no council")
    else:
        out.print(f"council: {', '.join(council['members'])} ({council['threshold']} to pass)")
    rules = state["rules"]
    cap = rules["max_epsilon"]
    out.print(f"max ε: {'none' if cap is None else cap}; minimum privacy: {rules['privacy']}")
    out.print(f"blacklisted plans: {', '.join(rules['blacklisted_plans']) or 'none'}; "
              f"suspended: {', '.join(rules['suspended']) or 'none'}")  # fmt: skip
    table = Table("#", "kind", "by", "change", "votes", "outcome", "reason")
    for p in state["proposals"]:
        change = (p.get("member") or p.get("plan_sha256") or p.get("max_epsilon")
                  or p.get("privacy") or p.get("study_id"))  # fmt: skip
        votes = ", ".join(f"{v}: {'yes' if ok else 'no'}" for v, ok in p["votes"].items())
        table.add_row(str(p["id"]), p["kind"], p["proposer"], str(change), votes, p["outcome"],
                      p.get("reason", ""))  # fmt: skip
    out.print(table)


def _send(config: Path, event: Any) -> Any:
    from medfed.coordinator.config import load_client_config
    from medfed.ledger.governance import signed_event_bytes
    from medfed.pki.signer import CertificateSigner

    tls = load_client_config(config).tls
    signature = CertificateSigner.from_files(tls.cert, tls.key).sign(signed_event_bytes(event))
    with _client(config) as client:
        return client.govern(event.to_json().encode("utf-8"), signature)


def _me(config: Path) -> str:
    from medfed.coordinator.config import load_client_config
    from medfed.pki.identity import identity_from_pem

    return identity_from_pem(load_client_config(config).tls.cert.read_bytes()).name


def _client(config: Path) -> Any:
    from medfed.coordinator.client import AdminClient
    from medfed.coordinator.config import load_client_config

    cfg = load_client_config(config)
    return AdminClient(cfg.coordinator, cfg.tls, cfg.server_name)
