"""``medfed flower run client.py --config node.toml``: a Flower client script, unchanged, as a
medfed node.

The script must be approved first (``medfed node plan approve-client client.py``): its bytes
are read once and checked against the approval, then those bytes run as ``__main__`` with
``flwr`` resolving to medfed's stand-in (or, when the real package is installed, with its
``start_numpy_client``/``start_client`` patched; :mod:`medfed.compat.flwr_shim`). When the script
calls ``start_numpy_client(server_address=…, client=…)`` the address is ignored: the node from
``node.toml`` starts with its own certificate, dials the coordinator over mutual TLS, and serves
studies whose plan is ``{ kind = "client", name = <the approved name> }`` with this client, as
well as every other plan the hospital approved. It serves until SIGINT/SIGTERM, and then the
script continues after its ``start_numpy_client`` call, as after Flower's.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from medfed.compat import flwr_shim
from medfed.compat.approval import ClientApprovals, read_approved
from medfed.compat.loader import run_script
from medfed.compat.plan import LiveClient
from medfed.errors import AuthError, ClientPlanError, MedfedError
from medfed.node.agent import NodeAgent
from medfed.node.config import load_node_config
from medfed.node.service import build_agent

log = logging.getLogger("medfed.node")


def run_flower_script(script: Path, node_config: Path, argv: Sequence[str] = ()) -> str:
    """Run ``script`` with its client served by the node of ``node_config``; returns the
    client plan's name. PolicyError if the script is not approved or changed since."""
    config = load_node_config(node_config)
    entry = ClientApprovals(config.state_dir).for_file(script)
    source = read_approved(entry)
    served: list[str] = []

    def start_node(client: object) -> None:
        if served:
            raise ClientPlanError("the script started a second client; medfed serves one")
        served.append(entry.name)
        identity, agent = build_agent(config, {entry.name: LiveClient(entry.sha256, client)})
        log.info(
            "node %s serves client plan %r from %s (the script's server_address is ignored: "
            "the node dials %s with its own certificate)",
            identity.name, entry.name, script, config.coordinator,
        )  # fmt: skip
        serve(agent)

    saved_argv, saved_main = sys.argv, sys.modules.get("__main__")
    sys.argv = [str(script), *argv]
    try:
        with flwr_shim.handing_over(start_node):
            run_script(source, script, "__main__")
    except MedfedError:
        raise
    except Exception as exc:  # the hospital's script: report where it failed
        raise ClientPlanError(f"client script {script} failed: {exc!r}") from exc
    finally:
        sys.argv = saved_argv
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
    if not served:
        raise ClientPlanError(
            f"client script {script} finished without calling fl.client.start_numpy_client"
            "(server_address=…, client=…) or start_client(client=….to_client())"
        )
    return served[0]


def serve(agent: NodeAgent) -> None:
    """Run the agent on a thread until it stops or SIGINT/SIGTERM (main thread only)."""
    failure: list[AuthError] = []

    def work() -> None:
        try:
            agent.run()
        except AuthError as exc:
            failure.append(exc)

    worker = threading.Thread(target=work, name="agent")
    worker.start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: agent.stop.set())
    while worker.is_alive() and not agent.stop.is_set():
        agent.stop.wait(0.5)
    agent.shutdown()
    worker.join()
    if failure:
        raise failure[0]
