from __future__ import annotations

from pathlib import Path

import pytest

from medfed.data.registry import DatasetEntry
from medfed.errors import PolicyError
from medfed.node.policy import check_cohort

REGISTERED = "12" * 32


def _entry(kind: str) -> DatasetEntry:
    return DatasetEntry(
        name="heart",
        kind=kind,  # type: ignore[arg-type]
        path=Path("heart.toml"),
        label="target",
        features=("age",),
        split_column=None,
        sha256=REGISTERED,
        rows=10,
        added_unix=0.0,
    )


def test_a_study_pinning_the_registered_cohort_spec_or_none_is_admitted() -> None:
    check_cohort(_entry("omop"), REGISTERED)
    check_cohort(_entry("csv"), "")


@pytest.mark.parametrize(
    ("kind", "message"),
    [("omop", "registered here with spec 1212121212121212"), ("csv", "is a csv dataset here")],
)
def test_another_cohort_spec_or_a_non_omop_dataset_is_refused(kind: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as refused:
        check_cohort(_entry(kind), "ab" * 32)
    assert refused.value.code == "cohort_mismatch"
