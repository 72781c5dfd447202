"""Round overhead: coordinator + hospital nodes over mutual TLS on loopback, no training.

Each node runs the ``passthrough`` plan (returns the model + 0.001), so what is measured is the
network core alone: dispatch, model download, update upload, validation, streaming FedAvg, the
atomic commit. Everything runs as separate processes, exactly as deployed.

    python bench/round_overhead.py [--dims 1000000 10000000] [--rounds 10] [--reps 1]
                                   [--compression none|q8|topk] [--topk-ratio 0.01]
                                   [--nodes 4] [--secure] [--ledger-off-too]
                                   [--coordinator-option KEY=VALUE ...]

``--secure`` runs every size twice, side by side in one run: plain FedAvg, then the same study
under secure aggregation (SecAgg+: key advertisement, encrypted shares, masked input, unmasking:
three more exchanges per round), and prints the ratio. ``--nodes N`` adds hospitals beyond the
four UCI ones, each serving a copy of Cleveland's rows (the plan does not look at them).
``--coordinator-option`` adds a line to the coordinator's config file, e.g.
``receive_window_bytes=0`` (gRPC's bandwidth probing) or ``upload_buffers=1``.

Prints, per model size: median seconds per round (commit to commit, rounds 2..R), the median of the
engine's own round duration (dispatch to last reply), the coordinator's peak RSS (VmHWM), and the
bytes the four nodes uploaded per round (the engine's ``upload_bytes``: what crossed the wire).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from medfed.cli.study import prepare
from medfed.coordinator.client import AdminClient, wait_for_ready
from medfed.coordinator.config import load_client_config
from medfed.data.registry import DatasetRegistry
from medfed.demo.consortium import Consortium, create_consortium
from medfed.demo.heart import heart_study, provision_heart_nodes
from medfed.demo.processes import spawn, stop, stop_all, wait_for_nodes
from medfed.node.policy import LocalPolicy

NODES = ["cleveland", "hungary", "switzerland", "va_long_beach"]


def node_names(count: int) -> list[str]:
    return NODES[:count] + [f"hospital-{i:02d}" for i in range(len(NODES), count)]


def provision_extra_nodes(consortium: Consortium, names: list[str]) -> None:
    """Hospitals beyond the UCI four serve a copy of Cleveland's registration."""
    spec = heart_study()
    source = DatasetRegistry(consortium.node_state("cleveland")).get(spec.dataset)
    for name in names[len(NODES) :]:
        state = consortium.node_state(name)
        DatasetRegistry(state).add(
            spec.dataset, source.path, label=source.label, features=list(source.features),
            split_column="split", now=time.time(),
        )  # fmt: skip
        LocalPolicy(state).approve(spec.plan, spec.plan_version)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def run_once(
    dim: int,
    rounds: int,
    root: Path,
    coordinator_options: tuple[str, ...] = (),
    compression: str = "none",
    topk_ratio: float = 0.01,
    names: list[str] = NODES,
    secure: bool = False,
) -> dict[str, float]:
    consortium = create_consortium(
        root,
        names,
        heartbeat_interval_s=1.0,
        poll_wait_s=10.0,
        coordinator_extra="".join(f"{option}\n" for option in coordinator_options),
    )
    spec = dataclasses.replace(
        heart_study(),
        name=f"bench-{dim}",
        plan="passthrough",
        plan_version="1",
        plan_options={"dim": float(dim)},
        rounds=rounds,
        eval_every=0,
        min_nodes=len(names),
        round_deadline_s=120.0,
        compression=compression,
        topk_ratio=topk_ratio,
        secure_aggregation=secure,
        secagg_clip=1.0,  # the passthrough change is 0.001 per element
    )
    provision_heart_nodes(consortium, heart_study())
    provision_extra_nodes(consortium, names)
    for node in names:
        LocalPolicy(consortium.node_state(node)).approve("passthrough", "1")
    logs = root / "logs"
    coordinator = spawn(
        ["coordinator", "start", "--config", str(consortium.coordinator_config)],
        logs / "coordinator.log",
    )
    nodes = []
    try:
        cfg = load_client_config(consortium.admin_config)
        with AdminClient(cfg.coordinator, cfg.tls, cfg.server_name) as admin:
            wait_for_ready(admin, 30)
            nodes = [
                spawn(["node", "start", "--config", str(c)], logs / f"{n}.log")
                for n, c in consortium.node_configs.items()
            ]
            wait_for_nodes(admin, names, 120)
            pinned, weights = prepare(spec)
            started = time.monotonic()
            study_id = admin.submit(pinned, weights)
            while admin.status(study_id).state not in ("completed", "failed"):
                time.sleep(0.2)
            total = time.monotonic() - started
            status = admin.status(study_id)
            if status.state == "completed":  # every element must be rounds x 0.001
                final = admin.download(status.model_sha256)["w"].astype("float64")
                error = float(abs(final - rounds * 0.001).max())
            rss = peak_rss_mib(coordinator.pid)
            children_rss = max(peak_rss_mib(p.pid) for p in nodes)
            coord_cpu = cpu_seconds(coordinator.pid)
            nodes_cpu = sum(cpu_seconds(p.pid) for p in nodes)
    finally:
        stop_all(nodes)
        stop(coordinator)
    if status.state != "completed":
        raise SystemExit(f"study failed: {status.message}")
    commits = [r.committed_unix_ms / 1000 for r in status.rounds]
    gaps = [b - a for a, b in itertools.pairwise(commits)]
    return {
        "round_s": statistics.median(gaps),
        "round_min_s": min(gaps),
        "round_max_s": max(gaps),
        "engine_round_s": statistics.median(r.duration_s for r in status.rounds[1:]),
        "coordinator_peak_rss_mib": rss,
        "node_peak_rss_mib": children_rss,
        "study_wall_s": total,
        "coordinator_cpu_s": coord_cpu,
        "nodes_cpu_s": nodes_cpu,
        "upload_mb": statistics.median(r.metrics["upload_bytes"] for r in status.rounds) / 1e6,
        "max_error": error,
    }


COLUMNS = (
    "params",
    "MB/model",
    "rep",
    "round s median [min-max]",
    "engine round s",
    "coordinator peak RSS MiB",
    "node peak RSS MiB",
    "study wall s",
    "CPU s coordinator / all nodes",
    "uploaded MB/round",
    "max error",
)


def row(dim: int, rep: str, r: dict[str, float]) -> str:
    cells = [
        f"{dim:,}",
        f"{dim * 4 / 1e6:.0f}",
        rep,
        f"{r['round_s']:.3f} [{r['round_min_s']:.3f}-{r['round_max_s']:.3f}]",
        f"{r['engine_round_s']:.3f}",
        f"{r['coordinator_peak_rss_mib']:.0f}",
        f"{r['node_peak_rss_mib']:.0f}",
        f"{r['study_wall_s']:.1f}",
        f"{r['coordinator_cpu_s']:.1f} / {r['nodes_cpu_s']:.1f}",
        f"{r['upload_mb']:.2f}",
        f"{r['max_error']:.1e}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument(
        "--coordinator-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a line for the coordinator's config file (e.g. receive_window_bytes=0)",
    )
    parser.add_argument("--compression", choices=["none", "q8", "topk"], default="none")
    parser.add_argument("--topk-ratio", type=float, default=0.01)
    parser.add_argument("--nodes", type=int, default=len(NODES), help="hospitals (>= 4)")
    parser.add_argument(
        "--secure", action="store_true", help="plain and secure aggregation, side by side"
    )
    parser.add_argument(
        "--ledger-off-too",
        action="store_true",
        help="also without the ledger (coordinator ledger = 0), side by side: what it costs",
    )
    args = parser.parse_args()
    names = node_names(max(args.nodes, len(NODES)))
    print(
        f"machine: {platform.node()} · {psutil.cpu_count()} CPUs · "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB · Python {platform.python_version()}"
    )
    options = tuple(_toml_line(o) for o in args.coordinator_option)
    print(f"coordinator options: {', '.join(options) or 'defaults'}")
    print(f"update compression: {args.compression} (top-k ratio {args.topk_ratio})")
    print(f"hospitals: {len(names)} node processes")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    variants = [("plain", False, ())]
    if args.secure:
        variants.append(("secure", True, ()))
    if args.ledger_off_too:
        variants.append(("no ledger", False, ("ledger = 0",)))
    for dim in args.dims:
        by_variant: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in variants}
        for rep in range(args.reps):  # interleaved: each variant sees the same machine load
            for label, secure, extra in variants:
                with tempfile.TemporaryDirectory(prefix="medfed-bench-") as tmp:
                    by_variant[label].append(
                        run_once(
                            dim, args.rounds, Path(tmp), options + extra, args.compression,
                            args.topk_ratio, names, secure,
                        )
                    )  # fmt: skip
                print(row(dim, f"{label} {rep + 1}", by_variant[label][-1]), flush=True)
        plain = statistics.median(r["round_s"] for r in by_variant["plain"])
        for label, runs in by_variant.items():
            if len(runs) > 1:
                medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                print(row(dim, f"{label} median", medians), flush=True)
            if label != "plain":
                other = statistics.median(r["round_s"] for r in runs)
                print(
                    f"\n{dim:,} params, {len(names)} hospitals: {label} / plain round = "
                    f"{other:.3f} / {plain:.3f} s = {other / plain:.2f}x\n",
                    flush=True,
                )


def _toml_line(option: str) -> str:
    key, sep, value = option.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"--coordinator-option wants KEY=VALUE, got {option!r}")
    return f"{key.strip()} = {value.strip()}"


if __name__ == "__main__":
    main()
