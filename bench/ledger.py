"""What the ledger costs: per committed round at the coordinator, per update at a node, and a
node verifying a long ledger from scratch.

    python bench/ledger.py [--sites 4 50] [--rounds 200] [--verify-rounds 1000] [--dim 1000000]

Prints, per number of sites: the round entry's size in bytes, the median milliseconds of
``commit_round`` with and without the ledger (SQLite, durable commits, measured side by side in
one run, interleaved), and what signing costs: a node hashing and signing a ``--dim``-parameter
float32 update and the coordinator verifying the signature. Then the time a node (or an auditor)
takes to verify a ``--verify-rounds``-round ledger of 4 sites from its first entry (every hash,
link, the coordinator's signature on each entry and every hospital's on each update).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine
from medfed.ledger.chain import verify_entries
from medfed.ledger.updates import UpdateVerifier, sign_header
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role
from medfed.pki.signer import CertificateSigner
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.ledger import LedgerWriter
from medfed.store.records import NodeRoundMetrics, RoundRecord
from medfed.store.state import StateStore


class World:
    def __init__(self, root: Path, sites: int) -> None:
        ca = CertificateAuthority.init(root / "ca", "bench")
        coord = ca.issue("coordinator", Role.COORDINATOR, root / "c", sans=("localhost",))
        self.ca_pem = ca.ca_cert_path.read_bytes()
        self.ca = ca.certificate
        self.coordinator = CertificateSigner.from_files(coord.cert, coord.key)
        self.sites: dict[str, tuple[bytes, CertificateSigner]] = {}
        for i in range(sites):
            name = f"site-{i:02d}"
            files = ca.issue(name, Role.NODE, root / "n")
            self.sites[name] = (
                files.cert.read_bytes(),
                CertificateSigner.from_files(files.cert, files.key),
            )
        self.verifier = UpdateVerifier(self.ca)

    def store(self, path: Path, ledger: bool) -> StateStore:
        store = StateStore.sqlite(path)
        if ledger:
            store.open_ledger(LedgerWriter(self.coordinator, self.ca_pem), time.time())
            for i, (name, (pem, _)) in enumerate(self.sites.items()):
                store.record_member(name, "node", i + 1, pem, time.time())
        store.create_study("s-1", "bench", "{}", "ab" * 32, time.time())
        return store

    def proofs(self, round_: int) -> tuple[dict[str, object], ...]:
        out = []
        for name, (pem, signer) in self.sites.items():
            header = pb.UpdateHeader(task_id=f"t{round_}{name}", study_id="s-1", round=round_,
                                     num_examples=100, update_sha256="cd" * 32)  # fmt: skip
            sign_header(header, signer.sign)
            out.append(self.verifier.verify(pem, name, header, "cd" * 32).to_json())
        return tuple(out)

    def record(self, round_: int, proofs: tuple[dict[str, object], ...]) -> RoundRecord:
        per_node = tuple(NodeRoundMetrics(n, "train", 100, {"loss": 0.5, "epsilon": 0.1})
                         for n in self.sites)  # fmt: skip
        return RoundRecord(
            study_id="s-1", round=round_, model_sha256=f"{round_ % 256:02x}" * 32,
            selected=len(self.sites), accepted=len(self.sites), rejected=0, duration_s=1.0,
            committed_unix=time.time(), metrics={"loss": 0.5}, per_node=per_node,
            rejections=(), selected_nodes=tuple(self.sites), updates=proofs,
        )  # fmt: skip


def commit_costs(sites: int, rounds: int, root: Path) -> dict[str, float]:
    world = World(root / f"w{sites}", sites)
    on, off = world.store(root / f"on{sites}.db", True), world.store(root / f"off{sites}.db", False)
    timings: dict[bool, list[float]] = {True: [], False: []}
    for r in range(1, rounds + 1):
        proofs = world.proofs(r)
        for ledger, store in ((True, on), (False, off)):
            record = world.record(r, proofs if ledger else ())
            start = time.perf_counter()
            store.commit_round(record)
            timings[ledger].append(time.perf_counter() - start)
    head = on.ledger_head()
    assert head is not None
    entry = on.ledger_entries(head.seq, 1)[0]
    return {
        "bytes": float(len(entry.to_line())),
        "on_ms": statistics.median(timings[True]) * 1000,
        "off_ms": statistics.median(timings[False]) * 1000,
    }


def signing_costs(dim: int, root: Path) -> dict[str, float]:
    world = World(root / "sign", 1)
    name, (pem, signer) = next(iter(world.sites.items()))
    weights = {"w": np.random.default_rng(0).standard_normal(dim).astype(np.float32)}
    hashes, signs, verifies = [], [], []
    for r in range(20):
        start = time.perf_counter()
        digest = tensors.weights_sha256(weights)
        hashes.append(time.perf_counter() - start)
        header = pb.UpdateHeader(task_id=f"t{r}", study_id="s", round=r, num_examples=1,
                                 update_sha256=digest)  # fmt: skip
        start = time.perf_counter()
        sign_header(header, signer.sign)
        signs.append(time.perf_counter() - start)
        start = time.perf_counter()
        world.verifier.verify(pem, name, header, digest)
        verifies.append(time.perf_counter() - start)
    return {"hash_ms": statistics.median(hashes) * 1000, "sign_ms": statistics.median(signs) * 1000,
            "verify_ms": statistics.median(verifies) * 1000}  # fmt: skip


def verify_cost(rounds: int, root: Path) -> tuple[int, float, int]:
    world = World(root / "verify", 4)
    store = world.store(root / "verify.db", True)
    for r in range(1, rounds + 1):
        store.commit_round(world.record(r, world.proofs(r)))
    head = store.ledger_head()
    assert head is not None
    entries = store.ledger_entries(0, head.seq + 1)
    while len(entries) < head.seq + 1:
        entries += store.ledger_entries(len(entries), head.seq + 1)
    size = sum(len(e.to_line()) + 1 for e in entries)
    start = time.perf_counter()
    verify_entries(entries, world.ca)
    return len(entries), time.perf_counter() - start, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[4, 50])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--verify-rounds", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="medfed-ledger-bench-") as tmp:
        root = Path(tmp)
        print(f"\ncommit_round on SQLite (durable), median of {args.rounds} rounds, interleaved")
        print(
            "| sites | round entry (bytes) | commit with ledger (ms) | without (ms) | added (ms) |"
        )
        print("|---|---|---|---|---|")
        for sites in args.sites:
            c = commit_costs(sites, args.rounds, root)
            print(f"| {sites} | {c['bytes']:,.0f} | {c['on_ms']:.2f} | {c['off_ms']:.2f} | "
                  f"{c['on_ms'] - c['off_ms']:.2f} |", flush=True)  # fmt: skip
        s = signing_costs(args.dim, root)
        print(f"\nper update ({args.dim:,} float32 parameters), median of 20")
        print("| node: SHA-256 of the update (ms) | node: sign (ms) | coordinator: verify (ms) |")
        print("|---|---|---|")
        print(f"| {s['hash_ms']:.2f} | {s['sign_ms']:.3f} | {s['verify_ms']:.3f} |")
        count, seconds, size = verify_cost(args.verify_rounds, root)
        print(f"\nverifying a {args.verify_rounds:,}-round ledger of 4 sites from its first entry")
        print("| entries | size (MB) | verify (s) | entries/s |")
        print("|---|---|---|---|")
        print(f"| {count:,} | {size / 1e6:.2f} | {seconds:.2f} | {count / seconds:,.0f} |")


if __name__ == "__main__":
    main()
