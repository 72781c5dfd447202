"""Load a bench/ script as a module (the scripts are not a package), and read its tables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_bench(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``bench/<name>.py`` as module ``bench_<name>``; bench/ goes on sys.path for the scripts
    that import each other's report helpers."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def table_row(text: str, label: str) -> list[str]:
    found = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    assert len(found) == 1, f"expected one {label!r} row in:\n{text}"
    return [cell.strip() for cell in found[0].strip("|").split("|")]
