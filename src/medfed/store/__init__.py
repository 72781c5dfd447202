"""Persistence: study state in SQL (SQLite default, PostgreSQL by URL), global models by hash."""

from medfed.store.models import ModelStore, check_sha256
from medfed.store.records import (
    MetricsKind,
    NodeRecord,
    NodeRoundMetrics,
    RoundRecord,
    StudyRecord,
)
from medfed.store.state import StateStore

__all__ = [
    "MetricsKind",
    "ModelStore",
    "NodeRecord",
    "NodeRoundMetrics",
    "RoundRecord",
    "StateStore",
    "StudyRecord",
    "check_sha256",
]
