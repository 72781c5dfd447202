"""Each study's per-hospital picture, kept current by the round engine and read by the admin
service: the latest outcome of every hospital's last task, joined with the node directory.

The outcomes live in memory (a study's runner records them after every dispatch); on a restart
the runner seeds them from the refusals stored for the round it resumes, so a study that was
failing for a reason still says so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from medfed.coordinator.directory import NodeDirectory
from medfed.coordinator.rounds import OpenRound, TaskStatus
from medfed.coordinator.sites import NO_REPLY_REASON, SiteState, SiteView, site_states
from medfed.store.state import StateStore


class StudyProgress:
    def __init__(self, directory: NodeDirectory, state: StateStore) -> None:
        self._directory = directory
        self._state = state
        self._lock = threading.Lock()
        self._outcomes: dict[str, dict[str, str]] = {}

    def record(self, round_: OpenRound) -> None:
        """After a dispatch closed: an accepted task clears its hospital's reason, any other
        ending (refused, rejected, no reply) becomes it."""
        with round_.cond:
            ended = {slot.node: slot.status for slot in round_.slots.values()}
            reasons = dict(_split(text) for text in round_.rejections)
        with self._lock:
            outcomes = self._outcomes.setdefault(round_.study_id, {})
            for node, status in ended.items():
                if status is TaskStatus.ACCEPTED:
                    outcomes.pop(node, None)
                else:
                    outcomes[node] = reasons.get(node, NO_REPLY_REASON)

    def seed(self, study_id: str, rejections: Iterable[tuple[str, str]]) -> None:
        """Outcomes from stored (node, reason) pairs, oldest first (the last one per node wins)."""
        with self._lock:
            self._outcomes[study_id] = dict(rejections)

    def forget(self, study_id: str) -> None:
        with self._lock:
            self._outcomes.pop(study_id, None)

    def sites(self, study_id: str, dataset: str, allowed: Sequence[str]) -> list[SiteState]:
        """Every hospital the study could use (``allowed``, or all known when empty), now."""
        with self._lock:
            outcomes = dict(self._outcomes.get(study_id, {}))
        return site_states(dataset, self._views(allowed), outcomes)

    def _views(self, allowed: Sequence[str]) -> list[SiteView]:
        views = {
            s.name: SiteView(s.name, s.online, s.revoked, s.datasets, s.last_seen)
            for s in self._directory.statuses()
        }
        for node in self._state.nodes():  # seen before a coordinator restart, silent since
            if node.name not in views:
                views[node.name] = SiteView(
                    node.name, False, False, node.datasets, node.last_seen_unix
                )
        for name in allowed:
            views.setdefault(name, SiteView(name, False, False, (), 0.0))
        return [v for name, v in views.items() if not allowed or name in allowed]


def _split(text: str) -> tuple[str, str]:
    node, _, reason = text.partition(": ")
    return node, reason
