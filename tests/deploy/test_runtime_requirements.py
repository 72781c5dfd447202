"""deploy/runtime_requirements.py: the images install the runtime part of the hashed lock. The
part must hold everything the project's dependencies require (checked here against the installed
packages' own metadata, the way pip resolves) and none of the dev tools."""

from __future__ import annotations

import importlib.util
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement

from tests.deploy.podman import DEPLOY, REPO

LOCK = REPO / "requirements" / "lock.txt"
PYPROJECT = REPO / "pyproject.toml"
DEV_ONLY = ("pytest", "mypy", "ruff", "selenium", "hypothesis", "grpcio-tools", "httpx")


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "runtime_requirements", DEPLOY / "runtime_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def runtime_names() -> list[str]:
    lock = tool.parse_lock(LOCK.read_text())
    names: list[str] = tool.runtime_closure(lock, tool.project_roots(PYPROJECT))
    return names


def required_by_metadata() -> set[str]:
    """What pip would install for [project].dependencies, from the installed distributions."""
    todo = [Requirement(d) for d in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (tool.normalize(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in metadata.requires(requirement.name) or []:
            child = Requirement(text)
            environments = [{"extra": e} for e in requirement.extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(e) for e in environments):
                todo.append(child)
    return {name for name, _ in seen}


def test_runtime_part_holds_every_requirement_of_the_project() -> None:
    missing = required_by_metadata() - set(runtime_names())
    assert not missing


def test_runtime_part_leaves_out_the_dev_tools() -> None:
    names = set(runtime_names())
    assert not names & set(DEV_ONLY)
    assert {"torch", "numpy", "grpcio", "psycopg-binary"} <= names


def test_every_printed_pin_keeps_its_hashes() -> None:
    lock = tool.parse_lock(LOCK.read_text())
    for name in runtime_names():
        block = lock[name][0]
        assert "==" in block.splitlines()[0]
        assert "--hash=sha256:" in block, name


def test_via_lines_are_read_as_edges() -> None:
    text = (
        "a==1 \\\n    --hash=sha256:aa\n    # via medfed (pyproject.toml)\n"
        "b==2 \\\n    --hash=sha256:bb\n    # via\n    #   a\n    #   dev-tool\n"
        "c==3 \\\n    --hash=sha256:cc\n    # via dev-tool\n"
        "dev-tool==4 \\\n    --hash=sha256:dd\n    # via medfed (pyproject.toml)\n"
    )
    lock = tool.parse_lock(text)
    assert lock["b"][1] == {"a", "dev-tool"}
    assert tool.runtime_closure(lock, {"a"}) == ["a", "b"]


def test_the_build_runs_it_where_the_containerfile_copies_it() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert "COPY requirements/lock.txt deploy/runtime_requirements.py" in text
    assert "--require-hashes" in text
    assert Path(DEPLOY / "runtime_requirements.py").exists()
