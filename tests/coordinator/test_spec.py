from __future__ import annotations

from pathlib import Path

import pytest

from medfed.coordinator.spec import (
    StudySpec,
    load_spec,
    spec_from_mapping,
    spec_from_proto,
    spec_to_proto,
)
from medfed.errors import ConfigError

MINIMAL = """
name = "demo"
rounds = 3
[dataset]
name = "heart_disease"
features = ["a", "b"]
label = "target"
[plan]
name = "logistic_regression"
version = "1"
"""


def test_minimal_toml_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(MINIMAL)

    spec = load_spec(path)

    assert spec.rounds == 3
    assert spec.strategy == "fedavg"
    assert spec.features == ("a", "b")
    assert spec.optimizer == "sgd"


def test_spec_round_trips_through_proto_and_json(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(
        MINIMAL
        + '[plan.options]\nhidden = 16\n[strategy]\nname = "fedprox"\n[strategy.params]\nmu = 0.1\n'
    )
    spec = load_spec(path)

    assert spec_from_proto(spec_to_proto(spec)) == spec
    assert StudySpec.from_json(spec.to_json()) == spec
    assert spec.strategy_params == {"mu": 0.1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rounds": 0}, "rounds"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"round_deadline_s": 0.0}, "round_deadline_s"),
        ({"min_nodes": 0}, "min_nodes"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_invalid_values_are_refused_with_the_field_named(
    change: dict[str, object], message: str
) -> None:
    import tomllib

    doc = tomllib.loads(MINIMAL) | change
    with pytest.raises(ConfigError, match=message):
        spec_from_mapping(doc)


def test_unknown_key_is_named() -> None:
    import tomllib

    with pytest.raises(ConfigError, match="roundz"):
        spec_from_mapping(tomllib.loads(MINIMAL) | {"roundz": 3})


def test_missing_plan_table_is_named() -> None:
    import tomllib

    doc = tomllib.loads(MINIMAL)
    del doc["plan"]
    with pytest.raises(ConfigError, match=r"\[plan\]"):
        spec_from_mapping(doc)


def test_unreadable_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = ")
    with pytest.raises(ConfigError, match="cannot read study spec"):
        load_spec(path)


def test_max_site_weight_is_off_by_default_and_travels(tmp_path: Path) -> None:
    import tomllib

    assert spec_from_mapping(tomllib.loads(MINIMAL)).max_site_weight == 0.0
    spec = spec_from_mapping(tomllib.loads(MINIMAL) | {"max_site_weight": 0.4, "min_nodes": 3})

    assert spec.max_site_weight == 0.4
    assert spec_from_proto(spec_to_proto(spec)) == spec
    assert StudySpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_site_weight": 1.5, "min_nodes": 3}, r"max_site_weight must be in \(0, 1\]"),
        ({"max_site_weight": -0.2}, r"max_site_weight must be in \(0, 1\]"),
        ({"max_site_weight": float("nan")}, r"max_site_weight must be in \(0, 1\]"),
        ({"max_site_weight": 0.3, "min_nodes": 3}, r"at least 4 sites per round \(min_nodes is 3"),
        (
            {"max_site_weight": 0.5, "min_nodes": 2, "secure_aggregation": True},
            "cannot be enforced with secure aggregation",
        ),
    ],
)
def test_max_site_weight_that_cannot_hold_is_refused(
    change: dict[str, object], message: str
) -> None:
    import tomllib

    with pytest.raises(ConfigError, match=message):
        spec_from_mapping(tomllib.loads(MINIMAL) | change)


def test_a_pinned_cohort_spec_travels_with_every_task_and_must_be_a_sha256() -> None:
    import tomllib

    pin = "ab" * 32
    doc = tomllib.loads(
        MINIMAL.replace('label = "target"', f'label = "target"\ncohort_sha256 = "{pin}"')
    )
    spec = spec_from_mapping(doc)

    assert spec.cohort_sha256 == pin
    assert spec_from_proto(spec_to_proto(spec)) == spec
    assert spec_to_proto(spec).dataset.cohort_sha256 == pin
    doc["dataset"]["cohort_sha256"] = "heart.toml"
    with pytest.raises(ConfigError, match="cohort_sha256 must be 64 lower-case hex digits"):
        spec_from_mapping(doc)


def test_audit_on_complete_is_a_privacy_key_of_a_study_that_trains() -> None:
    import dataclasses

    from medfed.coordinator.spec import spec_from_proto, spec_to_proto
    from medfed.demo.heart import heart_study
    from medfed.errors import ConfigError

    spec = dataclasses.replace(heart_study(), audit_on_complete=True)
    assert spec_from_proto(spec_to_proto(spec)).audit_on_complete
    assert spec.sha256 != heart_study().sha256
    with pytest.raises(ConfigError, match="audit_on_complete is for a study that trains"):
        dataclasses.replace(spec, rounds=1, audit_of="s-0123")
