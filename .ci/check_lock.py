"""Check that requirements/lock.txt is consistent with pyproject.toml.

Consistent means: every requirement that pyproject.toml declares (the runtime dependencies and the
``dev`` extra) is pinned in the lock at a version its range admits, every pin carries at least one
hash, and the installed environment matches the lock pin for pin. A range edited in pyproject.toml
without `make lock` fails here with the name of the requirement, which is what CI runs this for.
Re-resolving against the index instead would fail whenever a new release appears, so we check
satisfaction, not equality with a fresh resolution.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [
        Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    ]


def pinned() -> tuple[dict[str, Version], list[str]]:
    """Pins by canonical name, and the names whose entry has no ``--hash``."""
    pins: dict[str, Version] = {}
    unhashed: list[str] = []
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text(encoding="utf-8"))
    for entry in entries:
        match = PIN.match(entry)
        if match is None:
            continue
        name = canonicalize_name(match.group(1))
        pins[name] = Version(match.group(2))
        if "--hash=sha256:" not in entry:
            unhashed.append(name)
    return pins, unhashed


def problems() -> list[str]:
    pins, unhashed = pinned()
    out = [f"{name}: pinned without a hash" for name in unhashed]
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if name not in pins:
            out.append(f"{requirement}: declared in pyproject.toml, missing from the lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            out.append(f"{requirement}: the lock pins {pins[name]}, outside the declared range")
    for name, version in sorted(pins.items()):
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            out.append(f"{name}=={version}: in the lock, not installed")
            continue
        if installed != version:
            out.append(f"{name}: installed {installed}, the lock pins {version}")
    return out


def main() -> int:
    found = problems()
    for line in found:
        print(f"lock check: {line}", file=sys.stderr)
    if found:
        print("lock check: run `make lock` and commit requirements/lock.txt", file=sys.stderr)
        return 1
    print(f"lock check: {LOCK.relative_to(ROOT)} is consistent with pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
