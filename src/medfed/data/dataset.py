"""What a connector hands a training plan: a table or a set of images, both split train/test."""

from __future__ import annotations

from typing import TypeAlias

from medfed.data.images import ImageDataset
from medfed.data.tabular import TabularDataset

Dataset: TypeAlias = TabularDataset | ImageDataset
