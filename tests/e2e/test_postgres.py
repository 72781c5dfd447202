from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.e2e.harness import Network, make_consortium, small_study

POSTGRES = os.environ.get(
    "MEDFED_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)


@pytest.fixture
def pg_network(tmp_path: Path) -> Iterator[Network]:
    db = f"medfed_e2e_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    url = POSTGRES.rsplit("/", 1)[0] + f"/{db}"
    net = Network(make_consortium(tmp_path, state_url=url))
    yield net
    net.close()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.postgres
def test_study_runs_and_resumes_on_postgresql(pg_network: Network) -> None:
    pg_network.start_coordinator()
    pg_network.start_nodes()
    spec = small_study(rounds=3)
    study_id = pg_network.submit(spec)
    partial = pg_network.wait_rounds(study_id, 1, timeout_s=60)
    pg_network.stop_coordinator()
    pg_network.start_coordinator()

    final = pg_network.wait_done(study_id, timeout_s=120)

    assert final.state == "completed"
    assert [r.round for r in final.rounds] == [1, 2, 3]
    assert final.rounds[0].model_sha256 == partial.rounds[0].model_sha256
    assert "accuracy" in final.rounds[-1].metrics
