"""What a node says about its own reply, and the bounds the coordinator holds it to.

A reply carries two numbers the coordinator cannot recompute: how many examples it used, and its
metrics. Both feed example-weighted means, so one hostile value would become the round's: an
accuracy of 1e300 on 30 examples made a global accuracy of 3.2e299, and a claim of 999,999,999
examples took 99.99999 % of the FedAvg weight. So every metric must be finite and lie in the
range of its family (below), an evaluation must count at least one example, and no reply may
claim more examples than its node announced for the task's split of the dataset (heartbeats
carry each dataset's train and test row counts, :mod:`medfed.coordinator.directory`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from medfed.coordinator.directory import NodeDirectory
from medfed.coordinator.rounds import Rejected
from medfed.coordinator.spec import StudySpec
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.store.state import NodeRoundMetrics
from medfed.strategies.site_weight import largest_share, weight_cap

UNIT = (0.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)
ANY_FINITE = (-math.inf, math.inf)

METRIC_RANGES: tuple[tuple[str, tuple[float, float]], ...] = (
    ("accuracy", UNIT),  # also balanced_accuracy, personal_accuracy, pooled_accuracy, ...
    ("auc", UNIT),
    ("auprc", UNIT),
    ("sensitivity", UNIT),
    ("specificity", UNIT),
    ("loss", NON_NEGATIVE),  # also train_loss, initial_loss
    ("consented_n", NON_NEGATIVE),
    ("watermark", NON_NEGATIVE),  # consent_watermark
)
"""Metric families and their closed ranges. A family names a metric when it is the whole name
or its last ``_``-separated part; a metric of no family only has to be finite."""


def metric_range(name: str) -> tuple[float, float]:
    """The closed range a metric called ``name`` must lie in."""
    for family, bounds in METRIC_RANGES:
        if name == family or name.endswith("_" + family):
            return bounds
    return ANY_FINITE


def check_metrics(metrics: Mapping[str, float]) -> None:
    """Reject the reply unless every metric is finite and inside its family's range."""
    bad = []
    for name, value in sorted(metrics.items()):
        low, high = metric_range(name)
        if not (math.isfinite(value) and low <= value <= high):
            bad.append(f"{name}={value!r} (expected {_describe(low, high)})")
    if bad:
        raise Rejected("metrics out of range: " + ", ".join(bad))


def check_examples(num_examples: int, announced: int | None, split: str) -> None:
    """Reject a claim of fewer than one example, or of more than the node announced for the
    ``split`` (``train`` or ``test``) of the task's dataset; ``announced`` None: not checked
    (a slot made outside the round engine), 0: nothing announced."""
    if num_examples < 1:
        raise Rejected(f"a reply must report at least one example ({split} split), got 0")
    if announced is not None and num_examples > announced:
        raise Rejected(
            f"reply claims {num_examples} examples, but the node announced "
            f"{announced} {split} rows for this dataset"
        )


def _describe(low: float, high: float) -> str:
    if math.isinf(low) and math.isinf(high):
        return "finite"
    if math.isinf(high):
        return f">= {low:g} and finite"
    return f"in [{low:g}, {high:g}]"


def claim_limit(directory: NodeDirectory, node: str, dataset: str, kind: int) -> int | None:
    """The most examples ``node``'s reply to a task of ``kind`` may claim: the rows it announced
    in that task's split (0 when it announced none; None for a secure-aggregation stage)."""
    if kind == pb.TASK_KIND_SECAGG:
        return None
    sizes = directory.announced(node, dataset)
    if sizes is None:
        return 0
    return sizes.test_rows if kind == pb.TASK_KIND_EVALUATE else sizes.train_rows


def round_weight_cap(max_share: float, announced: Sequence[int]) -> int:
    """A training round's cap on one reply's weight (0 = none) for a study's ``max_site_weight``.

    Water-filling (:func:`medfed.strategies.site_weight.weight_cap`) over the training rows the
    selected sites announced, fixed before the first update arrives, since updates are folded
    into a running sum as they come. A site replying with what it announced (an honest node
    does) then holds at most ``max_share``; rounded down, which only lowers a capped share.
    When a selected site does not reply, the others' updates are already folded and a share
    can end above the cap: the round's ``max_site_share`` metric says so."""
    weights = [float(n) for n in announced if n > 0]
    level = weight_cap(weights, max_share) if max_share and weights else None
    return 0 if level is None else max(1, math.floor(level))


def site_weight_cap(spec: StudySpec, directory: NodeDirectory, nodes: Sequence[str]) -> int:
    """:func:`round_weight_cap` for a training round of ``spec`` on ``nodes``."""
    announced = [claim_limit(directory, n, spec.dataset, pb.TASK_KIND_TRAIN) or 0 for n in nodes]
    return round_weight_cap(spec.max_site_weight, announced)


def site_share_metrics(per_node: Sequence[NodeRoundMetrics], cap: int) -> dict[str, float]:
    """``max_site_share``: the largest share of the weight one accepted training reply held."""
    weights = [
        float(min(m.num_examples, cap) if cap else m.num_examples)
        for m in per_node
        if m.kind == "train"
    ]
    return {"max_site_share": largest_share(weights)} if weights else {}
