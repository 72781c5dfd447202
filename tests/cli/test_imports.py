"""Starting a command must not pay for libraries only some commands use.

Each check imports in a fresh interpreter, since this test process has loaded everything already.
Heavy libraries belong inside the functions that use them (or behind a TYPE_CHECKING import).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "tenseal", "opacus", "pydicom", "matplotlib", "sklearn")
"""Never needed to start the CLI, the coordinator or a node: training, CKKS, DICOM, plots."""
STARTUP = (
    *HEAVY,
    "numpy",
    "grpc",
    "google.protobuf",
    "sqlalchemy",
    "scipy",
    "dp_accounting",
    "cryptography",
)
"""Also not needed by ``medfed --help``: each command loads what it uses."""


def loaded(statement: str, candidates: tuple[str, ...]) -> list[str]:
    """The candidates present in sys.modules after running ``statement`` in a new interpreter."""
    code = (
        "import json, sys\n"
        f"{statement}\n"
        f"print(json.dumps(sorted(m for m in {candidates!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(
    "module",
    [
        "medfed.cli.app",
        "medfed.coordinator.client",
        "medfed.coordinator.service",
        "medfed.node.service",
    ],
)
def test_starting_loads_no_training_crypto_or_imaging_library(module: str) -> None:
    assert loaded(f"import {module}", HEAVY) == []


def test_medfed_help_loads_only_the_cli() -> None:
    assert loaded("import medfed.cli.app", STARTUP) == []


def test_the_admin_client_loads_no_numpy_until_it_moves_a_model() -> None:
    """``medfed study status`` and the listings talk gRPC only: numpy loads for submit/download."""
    assert loaded("import medfed.coordinator.client", ("numpy", "sqlalchemy")) == []


def test_the_check_sees_a_heavy_import() -> None:
    assert loaded("import medfed.cli.app, medfed.secagg.ckks as c; c._tenseal()", HEAVY) == [
        "tenseal"
    ]
