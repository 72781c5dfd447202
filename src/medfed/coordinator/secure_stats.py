"""A statistics study under secure aggregation: the coordinator learns only the sites' sum.

Each site sends its disclosure-controlled summary as one fixed vector (analytics.secure_table,
the layout fixed by the query) through the SecAgg+ stages the training rounds use (stage 3 rides
on the STATS tasks, purpose "stats" bound into every key and signature); the coordinator unmasks
the sum of the survivors' vectors, applies disclosure control to the pooled fixed-bin histograms
and attrition chain in it (analytics.secure_release) and builds a pooled-only Table 1 with
quartiles and attrition. No site's summary, and no site's row count, ever reaches it; of the sum,
only the released region and the protected release are kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medfed.analytics import secure_release, secure_table
from medfed.analytics.secure_release import PooledRelease
from medfed.analytics.spec import StatsSpec
from medfed.analytics.table1 import Table1
from medfed.coordinator.rounds import OpenRound, Rejected, TaskSlot
from medfed.coordinator.secure_round import Dispatch, SecureSum, round_params
from medfed.coordinator.spec import StudySpec
from medfed.coordinator.staging import StagingPool
from medfed.protocol import framing, streams, tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.secagg.messages import STATS_PURPOSE


@dataclass(frozen=True)
class SecureStats:
    """A secure query's outcome: the pooled Table 1, what may be stored of the sum (its
    released region and the protected release of the controlled one), and how many sites."""

    table: Table1
    released_sums: npt.NDArray[np.float64]
    release: PooledRelease
    sites: int


def secure_sum(
    spec: StudySpec, query: StatsSpec, round_: OpenRound, nodes: list[str], dispatch: Dispatch
) -> SecureStats:
    """All four SecAgg+ stages over ``nodes``, then the coordinator's disclosure control.
    SecAggError (too few survivors, ...) and ConfigError propagate."""
    lay = secure_table.layout(query, spec.features)
    params = round_params(spec, round_.study_id, round_.round, nodes, lay.words, STATS_PURPOSE)
    words, survivors = SecureSum(spec, params, weighted=False).total(round_, dispatch)
    sums = secure_table.from_words(words)
    sites = len(survivors)
    released = secure_release.release(sums, query, lay, sites)
    kept = sums[: lay.released_size].copy()
    table = secure_release.pooled_table(kept, query, lay, sites, released)
    return SecureStats(table, kept, released, sites)


def receive_masked(
    round_: OpenRound,
    slot: TaskSlot,
    header: pb.UpdateHeader,
    frames: Iterator[bytes],
    pool: StagingPool,
) -> None:
    """A site's masked statistics vector: exactly the round's layout, no row count."""
    if header.num_examples != 0 or header.metrics:
        raise Rejected("a secure statistics reply reports no row count and no metrics")
    if round_.manifest is None:
        raise Rejected("the secure sum has no layout yet (stage 3 not reached)")
    second = next(frames, None)
    kind, payload = framing.unframe(second) if second is not None else (0, memoryview(b""))
    if kind != framing.UPDATE_MANIFEST:
        raise Rejected("a secure statistics reply is a header, a manifest and the masked words")
    manifest = tensors.manifest_from_proto(framing.parse_manifest(payload))
    tensors.same_layout(round_.manifest, manifest)
    wait_s = max(0.1, round_.deadline - time.monotonic())
    with pool.buffer(manifest.total_bytes, wait_s, owner=slot.node) as staging:
        streams.fill(staging.frames(frames), staging.view, framing.UPDATE_DATA)
        staging.received()
        weights = tensors.decode(manifest, staging.view)
        round_.accept_update(slot, weights, 0, {})
