from __future__ import annotations

import pytest

from medfed.data.omop.spec import SpecError, parse_spec

GOOD = """
version = 1
name = "heart"
# a comment
[concept_sets]
entry = { concepts = [3, 1, 2] }
outcome = { concepts = [4] }
[cohort]
entry = "entry"
[outcome]
name = "target"
concept_set = "outcome"
time_at_risk = [0, 30]
[[features]]
name = "age"
kind = "age"
[[features]]
name = "cp"
kind = "categorical"
levels = [{ label = "1", concept_set = "entry" }, { label = "2", concept_set = "outcome" }]
missing = "constant"
indicator = true
"""


def test_parses_into_columns_and_sorted_concepts() -> None:
    spec = parse_spec(GOOD)
    assert spec.columns == ("age", "cp_2", "cp_missing")
    assert spec.concept_set("entry").concepts == (1, 2, 3)
    assert spec.split.method == "none"


def test_hash_ignores_layout_but_not_meaning() -> None:
    base = parse_spec(GOOD).sha256
    relaid = GOOD.replace("# a comment\n", "").replace("[3, 1, 2]", "[ 1,2,3 ]")
    assert parse_spec(relaid).sha256 == base
    assert parse_spec(GOOD.replace("[0, 30]", "[0, 31]")).sha256 != base
    assert len(base) == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("version = 1", "version = 2"), "version must be 1"),
        (('entry = "entry"', 'entry = "nope"'), "concept set 'nope', which is not defined"),
        (("[0, 30]", "[30, 0]"), r"time_at_risk must be \[start, end\]"),
        (('kind = "age"', 'kind = "blood"'), "kind must be one of"),
        (('name = "age"', 'name = "age"\ncolour = 1'), r"unknown key\(s\) \['colour'\]"),
        (("[3, 1, 2]", "[]"), "concepts is empty"),
        (("[3, 1, 2]", '["x"]'), "list of concept ids"),
        (('missing = "constant"', 'missing = "median"'), "cannot take a median"),
        (('name = "age"', 'name = "cp_2"'), "column names repeat"),
        (
            ("indicator = true", "indicator = true\n[split]\ntrain_fraction = 1.0"),
            "strictly between",
        ),
        (('name = "heart"', "name = [1"), "not valid TOML"),
    ],
)
def test_malformed_specs_are_refused_with_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(GOOD.replace(*change, 1), source="s.toml")


def test_one_level_categorical_is_refused() -> None:
    text = GOOD.replace(', { label = "2", concept_set = "outcome" }', "")
    with pytest.raises(SpecError, match="two levels"):
        parse_spec(text)
