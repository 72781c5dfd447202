from __future__ import annotations

import numpy as np
import pytest

from medfed.analytics.release_log import ReleaseLog
from medfed.errors import DisclosureError, StoreError

SPEC = "a" * 64


def ids(*ranges: range) -> np.ndarray:
    return np.concatenate([np.arange(r.start, r.stop) for r in ranges]).astype(np.int64)


def test_overlapping_subset_differing_by_fewer_than_k_is_refused():
    log = ReleaseLog("heart")
    first = {"cohort": ids(range(0, 100))}
    log.check(first, SPEC, k=5)
    log.record(first, SPEC)
    with pytest.raises(DisclosureError, match="differs from the earlier released 'cohort'"):
        log.check({"cohort": ids(range(0, 98))}, SPEC, k=5)
    with pytest.raises(DisclosureError):
        log.check({"cohort": ids(range(0, 100), range(500, 503))}, SPEC, k=5)


def test_one_sided_difference_is_caught_even_when_the_symmetric_one_is_large():
    log = ReleaseLog("heart")
    log.record({"cohort": ids(range(0, 100))}, SPEC)
    # drops one person, adds ten others: |A ^ B| = 11, but A \ B is one person
    with pytest.raises(DisclosureError, match="1 removed"):
        log.check({"cohort": ids(range(1, 100), range(500, 510))}, SPEC, k=5)


def test_same_or_far_apart_subsets_are_allowed():
    log = ReleaseLog("heart")
    log.record({"cohort": ids(range(0, 100))}, SPEC)
    log.check({"again": ids(range(0, 100))}, SPEC, k=5)
    log.check({"smaller": ids(range(0, 90))}, SPEC, k=5)
    log.check({"other": ids(range(1000, 1040))}, SPEC, k=5)


def test_the_log_survives_a_restart_and_still_refuses(tmp_path):
    log = ReleaseLog.in_state_dir(tmp_path, "heart/v1")
    log.record({"cohort": ids(range(0, 50))}, SPEC)
    assert log.path is not None and log.path.exists()
    reopened = ReleaseLog.in_state_dir(tmp_path, "heart/v1")
    assert [r.size for r in reopened.releases] == [50]
    with pytest.raises(DisclosureError):
        reopened.check({"cohort": ids(range(0, 49))}, SPEC, k=5)


def test_changed_bin_edges_are_refused_for_the_same_study():
    log = ReleaseLog("heart")
    log.record({"cohort": ids(range(0, 50))}, SPEC)
    with pytest.raises(DisclosureError, match="other bin edges"):
        log.check({"cohort": ids(range(0, 50))}, "b" * 64, k=5)


def test_an_unreadable_log_fails_closed(tmp_path):
    path = tmp_path / "heart.releases.json"
    path.write_text("{not json")
    with pytest.raises(StoreError):
        ReleaseLog("heart", path)
