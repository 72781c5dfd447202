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

The initial model is zeros in that layout, or ``init = "init.safetensors"`` (beside the spec):
weights in exactly that layout, e.g. the client's own ``get_parameters`` written by ``medfed
flower layout client.py --init init.safetensors`` (zeros never break the symmetry of hidden
units). safetensors is raw tensors and a JSON header: reading it runs no code. The coordinator
checks every reply against the initial model's names, shapes and dtypes, as for any plan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
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


def initial_weights(layout: Layout, init_file: Path | None = None) -> Weights:
    """Zeros in the declared layout, in order, or the arrays of ``init_file`` if they are
    exactly the layout's (names, shapes, dtypes)."""
    import numpy as np

    if init_file is None:
        return {name: np.zeros(shape, dtype=np.dtype(dtype)) for name, shape, dtype in layout}
    arrays = read_safetensors(init_file)
    found = layout_of(list(arrays.values()), list(arrays))
    if sorted(found) != sorted(layout):
        raise ConfigError(
            f"initial model {init_file} is {list(found)}, not the study's layout {list(layout)}"
        )
    return {name: arrays[name] for name, _, _ in layout}


def read_safetensors(path: Path) -> Weights:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except OSError as exc:
        raise ConfigError(f"initial model {path} cannot be read ({exc.strerror or exc})") from None
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ConfigError(f"initial model {path} is not a safetensors file ({exc})") from None


def write_safetensors(path: Path, layout: Layout, arrays: Sequence[Any]) -> None:
    """The client's arrays under the layout's names, as a study's ``init`` file."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({n: np.ascontiguousarray(a) for (n, _, _), a in zip(layout, arrays, strict=True)},
              str(path))  # fmt: skip


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
