"""What shipping costs (issue 18): image sizes, build time cold and with the cache, and the compose
consortium's time from `up` to a completed heart study.

    python bench/deploy.py [--cold] [--rounds 20]

--cold starts from nothing: the medfed images, every unused image layer, the debootstrap tarball
and the staged wheels are removed first, so the base is debootstrapped from the Debian mirror
and every wheel fetched again (what a fresh CI machine pays). Without it the build starts from
what is there. Either way a second build follows at once (everything cached), then the
consortium runs: `podman-compose up -d`, wait for the study job, `down -v`. Prints one table.
Needs podman, buildah, debootstrap and podman-compose (see README, "Deploying").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine
from tests.deploy.podman import (
    CACHE,
    Project,
    build_images,
    compose_command,
    engine_env,
    image_size_mb,
    run,
)

IMAGES = (
    "localhost/medfed-coordinator:latest",
    "localhost/medfed-node:latest",
    "localhost/medfed-base:bookworm",
    "localhost/medfed-postgres:15",
)


def clear(env: dict[str, str]) -> None:
    """Remove everything a cold build would not find."""
    for image in IMAGES:
        subprocess.run(["podman", "rmi", "-f", image], env=env, capture_output=True, check=False)
    subprocess.run(
        ["podman", "image", "prune", "-a", "-f"], env=env, capture_output=True, check=False
    )
    for path in (CACHE / "base-bookworm.tar", CACHE / "wheels"):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def consortium_run(env: dict[str, str], rounds: int) -> tuple[float, float, float]:
    """Seconds: `up -d` returning, `up` to the study job's exit, `down -v`."""
    compose = compose_command()
    if compose is None:
        raise SystemExit("no compose tool: pip install podman-compose (README, Deploying)")
    from medfed.demo.consortium import free_port

    project = Project(
        f"medfed-bench-{os.getpid()}",
        compose,
        {
            **env,
            "MEDFED_POSTGRES_IMAGE": "localhost/medfed-postgres:15",
            "MEDFED_ROUNDS": str(rounds),
            "MEDFED_COORDINATOR_PUBLISH": f"127.0.0.1:{free_port()}",
        },
    )
    started = time.monotonic()
    try:
        up = project.up()
        code = project.wait("study", timeout_s=1800)
        done = time.monotonic() - started
        if code != 0:
            logs = run(["podman", "logs", project.containers()["study"]], project.env, 60)
            raise SystemExit(f"study job exited {code}:\n{logs.stdout[-3000:]}{logs.stderr}")
    finally:
        down_started = time.monotonic()
        project.down()
        down = time.monotonic() - down_started
    return up, done, down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="Remove every cache first.")
    parser.add_argument("--rounds", type=int, default=20, help="Rounds of the heart study.")
    args = parser.parse_args()
    env = engine_env()
    print(machine())
    rows: list[tuple[str, str]] = []
    if args.cold:
        clear(env)
    with tempfile.TemporaryDirectory() as logs:
        first = build_images(env, Path(logs) / "first.log")
        second = build_images(env, Path(logs) / "second.log")
    label = "cold (debootstrap, wheels, all layers)" if args.cold else "first (from what was there)"
    rows.append((f"build, {label}", f"{first:.0f} s"))
    rows.append(("build again, everything cached", f"{second:.0f} s"))
    for image in IMAGES:
        rows.append((f"size {image}", f"{image_size_mb(image, env):.0f} MB"))
    up, done, down = consortium_run(env, args.rounds)
    rows.append(("`up -d` returned", f"{up:.0f} s"))
    rows.append((f"`up` to a completed study ({args.rounds} rounds, 3 hospitals)", f"{done:.0f} s"))
    rows.append(("`down -v`", f"{down:.0f} s"))
    width = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for what, value in rows:
        print(f"| {what.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
