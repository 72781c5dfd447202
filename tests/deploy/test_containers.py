"""Both images built with podman from the debootstrap'd base, and the compose consortium
(PostgreSQL, coordinator, three hospitals, PKI and enrollment jobs, the researcher's study job)
run to a completed heart study; then what a hospital's IT checks: no inbound port on a node,
no root process, a read-only root filesystem, no shell, healthchecks that pass.

Where podman is not installed the test is skipped, saying so; where podman is installed but
cannot build or run, it fails with podman's own message.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.podman import (
    DEPLOY,
    PODMAN_COMPOSE,
    REPO,
    Project,
    build_images,
    compose_command,
    engine_env,
    podman_json,
    run,
)

pytestmark = [pytest.mark.containers, pytest.mark.timeout(3600)]

NODES = ("node-cleveland", "node-hungary", "node-switzerland")
MEDFED_UID = "10001"
ROUNDS = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("podman") is None:
        pytest.skip(
            "podman is not installed: apt-get install podman buildah debootstrap iptables runc "
            f"and pip install {PODMAN_COMPOSE} (.ci/run does both)"
        )
    env = engine_env()
    build_images(env, tmp_path_factory.mktemp("build") / "build.log")
    return env


@pytest.fixture(scope="module")
def project(env: dict[str, str]) -> Iterator[Project]:
    compose = compose_command()
    if compose is None:
        pytest.fail(f"podman works but no compose tool: pip install {PODMAN_COMPOSE}")
    from medfed.demo.consortium import free_port

    project_env = {
        **env,
        "MEDFED_POSTGRES_IMAGE": "localhost/medfed-postgres:15",
        "MEDFED_ROUNDS": str(ROUNDS),
        "MEDFED_COORDINATOR_PUBLISH": f"127.0.0.1:{free_port()}",
    }
    consortium = Project(f"medfed-test-{os.getpid()}", compose, project_env)
    try:
        consortium.up()
        yield consortium
    finally:
        consortium.down()


def test_compose_consortium_completes_the_heart_study(project: Project) -> None:
    assert project.wait("study", timeout_s=900) == 0
    containers = project.containers()
    logs = run(["podman", "logs", containers["study"]], project.env, 60)
    assert f"completed: {ROUNDS} rounds committed" in logs.stdout + logs.stderr
    for service in ("pki", "enroll-cleveland", "enroll-hungary", "enroll-switzerland"):
        assert project.wait(service, timeout_s=60) == 0, service


def test_nodes_publish_no_port_and_cannot_reach_the_database(project: Project) -> None:
    containers = project.containers()
    for service in NODES:
        info = podman_json(["inspect", containers[service]], project.env)[0]
        assert not info["HostConfig"]["PortBindings"], service
        assert not any(info["NetworkSettings"]["Ports"].values()), service
        networks = set(info["NetworkSettings"]["Networks"])
        assert networks == {f"{project.name}_federation"}, service
    coordinator = podman_json(["inspect", containers["coordinator"]], project.env)[0]
    bindings = coordinator["HostConfig"]["PortBindings"]["7443/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]


def test_processes_run_as_the_medfed_user(project: Project) -> None:
    containers = project.containers()
    for service in ("coordinator", *NODES):
        top = run(["podman", "top", containers[service], "huser", "args"], project.env, 60)
        rows = top.stdout.strip().splitlines()[1:]
        assert rows, service
        for row in rows:
            assert row.split()[0] == MEDFED_UID, (service, row)


def test_root_filesystem_is_read_only_and_has_no_shell(project: Project) -> None:
    containers = project.containers()
    for service in ("coordinator", *NODES):
        name = containers[service]
        info = podman_json(["inspect", name], project.env)[0]
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        write = subprocess.run(
            ["podman", "exec", name, "/opt/medfed/bin/python", "-c", "open('/opt/x', 'w')"],
            check=False,
            env=project.env,
            capture_output=True,
            text=True,
        )
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr
        shell = subprocess.run(
            ["podman", "exec", name, "/bin/sh", "-c", "true"],
            check=False,
            env=project.env,
            capture_output=True,
            text=True,
        )
        assert shell.returncode != 0
        assert "/bin/sh" in shell.stderr


def test_healthchecks_pass(project: Project) -> None:
    """Each service is healthy by its image's own rule: a probe passes before ``Retries`` probes
    in a row have failed (one failed probe does not make a container unhealthy). A failure shows
    what each probe printed and the end of the service's log."""
    containers = project.containers()
    for service in ("coordinator", *NODES):
        name = containers[service]
        info = podman_json(["inspect", name], project.env)[0]
        retries = int(info["Config"]["Healthcheck"]["Retries"])
        assert retries >= 1, service
        failed: list[str] = []
        for _ in range(retries):
            probe = subprocess.run(
                ["podman", "healthcheck", "run", name],
                check=False,
                env=project.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if probe.returncode == 0:
                break
            failed.append(probe.stdout + probe.stderr)
        else:
            health = podman_json(["inspect", name], project.env)[0]["State"].get("Health", {})
            printed = [entry.get("Output", "") for entry in health.get("Log", [])]
            logs = run(["podman", "logs", "--tail", "40", name], project.env, 60)
            raise AssertionError(
                f"{service}: {retries} health probes failed in a row: {failed}\n"
                f"probe output: {printed}\nlog tail:\n{logs.stdout}{logs.stderr}"
            )


def test_images_carry_version_revision_user_and_healthcheck(env: dict[str, str]) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for role, port in (("coordinator", ["7443/tcp"]), ("node", [])):
        info = podman_json(["image", "inspect", f"localhost/medfed-{role}:latest"], env)[0]
        labels = info["Labels"]
        assert labels["org.opencontainers.image.version"] == version
        revision = labels["org.opencontainers.image.revision"]
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", revision)
        ancestor = ["git", "merge-base", "--is-ancestor", revision[:40], "HEAD"]
        assert subprocess.run(ancestor, cwd=REPO, check=False).returncode == 0, revision
        assert info["Config"]["User"] == f"{MEDFED_UID}:{MEDFED_UID}"
        assert sorted(info["Config"].get("ExposedPorts") or {}) == port
        assert info["Healthcheck"]["Test"][:3] == ["CMD", "/opt/medfed/bin/medfed", "health"]
        assert role in info["Healthcheck"]["Test"]


def test_compose_file_names_every_volume_it_mounts() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    mounted = set(re.findall(r"^\s+- ([a-z-]+):/", text, flags=re.MULTILINE))
    declared = text.split("\nvolumes:\n", 1)[1]
    for volume in mounted:
        assert re.search(rf"^  {volume}: ", declared, flags=re.MULTILINE), volume
    assert not any(Path(m).is_absolute() for m in mounted)


def test_images_hold_this_checkouts_code(env: dict[str, str]) -> None:
    module = "src/medfed/cli/health.py"
    expected = hashlib.sha256((REPO / module).read_bytes()).hexdigest()
    for role in ("coordinator", "node"):
        done = run(
            [
                "podman", "run", "--rm", "--network=none", "--entrypoint=/opt/medfed/bin/python",
                f"localhost/medfed-{role}:latest", "-c",
                "import hashlib, medfed.cli.health as m;"
                "print(hashlib.sha256(open(m.__file__, 'rb').read()).hexdigest())",
            ],
            env,
            120,
        )  # fmt: skip
        assert done.stdout.split()[-1] == expected, role
