"""How a study's expected feature columns differ from a registered dataset's.

A hospital refusing a study for a schema mismatch must say *which* columns differ: printing both
lists in full hides a one-column difference in a 60-feature schema (and a message cut to fit a
log line loses it altogether). The difference is three lists, each complete: columns the study
needs that the dataset lacks, columns the dataset has that the study does not ask for, and
columns both have but at different positions among the shared ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Reordered:
    """A column both sides have, at ``expected`` in the study and ``actual`` in the dataset
    (0-based positions among the columns both sides share)."""

    name: str
    expected: int
    actual: int


@dataclass(frozen=True)
class SchemaDiff:
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    reordered: tuple[Reordered, ...]

    @property
    def same(self) -> bool:
        return not (self.missing or self.extra or self.reordered)

    def describe(self) -> str:
        """One line naming every differing column (never truncated: the reader needs them all)."""
        parts = []
        if self.missing:
            parts.append(f"missing {len(self.missing)}: {_names(self.missing)}")
        if self.extra:
            parts.append(f"extra {len(self.extra)}: {_names(self.extra)}")
        if self.reordered:
            moved = ", ".join(
                f"{r.name!r} (study #{r.expected + 1}, dataset #{r.actual + 1})"
                for r in self.reordered
            )
            parts.append(f"reordered {len(self.reordered)}: {moved}")
        return "; ".join(parts) if parts else "same columns in the same order"


def schema_diff(expected: Sequence[str], actual: Sequence[str]) -> SchemaDiff:
    """Compare the study's columns (``expected``) with the dataset's (``actual``).

    Positions in ``reordered`` count only the shared columns, so one missing column does not
    make every later column look moved.
    """
    have = set(actual)
    want = set(expected)
    shared_expected = [c for c in expected if c in have]
    shared_actual = [c for c in actual if c in want]
    where = {name: i for i, name in enumerate(shared_actual)}
    return SchemaDiff(
        missing=tuple(c for c in expected if c not in have),
        extra=tuple(c for c in actual if c not in want),
        reordered=tuple(
            Reordered(name, i, where[name])
            for i, name in enumerate(shared_expected)
            if where[name] != i
        ),
    )


def _names(columns: Sequence[str]) -> str:
    return ", ".join(repr(c) for c in columns)
