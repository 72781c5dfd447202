"""A client plan's parameter layout, declared in the study spec, and its initial model.

The coordinator never runs a hospital's code, so it cannot ask a client for its parameters.
The study says instead, in order, what arrays the clients exchange (Flower's parameters are an
ordered list; medfed names each one):

    [plan]
    kind = "client"
    name = "heart_torch"
    layout = [
        { name = "weight", shape = [1, 13], dtype = "float32" },
        { name = "bias", shape = [1], dtype = "float32" },
    ]

The initial model is zeros in that layout; a study that wants another start submits its own
initial weights (``AdminClient.submit(spec, weights)``) in the same layout. The coordinator
checks every reply against the initial model's names, shapes and dtypes, as for any plan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from medfed.errors import ConfigError

if TYPE_CHECKING:  # the spec (and the admin client with it) imports this module: no numpy there
    from medfed.protocol.tensors import Weights

CLIENT_PLAN_VERSION = "client"
"""The version a client plan travels with (PlanRef, StudySpec): installed plans have numbers."""
DTYPES = ("float32", "float64", "float16", "int64", "int32")
MAX_ELEMENTS = 1 << 31
_TENSOR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")

Layout = tuple[tuple[str, tuple[int, ...], str], ...]
"""(name, shape, dtype) of each array, in the order ``fit`` receives and returns them."""


def parse_layout(value: Any, source: str) -> Layout:
    """A TOML ``layout`` array of ``{ name, shape, dtype }`` tables, checked."""
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ConfigError(
            f"{source}: a client plan needs layout = [{{ name, shape, dtype }}, …], one table "
            "per array its fit returns, in order"
        )
    entries = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"name", "shape", "dtype"}:
            raise ConfigError(f"{source}: each layout entry is {{ name, shape, dtype }}: {item!r}")
        shape = item["shape"]
        if not isinstance(shape, Sequence) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape
        ):
            raise ConfigError(f"{source}: layout shape {shape!r} must be a list of integers")
        entries.append((str(item["name"]), tuple(int(d) for d in shape), str(item["dtype"])))
    layout = tuple(entries)
    check_layout(layout)
    return layout


def check_layout(layout: Layout) -> None:
    names = [name for name, _, _ in layout]
    if len(set(names)) != len(names):
        raise ConfigError(f"invalid study spec: layout names must be unique: {names}")
    for name, shape, dtype in layout:
        if not _TENSOR_NAME.match(name):
            raise ConfigError(f"invalid study spec: layout name {name!r} is not a plain name")
        if dtype not in DTYPES:
            raise ConfigError(f"invalid study spec: dtype {dtype!r} of {name!r} is not in {DTYPES}")
        if any(d < 1 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
            raise ConfigError(f"invalid study spec: shape {list(shape)} of {name!r} is unusable")


def initial_weights(layout: Layout) -> Weights:
    """Zeros in the declared layout, in order."""
    import numpy as np

    return {name: np.zeros(shape, dtype=np.dtype(dtype)) for name, shape, dtype in layout}


def layout_of(arrays: Sequence[Any], names: Sequence[str] = ()) -> Layout:
    """The layout of a client's ``get_parameters`` answer (``medfed flower layout``)."""
    import numpy as np

    out = []
    for i, array in enumerate(arrays):
        a = np.asarray(array)
        out.append((names[i] if i < len(names) else f"p{i}", tuple(a.shape), str(a.dtype)))
    return tuple(out)


def layout_toml(layout: Layout) -> str:
    lines = [
        f'    {{ name = "{n}", shape = [{", ".join(str(d) for d in s)}], dtype = "{t}" }},'
        for n, s, t in layout
    ]
    return "layout = [\n" + "\n".join(lines) + "\n]\n"
