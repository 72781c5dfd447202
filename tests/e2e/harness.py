"""A consortium on loopback for end-to-end tests: real gRPC, real mutual TLS, real processes
where a test needs to kill one."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

from medfed.cli.study import prepare
from medfed.coordinator.client import AdminClient, wait_for_ready
from medfed.coordinator.config import load_client_config, load_coordinator_config
from medfed.coordinator.service import Coordinator
from medfed.coordinator.spec import StudySpec
from medfed.data.heart_disease import HEART_HOSPITALS
from medfed.demo.consortium import Consortium, create_consortium
from medfed.demo.heart import heart_study, provision_heart_nodes
from medfed.errors import AuthError
from medfed.node.agent import NodeAgent
from medfed.node.config import load_node_config
from medfed.node.policy import LocalPolicy
from medfed.node.service import build_agent
from medfed.protocol.v1 import medfed_pb2 as pb

HOSPITALS = list(HEART_HOSPITALS)


def make_consortium(root: Path, state_url: str = "") -> Consortium:
    consortium = create_consortium(
        root, HOSPITALS, state_url=state_url, heartbeat_interval_s=0.5, poll_wait_s=1.0
    )
    spec = heart_study()
    provision_heart_nodes(consortium, spec)
    for node in HOSPITALS:
        LocalPolicy(consortium.node_state(node)).approve("passthrough", "1")
    return consortium


def small_study(rounds: int = 3, **changes: object) -> StudySpec:
    spec = dataclasses.replace(heart_study(), rounds=rounds, round_deadline_s=30.0)
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def passthrough_study(rounds: int = 2, dim: int = 1000, **changes: object) -> StudySpec:
    spec = dataclasses.replace(
        heart_study(),
        name="passthrough",
        plan="passthrough",
        plan_version="1",
        plan_options={"dim": float(dim)},
        rounds=rounds,
        eval_every=0,
        round_deadline_s=20.0,
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


class Network:
    """An in-process coordinator and node agents on threads, all over mTLS on loopback."""

    def __init__(self, consortium: Consortium) -> None:
        self.consortium = consortium
        self.coordinator: Coordinator | None = None
        self.agents: dict[str, tuple[NodeAgent, threading.Thread]] = {}
        self.errors: dict[str, BaseException] = {}
        cfg = load_client_config(consortium.admin_config)
        self.admin = AdminClient(cfg.coordinator, cfg.tls, cfg.server_name)

    def start_coordinator(self) -> Coordinator:
        self.coordinator = Coordinator(load_coordinator_config(self.consortium.coordinator_config))
        self.coordinator.start()
        wait_for_ready(self.admin, timeout_s=10)
        return self.coordinator

    def stop_coordinator(self) -> None:
        if self.coordinator is not None:
            self.coordinator.stop(grace_s=0.5)
            self.coordinator = None

    def start_node(self, name: str) -> NodeAgent:
        _, agent = build_agent(load_node_config(self.consortium.node_configs[name]))

        def run() -> None:
            try:
                agent.run()
            except AuthError as exc:
                self.errors[name] = exc

        thread = threading.Thread(target=run, name=f"node-{name}", daemon=True)
        thread.start()
        self.agents[name] = (agent, thread)
        return agent

    def start_nodes(self, names: list[str] | None = None) -> None:
        for name in names or HOSPITALS:
            self.start_node(name)
        self.wait_online(names or HOSPITALS)

    def stop_node(self, name: str) -> None:
        agent, thread = self.agents.pop(name)
        agent.shutdown()
        thread.join(timeout=15)

    def wait_online(self, names: list[str], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if set(names) <= {n.name for n in self.admin.nodes() if n.online}:
                return
            time.sleep(0.1)
        raise TimeoutError(f"nodes {names} not online")

    def submit(self, spec: StudySpec) -> str:
        pinned, weights = prepare(spec)
        return self.admin.submit(pinned, weights)

    def wait_done(self, study_id: str, timeout_s: float = 120.0) -> pb.StudyStatus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.admin.status(study_id)
            if status.state in ("completed", "failed"):
                return status
            time.sleep(0.2)
        raise TimeoutError(f"study {study_id} did not finish: {self.admin.status(study_id)}")

    def wait_rounds(self, study_id: str, rounds: int, timeout_s: float = 60.0) -> pb.StudyStatus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.admin.status(study_id)
            if status.completed_rounds >= rounds:
                return status
            time.sleep(0.05)
        raise TimeoutError(f"study {study_id} did not reach round {rounds}")

    def wait_until(
        self, study_id: str, ok: Callable[[pb.StudyStatus], bool], timeout_s: float = 60.0
    ) -> pb.StudyStatus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.admin.status(study_id)
            if ok(status):
                return status
            time.sleep(0.1)
        raise TimeoutError(f"study {study_id}: condition not met: {self.admin.status(study_id)}")

    def rejections(self, study_id: str) -> list[str]:
        """Every recorded rejection of the study, as 'node: reason'."""
        assert self.coordinator is not None
        return [f"{node}: {why}" for _, node, why in self.coordinator.state.rejections(study_id)]

    def close(self) -> None:
        for name in list(self.agents):
            self.stop_node(name)
        self.stop_coordinator()
        self.admin.close()
