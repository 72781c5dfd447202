"""The node's copy of the ledger: verified before every task, kept on the hospital's disk.

Every task carries the coordinator's ledger head. Before it admits the task the node fetches the
entries it has not seen, verifies them onto the chain it already holds (links, hashes, the
coordinator's signatures, members' certificates, signed updates; :mod:`medfed.ledger.chain`) and
appends them to ``ledger.jsonl`` in its state folder. A coordinator that rewrote, dropped or
reordered history, forked it, or stopped showing it after showing it once, is caught here and the
node refuses every task from then on, with the reason; the fault is written to ``ledger-fault.txt``
for the hospital's IT team and cleared only by removing that file. Heartbeats carry the head the
node verified and bring back the heads other hospitals verified (gossip through the coordinator):
two different heads for one height, both signed, prove the coordinator showed two histories.

What gossip cannot do: a coordinator that withholds other nodes' heads from a node is not caught by
gossip alone (it is by an anchor outside the coordinator's control, the blockchain layer).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509

from medfed.errors import EquivocationError, LedgerError, PolicyError
from medfed.governance.rules import check_study, facts_from_task
from medfed.ledger.chain import ChainVerifier
from medfed.ledger.entry import Entry, Head, parse_line
from medfed.ledger.wire import from_proto, page_entries
from medfed.node.protocols import ProtocolApprovals
from medfed.protocol.v1 import medfed_pb2 as pb

log = logging.getLogger("medfed.node")

FAULT_FILE = "ledger-fault.txt"
MAX_PAGES_PER_SYNC = 10_000
"""A bound on one catch-up (10 million entries): a coordinator cannot keep a node paging forever."""


class NodeLedger:
    def __init__(
        self,
        folder: Path,
        ca: x509.Certificate,
        fetch: Callable[[int], pb.LedgerPage],
        node: str = "",
    ) -> None:
        """``node``: this hospital's identity (the council's rules may name it)."""
        self._node = node
        self._protocols = ProtocolApprovals(folder)
        self._path = folder / "ledger.jsonl"
        self._fault_path = folder / FAULT_FILE
        self._fetch = fetch
        self._verifier = ChainVerifier(ca)
        self._lock = threading.Lock()
        self._loaded = False

    @property
    def head(self) -> Head | None:
        with self._lock:
            self._load()
            return self._verifier.head

    def check_rules(self, task: pb.Task) -> None:
        """PolicyError if the task breaks the council's rules as this node replayed them from
        the ledger it verified (the coordinator's acceptance of the study does not count)."""
        if task.kind not in (pb.TASK_KIND_TRAIN, pb.TASK_KIND_EVALUATE):
            return
        with self._lock:
            rules = self._verifier.governance.rules
        asked = task.config.record_dp.epsilon
        broken = check_study(rules, facts_from_task(task, self._node, asked if asked > 0 else None))
        if broken:
            raise PolicyError(broken[0].code, "; ".join(v.message for v in broken))

    def approvals(self) -> list[pb.ProtocolApproval]:
        """The study protocols this hospital's steward approved, signed (sent with heartbeats)."""
        return self._protocols.messages()

    def sync(self, shown: Head | None) -> None:
        """Verify the chain up to the head a task shows; PolicyError (refuse the task) if not."""
        with self._lock:
            self._load()
            self._refuse_if_faulty()
            if shown is None:
                if self._verifier.height:
                    self._fail(
                        f"the coordinator sent a task without its ledger head after showing "
                        f"{self._verifier.height} entries: it may be hiding history"
                    )
                return
            try:
                self._verifier.check_head(shown)
                self._catch_up(shown)
                self._verifier.check_head(shown)
            except LedgerError as exc:
                self._fail(str(exc), equivocation=isinstance(exc, EquivocationError))

    def keep_up(self, reply: pb.HeartbeatReply) -> None:
        """Between tasks: verify up to the coordinator's current head and check the other
        hospitals' heads, so a rewrite or a fork is found before the next task arrives (a fault
        is logged and written down here; the next task is refused with it)."""
        try:
            if reply.HasField("ledger_head"):
                self.sync(from_proto(reply.ledger_head))
        except (PolicyError, LedgerError) as exc:
            log.error("ledger check between tasks failed: %s", exc)
            return
        self.check_peers(reply.peer_heads)

    def check_peers(self, heads: Sequence[pb.PeerHead]) -> None:
        """Compare the heads other hospitals verified with this node's chain."""
        with self._lock:
            self._load()
            for peer in heads:
                try:
                    self._verifier.check_head(from_proto(peer.head))
                except LedgerError as exc:
                    try:
                        self._fail(f"{exc} (head verified by {peer.node!r})",
                                   equivocation=isinstance(exc, EquivocationError))  # fmt: skip
                    except PolicyError:
                        log.error("ledger fault found by gossip: %s", exc)
                    return

    def _catch_up(self, shown: Head) -> None:
        for _ in range(MAX_PAGES_PER_SYNC):
            if self._verifier.height > shown.seq:
                return
            entries = page_entries(self._fetch(self._verifier.height))
            if not entries:
                raise LedgerError(
                    f"the coordinator showed ledger head {shown.seq} but serves entries only up "
                    f"to {self._verifier.height - 1}: an entry was dropped"
                )
            self._verifier.extend(entries)
            self._append(entries)
        raise LedgerError("the coordinator kept the node paging through its ledger")

    def _append(self, entries: Sequence[Entry]) -> None:
        with self._path.open("ab") as out:
            for entry in entries:
                out.write(entry.to_line() + b"\n")
            out.flush()
            os.fsync(out.fileno())

    def _load(self) -> None:
        """Re-verify the copy on disk once per process (it is the hospital's own evidence)."""
        if self._loaded:
            return
        self._loaded = True
        if not self._path.exists():
            return
        raw = self._path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]  # a line cut by a crash is fetched again
        try:
            self._verifier.extend(parse_line(line) for line in complete.splitlines() if line)
        except LedgerError as exc:
            self._write_fault(f"this node's own ledger copy {self._path} does not verify: {exc}")
        if len(complete) != len(raw):
            self._path.write_bytes(complete)

    def _refuse_if_faulty(self) -> None:
        if self._fault_path.exists():
            reason = self._fault_path.read_text(encoding="utf-8").strip()
            raise PolicyError("ledger_fault", f"{reason} (remove {self._fault_path} to resume)")

    def _fail(self, reason: str, *, equivocation: bool = False) -> None:
        self._write_fault(reason)
        code = "ledger_equivocation" if equivocation else "ledger_fork"
        raise PolicyError(code, f"the coordinator's ledger does not verify: {reason}")

    def _write_fault(self, reason: str) -> None:
        log.error("ledger fault: %s", reason)
        self._fault_path.write_text(reason + "\n", encoding="utf-8")


def task_head(task: pb.Task) -> Head | None:
    return from_proto(task.ledger_head) if task.HasField("ledger_head") else None
