from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from medfed.data.omop.store import OmopStore, open_store, person_tables
from medfed.errors import ConfigError, DatasetError


def test_the_store_has_the_37_cdm_tables_and_creating_again_changes_nothing(
    omop_store: OmopStore,
) -> None:
    with omop_store.begin() as conn:
        conn.execute(
            sa.insert(omop_store.table("person")).values(
                person_id=7,
                gender_concept_id=8532,
                year_of_birth=1961,
                race_concept_id=0,
                ethnicity_concept_id=0,
            )
        )
    omop_store.create()

    counts = omop_store.row_counts()
    assert len(counts) == 37
    assert counts["person"] == 1
    assert sum(counts.values()) == 1


def test_consent_must_cover_every_table_that_names_a_person() -> None:
    tables = person_tables()
    assert {"person", "condition_occurrence", "measurement", "observation", "death"} <= set(tables)
    assert "concept" not in tables


def test_an_unknown_table_or_store_location_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(ConfigError, match=r"not an OMOP CDM 5\.4 table"):
        store.table("patients")
    store.close()
    with pytest.raises(ConfigError, match="PostgreSQL URL"):
        open_store("mysql://db/x")
    with pytest.raises(ConfigError, match="plain lower-case SQL name"):
        open_store("postgresql://root@127.0.0.1/test", schema='cdm"; drop')


def test_an_embedded_store_open_in_another_process_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    path = tmp_path / "omop.duckdb"
    created = open_store(path)
    created.create()
    created.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(path)!r}); "
         "print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        store = open_store(path)
        with pytest.raises(DatasetError, match="open in another process"):
            store.row_counts()
        store.close()
    finally:
        holder.communicate("", timeout=30)
