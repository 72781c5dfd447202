"""Run an approved client file and find the NumPy client in it.

The file's bytes are read once, checked against the steward's SHA-256
(:func:`medfed.compat.approval.read_approved`), and those very bytes are compiled: nothing is
re-read between the check and the run. This is the hospital's own code on its own machine;
nothing of it came over the network.

Where the client comes from, first match wins:

1. the script calls ``fl.client.start_numpy_client(client=c)`` (or ``start_client(client=
   c.to_client())``) while it runs -- the specification's snippet does so at the end;
2. a module-level ``client`` that has ``fit`` and ``evaluate``;
3. the one class defined in the file with ``fit`` and ``evaluate``, built without arguments.

A plan is loaded with ``__name__`` set to a private module name, so a script's
``if __name__ == "__main__":`` block does not run; the drop-in runner runs it as ``__main__``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import inspect
import sys
import types
from pathlib import Path

from medfed.compat import flwr_shim, numpy_client
from medfed.compat.approval import file_sha256
from medfed.errors import ClientPlanError


class _ApprovedSource(importlib.abc.SourceLoader):
    """importlib's source loader over bytes already checked against their approval: the module
    is built exactly as an import builds it, minus re-reading the file after the check."""

    def __init__(self, source: bytes, path: Path) -> None:
        self._source = source
        self._path = str(path)

    def get_filename(self, fullname: str) -> str:
        return self._path

    def get_data(self, path: str) -> bytes:
        return self._source


def run_script(source: bytes, path: Path, module_name: str) -> types.ModuleType:
    """Run ``source`` (already checked against its approval) as module ``module_name``,
    registered in ``sys.modules`` first, as an import (or runpy, for ``__main__``) would."""
    loader = _ApprovedSource(source, path)
    spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    if spec is None:
        raise ClientPlanError(f"client file {path} cannot be loaded as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    loader.exec_module(module)
    return module


def load_client(source: bytes, path: Path) -> object:
    """The NumPy client defined by an approved client file."""
    module_name = f"medfed_client_{file_sha256(source)[:16]}"
    started: list[object] = []
    try:
        with flwr_shim.handing_over(started.append):
            module = run_script(source, path, module_name)
    except ClientPlanError:
        raise
    except Exception as exc:  # the hospital's code: say where it failed, keep the node up
        raise ClientPlanError(f"loading client file {path} failed: {exc!r}") from exc
    if started:
        return started[-1]
    attribute = getattr(module, "client", None)
    if attribute is not None and numpy_client.is_numpy_client(numpy_client.unwrap(attribute)):
        return numpy_client.unwrap(attribute)
    return _only_client_class(module, path)


def _only_client_class(module: types.ModuleType, path: Path) -> object:
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and value.__module__ == module.__name__
        and numpy_client.is_numpy_client(value)
    ]
    if len(classes) != 1:
        found = ", ".join(c.__name__ for c in classes) or "none"
        raise ClientPlanError(
            f"client file {path} must start its client with start_numpy_client(client=…), "
            f"define a module-level `client`, or define exactly one client class (found: {found})"
        )
    try:
        return classes[0]()
    except Exception as exc:
        raise ClientPlanError(
            f"client class {classes[0].__name__} in {path} cannot be built without "
            f"arguments: {exc!r}"
        ) from exc
