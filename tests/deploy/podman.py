"""Driving podman and a compose tool from tests and benches: the engine settings this machine
needs (deploy/engine.sh), the image build (deploy/build-images.sh), a compose project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CACHE = Path(os.environ.get("MEDFED_DEPLOY_CACHE", "/var/tmp/medfed-deploy"))
COMPOSE_VENV = CACHE / "compose-venv"
PODMAN_COMPOSE = "podman-compose==1.6.0"
"""Not a project dependency: the test set-up installs it in its own virtualenv (.ci/run)."""


def engine_env() -> dict[str, str]:
    """This process's environment plus what deploy/engine.sh sets for this machine."""
    done = subprocess.run(
        ["bash", "-c", 'source deploy/engine.sh && printf %s "${CONTAINERS_CONF:-}"'],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    env = dict(os.environ)
    if done.stdout:
        env["CONTAINERS_CONF"] = done.stdout
    return env


def compose_command() -> list[str] | None:
    """MEDFED_COMPOSE, else the tool virtualenv's podman-compose, else one on PATH (>= 1.1:
    older ones ignore depends_on conditions)."""
    chosen = os.environ.get("MEDFED_COMPOSE")
    if chosen:
        return chosen.split()
    venv_tool = COMPOSE_VENV / "bin" / "podman-compose"
    if venv_tool.exists():
        return [str(venv_tool)]
    found = shutil.which("podman-compose")
    if found is None:
        return None
    version = subprocess.run(
        [found, "--version"], check=False, capture_output=True, text=True
    ).stdout
    return [found] if "podman-compose version 1.0" not in version else None


def run(
    args: Sequence[str], env: dict[str, str], timeout_s: float, log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run and keep the output; raise with its tail when the command fails."""
    done = subprocess.run(
        list(args),
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    output = done.stdout + done.stderr
    if log is not None:
        log.write_text(output)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{output[-4000:]}")
    return done


def podman_json(args: Sequence[str], env: dict[str, str]) -> Any:
    return json.loads(run(["podman", *args], env, 60).stdout)


@dataclass
class Project:
    """One compose project of deploy/compose.yaml, under its own name."""

    name: str
    compose: list[str]
    env: dict[str, str]

    def compose_run(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        base = [*self.compose, "-p", self.name, "-f", str(DEPLOY / "compose.yaml")]
        return run([*base, *args], self.env, timeout_s)

    def containers(self) -> dict[str, str]:
        """service -> container name."""
        label = f"label=com.docker.compose.project={self.name}"
        listed = podman_json(["ps", "-a", "--filter", label, "--format", "json"], self.env)
        return {c["Labels"]["com.docker.compose.service"]: c["Names"][0] for c in listed}

    def wait(self, service: str, timeout_s: float) -> int:
        """Exit code of a one-shot service's container."""
        container = self.containers()[service]
        done = run(["podman", "wait", container], self.env, timeout_s)
        return int(done.stdout.strip().splitlines()[-1])

    def up(self, timeout_s: float = 600) -> float:
        """``up -d``; returns when the command returned (seconds)."""
        started = time.monotonic()
        self.compose_run("up", "-d", timeout_s=timeout_s)
        return time.monotonic() - started

    def down(self) -> None:
        self.compose_run("down", "-v", timeout_s=300)


def build_images(env: dict[str, str], log: Path, timeout_s: float = 1800) -> float:
    """deploy/build-images.sh with the PostgreSQL image, dangling layers of earlier builds
    removed (repeated local runs would fill the disk); seconds taken."""
    started = time.monotonic()
    run([str(DEPLOY / "build-images.sh")], {**env, "POSTGRES": "1", "PRUNE": "1"}, timeout_s, log)
    return time.monotonic() - started


def image_size_mb(image: str, env: dict[str, str]) -> float:
    info = podman_json(["image", "inspect", image], env)[0]
    return float(info["Size"]) / 1e6
