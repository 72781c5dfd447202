from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medfed.data.schema import Reordered, schema_diff

COLUMNS = [f"c{i}" for i in range(60)]


def test_one_missing_column_among_sixty_is_named_and_nothing_else() -> None:
    actual = [c for c in COLUMNS if c != "c57"]

    diff = schema_diff(COLUMNS, actual)

    assert diff.missing == ("c57",)
    assert diff.extra == ()
    assert diff.reordered == ()
    assert diff.describe() == "missing 1: 'c57'"


def test_extra_and_swapped_columns_are_named_with_their_positions() -> None:
    diff = schema_diff(["age", "sex", "chol"], ["sex", "age", "chol", "thal"])

    assert diff.missing == ()
    assert diff.extra == ("thal",)
    assert diff.reordered == (Reordered("age", 0, 1), Reordered("sex", 1, 0))
    assert diff.describe() == (
        "extra 1: 'thal'; reordered 2: 'age' (study #1, dataset #2), 'sex' (study #2, dataset #1)"
    )


def test_every_differing_column_is_in_the_description_however_many() -> None:
    expected = [f"feature_with_a_long_name_{i}" for i in range(300)]
    actual = expected[:150] + [f"other_{i}" for i in range(150)]

    text = schema_diff(expected, actual).describe()

    assert all(repr(c) in text for c in expected[150:])
    assert all(repr(c) in text for c in actual[150:])
    assert "reordered" not in text


def test_the_same_schema_has_no_difference() -> None:
    assert schema_diff(COLUMNS, COLUMNS).same
    assert not schema_diff(COLUMNS, COLUMNS[::-1]).same


@given(st.lists(st.sampled_from(COLUMNS[:12]), unique=True), st.permutations(COLUMNS[:12]))
def test_missing_extra_and_shared_partition_both_sides(
    expected: list[str], pool: list[str]
) -> None:
    actual = pool[: len(pool) // 2]

    diff = schema_diff(expected, actual)

    shared = [c for c in expected if c in actual]
    assert set(diff.missing) | set(shared) == set(expected)
    assert set(diff.extra) | set(shared) == set(actual)
    assert not set(diff.missing) & set(actual)
    assert {r.name for r in diff.reordered} <= set(shared)
    assert diff.same == (expected == actual)
