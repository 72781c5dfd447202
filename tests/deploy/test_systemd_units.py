"""deploy/systemd: ``systemd-analyze verify`` accepts both units with nothing to say, they carry
the hardening a hospital's security review asks for, and ``systemd-analyze security`` rates them
low exposure.

verify runs against a scratch root holding the units, this machine's own system units (the
targets they order against) and an executable at /opt/medfed/bin/medfed, so it needs neither
systemd running nor an installation. systemd-analyze exits 0 even for a misspelt or unparsable
setting, so any output at all fails the test (a control unit with a typo proves that output
appears)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.podman import DEPLOY

UNITS = ("medfed-coordinator.service", "medfed-node.service")
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged",
    "PrivateMounts=yes",
    "UMask=0077",
    "User=medfed",
)
MAX_EXPOSURE = 2.0
"""systemd-analyze security's score, 0 (locked down) to 10 (exposed); the units score 1.4 (the
options left out, and why, are listed in each unit)."""
SYSTEM_UNITS = next(
    (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()),
    None,
)


def verify(root: Path, units: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *units],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None or SYSTEM_UNITS is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd; .ci/run does)")
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(DEPLOY / "systemd" / unit, units / unit)
    medfed = tmp_path / "opt/medfed/bin/medfed"
    medfed.parent.mkdir(parents=True)
    medfed.write_text("#!/bin/false\n")
    medfed.chmod(0o755)
    return tmp_path


def test_systemd_analyze_verify_is_silent(scratch_root: Path) -> None:
    done = verify(scratch_root, UNITS)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_verify_reports_a_bad_setting(scratch_root: Path) -> None:
    unit = scratch_root / "etc/systemd/system/medfed-node.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    done = verify(scratch_root, ("medfed-node.service",))
    assert "strickt" in done.stdout + done.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure_is_low(scratch_root: Path, unit: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={scratch_root}", unit],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened(unit: str) -> None:
    lines = (DEPLOY / "systemd" / unit).read_text().splitlines()
    for setting in HARDENING:
        assert setting in lines, setting
    start = next(line for line in lines if line.startswith("ExecStart="))
    role = unit.removeprefix("medfed-").removesuffix(".service")
    assert (
        start == f"ExecStart=/opt/medfed/bin/medfed {role} start --config /etc/medfed/{role}.toml"
    )
