import dataclasses
import math
from types import MappingProxyType

import pytest

from medfed.coordinator.spec import StudySpec, load_spec
from medfed.demo.heart import STUDY_SPEC
from medfed.governance.rules import (
    DEFAULT,
    ConsortiumRules,
    PrivacyRequirement,
    StudyFacts,
    check_study,
    describe_rules,
    facts_from_spec,
    facts_from_task,
)
from medfed.privacy.accounting import gaussian_epsilon

PLAN = "ab" * 32


def facts(**overrides):
    fields = {
        "plan_sha256": PLAN,
        "epsilon": 8.0,
        "record_dp": True,
        "client_dp": False,
        "secure_aggregation": False,
        "participants": frozenset({"h1", "h2"}),
    }
    return StudyFacts(**(fields | overrides))


def codes(violations):
    return [v.code for v in violations]


def test_default_rules_allow_a_study_without_privacy():
    assert check_study(DEFAULT, facts(epsilon=math.inf, record_dp=False)) == ()


def test_epsilon_above_the_cap_names_both_values_and_the_proposal():
    rules = ConsortiumRules(max_epsilon=4.0, set_by=MappingProxyType({"max_epsilon": 3}))
    (violation,) = check_study(rules, facts(epsilon=8.0))
    assert violation.code == "epsilon_above_cap"
    assert violation.message == (
        "the study asks for ε = 8 but the council allows at most ε = 4 (rule set by proposal 3)"
    )
    assert check_study(rules, facts(epsilon=4.0)) == ()
    assert check_study(rules, facts(epsilon=3.5)) == ()


def test_a_cap_refuses_a_study_without_dp_and_leaves_an_unknown_epsilon_to_the_node():
    rules = ConsortiumRules(max_epsilon=1.5)
    (violation,) = check_study(rules, facts(epsilon=math.inf, record_dp=False))
    assert "no differential privacy" in violation.message
    assert "1.5" in violation.message
    assert check_study(rules, facts(epsilon=math.nan)) == ()


@pytest.mark.parametrize(
    ("dp", "record", "client", "ok"),
    [
        ("none", False, False, True),
        ("record", True, False, True),
        ("record", False, True, False),
        ("client", False, True, True),
        ("client", True, False, False),
        ("any", True, False, True),
        ("any", False, True, True),
        ("any", False, False, False),
    ],
)
def test_minimum_dp_requirement(dp, record, client, ok):
    rules = ConsortiumRules(privacy=PrivacyRequirement(dp=dp))
    found = check_study(rules, facts(record_dp=record, client_dp=client))
    assert codes(found) == ([] if ok else ["dp_required"])


def test_secure_aggregation_requirement():
    rules = ConsortiumRules(privacy=PrivacyRequirement(secure_aggregation=True, dp="record"))
    assert codes(check_study(rules, facts())) == ["secure_aggregation_required"]
    assert check_study(rules, facts(secure_aggregation=True)) == ()
    assert codes(check_study(rules, facts(record_dp=False))) == [
        "secure_aggregation_required",
        "dp_required",
    ]


def test_blacklisted_plan_and_members():
    rules = ConsortiumRules(
        blacklisted_plans=frozenset({PLAN}),
        suspended=frozenset({"h2"}),
        explicit_admission=True,
        admitted=frozenset({"h2", "h3"}),
        set_by=MappingProxyType({f"plan:{PLAN}": 7, "member:h2": 9}),
    )
    found = check_study(rules, facts(participants=frozenset({"h1", "h2", "h3"})))
    assert codes(found) == ["plan_blacklisted", "member_not_admitted", "member_suspended"]
    assert "proposal 7" in found[0].message
    assert "'h1'" in found[1].message
    assert "proposal 9" in found[2].message
    assert check_study(rules, facts(plan_sha256="cd" * 32, participants=frozenset({"h3"}))) == ()


def test_implicit_admission_admits_every_certificate():
    rules = ConsortiumRules(admitted=frozenset({"h1"}))
    assert check_study(rules, facts(participants=frozenset({"h9"}))) == ()


def heart() -> StudySpec:
    return load_spec(STUDY_SPEC)


def test_facts_of_the_heart_demo_spec():
    spec = dataclasses.replace(heart(), plan_sha256=PLAN, nodes=("cleveland", "hungary"))
    got = facts_from_spec(spec)
    assert got == StudyFacts(PLAN, math.inf, False, False, False, frozenset(spec.nodes))


def test_facts_of_record_and_client_level_dp():
    record = facts_from_spec(dataclasses.replace(heart(), dp_epsilon=3.0))
    assert (record.epsilon, record.record_dp, record.client_dp) == (3.0, True, False)
    by_noise = facts_from_spec(dataclasses.replace(heart(), dp_noise_multiplier=1.1))
    assert math.isnan(by_noise.epsilon) and by_noise.record_dp
    client_spec = dataclasses.replace(
        heart(),
        strategy="dpfedavg",
        strategy_params={"clip_norm": 1.0, "noise_multiplier": 1.0},
        secure_aggregation=True,
    )
    client = facts_from_spec(client_spec)
    assert client.client_dp and client.secure_aggregation and not client.record_dp
    assert client.epsilon == gaussian_epsilon(1.0, client_spec.rounds, 1e-5)
    both = facts_from_spec(dataclasses.replace(client_spec, dp_noise_multiplier=1.0))
    assert both.epsilon == client.epsilon  # the record-level part is each node's to check


def test_the_cap_refuses_a_heart_study_asking_for_too_much():
    rules = ConsortiumRules(max_epsilon=4.0)
    asked = facts_from_spec(dataclasses.replace(heart(), dp_epsilon=8.0))
    assert codes(check_study(rules, asked)) == ["epsilon_above_cap"]


def task(**config):
    from medfed.protocol.v1 import medfed_pb2 as pb

    return pb.Task(
        plan=pb.PlanRef(name="p", version="1", sha256=PLAN), config=pb.TrainConfig(**config)
    )


def test_a_nodes_facts_come_from_its_task_and_its_own_epsilon():
    from medfed.protocol.v1 import medfed_pb2 as pb

    plain = facts_from_task(task(), "h1", None)
    assert plain == StudyFacts(PLAN, math.inf, False, False, False, frozenset({"h1"}))
    rules = ConsortiumRules(max_epsilon=4.0)
    assert codes(check_study(rules, plain)) == ["epsilon_above_cap"]

    record = task(record_dp=pb.RecordDp(epsilon=8.0, delta=1e-5))
    forced = facts_from_task(record, "h1", 7.9)  # the epsilon this node planned
    assert forced.record_dp and forced.epsilon == 7.9
    assert codes(check_study(rules, forced)) == ["epsilon_above_cap"]
    assert check_study(rules, facts_from_task(record, "h1", 3.0)) == ()

    distributed = facts_from_task(task(clip_norm=1.0, noise_std=0.5), "h1", None)
    assert distributed.client_dp and math.isnan(distributed.epsilon)
    central = facts_from_task(task(clip_norm=1.0), "h1", None)  # noise is the coordinator's word
    assert not central.client_dp


def test_a_secure_task_names_its_round_and_suspended_members_are_refused_by_the_node():
    from medfed.protocol.v1 import medfed_pb2 as pb

    secure = task()
    secure.secagg.CopyFrom(
        pb.SecAggStage(stage=3, params=pb.SecAggParams(nodes=["h1", "h2", "h3"]))
    )
    facts = facts_from_task(secure, "h1", None)
    assert facts.secure_aggregation
    assert facts.participants == {"h1", "h2", "h3"}
    rules = ConsortiumRules(suspended=frozenset({"h3"}))
    assert codes(check_study(rules, facts)) == ["member_suspended"]


def test_the_rules_describe_themselves_with_their_proposals():
    rules = ConsortiumRules(
        max_epsilon=2.5,
        privacy=PrivacyRequirement(secure_aggregation=True, dp="any"),
        blacklisted_plans=frozenset({PLAN}),
        suspended=frozenset({"h9"}),
        set_by=MappingProxyType({"max_epsilon": 4, f"plan:{PLAN}": 5}),
    )
    rows = dict(describe_rules(rules))
    assert rows["maximum ε per study"] == "ε ≤ 2.5 (rule set by proposal 4)"
    assert rows["minimum privacy"] == (
        "secure aggregation and differential privacy (record- or client-level)"
    )
    assert rows["blacklisted plan"] == PLAN + " (rule set by proposal 5)"
    assert rows["suspended member"] == "h9"
    assert dict(describe_rules(DEFAULT))["maximum ε per study"] == "none"
    assert dict(describe_rules(DEFAULT))["minimum privacy"] == "nothing"
