"""Which nodes are online and which datasets they say they hold (liveness from heartbeats).

The directory also remembers the serial of the certificate each node last called with, so a node
the consortium CA revoked is reported as revoked (and never selected) rather than merely offline,
and the train and test row counts each node announces per dataset: a reply may claim no more
examples than its split holds (:mod:`medfed.coordinator.claims`). A heartbeat that names a dataset
without its sizes keeps the ones last announced; a changed announcement is reported to the caller,
which records it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from medfed.errors import ProtocolError
from medfed.protocol.v1 import medfed_pb2 as pb

MAX_ANNOUNCED_ROWS = 1_000_000_000
"""No hospital's split holds more rows; the same bound as a reply's example count."""
MAX_ANNOUNCED_DATASETS = 1000


@dataclass(frozen=True)
class SplitSizes:
    """Rows a node announces in a dataset's training and test splits."""

    train_rows: int
    test_rows: int

    def describe(self) -> str:
        return f"{self.train_rows} train / {self.test_rows} test rows"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    last_seen: float  # wall-clock seconds
    datasets: tuple[str, ...]
    online: bool
    revoked: bool = False
    sizes: Mapping[str, SplitSizes] = field(default_factory=dict)
    agent_version: str = ""
    cert_not_after: float = 0.0  # wall-clock seconds; 0: unknown


@dataclass(frozen=True)
class _Seen:
    monotonic: float
    wall: float
    datasets: tuple[str, ...]
    serial: int | None
    sizes: Mapping[str, SplitSizes]
    agent_version: str = ""
    cert_not_after: float = 0.0


def announced_sizes(request: pb.HeartbeatRequest) -> dict[str, SplitSizes]:
    """The split sizes a heartbeat announces, refusing what no honest node sends: sizes for a
    dataset it does not name, a dataset sized twice, more rows than any hospital holds."""
    if len(request.datasets) > MAX_ANNOUNCED_DATASETS:
        raise ProtocolError(f"a heartbeat may name at most {MAX_ANNOUNCED_DATASETS} datasets")
    sizes: dict[str, SplitSizes] = {}
    for item in request.dataset_sizes:
        if item.name not in request.datasets or item.name in sizes:
            raise ProtocolError(f"dataset {item.name[:80]!r} is sized twice or not announced")
        if max(item.train_rows, item.test_rows) > MAX_ANNOUNCED_ROWS:
            raise ProtocolError(
                f"dataset {item.name[:80]!r}: implausible size "
                f"({item.train_rows} train / {item.test_rows} test rows)"
            )
        sizes[item.name] = SplitSizes(item.train_rows, item.test_rows)
    return sizes


class NodeDirectory:
    def __init__(
        self,
        offline_after_s: float,
        clock: Callable[[], float] = time.monotonic,
        is_revoked: Callable[[int], bool] | None = None,
    ) -> None:
        """``is_revoked``: whether a certificate serial is on the CA's current CRL."""
        self._offline_after = offline_after_s
        self._clock = clock
        self._is_revoked = is_revoked
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}

    def seen(
        self,
        name: str,
        datasets: Sequence[str] | None = None,
        wall: float = 0.0,
        serial: int | None = None,
        sizes: Mapping[str, SplitSizes] | None = None,
        agent_version: str | None = None,
        cert_not_after: float | None = None,
    ) -> dict[str, SplitSizes]:
        """Note a call from ``name``; ``datasets`` (and ``sizes``) when it announces them.
        Returns the announced sizes this directory had not heard from ``name`` before."""
        with self._lock:
            previous = self._seen.get(name)
            known = previous.sizes if previous else {}
            held = (
                tuple(datasets) if datasets is not None else (previous.datasets if previous else ())
            )
            fresh = {d: s for d, s in (sizes or {}).items() if known.get(d) != s}
            kept = {d: s for d in held if (s := (sizes or {}).get(d, known.get(d))) is not None}
            if serial is None and previous is not None:
                serial = previous.serial
            version = agent_version if agent_version is not None else (
                previous.agent_version if previous else ""
            )  # fmt: skip
            expires = cert_not_after or (previous.cert_not_after if previous else 0.0)
            self._seen[name] = _Seen(
                self._clock(), wall or time.time(), held, serial, kept, version, expires
            )
            return fresh

    def announced(self, name: str, dataset: str) -> SplitSizes | None:
        """The split sizes ``name`` last announced for ``dataset`` (None: none announced)."""
        with self._lock:
            seen = self._seen.get(name)
            return seen.sizes.get(dataset) if seen else None

    def online(self, dataset: str, allowed: Sequence[str] = ()) -> list[str]:
        """Online, unrevoked nodes holding ``dataset`` (and in ``allowed``, when given), sorted."""
        return [
            s.name
            for s in self.statuses()
            if s.online
            and not s.revoked
            and dataset in s.datasets
            and (not allowed or s.name in allowed)
        ]

    def statuses(self) -> list[NodeStatus]:
        with self._lock:
            now = self._clock()
            seen = sorted(self._seen.items())
        return [
            NodeStatus(
                name,
                s.wall,
                s.datasets,
                now - s.monotonic <= self._offline_after,
                self._revoked(s),
                dict(s.sizes),
                s.agent_version,
                s.cert_not_after,
            )
            for name, s in seen
        ]

    def _revoked(self, seen: _Seen) -> bool:
        return (
            seen.serial is not None
            and self._is_revoked is not None
            and self._is_revoked(seen.serial)
        )
