"""What a connector hands a training plan: a table or a set of images, both split train/test."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np

from medfed.data.images import ImageDataset
from medfed.data.tabular import TabularDataset

Dataset: TypeAlias = TabularDataset | ImageDataset


def label_warnings(data: Dataset) -> list[str]:
    """What a data steward should hear about a split whose label has one class only. Not a
    refusal (a hospital with only positive cases can still help train), but its test metrics
    change meaning: AUC, AUPRC (without positives) and balanced accuracy are undefined there and
    left out of its evaluation, and a model trained on one class alone learns no boundary."""
    out = []
    for split, y, consequence in (
        ("training", data.y_train, "local training sees no example of the other class"),
        ("test", data.y_test, "this site's AUC and balanced accuracy are undefined"),
    ):
        classes = np.unique(y)
        if len(classes) == 1:
            out.append(
                f"the {split} split's label {data.label!r} has one class only: all "
                f"{len(y)} rows are {int(classes[0])} ({consequence})"
            )
    return out
