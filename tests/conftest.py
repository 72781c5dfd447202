from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.e2e.harness import Network, make_consortium
from tests.e2e.hostile import HONEST, HOSTILE, Hostile

# CI replays the same examples on every run (a landing must not depend on the draw); local runs
# keep exploring, and a failure they find becomes a regression test.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(make_consortium(tmp_path))
    yield net
    net.close()


@pytest.fixture
def hostile(network: Network) -> Iterator[Hostile]:
    """The coordinator, three honest hospitals, and Va Long Beach's certificate in hostile hands."""
    network.start_coordinator()
    network.start_nodes(HONEST)
    node = Hostile(network)
    network.wait_online([*HONEST, HOSTILE])
    yield node
    node.close()
