"""Which nodes are online and which datasets they say they hold (liveness from heartbeats)."""

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


class NodeDirectory:
    def __init__(self, offline_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._offline_after = offline_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, float, tuple[str, ...]]] = {}

    def seen(self, name: str, datasets: Sequence[str] | None = None, wall: float = 0.0) -> None:
        with self._lock:
            previous = self._seen.get(name)
            held = tuple(datasets) if datasets is not None else (previous[2] if previous else ())
            self._seen[name] = (self._clock(), wall or time.time(), held)

    def online(self, dataset: str, allowed: Sequence[str] = ()) -> list[str]:
        """Online nodes holding ``dataset`` (and in ``allowed``, when given), sorted by name."""
        with self._lock:
            now = self._clock()
            return sorted(
                name
                for name, (seen, _, held) in self._seen.items()
                if now - seen <= self._offline_after
                and dataset in held
                and (not allowed or name in allowed)
            )

    def statuses(self) -> list[NodeStatus]:
        with self._lock:
            now = self._clock()
            return [
                NodeStatus(name, wall, held, now - seen <= self._offline_after)
                for name, (seen, wall, held) in sorted(self._seen.items())
            ]
