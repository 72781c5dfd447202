"""The consortium's rules in force, and the one check both the coordinator and every node run.

The council (``governance.council``) changes these rules by m-of-n votes recorded in the ledger;
``rules_from_history`` folds the ledger into a ``ConsortiumRules``. The coordinator checks a study
when it is submitted and a node checks every task it is given, with the same pure function over
the same ``StudyFacts``: a node refuses a task that breaks the rules even if the coordinator
accepted it, so a coordinator cannot push a study past the council by skipping its own check.

``StudyFacts`` holds only what both sides can see: the coordinator builds it from the parsed spec,
the node from its task (plan hash, record-level DP request, secure-aggregation stage, the
participants it is told about). This module imports no orchestration, so either may call it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from medfed.protocol.v1 import medfed_pb2 as pb

DpRequirement = Literal["none", "record", "client", "any"]
DP_REQUIREMENTS: tuple[DpRequirement, ...] = ("none", "record", "client", "any")
"""``none``: DP not required; ``record``: record-level DP-SGD; ``client``: client-level DP
(DP-FedAvg); ``any``: either."""


@dataclass(frozen=True)
class PrivacyRequirement:
    """The least privacy protection every study must have."""

    secure_aggregation: bool = False
    dp: DpRequirement = "none"

    def describe(self) -> str:
        parts = []
        if self.secure_aggregation:
            parts.append("secure aggregation")
        if self.dp != "none":
            parts.append(
                "differential privacy (record- or client-level)"
                if self.dp == "any"
                else f"{self.dp}-level differential privacy"
            )
        return " and ".join(parts) or "nothing"


@dataclass(frozen=True)
class ConsortiumRules:
    """The rules in force. ``set_by`` maps a rule key (``max_epsilon``, ``privacy``,
    ``plan:<sha256>``, ``member:<identity>``) to the proposal that last set it, so a refusal can
    cite the decision behind it."""

    max_epsilon: float | None = None
    """The most ε any study may spend at a site (None: no cap)."""
    privacy: PrivacyRequirement = PrivacyRequirement()
    blacklisted_plans: frozenset[str] = frozenset()
    """SHA-256 of training plans no study may run."""
    suspended: frozenset[str] = frozenset()
    """Certificate identities that may not take part in any study."""
    explicit_admission: bool = False
    """True: only ``admitted`` identities are members; False: every certificate the consortium
    CA issued is a member (``admitted`` then only records the council's decisions)."""
    admitted: frozenset[str] = frozenset()
    set_by: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def source(self, key: str) -> str:
        """`` (rule set by proposal N)`` or ``""`` when the rule is the consortium's default."""
        proposal = self.set_by.get(key)
        return "" if proposal is None else f" (rule set by proposal {proposal})"


def describe_rules(rules: ConsortiumRules) -> list[tuple[str, str]]:
    """(rule, value and the proposal behind it) rows, for ``medfed governance show``."""
    cap = "none" if rules.max_epsilon is None else f"ε ≤ {_number(rules.max_epsilon)}"
    rows = [
        ("maximum ε per study", cap + rules.source("max_epsilon")),
        ("minimum privacy", rules.privacy.describe() + rules.source("privacy")),
        (
            "admission",
            "explicit: only admitted members"
            if rules.explicit_admission
            else "every certificate the consortium CA issued",
        ),
    ]
    for plan in sorted(rules.blacklisted_plans):
        rows.append(("blacklisted plan", plan + rules.source(f"plan:{plan}")))
    for member in sorted(rules.suspended):
        rows.append(("suspended member", member + rules.source(f"member:{member}")))
    for member in sorted(rules.admitted):
        rows.append(("admitted member", member + rules.source(f"member:{member}")))
    return rows


DEFAULT = ConsortiumRules()
"""No cap on ε, no privacy minimum, nothing blacklisted, nobody suspended, implicit admission."""


@dataclass(frozen=True)
class StudyFacts:
    """What a study asks for, as both the coordinator (from the spec) and a node (from its task)
    see it.

    ``epsilon`` is the most ε the study may spend at one site: the record-level target, or the
    client-level ε of its noise over all planned rounds, the larger when both; ``math.inf`` when
    the study uses no differential privacy at all. A record-level study given as a noise
    multiplier has no ε until a site plans it from its own data size: the coordinator passes
    ``math.nan`` (unknown: the cap is then checked by each node, which passes its planned ε).
    """

    plan_sha256: str
    epsilon: float
    record_dp: bool
    client_dp: bool
    secure_aggregation: bool
    participants: frozenset[str] = frozenset()
    """The sites the study names or a round selected (empty: not known yet)."""


class SpecFields(Protocol):
    """The fields of ``coordinator.spec.StudySpec`` the facts come from (structural, so this
    module need not import the coordinator)."""

    @property
    def plan_sha256(self) -> str: ...
    @property
    def dp_epsilon(self) -> float: ...
    @property
    def dp_noise_multiplier(self) -> float: ...
    @property
    def strategy(self) -> str: ...
    @property
    def strategy_params(self) -> Mapping[str, float]: ...
    @property
    def rounds(self) -> int: ...
    @property
    def secure_aggregation(self) -> bool: ...
    @property
    def nodes(self) -> tuple[str, ...]: ...


CLIENT_DP_STRATEGY = "dpfedavg"
"""The strategy that makes a study client-level differentially private (McMahan et al. 2018)."""


def facts_from_spec(spec: SpecFields) -> StudyFacts:
    """The coordinator's view of a study spec: ε is the record-level target (unknown, NaN, when
    given as a noise multiplier: each site plans it) and the client-level ε of DP-FedAvg's noise
    over every planned round (at the strategy's δ, every site in every round), the larger."""
    record = spec.dp_epsilon > 0 or spec.dp_noise_multiplier > 0
    client = spec.strategy == CLIENT_DP_STRATEGY
    epsilons = []
    if record:
        epsilons.append(spec.dp_epsilon if spec.dp_epsilon > 0 else math.nan)
    if client:
        epsilons.append(_client_epsilon(spec))
    if not epsilons:
        epsilon = math.inf
    elif any(math.isnan(e) for e in epsilons):
        epsilon = max((e for e in epsilons if not math.isnan(e)), default=math.nan)
    else:
        epsilon = max(epsilons)
    return StudyFacts(
        plan_sha256=spec.plan_sha256,
        epsilon=epsilon,
        record_dp=record,
        client_dp=client,
        secure_aggregation=spec.secure_aggregation,
        participants=frozenset(spec.nodes),
    )


def _client_epsilon(spec: SpecFields) -> float:
    from medfed.privacy.accounting import gaussian_epsilon  # dp_accounting: only when asked

    z = float(spec.strategy_params.get("noise_multiplier", 0.0))
    delta = float(spec.strategy_params.get("delta", 1e-5))
    return math.inf if z <= 0 else gaussian_epsilon(z, spec.rounds, delta)


def facts_from_task(task: pb.Task, node: str, record_epsilon: float | None) -> StudyFacts:
    """A node's view of the study behind ``task``: only what the task proves to it.

    ``record_epsilon`` is the ε this node planned for the study's record-level DP (its own data
    size decides it; None: the task asks for none). Client-level DP counts only where the node
    adds the noise itself (distributed DP-FedAvg, ``noise_std > 0``): central noise is the
    coordinator's word, which a node does not take. Its ε depends on how many sites a round
    selected, which the node does not see, so it stays unknown (NaN) here and the coordinator's
    check covers it. Participants: this node, and the secure-aggregation round's nodes if any.
    """
    config = task.config
    record = config.record_dp.epsilon > 0 or config.record_dp.noise_multiplier > 0
    client = config.noise_std > 0
    if record and record_epsilon is not None:
        epsilon = record_epsilon
    elif record or client:
        epsilon = math.nan
    else:
        epsilon = math.inf
    secure = task.HasField("secagg")
    participants = {node, *task.secagg.params.nodes} if secure else {node}
    return StudyFacts(
        plan_sha256=task.plan.sha256,
        epsilon=epsilon,
        record_dp=record,
        client_dp=client,
        secure_aggregation=secure,
        participants=frozenset(participants),
    )


ViolationCode = Literal[
    "epsilon_above_cap",
    "secure_aggregation_required",
    "dp_required",
    "plan_blacklisted",
    "member_suspended",
    "member_not_admitted",
]


@dataclass(frozen=True)
class Violation:
    """One rule a study breaks: a stable ``code`` for machines, a ``message`` for people."""

    code: ViolationCode
    message: str


def check_study(rules: ConsortiumRules, facts: StudyFacts) -> tuple[Violation, ...]:
    """Every rule ``facts`` break, in a fixed order (empty: the study may run)."""
    return (
        *_epsilon(rules, facts),
        *_privacy(rules, facts),
        *_plan(rules, facts),
        *_members(rules, facts),
    )


def _epsilon(rules: ConsortiumRules, facts: StudyFacts) -> tuple[Violation, ...]:
    cap = rules.max_epsilon
    if cap is None or math.isnan(facts.epsilon):
        return ()
    where = rules.source("max_epsilon")
    if math.isinf(facts.epsilon):
        return (
            Violation(
                "epsilon_above_cap",
                "the study uses no differential privacy (unbounded ε) but the council allows "
                f"at most ε = {_number(cap)}{where}",
            ),
        )
    if facts.epsilon > cap:
        return (
            Violation(
                "epsilon_above_cap",
                f"the study asks for ε = {_number(facts.epsilon)} but the council allows at "
                f"most ε = {_number(cap)}{where}",
            ),
        )
    return ()


def _privacy(rules: ConsortiumRules, facts: StudyFacts) -> tuple[Violation, ...]:
    need = rules.privacy
    where = rules.source("privacy")
    out = []
    if need.secure_aggregation and not facts.secure_aggregation:
        out.append(
            Violation(
                "secure_aggregation_required",
                f"the council requires secure aggregation for every study{where}; "
                "this study does not use it",
            )
        )
    has = {
        "none": True,
        "record": facts.record_dp,
        "client": facts.client_dp,
        "any": facts.record_dp or facts.client_dp,
    }[need.dp]
    if not has:
        kind = "record- or client-level" if need.dp == "any" else f"{need.dp}-level"
        out.append(
            Violation(
                "dp_required",
                f"the council requires {kind} differential privacy for every study{where}; "
                f"this study has {_dp_of(facts)}",
            )
        )
    return tuple(out)


def _plan(rules: ConsortiumRules, facts: StudyFacts) -> tuple[Violation, ...]:
    if facts.plan_sha256 not in rules.blacklisted_plans:
        return ()
    where = rules.source(f"plan:{facts.plan_sha256}")
    return (
        Violation(
            "plan_blacklisted",
            f"training plan {facts.plan_sha256[:16]}… is blacklisted by the council{where}",
        ),
    )


def _members(rules: ConsortiumRules, facts: StudyFacts) -> tuple[Violation, ...]:
    out = []
    for site in sorted(facts.participants):
        where = rules.source(f"member:{site}")
        if site in rules.suspended:
            out.append(
                Violation("member_suspended", f"site {site!r} is suspended by the council{where}")
            )
        elif rules.explicit_admission and site not in rules.admitted:
            out.append(
                Violation(
                    "member_not_admitted",
                    f"site {site!r} has not been admitted to the consortium by the council",
                )
            )
    return tuple(out)


def _dp_of(facts: StudyFacts) -> str:
    if facts.record_dp and facts.client_dp:
        return "record- and client-level differential privacy"
    if facts.record_dp:
        return "record-level differential privacy only"
    if facts.client_dp:
        return "client-level differential privacy only"
    return "no differential privacy"


def _number(value: float) -> str:
    """``8`` rather than ``8.0``; otherwise Python's shortest round-trip form."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
