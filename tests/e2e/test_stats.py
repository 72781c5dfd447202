from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medfed.analytics.disclosure import protect_chain
from medfed.analytics.secure_table import layout
from medfed.analytics.spec import StatsSpec
from medfed.analytics.table1 import CategoricalBlock, ContinuousBlock, Table1
from medfed.cli.app import root
from medfed.coordinator.spec import spec_from_proto
from medfed.coordinator.stats_result import StatsResult, query_blob, read_result, stats_study
from medfed.data.heart_disease import heart_disease_centres
from medfed.data.omop.features import attrition_names
from medfed.data.omop.spec import load_spec
from medfed.data.registry import DatasetRegistry
from medfed.demo.ehr.codes import HEART_SPEC
from medfed.demo.ehr.consortium import provision_ehr_nodes
from medfed.demo.heart import HEART_LABEL, heart_study
from medfed.errors import MedfedError
from medfed.model.apply import evaluate
from medfed.model.bundle import bundle_from_status
from medfed.node import stats as node_stats
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.registry import get_plan
from medfed.training.standardize import pooled_standardizer
from tests.e2e.harness import HOSPITALS, Network, small_study

DATASET = heart_study().dataset
AGE_EDGES = tuple(float(a) for a in range(20, 85, 5))
QUERY = StatsSpec(bins={"age": AGE_EDGES, "thalach": (60.0, 100.0, 140.0, 180.0, 220.0)})
K = 5  # the node config's default stats_k


def site_csv(network: Network, node: str) -> Path:
    return network.consortium.node_state(node).parent / "data" / f"{node}.csv"


def read_columns(path: Path) -> dict[str, np.ndarray]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {c: np.array([float(r[c]) for r in rows]) for c in rows[0] if c != "split"}


def run_query(network: Network, query: StatsSpec, **changes: object) -> pb.StudyStatus:
    dataset = str(changes.pop("dataset", DATASET))
    spec = stats_study(query, dataset, deadline_s=60.0, **changes)  # type: ignore[arg-type]
    study_id = network.admin.submit(spec, query_blob(spec))
    return network.wait_done(study_id, timeout_s=90)


def result_of(network: Network, status: pb.StudyStatus) -> StatsResult:
    assert status.state == "completed", status.message
    return read_result(network.admin.download(status.model_sha256))


def block(table: Table1, name: str) -> CategoricalBlock | ContinuousBlock:
    return next(b for b in table.features if b.name == name)


def released_counts(document: dict[str, object]) -> Iterator[float]:
    for r in document["records"]:  # type: ignore[attr-defined]
        if r["statistic"] in ("n", "persons", "removed") and r["value"] is not None:
            yield r["value"]


def wait_for_size(network: Network, node: str, rows: int, timeout_s: float = 20.0) -> None:
    """Until the coordinator has heard the node announce the dataset with ``rows`` rows."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = next(n for n in network.admin.nodes() if n.name == node)
        sizes = {d.name: d.train_rows + d.test_rows for d in info.dataset_sizes}
        if DATASET in info.datasets and sizes.get(DATASET) == rows:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{node} did not announce {rows} rows of {DATASET}")


@pytest.fixture
def running(network: Network) -> Network:
    network.start_coordinator()
    network.start_nodes()
    return network


def test_table1_per_site_and_pooled_equals_numpy_on_the_csvs(running: Network) -> None:
    status = run_query(running, QUERY, min_nodes=len(HOSPITALS))
    result = result_of(running, status)
    table = result.table
    data = {node: read_columns(site_csv(running, node)) for node in HOSPITALS}

    assert status.completed_rounds == 1
    assert table.sites == tuple(sorted(HOSPITALS))
    assert {m.node: m.num_examples for m in status.rounds[0].train_per_node} == {
        n: len(d["age"]) for n, d in data.items()
    }
    age, sex = block(table, "age"), block(table, "sex")
    assert isinstance(age, ContinuousBlock) and isinstance(sex, CategoricalBlock)
    for s, node in enumerate(table.sites):
        d = data[node]
        assert table.totals.per_site[s] == (len(d["age"]),)
        moments = age.site_moments[s][0]
        assert moments is not None
        assert moments.n == len(d["age"])
        assert moments.mean == pytest.approx(d["age"].mean(), rel=1e-12)
        assert moments.std == pytest.approx(d["age"].std(ddof=1), rel=1e-9)
        yes = next(line for line in sex.lines if line.level == "yes").per_site[s][0]
        if yes is not None:
            assert yes == int(d["sex"].sum())
    pooled_age = np.concatenate([d["age"] for d in data.values()])
    pooled = age.pooled[0].moments
    assert pooled is not None and not age.pooled[0].moments_partial
    assert pooled.n == len(pooled_age)
    assert pooled.mean == pytest.approx(pooled_age.mean(), rel=1e-12)
    assert pooled.std == pytest.approx(pooled_age.std(ddof=1), rel=1e-9)
    assert table.totals.pooled[0].value == len(pooled_age)
    assert HEART_LABEL in {b.name for b in table.features}


def test_small_cells_are_suppressed_at_the_site_and_nowhere_released(running: Network) -> None:
    d = read_columns(site_csv(running, "switzerland"))
    women = int(np.sum(d["sex"] == 0))
    assert 0 < women < K  # the data has a small cell here

    result = result_of(running, run_query(running, QUERY))
    stratified = run_query(running, StatsSpec(bins=QUERY.bins, group=HEART_LABEL))

    sex = block(result.table, "sex")
    assert isinstance(sex, CategoricalBlock)
    s = result.table.sites.index("switzerland")
    by_level = {line.level: line.per_site[s][0] for line in sex.lines}
    assert by_level["no"] is None  # hidden, and so is "yes" (46 - yes would give it away)
    assert by_level["yes"] is None
    counts = list(released_counts(result.document))
    assert counts and all(c == 0 or c >= K for c in counts)
    assert any(r["note"] == "hidden" for r in result.document["records"])
    refused = {r.node: r.reason for r in stratified.refusals}
    assert "subset 'target=no' has 1 persons, below the threshold k=5" in refused["switzerland"]
    assert "switzerland" not in result_of(running, stratified).table.sites


def test_a_query_differing_by_fewer_than_k_rows_is_refused_by_the_node(running: Network) -> None:
    first = run_query(running, QUERY)
    assert first.state == "completed", first.message
    path = site_csv(running, "hungary")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))  # the steward's data lost two patients since
    registry = DatasetRegistry(running.consortium.node_state("hungary"))
    entry = registry.get(DATASET)
    registry.remove(DATASET)
    registry.add(DATASET, path, label=entry.label, features=list(entry.features),
                 split_column=entry.split_column, now=time.time())  # fmt: skip
    wait_for_size(running, "hungary", len(lines) - 3)  # header and the two rows left out

    second = run_query(running, QUERY)

    assert second.state == "completed", second.message
    result = result_of(running, second)
    assert "hungary" not in result.table.sites
    refusals = [r for r in second.refusals if r.node == "hungary"]
    assert len(refusals) == 1 and refusals[0].code == "disclosure"
    assert "differs from the earlier released" in refusals[0].reason


def test_a_malformed_summary_is_rejected_by_the_coordinator(
    running: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = node_stats.StatsResponder.answer

    def tampered(self: node_stats.StatsResponder, task: pb.Task) -> tuple[int, tensors.Weights]:
        n, upload = honest(self, task)
        if self._site == "cleveland":  # one node reveals a count of 2 for one level
            upload = dict(upload)
            cells = upload["cat/sex"].copy()
            cells[0, 0] = 2.0
            upload["cat/sex"] = cells
        return n, upload

    monkeypatch.setattr(node_stats.StatsResponder, "answer", tampered)

    status = run_query(running, QUERY)

    result = result_of(running, status)
    assert "cleveland" not in result.table.sites
    assert len(result.table.sites) == len(HOSPITALS) - 1
    reasons = [r.reason for r in status.refusals if r.node == "cleveland"]
    assert reasons and "releases 2, below the site's k=5" in reasons[0]


def test_the_result_survives_a_coordinator_restart(running: Network) -> None:
    status = run_query(running, QUERY)
    before = result_of(running, status).document

    running.stop_coordinator()
    running.start_coordinator()

    after = running.admin.status(status.study_id)
    assert after.state == "completed"
    assert result_of(running, after).document == before


SECURE_FEATURES = ("age", "thalach", "sex", HEART_LABEL)


def test_a_secure_query_gives_the_clear_pooled_values_and_stores_no_site_summary(
    running: Network,
) -> None:
    clear = result_of(
        running, run_query(running, QUERY, min_nodes=len(HOSPITALS), features=SECURE_FEATURES)
    )
    spec = stats_study(
        QUERY, DATASET, deadline_s=60.0, min_nodes=len(HOSPITALS), features=SECURE_FEATURES
    )
    spec = dataclasses.replace(spec, secure_aggregation=True)
    status = running.wait_done(running.admin.submit(spec, query_blob(spec)), timeout_s=120)
    secure = result_of(running, status)

    assert status.rounds[0].accepted == len(HOSPITALS)
    assert {m.num_examples for m in status.rounds[0].train_per_node} == {0}  # no site's N
    assert secure.table.sites == () and secure.document["sites"] == []
    assert secure.document["pooled_only"] is True
    assert {r["site"] for r in secure.document["records"]} == {"pooled"}
    blob = json.loads(running.admin.download(status.model_sha256)["stats_result"].tobytes())
    assert blob["summaries"] == [] and blob["secure"]["sites"] == len(HOSPITALS)
    assert secure.table.totals.pooled[0] == clear.table.totals.pooled[0]
    assert secure.table.totals.pooled[0].exact
    compared = 0
    for name in SECURE_FEATURES:
        theirs, ours = block(clear.table, name), block(secure.table, name)
        if isinstance(theirs, CategoricalBlock):
            assert isinstance(ours, CategoricalBlock)
            for t, o in zip(theirs.lines, ours.lines, strict=True):
                assert t.level == o.level
                assert o.pooled[0] == t.pooled[0]  # a lower bound where a site suppressed it
                compared += t.pooled[0].exact
            continue
        assert isinstance(theirs, ContinuousBlock) and isinstance(ours, ContinuousBlock)
        assert ours.present.pooled[0] == theirs.present.pooled[0]
        want, got = theirs.pooled[0].moments, ours.pooled[0].moments
        assert want is not None and got is not None and not ours.pooled[0].moments_partial
        assert got.n == want.n
        assert got.mean == pytest.approx(want.mean, rel=1e-9)
        assert got.std == pytest.approx(want.std, rel=1e-6)
        compared += 1
    assert compared >= 4  # both means and the exact counts of both binary columns


STRATIFIED = StatsSpec(
    bins={"age": AGE_EDGES, "trestbps": (120.0, 140.0)}, group=HEART_LABEL
)  # trestbps: no site has a bin of 1..k-1 in any stratum, so nobody merges; age: many merge
STRATIFIED_FEATURES = ("age", "trestbps", "sex", HEART_LABEL)


def secure_query(network: Network, query: StatsSpec, **changes: object) -> pb.StudyStatus:
    dataset = str(changes.pop("dataset", DATASET))
    spec = stats_study(query, dataset, deadline_s=60.0, **changes)  # type: ignore[arg-type]
    spec = dataclasses.replace(spec, secure_aggregation=True)
    return network.wait_done(network.admin.submit(spec, query_blob(spec)), timeout_s=120)


def test_a_stratified_secure_query_gives_the_clear_strata_and_quartiles(running: Network) -> None:
    asked = {"min_nodes": 3, "features": STRATIFIED_FEATURES}
    clear = result_of(running, run_query(running, STRATIFIED, **asked))
    status = secure_query(running, STRATIFIED, **asked)
    secure = result_of(running, status)
    data = {n: read_columns(site_csv(running, n)) for n in HOSPITALS if n != "switzerland"}

    assert "switzerland" not in clear.table.sites  # its 'target=no' holds 1 person: refused
    assert {r.node for r in status.refusals} == {"switzerland"}
    assert secure.document["pooled_only"] is True and secure.table.sites == ()
    col = {name: secure.table.columns.index(name) for name in clear.table.columns}
    assert set(col) == {"overall", f"{HEART_LABEL}=no", f"{HEART_LABEL}=yes"}
    for c, name in enumerate(clear.table.columns):
        assert secure.table.totals.pooled[col[name]] == clear.table.totals.pooled[c]
    sex_clear, sex_secure = block(clear.table, "sex"), block(secure.table, "sex")
    assert isinstance(sex_clear, CategoricalBlock) and isinstance(sex_secure, CategoricalBlock)
    for theirs, ours in zip(sex_clear.lines, sex_secure.lines, strict=True):
        assert [ours.pooled[col[n]] for n in clear.table.columns] == list(theirs.pooled)
    y = np.concatenate([d[HEART_LABEL] for d in data.values()])
    for name in ("age", "trestbps"):
        theirs, ours = block(clear.table, name), block(secure.table, name)
        assert isinstance(theirs, ContinuousBlock) and isinstance(ours, ContinuousBlock)
        values = np.concatenate([d[name] for d in data.values()])
        for c, column in enumerate(clear.table.columns):
            want, got = theirs.pooled[c], ours.pooled[col[column]]
            assert want.moments is not None and got.moments is not None
            assert got.moments.n == want.moments.n
            assert got.moments.mean == pytest.approx(want.moments.mean, rel=1e-9)
            assert got.moments.std == pytest.approx(want.moments.std, rel=1e-6)
            rows = values if column == "overall" else values[y == float(column.endswith("yes"))]
            assert got.quartiles is not None and want.quartiles is not None
            for q, (w, g) in zip(
                (0.25, 0.5, 0.75),
                ((want.quartiles.q1, got.quartiles.q1), (want.quartiles.median,
                 got.quartiles.median), (want.quartiles.q3, got.quartiles.q3)),
                strict=True,
            ):  # fmt: skip
                assert g.low <= np.quantile(rows, q) <= g.high
                if name == "trestbps":  # no site merged: the very same numbers
                    assert (g.low, g.high) == (w.low, w.high)
                    assert g.estimate == pytest.approx(w.estimate, rel=1e-12)
    records = secure.document["records"]
    assert any(r["statistic"] == "median" and r["value"] is not None for r in records)
    blob = json.loads(running.admin.download(status.model_sha256)["stats_result"].tobytes())
    assert blob["secure"]["release"]["k"] == K
    lay = layout(STRATIFIED, STRATIFIED_FEATURES)
    assert len(blob["secure"]["sums"]) == lay.released_size < lay.size  # no exact pooled bins


def test_a_secure_query_over_an_ehr_cohort_gives_its_pooled_attrition(network: Network) -> None:
    provision_ehr_nodes(network.consortium, dataclasses.replace(small_study(), dataset="heart_ehr"))
    network.start_coordinator()
    network.start_nodes()
    cohort = load_spec(HEART_SPEC)
    query = StatsSpec(bins={"age": AGE_EDGES}, attrition=attrition_names(cohort))
    asked = {"min_nodes": len(HOSPITALS), "features": ("age", "sex"), "dataset": "heart_ehr",
             "cohort_sha256": cohort.sha256}  # fmt: skip

    clear = result_of(network, run_query(network, query, **asked))
    secure = result_of(network, secure_query(network, query, **asked))

    chains = [
        [step.entries for step in DatasetRegistry(network.consortium.node_state(n))
         .load_omop("heart_ehr").extraction.attrition]
        for n in HOSPITALS
    ]  # fmt: skip
    pooled = [sum(steps) for steps in zip(*chains, strict=True)]
    assert [line.name for line in secure.table.attrition] == list(query.attrition)
    assert [line.name for line in clear.table.attrition] == list(query.attrition)
    shown = [(line.pooled[0].value, line.pooled[1].value) for line in secure.table.attrition]
    assert shown == list(protect_chain(pooled, K))  # the pooled chain, protected as a site would
    assert shown[-1][0] == pooled[-1] == secure.table.totals.pooled[0].value
    assert sum(left is not None for left, _ in shown) >= 2  # more than the cohort size shows
    for line, (left, gone) in zip(clear.table.attrition, shown, strict=True):
        if line.pooled[0].exact:  # no site hid its part: the clear pool is the same number
            assert left == line.pooled[0].value
        if line.pooled[1].exact and gone is not None:
            assert gone == line.pooled[1].value
    records = [r for r in secure.document["records"] if r["section"] == "attrition"]
    assert {r["site"] for r in records} == {"pooled"} and len(records) == 2 * len(shown)

    printed = CliRunner().invoke(
        root, ["study", "stats", "--config", str(network.consortium.admin_config), "--dataset",
               "heart_ehr", "--bins", "age=20:80:5", "--features", "age,sex", "--min-nodes", "4",
               "--secure", "--cohort-spec", str(HEART_SPEC)],
    )  # fmt: skip
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()

    def cells(label: str) -> list[str]:
        row = next(line for line in lines if f"  {label} " in line)
        return [c.strip() for c in row.split("│") if c.strip()]

    for step, (left, _) in zip(query.attrition, shown, strict=True):
        assert cells(step) == [step, "—" if left is None else str(left)]
    assert cells("median [Q1, Q3]")[1][0].isdigit()  # pooled quartiles are printed


def test_a_secure_query_must_name_its_features(running: Network) -> None:
    runner = CliRunner()
    config = str(running.consortium.admin_config)

    done = runner.invoke(
        root, ["study", "stats", "--config", config, "--dataset", DATASET, "--bins", "age=20:80:5",
              "--min-nodes", "3", "--secure"],
    )  # fmt: skip

    assert done.exit_code == 2
    assert "needs the query's features named" in " ".join(done.output.split())


def test_cli_prints_writes_and_reads_back_table1(running: Network, tmp_path: Path) -> None:
    runner = CliRunner()
    config = str(running.consortium.admin_config)
    args = ["study", "stats", "--config", config, "--dataset", DATASET, "--bins", "age=20:80:5",
            "--bins", "thalach=60,100,140,180,220", "--group", HEART_LABEL,
            "--min-nodes", "3"]  # fmt: skip

    printed = runner.invoke(root, [*args, "--out", str(tmp_path / "t1")])
    as_json = runner.invoke(root, [*args, "--json"])

    assert printed.exit_code == 0, printed.output
    assert "Table 1 — overall" in printed.output and "Table 1 — target=yes" in printed.output
    assert "switzerland: refused (disclosure)" in printed.output  # its 'target=no' holds 1
    assert (tmp_path / "t1" / "table1.csv").read_text().startswith("section,feature,level")
    written = json.loads((tmp_path / "t1" / "table1.json").read_text())
    assert written["sites"] == sorted(set(HOSPITALS) - {"switzerland"})
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    shown = runner.invoke(
        root, ["study", "stats-show", doc["study_id"], "--config", config, "--json"]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == doc
    assert doc["records"] == written["records"]


def test_a_training_study_standardizes_with_the_pooled_statistics(running: Network) -> None:
    stats = run_query(running, QUERY)
    spec = small_study(rounds=1, standardize=f"pooled:{stats.study_id}")

    status = running.wait_done(running.submit(spec), timeout_s=120)

    assert status.state == "completed", status.message
    pooled = spec_from_proto(status.spec).pooled_standardization
    every = [read_columns(site_csv(running, node)) for node in HOSPITALS]
    for name in ("age", "thalach"):
        values = np.concatenate([d[name] for d in every])
        assert pooled[name] == pytest.approx((values.mean(), values.std(ddof=1)), rel=1e-9)
    assert set(pooled) == {"age", "thalach"}
    plan = get_plan(spec.plan, spec.plan_version)
    weights = running.admin.download(status.model_sha256)
    bundle = bundle_from_status(status, weights, spec_from_proto(status.spec).to_json())
    assert bundle.info.preprocessing == "pooled_standardization"
    centres = heart_disease_centres()
    recorded = {m.node: m for m in status.rounds[0].per_node}
    for node, data in centres.items():
        mean, std = pooled_standardizer(data.features, data.x_train, pooled)
        as_nodes = evaluate(bundle, plan, data).metrics  # the bundle applies the pooled stats
        assert as_nodes["loss"] == pytest.approx(recorded[node].metrics["loss"], rel=1e-5)
        own = plan.evaluate(weights, data).metrics  # each site's own statistics instead
        assert own["loss"] != pytest.approx(as_nodes["loss"], rel=1e-5)
        assert np.allclose(mean[data.features.index("age")], pooled["age"][0])
        assert std.shape == (len(data.features),)


def test_standardizing_with_what_is_not_a_statistics_result_is_refused(running: Network) -> None:
    training = running.submit(small_study(rounds=1))

    for source, why in (("s-nope", "s-nope"), (training, "not a completed statistics study")):
        with pytest.raises(MedfedError, match=why):
            running.submit(small_study(rounds=1, standardize=f"pooled:{source}"))
