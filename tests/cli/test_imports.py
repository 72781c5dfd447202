from __future__ import annotations

import subprocess
import sys


def test_the_coordinator_never_loads_torch_or_sklearn() -> None:
    code = (
        "import sys, medfed.cli.app, medfed.coordinator.service;"
        "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
