from __future__ import annotations

from medfed.coordinator.directory import NodeDirectory
from medfed.coordinator.sites import (
    SiteState,
    SiteStatus,
    SiteView,
    outcome_status,
    parse_refusal,
    refusal_reason,
    site_states,
    waiting_message,
)

HEART = ("heart_disease",)


def _view(
    name: str,
    *,
    online: bool = True,
    revoked: bool = False,
    datasets: tuple[str, ...] = HEART,
    last_seen: float = 1000.0,
) -> SiteView:
    return SiteView(name, online, revoked, datasets, last_seen)


def test_each_reason_a_hospital_cannot_take_part_is_named() -> None:
    views = [
        _view("cleveland"),
        _view("hungary", datasets=("other",)),
        _view("switzerland", online=False),
        _view("va", revoked=True, online=False),
        _view("zurich", online=False, last_seen=0.0),
    ]

    sites = site_states("heart_disease", views, {})

    assert [(s.node, s.status) for s in sites] == [
        ("cleveland", SiteStatus.READY),
        ("hungary", SiteStatus.DATASET_NOT_REGISTERED),
        ("switzerland", SiteStatus.OFFLINE),
        ("va", SiteStatus.REVOKED),
        ("zurich", SiteStatus.OFFLINE),
    ]
    assert sites[1].reason == "dataset 'heart_disease' not registered (it announces 'other')"
    assert sites[2].reason == "no heartbeat since 1970-01-01 00:16:40 UTC"
    assert "revoked" in sites[3].reason
    assert sites[4].reason == "never connected to this coordinator"


def test_a_refusal_is_the_reason_of_an_online_hospital_holding_the_dataset() -> None:
    outcomes = {
        "a": refusal_reason("plan_not_approved", "training plan mlp 1 is not approved"),
        "b": refusal_reason("privacy_budget_missing", "dataset 'heart_disease' has no budget"),
        "c": refusal_reason("privacy_budget_exhausted", "budget exhausted"),
        "d": refusal_reason("schema_mismatch", "missing 1: 'chol'"),
        "e": refusal_reason("he_failed", "no CKKS"),
        "f": "no reply before the round deadline",
        "g": "tensor 'w' holds NaN",
        "h": refusal_reason("plan_not_approved", "not approved"),
    }
    views = [_view(n) for n in "abcdefg"] + [_view("h", online=False)]

    sites = {s.node: s for s in site_states("heart_disease", views, outcomes)}

    assert {n: s.status.value for n, s in sites.items()} == {
        "a": "plan_not_approved",
        "b": "budget_missing",
        "c": "budget_exhausted",
        "d": "schema_mismatch",
        "e": "refused",
        "f": "no_reply",
        "g": "rejected",
        "h": "offline",
    }
    assert (
        sites["b"].reason
        == "refused (privacy_budget_missing): dataset 'heart_disease' has no budget"
    )


def test_refusal_reasons_read_back_their_code_and_message() -> None:
    text = refusal_reason("schema_mismatch", "missing 1: 'chol'\nsecond line")

    assert parse_refusal(text) == ("schema_mismatch", "missing 1: 'chol'\nsecond line")
    assert parse_refusal("tensor 'w' holds NaN") == ("", "tensor 'w' holds NaN")
    assert parse_refusal("evaluation: " + text)[0] == "schema_mismatch"
    assert outcome_status(text) is SiteStatus.SCHEMA_MISMATCH


def test_the_waiting_message_counts_online_hospitals_and_names_the_missing_one() -> None:
    sites = [SiteState(n, SiteStatus.READY, "ok") for n in ("a", "b", "c", "d")]
    sites.append(SiteState("e", SiteStatus.DATASET_NOT_REGISTERED, "dataset 'x' not registered"))

    message = waiting_message(sites, ["a", "b", "c", "d"], min_nodes=5)

    assert message == (
        "waiting: 4 of at least 5 hospitals can take part (5 online); "
        "missing: e (dataset 'x' not registered)"
    )


def test_the_directory_reports_a_revoked_node_and_never_selects_it() -> None:
    now = [0.0]
    revoked = {7}
    directory = NodeDirectory(10.0, clock=lambda: now[0], is_revoked=lambda s: s in revoked)
    directory.seen("a", HEART, wall=1.0, serial=7)
    directory.seen("b", HEART, wall=1.0, serial=8)
    directory.seen("a")  # a later call without a serial keeps the known one

    statuses = {s.name: s.revoked for s in directory.statuses()}

    assert statuses == {"a": True, "b": False}
    assert directory.online("heart_disease") == ["b"]
