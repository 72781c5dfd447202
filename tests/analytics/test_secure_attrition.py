"""A query pinned to a cohort spec: the attrition steps come from the spec, before any data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfed.analytics.secure_table import from_words, layout, split
from medfed.analytics.spec import StatsSpec
from medfed.data.omop.features import attrition_names
from medfed.data.omop.spec import load_spec
from medfed.data.omop.store import OmopStore
from medfed.data.registry import DatasetRegistry
from medfed.errors import PolicyError
from medfed.node.stats import StatsResponder
from medfed.protocol.v1 import medfed_pb2 as pb
from tests.data.omop.test_features_registry import SPEC, located, write_spec  # noqa: F401

RULED = SPEC.replace('entry = "entry"\n[outcome]', 'entry = "entry"\nmin_age = 18\n[outcome]')
FEATURES = ("age", "target")


def task(query: StatsSpec, sha256: str) -> pb.Task:
    ref = pb.DatasetRef(name="heart", features=FEATURES, cohort_sha256=sha256)
    return pb.Task(
        task_id="t", study_id="s-1", round=1, kind=pb.TASK_KIND_STATS, dataset=ref,
        stats=pb.StatsQuery(spec_json=json.dumps(query.to_json())),
    )  # fmt: skip


def test_the_spec_alone_names_the_steps_a_site_reports_and_fills_their_slots(
    located: tuple[OmopStore, str],  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    store, location = located
    path = write_spec(tmp_path, RULED)
    registry = DatasetRegistry(tmp_path / "state")
    registry.add_omop("heart", path, location=location, schema=store.schema or "cdm", now=1.0)
    spec = load_spec(path)
    names = attrition_names(spec)
    reported = registry.load_omop("heart").extraction.attrition
    query = StatsSpec(bins={"age": (60.0, 70.0, 80.0, 90.0)}, attrition=names)
    responder = StatsResponder("a", registry, tmp_path / "site", k=3)

    words = responder.secure_words(task(query, spec.sha256))

    assert names == tuple(step.step for step in reported)
    assert len(names) == 3 and names[1] == "age at index >= 18"
    parts = split(from_words(words), layout(query, FEATURES))
    assert parts["attrition"].tolist() == [float(step.entries) for step in reported]
    assert parts["k"].tolist().index(1.0) == 0  # the one-hot of k = 3
    other = StatsSpec(bins=query.bins, attrition=names[:1])
    with pytest.raises(PolicyError, match="attrition steps"):
        responder.secure_words(task(other, spec.sha256))
