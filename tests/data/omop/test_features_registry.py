from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medfed.data.consent import Consents
from medfed.data.omop.dataset import build
from medfed.data.omop.features import extract
from medfed.data.omop.spec import load_spec
from medfed.data.omop.store import OmopStore, open_store
from medfed.data.registry import DatasetRegistry
from medfed.errors import DatasetError
from tests.data.consent.conftest import drop_postgres
from tests.data.omop.cohort_rows import CORONARY, SBP, Patient, days, insert
from tests.store.conftest import POSTGRES_URL, _check_postgres_reachable

SPEC = """
version = 1
name = "reg"
[concept_sets]
entry = { concepts = [4296597] }
coronary = { concepts = [317576] }
sbp = { concepts = [3004249] }
[cohort]
entry = "entry"
[outcome]
name = "target"
concept_set = "coronary"
time_at_risk = [0, 0]
[[features]]
name = "age"
kind = "age"
[[features]]
name = "sbp"
concept_set = "sbp"
missing = "median"
indicator = true
"""
AT = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def located(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[OmopStore, str]]:
    """A created store with twelve patients, and the location a node config would name."""
    if request.param == "duckdb":
        location = str(tmp_path / "omop.duckdb")
        store = open_store(location)
    else:
        _check_postgres_reachable()
        location = POSTGRES_URL
        store = open_store(location, schema=f"omopreg_{uuid.uuid4().hex[:10]}")
    try:
        store.create()
        insert(
            store,
            [
                Patient(
                    f"p{i:02d}",
                    dt.date(1940 + i, 1, 1),
                    measurements=[(SBP, days(0), 100.0 + i, None)] if i % 3 else [],
                    conditions=[(CORONARY, days(0))] if i % 2 else [],
                )
                for i in range(12)
            ],
        )
        yield store, location
    finally:
        store.close()
        if store.schema is not None:
            drop_postgres(store.schema)


def write_spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def register(tmp_path: Path, store: OmopStore, location: str, study: str = "") -> DatasetRegistry:
    registry = DatasetRegistry(tmp_path / "state")
    registry.add_omop(
        "heart",
        write_spec(tmp_path),
        location=location,
        schema=store.schema or "cdm",
        consent_study=study,
        now=1.0,
    )
    return registry


def test_registered_spec_loads_the_matrix(located: tuple[OmopStore, str], tmp_path: Path) -> None:
    store, location = located
    register(tmp_path, store, location)
    registry = DatasetRegistry(tmp_path / "state")  # read back from datasets.json
    entry = registry.get("heart")
    spec = load_spec(tmp_path / "spec.toml")
    assert (entry.kind, entry.sha256, entry.features) == ("omop", spec.sha256, spec.columns)
    assert (entry.rows, entry.train_rows, entry.test_rows) == (12, 12, 0)
    data = registry.load("heart")
    direct = extract(store.engine, spec).dataset
    np.testing.assert_array_equal(data.x_train, direct.x_train)
    np.testing.assert_array_equal(data.y_train, direct.y_train)
    assert [s.name for s in registry.sizes()] == ["heart"]


def test_changed_spec_is_refused_until_registered_again(
    located: tuple[OmopStore, str], tmp_path: Path
) -> None:
    store, location = located
    registry = register(tmp_path, store, location)
    write_spec(tmp_path, SPEC.replace("[0, 0]", "[0, 1]"))
    with pytest.raises(DatasetError, match="changed since it was registered"):
        registry.load("heart")
    write_spec(tmp_path, "# only a comment added\n" + SPEC)
    assert registry.load("heart").rows == 12  # same meaning, same hash


def test_loads_read_only_consented_persons(located: tuple[OmopStore, str], tmp_path: Path) -> None:
    store, location = located
    consents = Consents(store)
    consents.create()
    consents.enable("s1")
    everyone = [f"p{i:02d}" for i in range(12)]
    consents.grant("s1", everyone, by="steward", at=AT)
    registry = register(tmp_path, store, location, study="s1")
    full = registry.load_omop("heart")
    assert full.consented_n == 12
    assert full.extraction.dataset.rows == 12
    consents.revoke("s1", ["p01", "p04"], by="steward", at=AT)
    fewer = registry.load_omop("heart")
    assert fewer.consented_n == 10 and fewer.watermark != full.watermark
    assert fewer.extraction.dataset.rows == 10
    assert not fewer.extraction.from_cache
    assert registry.load_omop("heart").extraction.from_cache  # nothing changed since


def test_unreadable_store_or_unknown_consent_study_is_a_dataset_error(
    located: tuple[OmopStore, str], tmp_path: Path
) -> None:
    store, location = located
    registry = register(tmp_path, store, location)
    # PostgreSQL: the study was never enabled; DuckDB: its views show nobody, nothing to train on
    refusal = "no training row" if store.embedded else "consent for study 'nobody'"
    with pytest.raises(DatasetError, match=refusal):
        registry.load_omop("heart", study_id="nobody")
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(DatasetError, match="OMOP store postgresql"):
        build(spec, "postgresql://root:secret@127.0.0.1:1/test", "cdm")
