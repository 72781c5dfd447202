"""A stand-in ``flwr`` for client scripts, so that ``fl.client.start_numpy_client(...)`` starts
(or, when a client plan is loaded, hands over) a medfed client instead of dialling Flower.

When the real ``flwr`` is installed its ``start_numpy_client`` and ``start_client`` are patched
for the duration of the script instead, so ``fl.client.NumPyClient`` stays Flower's own class.
Otherwise this module puts a small package in ``sys.modules`` for the duration: ``flwr``,
``flwr.client`` (``NumPyClient``, ``start_numpy_client``, ``start_client``) and ``flwr.common``
(the type names). What it refuses, with the reason: ``ClientApp``/``flwr.client.Client``
(Flower's message-level API: medfed drives the NumPy-level ``fit``/``evaluate`` only),
``start_client`` without ``.to_client()`` of a NumPy client, and start arguments other than
Flower's connection settings. ``server_address`` and those settings (TLS roots, ``insecure``,
``transport``, retries) are ignored: the node's config and certificate decide where and how it
connects, over mutual TLS always.

Which code runs what a script hands over is chosen per thread (``handing_over``): a node may load
one hospital's client file while another thread runs a drop-in script.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from medfed.compat import numpy_client
from medfed.errors import ClientPlanError

log = logging.getLogger("medfed.node")
TRANSPORT_ARGUMENTS = frozenset(
    {"root_certificates", "insecure", "transport", "grpc_max_message_length", "max_retries",
     "max_wait_time", "authentication_keys"}
)  # fmt: skip
"""Flower's connection settings, which the node's own config and certificate replace."""
Sink = Callable[[object], None]
"""Receives the NumPy client a script starts."""

_lock = threading.Lock()
_users: list[int] = [0]
"""How many loads or scripts on any thread need the shim now (a list: mutated in place)."""
_saved: dict[str, Any] = {}
_local = threading.local()
_SHIM_MODULES = ("flwr", "flwr.client", "flwr.common")


def real_flwr_installed() -> bool:
    return importlib.util.find_spec("flwr") is not None and "flwr" not in _shimmed()


def _shimmed() -> set[str]:
    return {m for m in _SHIM_MODULES if getattr(sys.modules.get(m), "__medfed_shim__", False)}


def start_numpy_client(*, server_address: str = "", client: object = None, **kwargs: Any) -> None:
    """Flower's ``start_numpy_client``: ``server_address`` and Flower's connection arguments
    (``TRANSPORT_ARGUMENTS``) are ignored, since the node config decides; others are refused."""
    _check_arguments(kwargs)
    if client is None:
        raise ClientPlanError("start_numpy_client needs client=<your NumPyClient>")
    _hand_over(numpy_client.unwrap(client))


def start_client(*, server_address: str = "", client: object = None, **kwargs: Any) -> None:
    """Flower's ``start_client``, for ``client=MyNumPyClient().to_client()`` only."""
    _check_arguments(kwargs)
    inner = numpy_client.unwrap(client)
    if inner is client or not numpy_client.is_numpy_client(inner):
        raise ClientPlanError(
            "start_client is supported only as start_client(client=MyNumPyClient().to_client()): "
            "medfed drives a NumPyClient's fit/evaluate, not Flower's message-level Client API"
        )
    _hand_over(inner)


def _check_arguments(kwargs: dict[str, Any]) -> None:
    """Connection arguments are ignored, so a script that passes its own TLS root runs
    unchanged; any other argument (e.g. ``client_fn``) is refused rather than silently dropped."""
    unknown = sorted(set(kwargs) - TRANSPORT_ARGUMENTS)
    if unknown:
        raise ClientPlanError(
            f"start arguments {unknown} are not supported by medfed; it takes client=… and "
            f"ignores server_address and {sorted(TRANSPORT_ARGUMENTS)}"
        )
    if kwargs:
        log.info(
            "ignoring %s: the node's config and certificate decide where and how it connects "
            "(mutual TLS, always)",
            ", ".join(sorted(kwargs)),
        )


def _hand_over(client: object) -> None:
    if not numpy_client.is_numpy_client(client):
        raise ClientPlanError(
            f"the client handed to start_numpy_client ({type(client).__name__}) has no "
            "fit/evaluate methods"
        )
    sink: Sink | None = getattr(_local, "sink", None)
    if sink is None:
        raise ClientPlanError("start_numpy_client called outside medfed's runner or plan loader")
    sink(client)


class _RefusedClientApp:
    """Flower's ``ClientApp``/``Client``: refused at construction, with the reason."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ClientPlanError(
            f"{type(self).__name__} (Flower's message-level API) is not supported by medfed: "
            "write a NumPyClient (get_parameters/fit/evaluate) and start it with "
            "start_numpy_client"
        )


class ClientApp(_RefusedClientApp):
    pass


class Client(_RefusedClientApp):
    pass


def _build_shim() -> dict[str, types.ModuleType]:
    root = types.ModuleType("flwr", "medfed's stand-in for flwr (medfed.compat.flwr_shim)")
    client = types.ModuleType("flwr.client")
    common = types.ModuleType("flwr.common")
    client.__dict__.update(
        NumPyClient=numpy_client.NumPyClient,
        Client=Client,
        ClientApp=ClientApp,
        start_numpy_client=start_numpy_client,
        start_client=start_client,
    )
    common.__dict__.update(
        NDArray=Any, NDArrays=numpy_client.NDArrays, Scalar=numpy_client.Scalar,
        Config=numpy_client.Config, Metrics=dict[str, numpy_client.Scalar],
    )  # fmt: skip
    root.__dict__.update(client=client, common=common, __version__="0+medfed.shim")
    root.__path__ = []  # a package, so ``import flwr.client`` resolves through sys.modules
    for module in (root, client, common):
        module.__medfed_shim__ = True  # type: ignore[attr-defined]
    return {"flwr": root, "flwr.client": client, "flwr.common": common}


def _install() -> None:
    with _lock:
        _users[0] += 1
        if _users[0] > 1:
            return
        if real_flwr_installed():
            import flwr.client  # type: ignore[import-not-found]

            _saved.update(
                start_numpy_client=flwr.client.start_numpy_client,
                start_client=flwr.client.start_client,
            )
            flwr.client.start_numpy_client = start_numpy_client
            flwr.client.start_client = start_client
        else:
            sys.modules.update(_build_shim())


def _uninstall() -> None:
    with _lock:
        _users[0] -= 1
        if _users[0] > 0:
            return
        if _saved:
            import flwr.client

            flwr.client.start_numpy_client = _saved.pop("start_numpy_client")
            flwr.client.start_client = _saved.pop("start_client")
        for name in _shimmed():
            del sys.modules[name]


@contextmanager
def handing_over(sink: Sink) -> Iterator[None]:
    """Within the block, on this thread, a script's ``start_numpy_client(client=c)`` calls
    ``sink(c)`` (and ``import flwr`` finds the shim when the real package is absent)."""
    _install()
    previous = getattr(_local, "sink", None)
    _local.sink = sink
    try:
        yield
    finally:
        _local.sink = previous
        _uninstall()
