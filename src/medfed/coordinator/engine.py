"""The round engine: one :class:`~medfed.coordinator.runner.StudyRunner` thread per running study,
started at submission, resumed after a restart from the last committed round, halted on cancel or
shutdown; and what the runners share (:class:`EngineParts`, :class:`StudyEvents`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from medfed.coordinator.directory import NodeDirectory
from medfed.coordinator.models import ServedModels
from medfed.coordinator.progress import StudyProgress
from medfed.coordinator.rounds import TaskBoard
from medfed.coordinator.runner import StudyRunner
from medfed.store.state import FINISHED_STATES, StateStore


class StudyEvents:
    """A version counter per study that watchers block on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}

    def bump(self, study_id: str) -> None:
        with self._cond:
            self._versions[study_id] = self._versions.get(study_id, 0) + 1
            self._cond.notify_all()

    def wait(self, study_id: str, seen: int, timeout_s: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._versions.get(study_id, 0) != seen, timeout_s)
            return self._versions.get(study_id, 0)


@dataclass(frozen=True)
class EngineParts:
    state: StateStore
    models: ServedModels
    board: TaskBoard
    directory: NodeDirectory
    events: StudyEvents
    progress: StudyProgress
    wall: Callable[[], float] = time.time
    suspended: Callable[[], frozenset[str]] = frozenset
    """Members the council suspended (:mod:`medfed.coordinator.governance`): never selected."""
    audit_recorded: Callable[[str], None] | None = None
    """Told each committed privacy audit's id (:class:`medfed.coordinator.release.ReleaseGate`)."""


class Engine:
    """Starts, resumes and stops study runners."""

    def __init__(self, parts: EngineParts) -> None:
        self._parts = parts
        self._halt = threading.Event()
        self._runners: dict[str, StudyRunner] = {}
        self._lock = threading.Lock()

    def start_study(self, study_id: str) -> None:
        with self._lock:
            runner = self._runners.get(study_id)
            if self._halt.is_set() or (runner is not None and runner.is_alive()):
                return
            runner = StudyRunner(study_id, self._parts, self.start_study)
            self._runners[study_id] = runner
            runner.start()

    def resume_all(self) -> list[str]:
        resumed = []
        for record in self._parts.state.studies():
            if record.state not in FINISHED_STATES:
                self.start_study(record.study_id)
                resumed.append(record.study_id)
        return resumed

    def cancel(self, study_id: str, timeout_s: float = 5.0) -> None:
        """Stop a study the store already marks cancelled: its open round closes without
        committing and its queued tasks are withdrawn before this returns (or ``timeout_s``)."""
        self._parts.board.withdraw(study_id)
        with self._lock:
            runner = self._runners.pop(study_id, None)
        if runner is not None:
            runner.halt()
            runner.join(timeout=timeout_s)
        self._parts.events.bump(study_id)

    def is_running(self, study_id: str) -> bool:
        with self._lock:
            runner = self._runners.get(study_id)
            return runner is not None and runner.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._halt.set()
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.halt()
        for runner in runners:
            runner.join(timeout=timeout_s)
