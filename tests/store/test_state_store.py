from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from medfed.errors import ConfigError, StoreError
from medfed.store import NodeRecord, NodeRoundMetrics, RoundRecord, StateStore
from medfed.store import state as state_module

OpenStore = Callable[[], StateStore]


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def make_round(
    study_id: str, n: int, *, model: str | None = None, **overrides: object
) -> RoundRecord:
    fields: dict[str, object] = {
        "study_id": study_id,
        "round": n,
        "model_sha256": model or sha(f"{study_id}/{n}"),
        "selected": 3,
        "accepted": 2,
        "rejected": 1,
        "duration_s": 1.25 * n,
        "committed_unix": 1000.0 + n,
        "metrics": {"loss": 1.0 / (abs(n) + 1), "accuracy": 0.5},
        "per_node": (
            NodeRoundMetrics("hospital-a", "train", 120, {"loss": 0.9}),
            NodeRoundMetrics("hospital-b", "train", 80, {"loss": 1.1}),
        ),
        "rejections": ("hospital-c: tensor 'fc.weight' holds NaN",),
    }
    fields.update(overrides)
    return RoundRecord(**fields)  # type: ignore[arg-type]


def new_study(store: StateStore, study_id: str = "s1", now: float = 100.0) -> None:
    store.create_study(study_id, f"name of {study_id}", '{"rounds": 5}', sha("initial"), now)


def test_node_seen_inserts_then_updates_keeping_first_seen(store: StateStore) -> None:
    store.node_seen("hospital-a", ["mimic", "eicu"], 10.0)
    store.node_seen("hospital-b", [], 11.0)
    store.node_seen("hospital-a", ["eicu"], 20.0)

    assert store.nodes() == [
        NodeRecord("hospital-a", 20.0, ("eicu",), 10.0),
        NodeRecord("hospital-b", 11.0, (), 11.0),
    ]


def test_create_get_and_list_studies(store: StateStore) -> None:
    created = store.create_study("s1", "sepsis", '{"rounds": 5}', sha("m0"), 100.0)
    store.create_study("s0", "stroke", "{}", sha("m1"), 200.0)

    assert created.state == "pending"
    assert created.completed_rounds == 0
    assert (created.model_sha256, created.created_unix, created.updated_unix) == (
        sha("m0"),
        100.0,
        100.0,
    )
    assert store.study("s1") == created
    assert [s.study_id for s in store.studies()] == ["s1", "s0"]


def test_duplicate_study_refused(store: StateStore) -> None:
    new_study(store)
    with pytest.raises(StoreError, match="already exists"):
        new_study(store, now=999.0)
    assert store.study("s1").created_unix == 100.0


def test_study_needs_id_and_model_hash(store: StateStore) -> None:
    with pytest.raises(StoreError, match="non-empty id"):
        store.create_study("", "x", "{}", sha("m"), 1.0)
    with pytest.raises(StoreError, match="not a model id"):
        store.create_study("s1", "x", "{}", "../../etc/passwd", 1.0)
    assert store.studies() == []


def test_unknown_study_is_a_store_error(store: StateStore) -> None:
    with pytest.raises(StoreError, match="'nope' is not known"):
        store.study("nope")
    with pytest.raises(StoreError, match="not known"):
        store.set_state("nope", "running", "", 1.0)
    with pytest.raises(StoreError, match="not known"):
        store.rounds("nope")
    with pytest.raises(StoreError, match="not known"):
        store.rejections("nope")
    with pytest.raises(StoreError, match="not known"):
        store.record_rejection("nope", 1, "n", "r", 1.0)
    with pytest.raises(StoreError, match="not known"):
        store.commit_round(make_round("nope", 1))


def test_set_state(store: StateStore) -> None:
    new_study(store)
    store.set_state("s1", "running", "round 1 started", 150.0)

    got = store.study("s1")
    assert (got.state, got.message, got.updated_unix, got.created_unix) == (
        "running",
        "round 1 started",
        150.0,
        100.0,
    )


def test_commit_rounds_in_order(store: StateStore) -> None:
    new_study(store)
    first, second = make_round("s1", 1), make_round("s1", 2, per_node=(), rejections=())

    store.commit_round(first)
    store.commit_round(second)

    assert store.rounds("s1") == [first, second]
    study = store.study("s1")
    assert study.completed_rounds == 2
    assert study.model_sha256 == second.model_sha256
    assert study.updated_unix == second.committed_unix


def test_duplicate_round_refused_and_changes_nothing(store: StateStore) -> None:
    new_study(store)
    first = make_round("s1", 1)
    store.commit_round(first)
    before = store.study("s1")

    with pytest.raises(StoreError, match=r"round 1 refused.*must be round 2"):
        store.commit_round(make_round("s1", 1, model=sha("other")))

    assert store.rounds("s1") == [first]
    assert store.study("s1") == before
    assert len(store.rejections("s1")) == 1


@pytest.mark.parametrize("bad_round", [0, -1, 2, 3])
def test_out_of_order_round_refused(store: StateStore, bad_round: int) -> None:
    new_study(store)
    with pytest.raises(StoreError, match="next must be round 1"):
        store.commit_round(make_round("s1", bad_round))
    assert store.rounds("s1") == []
    assert store.study("s1").completed_rounds == 0


def test_commit_failing_midway_leaves_nothing(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_study(store)

    def broken(*_args: object) -> list[object]:
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(state_module, "node_rows", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            store.commit_round(make_round("s1", 1))

    assert store.study("s1").completed_rounds == 0
    assert store.study("s1").model_sha256 == sha("initial")
    assert store.rounds("s1") == []
    assert store.rejections("s1") == []
    store.commit_round(make_round("s1", 1))
    assert store.study("s1").completed_rounds == 1


def race_to_commit(store: StateStore, n: int, contenders: int) -> tuple[list[str], int]:
    """Start ``contenders`` threads committing round ``n`` at once; return winners' models and
    the number refused."""
    barrier = threading.Barrier(contenders)
    winners: list[str] = []
    refused: list[StoreError] = []
    lock = threading.Lock()

    def commit(i: int) -> None:
        model = sha(f"round {n} contender {i}")
        barrier.wait(timeout=10)
        try:
            store.commit_round(make_round("s1", n, model=model))
        except StoreError as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                winners.append(model)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return winners, len(refused)


def test_racing_commits_of_one_round_have_exactly_one_winner(store: StateStore) -> None:
    new_study(store)
    contenders = 6
    for n in (1, 2):
        winners, refused = race_to_commit(store, n, contenders)

        assert len(winners) == 1
        assert refused == contenders - 1
        assert store.study("s1").model_sha256 == winners[0]
        assert store.rounds("s1")[-1].model_sha256 == winners[0]

    assert [r.round for r in store.rounds("s1")] == [1, 2]
    assert len(store.rejections("s1")) == 2


def test_add_eval_merges_metrics_and_appends_node_rows(store: StateStore) -> None:
    new_study(store)
    committed = make_round("s1", 1, metrics={"loss": 0.7, "accuracy": 0.5})
    store.commit_round(committed)
    evals = (
        NodeRoundMetrics("hospital-a", "eval", 30, {"accuracy": 0.8, "auroc": 0.9}),
        NodeRoundMetrics("hospital-b", "eval", 10, {"accuracy": 0.4, "auroc": 0.7}),
    )

    store.add_eval("s1", 1, evals, {"accuracy": 0.7, "auroc": 0.85})

    (got,) = store.rounds("s1")
    assert got.metrics == {"loss": 0.7, "accuracy": 0.7, "auroc": 0.85}
    assert got.per_node == committed.per_node + evals
    assert store.study("s1").completed_rounds == 1


def test_add_eval_needs_a_committed_round(store: StateStore) -> None:
    new_study(store)
    with pytest.raises(StoreError, match="no committed round 1"):
        store.add_eval("s1", 1, [], {"accuracy": 1.0})


def test_bad_metrics_kind_refused(store: StateStore) -> None:
    new_study(store)
    bad = (NodeRoundMetrics("hospital-a", "test", 1, {}),)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="not train or eval"):
        store.commit_round(make_round("s1", 1, per_node=bad))
    assert store.study("s1").completed_rounds == 0


def test_rejections_from_commits_and_on_their_own(store: StateStore) -> None:
    new_study(store)
    store.record_rejection("s1", 1, "hospital-d", "policy: plan not approved", 1000.5)
    store.commit_round(make_round("s1", 1, rejections=("hospital-c: late", "hospital-e: bad sig")))
    store.record_rejection("s1", 2, "hospital-c", "timeout", 1001.5)

    assert store.rejections("s1") == [
        (1, "hospital-d", "policy: plan not approved"),
        (1, "hospital-c", "late"),
        (1, "hospital-e", "bad sig"),
        (2, "hospital-c", "timeout"),
    ]
    assert store.rounds("s1")[0].rejections == ("hospital-c: late", "hospital-e: bad sig")


def test_malformed_rejection_text_refused(store: StateStore) -> None:
    new_study(store)
    with pytest.raises(StoreError, match="must read 'node: reason'"):
        store.commit_round(make_round("s1", 1, rejections=("no separator",)))
    assert store.study("s1").completed_rounds == 0


def test_reopened_store_sees_everything(open_store: OpenStore) -> None:
    first = open_store()
    first.node_seen("hospital-a", ["mimic"], 5.0)
    new_study(first)
    first.set_state("s1", "running", "", 110.0)
    rounds = [make_round("s1", 1), make_round("s1", 2)]
    for r in rounds:
        first.commit_round(r)
    first.add_eval("s1", 2, [], {"auroc": 0.75})
    first.record_rejection("s1", 3, "hospital-b", "refused", 1003.0)
    expected = (first.nodes(), first.studies(), first.rounds("s1"), first.rejections("s1"))
    first.close()

    second = open_store()

    assert (second.nodes(), second.studies(), second.rounds("s1"), second.rejections("s1")) == (
        expected
    )
    assert second.rounds("s1")[1].metrics["auroc"] == 0.75
    second.commit_round(make_round("s1", 3))
    assert second.study("s1").completed_rounds == 3


def test_sqlite_file_uses_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore.sqlite(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_unsupported_database_refused() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        StateStore("mysql://root@127.0.0.1/test")


def test_schema_only_on_postgres(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only be chosen on PostgreSQL"):
        StateStore(f"sqlite:///{tmp_path / 'x.db'}", schema="medfed")


def test_schema_name_is_checked_before_any_sql() -> None:
    with pytest.raises(ConfigError, match="schema name"):
        StateStore("postgresql+psycopg://nobody@127.0.0.1:1/none", schema='x"; DROP SCHEMA public')


def test_record_sizes_keeps_each_change_and_says_what_it_replaced(store: StateStore) -> None:
    assert store.record_sizes("a", "heart", 200, 100, now=1.0) is None  # first announcement
    assert store.record_sizes("a", "heart", 200, 100, now=2.0) is None  # unchanged
    assert store.record_sizes("b", "heart", 5, 5, now=2.0) is None  # another node's own
    assert store.record_sizes("a", "heart", 999_999_999, 100, now=3.0) == (200, 100)
    assert store.record_sizes("a", "heart", 200, 100, now=4.0) == (999_999_999, 100)
