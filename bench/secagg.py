"""SecAgg+ cost: masking, unmasking, bytes and round time next to a plain FedAvg round.

Every node signs its key advertisement with a real certificate from a throwaway consortium CA
(``medfed.pki``) and every receiving node checks it (``CaVerifier``), as in a deployed round.
Threshold and degree are the coordinator's defaults (``medfed.coordinator.secure_round``):
degree ``default_degree(n)``, threshold ``ceil(2/3 (k + 1))``.

Per (n, d):

* masking s/node: advertise + share + mask of one node (FixedPoint encoding excluded), run one
  node at a time; median over the nodes;
* unmask s: the coordinator's ``unmask`` with 0% and 20% dropout (a random 20% of the nodes
  shared their keys, then never sent a masked input, so their pairwise masks are rebuilt). In a
  sparse graph a draw can leave some node with fewer than t surviving share holders: the round
  aborts (as it must), the next draw is timed, and the cell says how many draws aborted;
* bytes/node: the real messages as protobuf (``medfed.secagg.wire``: advertisement with its
  certificate and signature, sealed shares, reveal) plus the 4 d bytes of the masked input;
  median over nodes, and the overhead over a plain float32 upload of 4 d bytes;
* round s: the same updates aggregated both ways in the same run, alternating. Plain: each node
  serializes its float32 update, the coordinator runs FedAvg's streaming ``WeightedSum``.
  Secure: FixedPoint encoding + all four stages + decoding. Node work runs concurrently in a
  thread pool of min(n, CPUs) (NumPy and AES release the GIL); coordinator work is sequential.

    python bench/secagg.py [--nodes 4 10 50] [--dims 100000 1000000] [--reps 5] [--quick]

Flower's numbers (flwr 1.42 SecAgg+ in its Ray simulation runtime, same 2-vCPU machine) are
quoted, not measured here; its rounds include the simulation's scheduling and a 0.1 s poll.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medfed.errors import SecAggError
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.pki.signer import CertificateSigner
from medfed.protocol.tensors import manifest_of, tensor_bytes
from medfed.secagg import wire
from medfed.secagg.graph import default_degree
from medfed.secagg.messages import RoundParams
from medfed.secagg.protocol import ClientRound, ServerRound
from medfed.secagg.quantize import FixedPoint
from medfed.secagg.signing import CaVerifier
from medfed.strategies.fedavg import WeightedSum

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
T = TypeVar("T")
CLIP = 1.0
THRESHOLD_FRACTION = 2 / 3  # StudySpec.secagg_threshold's default
DROPOUT_DRAWS = 5

# Flower 1.42 SecAgg+ vs. its legacy FedAvg, steady-state round seconds (median of rounds 2-6,
# 3 repetitions), complete share graph, threshold N//2+1. Quoted from
# /work/shared/anchors/flower/README.md, section "SecAgg+ overhead (simulation runtime, Ray)"
# (raw data: /work/shared/anchors/flower/results/secagg_sim_*.json). Flower's numbers, not ours.
FLOWER_SECAGG_PLUS: dict[tuple[int, int], tuple[float, float]] = {
    (4, 100_000): (0.208, 0.683),
    (4, 1_000_000): (0.224, 1.040),
    (10, 100_000): (0.212, 1.585),
    (10, 1_000_000): (0.348, 2.585),
}


@dataclass(frozen=True)
class Consortium:
    verifier: CaVerifier
    signers: dict[str, CertificateSigner]


def make_consortium(root: Path, nodes: Sequence[str]) -> Consortium:
    ca = CertificateAuthority.init(root / "ca", "bench-consortium")
    signers = {}
    for name in nodes:
        issued = ca.issue(name, Role.NODE, root / name)
        assert issued.key is not None
        signers[name] = CertificateSigner.from_files(issued.cert, issued.key)
    return Consortium(CaVerifier(ca.certificate), signers)


def round_params(nodes: Sequence[str], dimension: int, round_no: int) -> RoundParams:
    n = len(nodes)
    degree = default_degree(n)
    threshold = min(max(2, math.ceil(THRESHOLD_FRACTION * (degree + 1))), degree + 1)
    return RoundParams(
        "bench", round_no, tuple(nodes), threshold, degree, os.urandom(16), CLIP, dimension
    )


def pool_map(
    pool: ThreadPoolExecutor, fn: Callable[[str], T], nodes: Sequence[str]
) -> dict[str, T]:
    return dict(zip(nodes, pool.map(fn, nodes), strict=True))


def plain_round(pool: ThreadPoolExecutor, updates: Mapping[str, F32]) -> tuple[float, F64]:
    started = time.perf_counter()
    nodes = sorted(updates)
    payloads = pool_map(pool, lambda u: bytes(tensor_bytes(updates[u])), nodes)
    dimension = len(next(iter(updates.values())))
    manifest = manifest_of({"w": np.zeros(dimension, np.float32)})
    total = WeightedSum(manifest)
    for u in nodes:
        total.add({"w": np.frombuffer(payloads[u], dtype="<f4")}, 1.0)
    mean = total.mean()["w"]
    return time.perf_counter() - started, mean.astype(np.float64)


def secure_round(
    pool: ThreadPoolExecutor, consortium: Consortium, updates: Mapping[str, F32], round_no: int
) -> tuple[float, F64]:
    started = time.perf_counter()
    nodes = sorted(updates)
    params = round_params(nodes, len(updates[nodes[0]]), round_no)
    encoding = FixedPoint(CLIP, len(nodes))
    server = ServerRound(params)

    def start(u: str) -> ClientRound:
        return ClientRound(params, u, consortium.signers[u], consortium.verifier)

    clients = pool_map(pool, start, nodes)
    ads = pool_map(pool, lambda u: clients[u].advertise(), nodes)
    forwarded = server.forward_advertisements(ads)
    sealed = pool_map(pool, lambda u: clients[u].share(forwarded[u]), nodes)
    u2, routed = server.route_shares(sealed)

    def mask(u: str) -> npt.NDArray[np.uint32]:
        words, _ = encoding.encode(updates[u], np.random.default_rng(nodes.index(u)))
        return clients[u].mask(u2, routed[u], words)

    for u, masked in zip(u2, pool.map(mask, u2), strict=True):
        server.add_masked(u, masked)  # sequential, in arrival order
    u3 = server.survivors
    reveals = pool_map(pool, lambda u: clients[u].reveal(u3), list(u3))
    mean = encoding.decode(server.unmask(reveals)) / len(u3)
    return time.perf_counter() - started, mean


@dataclass
class Costs:
    masking_s: float
    unmask_s: dict[float, float]
    bytes_per_node: int
    threshold: int
    degree: int


def sequential_costs(
    consortium: Consortium, updates: Mapping[str, F32], dropout: float, round_no: int
) -> tuple[list[float], float, list[int], RoundParams]:
    """One round node by node: each node's stage times, the unmask time and bytes sent."""
    nodes = sorted(updates)
    params = round_params(nodes, len(updates[nodes[0]]), round_no)
    encoding = FixedPoint(CLIP, len(nodes))
    words = {
        u: encoding.encode(x, np.random.default_rng(i))[0]
        for i, (u, x) in enumerate(updates.items())
    }
    server = ServerRound(params)
    clients = {u: ClientRound(params, u, consortium.signers[u], consortium.verifier) for u in nodes}
    busy = dict.fromkeys(nodes, 0.0)
    sent = dict.fromkeys(nodes, 0)

    def timed(u: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        out = fn()
        busy[u] += time.perf_counter() - started
        return out

    ads = {u: timed(u, clients[u].advertise) for u in nodes}
    for u, ad in ads.items():
        sent[u] += len(wire.ad_to_pb(ad).SerializeToString())
    forwarded = server.forward_advertisements(ads)
    shares = {u: timed(u, partial(clients[u].share, forwarded[u])) for u in nodes}
    for u, s in shares.items():
        sent[u] += sum(len(m.SerializeToString()) for m in wire.shares_to_pb(s))
    u2, routed = server.route_shares(shares)
    gone = set(np.random.default_rng(round_no).permutation(nodes)[: round(dropout * len(nodes))])
    for u in u2:
        masked = timed(u, partial(clients[u].mask, u2, routed[u], words[u]))
        if u not in gone:
            server.add_masked(u, masked)
            sent[u] += int(masked.nbytes)
    u3 = server.survivors
    reveals = {u: clients[u].reveal(u3) for u in u3}
    for u, r in reveals.items():
        sent[u] += len(wire.reveal_to_pb(r, task_id="").SerializeToString())
    started = time.perf_counter()
    server.unmask(reveals)
    unmask_s = time.perf_counter() - started
    return list(busy.values()), unmask_s, [sent[u] for u in u3], params


def measure(n: int, d: int, reps: int, consortium: Consortium) -> dict[str, Any]:
    rng = np.random.default_rng([n, d])
    nodes = sorted(consortium.signers)[:n]
    updates = {u: rng.uniform(-CLIP / 2, CLIP / 2, d).astype(np.float32) for u in nodes}
    sub = Consortium(consortium.verifier, {u: consortium.signers[u] for u in nodes})
    busy, unmask0, sent, params = sequential_costs(sub, updates, 0.0, 1)
    unmask20, aborted = float("nan"), 0
    for draw in range(2, 2 + DROPOUT_DRAWS):  # a draw can leave some node under the threshold
        try:
            unmask20 = sequential_costs(sub, updates, 0.2, draw)[1]
            break
        except SecAggError:
            aborted += 1
    plain, secure = [], []
    with ThreadPoolExecutor(max_workers=min(n, os.cpu_count() or 1)) as pool:
        for rep in range(reps):
            plain_s, plain_mean = plain_round(pool, updates)
            secure_s, secure_mean = secure_round(pool, sub, updates, 10 + rep)
            plain.append(plain_s)
            secure.append(secure_s)
    error = float(np.abs(secure_mean - plain_mean).max(initial=0.0))
    if error > FixedPoint(CLIP, n).error_bound / n + 1e-6:
        raise SystemExit(f"n={n}, d={d}: the secure mean is off by {error:g}")
    return {
        "n": n,
        "d": d,
        "degree": params.degree,
        "threshold": params.threshold,
        "masking_s": statistics.median(busy),
        "unmask0_s": unmask0,
        "unmask20_s": unmask20,
        "bytes_per_node": int(statistics.median(sent)),
        "plain_s": statistics.median(plain),
        "secure_s": statistics.median(secure),
        "reps": reps,
        "max_error": error,
        "aborted_draws": aborted,
    }


COLUMNS = (
    "n",
    "d",
    "k / t",
    "masking s/node",
    "unmask s (0% / 20% drop)",
    "bytes/node (overhead)",
    "plain round s",
    "secure round s",
    "ratio",
    "reps",
    "Flower plain s",
    "Flower SecAgg+ s",
    "Flower ratio",
)


def row(r: Mapping[str, Any]) -> str:
    flower = FLOWER_SECAGG_PLUS.get((r["n"], r["d"]))
    theirs = (
        [f"{flower[0]:.3f}", f"{flower[1]:.3f}", f"{flower[1] / flower[0]:.1f}x"]
        if flower
        else ["—", "—", "—"]
    )
    overhead = r["bytes_per_node"] - 4 * r["d"]
    cells = [
        str(r["n"]),
        f"{r['d']:,}",
        f"{r['degree']} / {r['threshold']}",
        f"{r['masking_s']:.3f}",
        f"{r['unmask0_s']:.3f} / {r['unmask20_s']:.3f}"
        + (f" ({r['aborted_draws']} of the drop sets drawn aborted)" if r["aborted_draws"] else ""),
        f"{r['bytes_per_node']:,} (+{overhead:,})",
        f"{r['plain_s']:.3f}",
        f"{r['secure_s']:.3f}",
        f"{r['secure_s'] / r['plain_s']:.1f}x",
        str(r["reps"]),
        *theirs,
    ]
    return "| " + " | ".join(cells) + " |"


def machine() -> str:
    return (
        f"{platform.node()} · {platform.machine()} · {psutil.cpu_count()} CPUs · "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB · Python {platform.python_version()}"
    )


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 10, 50])
    parser.add_argument("--dims", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reps", type=int, default=5, help="round repetitions (n >= 50: 3)")
    parser.add_argument("--quick", action="store_true", help="n = 4, d = 10,000, 2 repetitions")
    args = parser.parse_args(argv)
    nodes, dims, reps = ([4], [10_000], 2) if args.quick else (args.nodes, args.dims, args.reps)
    started = time.perf_counter()
    results = []
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    with tempfile.TemporaryDirectory(prefix="medfed-secagg-bench-") as tmp:
        consortium = make_consortium(Path(tmp), [f"h{i:03d}" for i in range(max(nodes))])
        for n in nodes:
            for d in dims:
                results.append(measure(n, d, reps if n < 50 else min(reps, 3), consortium))
                print(row(results[-1]), flush=True)
    print(
        "\nFlower columns: flwr 1.42 SecAgg+ (complete graph, threshold N//2+1) vs. legacy FedAvg "
        "in Ray simulation, quoted from /work/shared/anchors/flower/README.md; not measured here."
    )
    print(f"\nmachine: {machine()} · wall time {time.perf_counter() - started:.1f} s")
    return results


if __name__ == "__main__":
    main()
