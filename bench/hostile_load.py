"""An honest study's round time while one authenticated hospital attacks the coordinator (issue 12).

One coordinator (``medfed coordinator start``) and four honest hospitals (``medfed node start``),
separate processes over mutual TLS on loopback, run the same honest study (``passthrough`` plan,
``--dim`` float32 parameters, ``--rounds`` rounds, all four hospitals) once per scenario, side
by side in one run:

* ``unloaded``: no attack;
* ``long_polls``: 200 concurrent ``PullTask`` long-polls from the attacker over 4 connections,
  each re-opened the moment it ends;
* ``silent_uploads``: 70 concurrent ``SubmitUpdate`` streams that never send a byte, re-opened;
* ``stalled_uploads``: the attacker takes part in two studies of its own (4 MB model) and answers
  each of their tasks with a header, the manifest and one 1 MiB chunk, then silence;
* ``big_heartbeat``: heartbeats announcing a 4,194,155-byte dataset list, in a loop;
* ``heartbeats``: 64 concurrent valid heartbeats, each re-sent the moment it is answered.

Meanwhile an admin client lists studies and nodes every 0.25 s; its latency and failures are
reported per scenario, with the coordinator's thread count. Round time = median commit-to-commit
gap of rounds 2..R (and the worst gap). Then ``--junk`` unparsable 20-byte ``Heartbeat`` requests
are sent from a revoked certificate, and as many from a valid one: the coordinator's RSS and log
size before and after each.

    python bench/hostile_load.py [--rounds 8] [--dim 100000] [--junk 20000] [--only NAME ...]
                                 [--study-timeout 120]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostile_attacks as attacks

from medfed.cli.study import prepare
from medfed.coordinator.client import AdminClient, wait_for_ready
from medfed.coordinator.config import load_client_config
from medfed.demo.consortium import Consortium, create_consortium
from medfed.demo.heart import heart_study, provision_heart_nodes
from medfed.demo.processes import spawn, stop, stop_all, wait_for_nodes
from medfed.errors import TransportError
from medfed.node.policy import LocalPolicy
from medfed.pki.ca import CertificateAuthority
from medfed.transport.tls import TlsFiles

HONEST = ["cleveland", "hungary", "switzerland", "va_long_beach"]
ATTACKER, REVOKED = "mallory", "eve"
SCENARIOS = (
    "unloaded", "long_polls", "silent_uploads", "stalled_uploads", "big_heartbeat", "heartbeats",
)  # fmt: skip


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class AdminProbe:
    """Lists studies and nodes every 0.25 s; keeps latencies, failures, peak thread count."""

    def __init__(self, admin: AdminClient, coordinator_pid: int) -> None:
        self._admin, self._pid = admin, coordinator_pid
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AdminProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            started = time.monotonic()
            try:
                self._admin.studies()
                self._admin.nodes()
                self.latencies.append(time.monotonic() - started)
            except TransportError as exc:
                self.failures[str(exc).split(":")[1].strip()] += 1
            self.threads = max(self.threads, proc_status(self._pid, "Threads"))


def honest_spec(name: str, dim: int, rounds: int) -> object:
    return dataclasses.replace(
        heart_study(), name=name, plan="passthrough", plan_version="1",
        plan_options={"dim": float(dim)}, rounds=rounds, eval_every=0, min_nodes=len(HONEST),
        nodes=tuple(HONEST), round_deadline_s=60.0,
    )  # fmt: skip


def run_study(admin: AdminClient, spec: object, timeout_s: float) -> tuple[list[float], str]:
    """Submit and wait for the end: the commit-to-commit gaps of rounds 2..R, and what went
    wrong ("" when the study completed within ``timeout_s``)."""
    pinned, weights = prepare(spec)  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        study_id = admin.submit(pinned, weights, timeout_s=timeout_s)
    except TransportError as exc:
        return [], f"submission failed: {exc}"
    status = None
    while time.monotonic() - started < timeout_s:
        try:
            status = admin.status(study_id, timeout_s=10)
        except TransportError:
            continue
        if status.state in ("completed", "failed"):
            break
        time.sleep(0.2)
    commits = [r.committed_unix_ms / 1000 for r in status.rounds] if status else []
    gaps = [b - a for a, b in itertools.pairwise(commits)]
    if status is None or status.state not in ("completed", "failed"):
        return gaps, f"{len(commits)} rounds committed in {timeout_s:.0f} s"
    return gaps, "" if status.state == "completed" else f"failed: {status.message[:80]}"


class Bench:
    def __init__(
        self, consortium: Consortium, coordinator: subprocess.Popen[bytes], timeout_s: float
    ) -> None:
        self.consortium, self.coordinator, self.timeout_s = consortium, coordinator, timeout_s
        cfg = load_client_config(consortium.admin_config)
        self.admin = AdminClient(cfg.coordinator, cfg.tls, cfg.server_name)
        self.probe_admin = AdminClient(cfg.coordinator, cfg.tls, cfg.server_name)

    def tls(self, name: str) -> TlsFiles:
        certs = self.consortium.node_certs(name)
        return TlsFiles(certs / f"{name}.crt", certs / f"{name}.key", certs / "ca.crt")

    def scenario(self, name: str, dim: int, rounds: int) -> dict[str, object]:
        start, stop_attack = self._attack(name)
        start()
        time.sleep(2.0)  # let the attack take hold
        coordinator, attacker = psutil.Process(self.coordinator.pid), psutil.Process()
        cpu = (_cpu_s(coordinator), _cpu_s(attacker), time.monotonic())
        try:
            with AdminProbe(self.probe_admin, self.coordinator.pid) as probe:
                gaps, problem = run_study(
                    self.admin, honest_spec(f"honest-{name}", dim, rounds), self.timeout_s
                )
            wall = time.monotonic() - cpu[2]
            shares = ((_cpu_s(coordinator) - cpu[0]) / wall, (_cpu_s(attacker) - cpu[1]) / wall)
        finally:
            outcomes = stop_attack()
        time.sleep(2.0)
        return {
            "gaps": gaps, "problem": problem, "probe": probe, "outcomes": outcomes, "cpu": shares
        }  # fmt: skip

    def _attack(self, name: str) -> tuple[Callable[[], None], Callable[[], object]]:
        address, tls = self.consortium.address, self.tls(ATTACKER)
        plain = {
            "long_polls": (attacks.long_poll, 200),
            "silent_uploads": (attacks.silent_upload, 70),
            "big_heartbeat": (attacks.big_heartbeat, 4),
            "heartbeats": (attacks.heartbeat, 64),
        }
        if name in plain:
            open_call, calls = plain[name]
            attack = attacks.Attack(address, tls, open_call, calls)
            return attack.start, lambda: (attack.stop(), dict(attack.outcomes))[1]
        if name == "stalled_uploads":
            return self._stalled(address, tls)
        return (lambda: None), (lambda: {})

    def _stalled(
        self, address: str, tls: TlsFiles
    ) -> tuple[Callable[[], None], Callable[[], object]]:
        staller = attacks.Staller(address, tls, heart_study().dataset)
        studies: list[str] = []

        def start() -> None:
            staller.start()
            wait_for_nodes(self.admin, [ATTACKER], 60)
            for i in range(2):
                spec = dataclasses.replace(
                    honest_spec(f"attacker-{i}", attacks.STALL_DIM, 1000),
                    nodes=(ATTACKER,), min_nodes=1, round_deadline_s=20.0,
                )  # fmt: skip
                pinned, weights = prepare(spec)
                studies.append(self.admin.submit(pinned, weights))
            deadline = time.monotonic() + 60
            while staller.stalls < 2 and time.monotonic() < deadline:
                time.sleep(0.1)

        def finish() -> object:
            for study in studies:
                self.admin.cancel(study, "bench: attacker's study")
            staller.stop()
            return {"stalled uploads": staller.stalls, **staller.outcomes}

        return start, finish

    def junk(self, name: str, count: int) -> dict[str, float]:
        pid, log = self.coordinator.pid, self.consortium.root / "logs" / "coordinator.log"
        attacks.junk_heartbeats(self.consortium.address, self.tls(name), 5000)  # warm-up
        time.sleep(2.0)
        rss, size, started = proc_status(pid, "VmRSS"), log.stat().st_size, time.monotonic()
        peak = [rss]
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.wait(0.2):
                peak[0] = max(peak[0], proc_status(pid, "VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        outcomes = attacks.junk_heartbeats(self.consortium.address, self.tls(name), count)
        seconds = time.monotonic() - started
        stop_sampling.set()
        sampler.join()
        time.sleep(2.0)  # the last refusals leave the tarpit
        return {
            "rss_before_mib": rss / 1024,
            "rss_peak_mib": peak[0] / 1024,
            "rss_after_mib": proc_status(pid, "VmRSS") / 1024,
            "log_kib": (log.stat().st_size - size) / 1024,
            "seconds": seconds,
            "outcomes": dict(outcomes),  # type: ignore[dict-item]
        }


def print_rounds(results: dict[str, dict[str, object]]) -> None:
    unloaded: list[float] = results.get("unloaded", {}).get("gaps", [])  # type: ignore[assignment]
    base = statistics.median(unloaded) if unloaded else None
    print("| scenario | round s, median [max] | x unloaded | admin list s, median [max] "
          "| admin failures | coordinator threads (peak) | CPU cores used: coordinator / "
          "attacker | attacker's calls ended |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        gaps: list[float] = r["gaps"]  # type: ignore[assignment]
        probe: AdminProbe = r["probe"]  # type: ignore[assignment]
        cpu: tuple[float, float] = r["cpu"]  # type: ignore[assignment]
        median = statistics.median(gaps) if gaps else float("nan")
        ratio = f"{median / base:.2f}" if base and gaps else "-"
        lat = probe.latencies or [float("nan")]
        failures = ", ".join(f"{k} {v}" for k, v in probe.failures.items()) or "0"
        ended = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items()) or "-"  # type: ignore[attr-defined]
        rounds = f"{median:.3f} [{max(gaps, default=float('nan')):.3f}]"
        if r["problem"]:
            rounds += f" ({r['problem']})"
        print(f"| {name} | {rounds} | {ratio} | "
              f"{statistics.median(lat):.3f} [{max(lat):.3f}] | {failures} | {probe.threads} "
              f"| {cpu[0]:.2f} / {cpu[1]:.2f} | {ended} |", flush=True)  # fmt: skip


def print_junk(rows: dict[str, dict[str, float]]) -> None:
    print("\n| junk Heartbeats (20 bytes) | requests/s | RSS MiB before → after (peak) "
          "| Δ MiB | log KiB written | answers |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for label, r in rows.items():
        total = sum(r["outcomes"].values())  # type: ignore[attr-defined]
        answers = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())  # type: ignore[attr-defined]
        print(f"| {label} | {total / r['seconds']:.0f} | {r['rss_before_mib']:.1f} → "
              f"{r['rss_after_mib']:.1f} ({r['rss_peak_mib']:.1f}) | "
              f"{r['rss_after_mib'] - r['rss_before_mib']:+.1f} | "
              f"{r['log_kib']:.1f} | {answers} |", flush=True)  # fmt: skip


def setup(root: Path) -> Consortium:
    consortium = create_consortium(
        root, [*HONEST, ATTACKER, REVOKED], heartbeat_interval_s=1.0, poll_wait_s=10.0
    )
    provision_heart_nodes(consortium, heart_study())
    for node in HONEST:
        LocalPolicy(consortium.node_state(node)).approve("passthrough", "1")
    return consortium


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--junk", type=int, default=20_000)
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument(
        "--study-timeout", type=float, default=120.0, help="give up on a study after this long"
    )
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()} · {psutil.cpu_count()} CPUs · "
          f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())} · "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"honest study: 4 hospitals, passthrough, {args.dim:,} params, {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="medfed-hostile-") as tmp:
        consortium = setup(Path(tmp))
        logs = consortium.root / "logs"
        config = str(consortium.coordinator_config)
        coordinator = spawn(["coordinator", "start", "--config", config], logs / "coordinator.log")
        nodes: list[subprocess.Popen[bytes]] = []
        try:
            bench = Bench(consortium, coordinator, args.study_timeout)
            wait_for_ready(bench.admin, 30)
            nodes = [
                spawn(["node", "start", "--config", str(consortium.node_configs[n])],
                      logs / f"{n}.log")
                for n in HONEST
            ]  # fmt: skip
            wait_for_nodes(bench.admin, HONEST, 120)
            results = {name: bench.scenario(name, args.dim, args.rounds) for name in args.only}
            print_rounds(results)
            CertificateAuthority.load(consortium.ca_dir).revoke(REVOKED)
            print_junk({
                f"{args.junk:,} from a revoked certificate": bench.junk(REVOKED, args.junk),
                f"{args.junk:,} from a valid certificate": bench.junk(ATTACKER, args.junk),
            })  # fmt: skip
        finally:
            stop_all(nodes)
            stop(coordinator)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")


if __name__ == "__main__":
    main()
