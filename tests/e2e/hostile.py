"""A hospital whose certificate is in hostile hands: it sends whatever a test tells it to."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from medfed.data.registry import DatasetRegistry, DatasetSizes
from medfed.node.client import CoordinatorClient
from medfed.pki.signer import CertificateSigner
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.transport.tls import TlsFiles
from tests.e2e.harness import Network

HONEST = ["cleveland", "hungary", "switzerland"]
HOSTILE = "va_long_beach"


class Hostile:
    """A node with a valid certificate that sends whatever a test tells it to; its heartbeats
    announce ``announce`` (by default its registered datasets, sized, as an honest node)."""

    def __init__(
        self, network: Network, announce: Sequence[str | DatasetSizes] | None = None
    ) -> None:
        certs = network.consortium.node_certs(HOSTILE)
        tls = TlsFiles(certs / f"{HOSTILE}.crt", certs / f"{HOSTILE}.key", certs / "ca.crt")
        signer = CertificateSigner.from_files(tls.cert, tls.key).sign  # a member: it signs
        self.client = CoordinatorClient(
            network.consortium.address, tls, server_name="localhost", signer=signer
        )
        registry = DatasetRegistry(network.consortium.node_state(HOSTILE))
        self.announce = list(registry.sizes() if announce is None else announce)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            self.client.heartbeat(self.announce)
            self._stop.wait(0.3)

    def task(self) -> pb.Task:
        for _ in range(60):
            task = self.client.pull(wait_s=1.0)
            if task is not None:
                return task
        raise TimeoutError("no task for the hostile node")

    def model(self, task: pb.Task) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.client.fetch_model(task.model_sha256).items()}

    def refuse_evaluation(self) -> None:
        task = self.task()
        assert task.kind == pb.TASK_KIND_EVALUATE
        self.client.refuse(task, "not_now", "hostile test node skips evaluation")

    def close(self) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
        self.client.close()
