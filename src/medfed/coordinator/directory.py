"""Which nodes are online and which datasets they say they hold (liveness from heartbeats).

The directory also remembers the serial of the certificate each node last called with, so a node
the consortium CA revoked is reported as revoked (and never selected) rather than merely offline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeStatus:
    name: str
    last_seen: float  # wall-clock seconds
    datasets: tuple[str, ...]
    online: bool
    revoked: bool = False


@dataclass(frozen=True)
class _Seen:
    monotonic: float
    wall: float
    datasets: tuple[str, ...]
    serial: int | None


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
    ) -> None:
        with self._lock:
            previous = self._seen.get(name)
            held = (
                tuple(datasets) if datasets is not None else (previous.datasets if previous else ())
            )
            if serial is None and previous is not None:
                serial = previous.serial
            self._seen[name] = _Seen(self._clock(), wall or time.time(), held, serial)

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
                name, s.wall, s.datasets, now - s.monotonic <= self._offline_after, self._revoked(s)
            )
            for name, s in seen
        ]

    def _revoked(self, seen: _Seen) -> bool:
        return (
            seen.serial is not None
            and self._is_revoked is not None
            and self._is_revoked(seen.serial)
        )
