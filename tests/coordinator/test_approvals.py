from __future__ import annotations

import dataclasses

import pytest

from medfed.coordinator.approvals import approval_gate
from medfed.coordinator.spec import StudySpec
from medfed.demo.heart import heart_study
from medfed.errors import ConfigError

NODES = ("a", "b", "c")


def _spec(approvals: str, nodes: tuple[str, ...] = NODES) -> StudySpec:
    return dataclasses.replace(heart_study(), nodes=nodes, approvals=approvals)


def test_no_approval_required_lets_every_online_node_train() -> None:
    assert approval_gate(_spec(""), ["a", "b"], set()) == (["a", "b"], "")


def test_all_waits_for_the_last_and_then_admits_only_approved_online_nodes() -> None:
    nodes, why = approval_gate(_spec("all"), ["a", "b", "c"], {"a", "c"})
    assert nodes == [] and "missing: b" in why and _spec("all").sha256 in why
    assert approval_gate(_spec("all"), ["a", "c"], {"a", "b", "c"}) == (["a", "c"], "")


def test_m_of_n_counts_only_the_named_hospitals() -> None:
    nodes, why = approval_gate(_spec("2"), ["a", "b", "c"], {"a", "x"})
    assert nodes == [] and "1 of the 2" in why and "not yet: b, c" in why
    assert approval_gate(_spec("2"), ["a", "b", "c"], {"a", "c"})[0] == ["a", "c"]


def test_the_hash_changes_with_the_spec_and_bad_settings_are_refused() -> None:
    assert _spec("all").sha256 != dataclasses.replace(_spec("all"), rounds=99).sha256
    with pytest.raises(ConfigError, match="needs the study to name"):
        _spec("all", nodes=())
    with pytest.raises(ConfigError, match="names only 3"):
        _spec("4")
    with pytest.raises(ConfigError, match='"all" or a number'):
        _spec("most")
