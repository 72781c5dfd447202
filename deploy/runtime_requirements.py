"""Print the runtime part of the hashed lock: the packages ``pyproject.toml``'s
``[project].dependencies`` need, with their pins and hashes, and none of the dev tools.

The lock (``make lock``) is compiled with ``--extra dev`` so that one file pins everything; an
image must not ship pytest, mypy, ruff or selenium. Each block of the lock says which packages
pull it in (uv's ``# via`` lines), so the runtime set is the closure of the project's own
dependencies over those edges. Nothing is resolved again: every line printed is the lock's line,
and ``pip install --require-hashes --no-deps`` followed by ``pip check`` in the image build
proves the set is complete.

Standard library only: it runs in the image's build stage before anything is installed.

    python3 deploy/runtime_requirements.py requirements/lock.txt pyproject.toml > runtime.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503 name normalization: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, tuple[str, set[str]]]:
    """Each locked package: its block of lines (pin, hashes) and the packages it is ``via``."""
    blocks: dict[str, tuple[str, set[str]]] = {}
    name = ""
    lines: list[str] = []
    parents: set[str] = set()
    in_via = False

    def close() -> None:
        if name:
            blocks[name] = ("\n".join(lines), parents)

    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            close()
            match = _NAME.match(line)
            if match is None:
                raise ValueError(f"unexpected lock line {line!r}")
            name, lines, parents, in_via = normalize(match.group(1)), [line], set(), False
            continue
        stripped = line.strip()
        if stripped.startswith("--hash"):
            lines.append(line)
        elif stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                parents.add(rest)
        elif in_via and stripped.startswith("#   "):
            parents.add(stripped.removeprefix("#").strip())
        else:
            in_via = False
    close()
    return {key: (block, {_parent(p) for p in via}) for key, (block, via) in blocks.items()}


def _parent(via: str) -> str:
    """``medfed (pyproject.toml)`` and ``--override …`` are not packages; others are names."""
    if via.startswith("-") or "(" in via:
        return ""
    return normalize(via.split(maxsplit=1)[0])


def project_roots(pyproject: Path) -> set[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {normalize(_NAME.match(dep).group(1)) for dep in dependencies}  # type: ignore[union-attr]


def runtime_closure(lock: dict[str, tuple[str, set[str]]], roots: set[str]) -> list[str]:
    """Names reachable from ``roots`` over the lock's via-edges, sorted."""
    children: dict[str, set[str]] = {}
    for name, (_, parents) in lock.items():
        for parent in parents:
            children.setdefault(parent, set()).add(name)
    missing = roots - lock.keys()
    if missing:
        raise ValueError(f"not in the lock: {sorted(missing)} (run `make lock`)")
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(children.get(name, ()))
    return sorted(seen)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    lock = parse_lock(Path(argv[1]).read_text())
    names = runtime_closure(lock, project_roots(Path(argv[2])))
    print("# Runtime part of requirements/lock.txt (deploy/runtime_requirements.py)")
    for name in names:
        print(lock[name][0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
