from __future__ import annotations

import random
import threading

import pytest

from medfed.errors import AuthError, TransportError
from medfed.node.agent import Backoff, NodeAgent


class ScriptedClient:
    """Answers pull() from a script; stops the agent when the script runs out."""

    def __init__(self, agent_stop: list[threading.Event], script: list[object]) -> None:
        self._stop = agent_stop
        self._script = script
        self.pulls = 0
        self.heartbeats = 0

    def pull(self, wait_s: float) -> None:
        self.pulls += 1
        if not self._script:
            self._stop[0].set()
            return None
        step = self._script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return None

    def heartbeat(self, datasets: list[str]) -> None:
        self.heartbeats += 1

    def close(self) -> None:
        pass


def _agent(script: list[object]) -> tuple[NodeAgent, ScriptedClient]:
    holder: list[threading.Event] = []
    client = ScriptedClient(holder, script)
    agent = NodeAgent(
        client,  # type: ignore[arg-type]
        executor=None,  # type: ignore[arg-type]
        datasets=lambda: ["d"],
        heartbeat_interval_s=0.01,
        backoff=Backoff(initial_s=0.001, max_s=0.002, rng=random.Random(0)),
    )
    holder.append(agent.stop)
    return agent, client


def test_transport_errors_and_unexpected_errors_are_survived() -> None:
    agent, client = _agent([TransportError("down"), RuntimeError("bug"), TransportError("down")])

    agent.run()

    assert client.pulls == 4
    assert agent.fatal is None


def test_an_auth_error_stops_the_node_with_the_reason() -> None:
    agent, client = _agent([AuthError("certificate revoked"), TransportError("never reached")])

    with pytest.raises(AuthError, match="revoked"):
        agent.run()
    assert client.pulls == 1
