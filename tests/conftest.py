from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Network, make_consortium


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(make_consortium(tmp_path))
    yield net
    net.close()
