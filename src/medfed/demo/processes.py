"""Start and stop medfed processes (coordinator, nodes) the way an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from medfed.coordinator.client import AdminClient
from medfed.errors import TransportError


def spawn(args: Sequence[str], log_file: Path, threads: int = 1) -> subprocess.Popen[bytes]:
    """Run ``medfed <args>`` in a new process, output to ``log_file``."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
    )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "medfed.cli.app", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


def stop_all(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    """SIGTERM everyone first, then wait: shutdown takes one grace period, not one per process."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        stop(process, timeout_s)


def kill9(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(timeout=10)


def wait_for_nodes(admin: AdminClient, names: Sequence[str], timeout_s: float) -> None:
    """Block until every named node is online at the coordinator."""
    deadline = time.monotonic() + timeout_s
    missing: set[str] = set(names)
    while time.monotonic() < deadline:
        try:
            online = {n.name for n in admin.nodes() if n.online}
        except TransportError:
            online = set()
        missing = set(names) - online
        if not missing:
            return
        time.sleep(0.2)
    raise TransportError(f"nodes {sorted(missing)} did not come online within {timeout_s:.0f} s")
