"""A study spec: what a researcher asks the consortium to train, parsed safely from TOML.

TOML (stdlib ``tomllib``) carries data only: no tags, no object construction. The spec is
validated twice: by the researcher's CLI before sending, and by the coordinator on receipt, since
the coordinator trusts nothing it cannot verify.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from medfed.analytics.spec import StatsSpec
from medfed.compat.layout import CLIENT_PLAN_VERSION, Layout, check_layout, parse_layout
from medfed.configfile import read_toml, require_table
from medfed.errors import ConfigError
from medfed.protocol.v1 import medfed_pb2 as pb

Optimizer = Literal["sgd", "adam"]
Compression = Literal["none", "q8", "topk"]
Personalization = Literal["none", "fedbn"]
COMPRESSIONS: tuple[Compression, ...] = ("none", "q8", "topk")
PERSONALIZATIONS: tuple[Personalization, ...] = ("none", "fedbn")
Accountant = Literal["rdp", "pld"]
Contributions = Literal["data_size", "shapley", "leave_one_out"]
NO_COALITIONS = {
    "dpfedavg": "client-level DP noises each aggregate: every coalition model would be one more "
    "noised release of the sites' updates, which the study's epsilon does not account for",
    "krum": "Krum needs more updates than a small coalition has",
    "trimmed_mean": "a trimmed mean of one or two updates trims them away",
    "median": "a coordinate-wise median of a small coalition is not the strategy's aggregate",
    "cyclic": "one site trains per round: there is no coalition to split",
}
"""Strategies whose coalition models mean nothing (or cost privacy): refused with Shapley."""
_PRIVACY_KEYS = frozenset(
    {"epsilon", "delta", "noise_multiplier", "max_grad_norm", "accountant", "audit_on_complete"}
)
_SECAGG_KEYS = frozenset({"enabled", "threshold", "degree", "clip", "stage_deadline_s"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$")
_IDENT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StudySpec:
    name: str
    dataset: str
    features: tuple[str, ...]
    label: str
    plan: str
    plan_version: str
    rounds: int
    plan_sha256: str = ""
    plan_options: Mapping[str, float] = field(default_factory=dict)
    strategy: str = "fedavg"
    strategy_params: Mapping[str, float] = field(default_factory=dict)
    local_epochs: int = 1
    local_steps: int = 0
    batch_size: int = 32
    optimizer: Optimizer = "sgd"
    learning_rate: float = 0.01
    min_nodes: int = 1
    round_deadline_s: float = 60.0
    eval_every: int = 1
    seed: int = 0
    nodes: tuple[str, ...] = ()
    compression: Compression = "none"
    topk_ratio: float = 0.01
    error_feedback: bool = True
    personalization: Personalization = "none"
    finetune_steps: int = 0
    dp_epsilon: float = 0.0
    """Record-level DP: the epsilon each site may spend on the whole study (0 = no DP-SGD)."""
    dp_delta: float = 1e-5
    dp_noise_multiplier: float = 0.0
    """Record-level DP with a fixed noise multiplier instead of a target epsilon."""
    dp_max_grad_norm: float = 1.0
    dp_accountant: Accountant = "rdp"
    secure_aggregation: bool = False
    """SecAgg+: the coordinator sees only the sum of the hospitals' updates (medfed.secagg)."""
    secagg_threshold: float = 2 / 3
    """Fraction of each node's neighbourhood (itself included) that must survive a round."""
    secagg_degree: int = 0
    """Neighbours per node (0: about 2 log2 n, the complete graph up to 8 nodes)."""
    secagg_clip: float = 1e4
    """Per-coordinate bound on num_examples x model change before fixed-point encoding."""
    secagg_stage_deadline_s: float = 30.0
    max_site_weight: float = 0.0
    """Most of the aggregation weight any one site may hold (0 = no cap): sites weigh their
    examples, capped by water-filling (:mod:`medfed.strategies.site_weight`)."""
    he_context_sha256: str = ""
    """Set by the coordinator when the researcher submitted a CKKS public context: sites then
    send their evaluation metrics encrypted (medfed.coordinator.encrypted_eval)."""
    stats_spec: str = ""
    """Set: a statistics study (``medfed study stats``), the StatsSpec's canonical JSON; one
    round of disclosure-controlled site summaries, no model (medfed.coordinator.stats)."""
    approvals: str = ""
    """Protocol approval before the study starts: "" none; "all": every hospital named in
    ``nodes``; "M": at least M hospitals. Each data steward approves the study's hash
    (:attr:`sha256`) with ``medfed node protocol approve``; only hospitals that approved train."""
    contributions: Contributions = "data_size"
    """How each site's contribution is estimated: ``data_size`` (its share of the examples, all
    there is under secure aggregation), ``shapley`` or ``leave_one_out`` on the sites' federated
    evaluation of coalition models after every round (:mod:`medfed.coordinator.round_contributions`;
    each evaluating hospital then receives models built from other hospitals' single updates)."""
    contributions_metric: str = "auc"
    """The evaluation metric a coalition's utility is the example-weighted mean of."""
    audit_on_complete: bool = False
    """``[privacy] audit_on_complete``: when the study completes, the coordinator submits its
    privacy audit itself (:func:`medfed.coordinator.audit.follow_up_audit`)."""
    audit_of: str = ""
    """Set: a privacy audit of that completed study (``medfed study audit``): one round in which
    its sites score its final model with membership inference (medfed.coordinator.audit)."""
    cohort_sha256: str = ""
    """"": any dataset the sites registered under the name; set: the SHA-256 of the OMOP
    cohort/feature spec every site must have registered for it (refused by a site otherwise)."""
    standardize: str = ""
    """"": each site standardizes with its own training statistics; ``pooled:<stats study>``:
    continuous features with that study's pooled mean and std (federated standardization)."""
    pooled_standardization: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    plan_layout: Layout = ()
    """A client plan's arrays in order (name, shape, dtype), from ``[plan] layout``: the
    researcher's initial model is built from it (:mod:`medfed.compat.layout`); it travels as
    that model, so the coordinator's copy of the spec leaves it empty."""
    plan_init: str = ""
    """A client plan's initial model (safetensors in the layout; "" = zeros), read by the
    researcher's CLI only, like ``plan_layout``."""
    """Set by the coordinator from ``standardize`` (never the client's word): feature ->
    (mean, std), sent with every task and kept in the spec, hence in the model bundle."""

    def __post_init__(self) -> None:
        _check(bool(_NAME.match(self.name)), f"study name {self.name!r} is not a plain name")
        _check(bool(_IDENT.match(self.dataset)), f"dataset name {self.dataset!r} is invalid")
        _check(
            self.cohort_sha256 == "" or bool(_SHA256.fullmatch(self.cohort_sha256)),
            f"cohort_sha256 must be 64 lower-case hex digits, not {self.cohort_sha256!r}",
        )
        _check(bool(_IDENT.match(self.plan)), f"plan name {self.plan!r} is invalid")
        _check(1 <= self.rounds <= 100_000, f"rounds must be 1..100000, got {self.rounds}")
        _check(self.local_epochs >= 0 and self.local_steps >= 0, "local work must be >= 0")
        _check(
            self.local_epochs > 0 or self.local_steps > 0,
            "set local_epochs or local_steps above 0",
        )
        _check(1 <= self.batch_size <= 1_000_000, f"batch_size {self.batch_size} out of range")
        _check(
            self.optimizer in ("sgd", "adam"),
            f"optimizer must be sgd or adam, not {self.optimizer!r}",
        )
        _check(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "learning_rate must be a positive finite number",
        )
        _check(self.min_nodes >= 1, "min_nodes must be at least 1")
        self._check_approvals()
        self._check_contributions()
        _check(
            math.isfinite(self.round_deadline_s) and 0 < self.round_deadline_s <= 86_400,
            "round_deadline_s must be in (0, 86400]",
        )
        _check(self.eval_every >= 0, "eval_every must be >= 0 (0 = only after the last round)")
        for mapping, what in (
            (self.plan_options, "plan option"),
            (self.strategy_params, "strategy param"),
        ):
            for key, value in mapping.items():
                _check(math.isfinite(value), f"{what} {key!r} must be finite")
        _check(len(set(self.features)) == len(self.features), "features must be unique")
        _check(
            self.compression in COMPRESSIONS,
            f"compression must be one of {COMPRESSIONS}, not {self.compression!r}",
        )
        _check(0 < self.topk_ratio <= 1, f"topk_ratio must be in (0, 1], got {self.topk_ratio}")
        _check(
            self.personalization in PERSONALIZATIONS,
            f"personalization must be one of {PERSONALIZATIONS}, not {self.personalization!r}",
        )
        _check(0 <= self.finetune_steps <= 100_000, "finetune_steps must be 0..100000")
        _check(0 < self.secagg_threshold <= 1, "secure_aggregation threshold must be in (0, 1]")
        _check(self.secagg_degree >= 0, "secure_aggregation degree must be >= 0")
        _check(
            math.isfinite(self.secagg_clip) and self.secagg_clip > 0,
            "secure_aggregation clip must be > 0",
        )
        _check(
            0 < self.secagg_stage_deadline_s <= 3600,
            "secure_aggregation stage_deadline_s must be in (0, 3600]",
        )
        _check(
            math.isfinite(self.dp_epsilon) and self.dp_epsilon >= 0,
            "privacy epsilon must be >= 0 (0 = off)",
        )
        _check(
            math.isfinite(self.dp_noise_multiplier) and self.dp_noise_multiplier >= 0,
            "privacy noise_multiplier must be >= 0 (0 = off)",
        )
        _check(
            not (self.dp_epsilon and self.dp_noise_multiplier),
            "privacy: give epsilon or noise_multiplier, not both",
        )
        _check(0 < self.dp_delta < 1, f"privacy delta must be in (0, 1), got {self.dp_delta}")
        _check(
            math.isfinite(self.dp_max_grad_norm) and self.dp_max_grad_norm > 0,
            "privacy max_grad_norm must be > 0",
        )
        _check(self.dp_accountant in ("rdp", "pld"), "privacy accountant must be rdp or pld")
        self._check_site_weight()
        self._check_stats()
        _check(
            not self.audit_of or (self.rounds == 1 and not self.stats_spec),
            "a privacy audit has exactly one round and no statistics query",
        )
        _check(
            not self.audit_on_complete or not (self.audit_of or self.stats_spec),
            "audit_on_complete is for a study that trains a model",
        )
        self._check_client_plan()

    def _check_site_weight(self) -> None:
        """A cap of ``m`` needs at least ``1/m`` sites in a round, and the coordinator's eyes:
        under secure aggregation each site folds its weight into its masked update."""
        m = self.max_site_weight
        _check(math.isfinite(m) and 0 <= m <= 1, f"max_site_weight must be in (0, 1], got {m}")
        if not m:
            return
        _check(
            m * self.min_nodes >= 1 - 1e-9,
            f"max_site_weight {m} needs at least {math.ceil(1 / m - 1e-9)} sites per round "
            f"(min_nodes is {self.min_nodes})",
        )
        _check(
            not self.secure_aggregation,
            "max_site_weight cannot be enforced with secure aggregation: each site folds its "
            "example weight into its masked update, so the coordinator never sees it to cap",
        )

    @property
    def client_plan(self) -> bool:
        """A hospital's own client code (``plan = { kind = \"client\", … }``, medfed.compat)."""
        return self.plan_version == CLIENT_PLAN_VERSION

    def _check_client_plan(self) -> None:
        """What a client plan cannot do: its training loop is the hospital's own code."""
        if not self.client_plan:
            _check(
                not (self.plan_layout or self.plan_init),
                'a layout and init are declared only for kind = "client" plans',
            )
            return
        check_layout(self.plan_layout)
        _check(
            not (self.dp_epsilon or self.dp_noise_multiplier),
            "record-level DP (DP-SGD, [privacy]) is refused for client plans: it clips and "
            "noises each record's gradient inside the training loop, and a client plan's loop "
            "is the hospital's own code; use client-level DP (strategy dpfedavg) instead",
        )
        _check(
            self.strategy != "scaffold",
            "scaffold is refused for client plans: its gradient correction acts inside the "
            "training loop, which the client's fit does not expose",
        )

    def _check_stats(self) -> None:
        _check(
            self.standardize == "" or self.standardize.startswith("pooled:"),
            f"standardize is '' or 'pooled:<stats study id>', not {self.standardize!r}",
        )
        for name, (mean, std) in self.pooled_standardization.items():
            _check(math.isfinite(mean) and std > 0, f"pooled statistics of {name!r} unusable")
        if not self.stats_spec:
            return
        try:
            StatsSpec.from_json(json.loads(self.stats_spec))
        except (ValueError, AttributeError, ConfigError) as exc:
            raise ConfigError(f"invalid study spec: stats query: {exc}") from exc
        _check(self.rounds == 1, "a statistics study has exactly one round")
        if self.secure_aggregation:  # analytics/secure_table.py: the layout comes from the query
            _check(
                bool(self.features),
                "secure aggregation of statistics needs the query's features named: every "
                "site's vector has one layout, fixed by the query before any data is read",
            )
            _check(
                self.min_nodes >= 2,
                "secure aggregation of statistics needs min_nodes >= 2: the sum of one site's "
                "summary is that site's summary",
            )

    def to_json(self) -> str:
        doc = asdict(self)
        return json.dumps(doc, sort_keys=True)

    def _check_contributions(self) -> None:
        _check(
            self.contributions in ("data_size", "shapley", "leave_one_out"),
            "contributions must be data_size, shapley or leave_one_out, "
            f"not {self.contributions!r}",
        )
        _check(bool(_IDENT.match(self.contributions_metric)), "contributions metric is a name")
        if self.contributions == "data_size":
            return
        refusal = (
            "secure aggregation hides every single update, so no coalition model can be built"
            if self.secure_aggregation
            else "encrypted metrics reach the coordinator as one ciphertext, never per model"
            if self.he_context_sha256
            else NO_COALITIONS.get(self.strategy, "")
        )
        _check(not refusal, f"contributions = {self.contributions!r} is refused: {refusal}")

    def _check_approvals(self) -> None:
        if self.approvals in ("", "all"):
            _check(
                self.approvals != "all" or bool(self.nodes),
                'approvals = "all" needs the study to name its hospitals in `nodes`',
            )
            return
        _check(
            self.approvals.isdigit() and int(self.approvals) >= 1,
            f'approvals must be "all" or a number of hospitals >= 1, not {self.approvals!r}',
        )
        _check(
            not self.nodes or int(self.approvals) <= len(self.nodes),
            f"approvals = {self.approvals} but the study names only {len(self.nodes)} hospitals",
        )

    @property
    def sha256(self) -> str:
        """The study's protocol hash: SHA-256 of its canonical JSON. What the ledger records at
        submission, what the protocol document prints and what each data steward approves.

        The pooled statistics the coordinator fills in at submission are left out: they are
        fixed by ``standardize`` (the completed statistics study they come from, which is
        hashed), so the researcher's document and the coordinator's record give one hash."""
        return spec_sha256(dataclasses.replace(self, pooled_standardization={}).to_json())

    @classmethod
    def from_json(cls, text: str) -> StudySpec:
        doc = json.loads(text)
        doc["features"] = tuple(doc["features"])
        doc["nodes"] = tuple(doc["nodes"])
        pooled = doc.get("pooled_standardization", {})
        doc["pooled_standardization"] = {k: (float(m), float(s)) for k, (m, s) in pooled.items()}
        doc["plan_layout"] = tuple(
            (str(n), tuple(int(d) for d in shape), str(t))
            for n, shape, t in doc.get("plan_layout", ())
        )
        return cls(**doc)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"invalid study spec: {message}")


def load_spec(path: Path) -> StudySpec:
    spec = spec_from_mapping(read_toml(path, "study spec"), source=str(path))
    if spec.plan_init:  # relative to the spec's folder, like the paths of a config file
        spec = replace(spec, plan_init=str(path.parent / spec.plan_init))
    return spec


def spec_from_mapping(doc: Mapping[str, Any], source: str = "spec") -> StudySpec:
    """Build a spec from a parsed TOML document, naming the unknown or mistyped key on error."""
    known = {
        "name", "rounds", "local_epochs", "local_steps", "batch_size", "optimizer",
        "learning_rate", "min_nodes", "round_deadline_s", "eval_every", "seed", "nodes",
        "dataset", "plan", "strategy", "compression", "topk_ratio", "error_feedback",
        "personalization", "finetune_steps", "privacy", "secure_aggregation", "max_site_weight",
        "approvals", "contributions",
    }  # fmt: skip
    unknown = set(doc) - known
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}")
    dataset = require_table(doc, "dataset", source)
    plan = require_table(doc, "plan", source)
    strategy = doc.get("strategy", {"name": "fedavg"})
    privacy = doc.get("privacy", {})
    if not isinstance(privacy, Mapping) or set(privacy) - _PRIVACY_KEYS:
        raise ConfigError(f"{source}: [privacy] takes only {sorted(_PRIVACY_KEYS)}")
    secure = _secure_aggregation(doc.get("secure_aggregation", False), source)
    contributions = _contributions(doc.get("contributions", "data_size"), source)
    try:
        return StudySpec(
            name=str(doc["name"]),
            dataset=str(dataset["name"]),
            features=tuple(str(f) for f in dataset.get("features", [])),
            label=str(dataset.get("label", "")),
            standardize=str(dataset.get("standardize", "")),
            cohort_sha256=str(dataset.get("cohort_sha256", "")),
            plan=str(plan["name"]),
            plan_version=_plan_version(plan, source),
            plan_layout=_plan_layout(plan, source),
            plan_init=str(plan.get("init", "")),
            plan_sha256=str(plan.get("sha256", "")),
            plan_options=_floats(plan.get("options", {})),
            strategy=str(strategy["name"]),
            strategy_params=_floats(strategy.get("params", {})),
            rounds=int(doc["rounds"]),
            local_epochs=int(doc.get("local_epochs", 1)),
            local_steps=int(doc.get("local_steps", 0)),
            batch_size=int(doc.get("batch_size", 32)),
            optimizer=cast(Optimizer, str(doc.get("optimizer", "sgd"))),
            learning_rate=float(doc.get("learning_rate", 0.01)),
            min_nodes=int(doc.get("min_nodes", 1)),
            round_deadline_s=float(doc.get("round_deadline_s", 60.0)),
            eval_every=int(doc.get("eval_every", 1)),
            seed=int(doc.get("seed", 0)),
            nodes=tuple(str(n) for n in doc.get("nodes", [])),
            compression=cast(Compression, str(doc.get("compression", "none"))),
            topk_ratio=float(doc.get("topk_ratio", 0.01)),
            error_feedback=_bool(doc.get("error_feedback", True), "error_feedback"),
            personalization=cast(Personalization, str(doc.get("personalization", "none"))),
            finetune_steps=int(doc.get("finetune_steps", 0)),
            dp_epsilon=float(privacy.get("epsilon", 0.0)),
            dp_delta=float(privacy.get("delta", 1e-5)),
            dp_noise_multiplier=float(privacy.get("noise_multiplier", 0.0)),
            dp_max_grad_norm=float(privacy.get("max_grad_norm", 1.0)),
            dp_accountant=cast(Accountant, str(privacy.get("accountant", "rdp"))),
            audit_on_complete=_bool(
                privacy.get("audit_on_complete", False), "privacy.audit_on_complete"
            ),
            secure_aggregation=_bool(secure.get("enabled", True), "secure_aggregation.enabled"),
            secagg_threshold=float(secure.get("threshold", 2 / 3)),
            secagg_degree=int(secure.get("degree", 0)),
            secagg_clip=float(secure.get("clip", 1e4)),
            secagg_stage_deadline_s=float(secure.get("stage_deadline_s", 30.0)),
            max_site_weight=float(doc.get("max_site_weight", 0.0)),
            approvals=str(doc.get("approvals", "")),
            contributions=cast(Contributions, str(contributions.get("method", "data_size"))),
            contributions_metric=str(contributions.get("metric", "auc")),
        )
    except KeyError as exc:
        raise ConfigError(f"{source}: missing key {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _plan_version(plan: Mapping[str, Any], source: str) -> str:
    """An installed plan's version, or the marker of a client plan (``kind = \"client\"``)."""
    kind = plan.get("kind", "installed")
    if kind == "client":
        if "version" in plan:
            raise ConfigError(
                f"{source}: a client plan has no version (its file hash is the node's)"
            )
        return CLIENT_PLAN_VERSION
    if kind != "installed":
        raise ConfigError(f"{source}: plan kind must be 'installed' or 'client', not {kind!r}")
    return str(plan["version"])


def _plan_layout(plan: Mapping[str, Any], source: str) -> Layout:
    if plan.get("kind") == "client":
        return parse_layout(plan.get("layout"), source)
    if "layout" in plan:
        raise ConfigError(f'{source}: [plan] layout is declared only for kind = "client"')
    return ()


def _contributions(value: Any, source: str) -> Mapping[str, Any]:
    """``contributions = "shapley"`` or a ``[contributions]`` table of ``method`` and ``metric``."""
    if isinstance(value, str):
        return {"method": value}
    if not isinstance(value, Mapping) or set(value) - {"method", "metric"}:
        raise ConfigError(
            f'{source}: contributions is a method name or a table of "method" and "metric"'
        )
    return value


def _secure_aggregation(value: Any, source: str) -> Mapping[str, Any]:
    """``secure_aggregation = true``/``false`` or a ``[secure_aggregation]`` table (on unless
    it says ``enabled = false``)."""
    if isinstance(value, bool):
        return {"enabled": value}
    if not isinstance(value, Mapping) or set(value) - _SECAGG_KEYS:
        raise ConfigError(
            f"{source}: secure_aggregation is true/false or a table of {sorted(_SECAGG_KEYS)}"
        )
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def _floats(mapping: Any) -> dict[str, float]:
    if not isinstance(mapping, Mapping):
        raise ConfigError("options/params must be a table of numbers")
    return {str(k): float(v) for k, v in mapping.items()}


def spec_to_proto(spec: StudySpec) -> pb.StudySpec:
    return pb.StudySpec(
        name=spec.name,
        dataset=dataset_ref(spec),
        plan=pb.PlanRef(name=spec.plan, version=spec.plan_version, sha256=spec.plan_sha256),
        plan_options=dict(spec.plan_options),
        strategy=pb.StrategySpec(name=spec.strategy, params=dict(spec.strategy_params)),
        rounds=spec.rounds,
        local_epochs=spec.local_epochs,
        local_steps=spec.local_steps,
        batch_size=spec.batch_size,
        optimizer=spec.optimizer,
        learning_rate=spec.learning_rate,
        min_nodes=spec.min_nodes,
        round_deadline_s=spec.round_deadline_s,
        eval_every=spec.eval_every,
        seed=spec.seed,
        nodes=list(spec.nodes),
        compression=spec.compression,
        topk_ratio=spec.topk_ratio,
        error_feedback=spec.error_feedback,
        personalization=spec.personalization,
        finetune_steps=spec.finetune_steps,
        record_dp=record_dp_of(spec),
        secure_aggregation=pb.SecureAggregation(
            enabled=spec.secure_aggregation,
            threshold=spec.secagg_threshold,
            degree=spec.secagg_degree,
            clip=spec.secagg_clip,
            stage_deadline_s=spec.secagg_stage_deadline_s,
        ),
        he_context_sha256=spec.he_context_sha256,
        max_site_weight=spec.max_site_weight,
        stats=pb.StatsQuery(spec_json=spec.stats_spec) if spec.stats_spec else None,
        audit_of=spec.audit_of,
        audit_on_complete=spec.audit_on_complete,
        approvals=spec.approvals,
        contributions=pb.Contributions(method=spec.contributions, metric=spec.contributions_metric),
        standardize=spec.standardize,
        standardization=standardization_of(spec),
    )


def dataset_ref(spec: StudySpec, *, label: bool = True) -> pb.DatasetRef:
    """What every task of the study says about the data it runs on."""
    return pb.DatasetRef(
        name=spec.dataset,
        features=list(spec.features),
        label=spec.label if label else "",
        cohort_sha256=spec.cohort_sha256,
    )


def spec_from_proto(message: pb.StudySpec) -> StudySpec:
    return StudySpec(
        name=message.name,
        dataset=message.dataset.name,
        features=tuple(message.dataset.features),
        label=message.dataset.label,
        cohort_sha256=message.dataset.cohort_sha256,
        plan=message.plan.name,
        plan_version=message.plan.version,
        plan_sha256=message.plan.sha256,
        plan_options=dict(message.plan_options),
        strategy=message.strategy.name,
        strategy_params=dict(message.strategy.params),
        rounds=message.rounds,
        local_epochs=message.local_epochs,
        local_steps=message.local_steps,
        batch_size=message.batch_size,
        optimizer=cast(Optimizer, message.optimizer),
        learning_rate=message.learning_rate,
        min_nodes=message.min_nodes,
        round_deadline_s=message.round_deadline_s,
        eval_every=message.eval_every,
        seed=message.seed,
        nodes=tuple(message.nodes),
        compression=cast(Compression, message.compression or "none"),
        topk_ratio=message.topk_ratio or 0.01,
        error_feedback=message.error_feedback,
        personalization=cast(Personalization, message.personalization or "none"),
        finetune_steps=message.finetune_steps,
        dp_epsilon=message.record_dp.epsilon,
        dp_delta=message.record_dp.delta or 1e-5,
        dp_noise_multiplier=message.record_dp.noise_multiplier,
        dp_max_grad_norm=message.record_dp.max_grad_norm or 1.0,
        dp_accountant=cast(Accountant, message.record_dp.accountant or "rdp"),
        secure_aggregation=message.secure_aggregation.enabled,
        secagg_threshold=message.secure_aggregation.threshold or 2 / 3,
        secagg_degree=message.secure_aggregation.degree,
        secagg_clip=message.secure_aggregation.clip or 1e4,
        secagg_stage_deadline_s=message.secure_aggregation.stage_deadline_s or 30.0,
        he_context_sha256=message.he_context_sha256,
        max_site_weight=message.max_site_weight,
        stats_spec=message.stats.spec_json,
        audit_of=message.audit_of,
        audit_on_complete=message.audit_on_complete,
        approvals=message.approvals,
        contributions=cast(Contributions, message.contributions.method or "data_size"),
        contributions_metric=message.contributions.metric or "auc",
        standardize=message.standardize,
        pooled_standardization={
            f: (m, s)
            for f, m, s in zip(
                message.standardization.features,
                message.standardization.mean,
                message.standardization.std,
                strict=True,
            )
        },
    )


def standardization_of(spec: StudySpec) -> pb.Standardization | None:
    """The pooled statistics every node of the study standardizes with (None: its own)."""
    if not spec.pooled_standardization:
        return None
    names = sorted(spec.pooled_standardization)
    return pb.Standardization(
        source=spec.standardize.removeprefix("pooled:"),
        features=names,
        mean=[spec.pooled_standardization[n][0] for n in names],
        std=[spec.pooled_standardization[n][1] for n in names],
    )


def record_dp_of(spec: StudySpec) -> pb.RecordDp:
    """The study's record-level DP settings as sent to every node (empty: no DP-SGD)."""
    if not (spec.dp_epsilon or spec.dp_noise_multiplier):
        return pb.RecordDp()
    return pb.RecordDp(
        epsilon=spec.dp_epsilon,
        delta=spec.dp_delta,
        noise_multiplier=spec.dp_noise_multiplier,
        max_grad_norm=spec.dp_max_grad_norm,
        accountant=spec.dp_accountant,
    )


def spec_sha256(spec_json: str) -> str:
    """SHA-256 of a study spec's canonical JSON (:meth:`StudySpec.to_json`)."""
    return hashlib.sha256(spec_json.encode("utf-8")).hexdigest()
