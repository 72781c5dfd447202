"""A study spec's client plan: kind, declared layout, and what it refuses."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from medfed.cli.study import prepare
from medfed.compat.layout import write_safetensors
from medfed.coordinator.spec import (
    StudySpec,
    load_spec,
    spec_from_mapping,
    spec_from_proto,
    spec_to_proto,
)
from medfed.errors import ConfigError

CLIENT = """
name = "flower"
rounds = 2
[dataset]
name = "heart_disease"
[plan]
kind = "client"
name = "heart_torch"
layout = [
    { name = "weight", shape = [1, 13], dtype = "float32" },
    { name = "bias", shape = [1], dtype = "float32" },
]
"""


def _spec(extra: str = "", text: str = CLIENT) -> StudySpec:
    return spec_from_mapping(tomllib.loads(text + extra))


def test_a_client_plan_declares_its_layout_and_starts_from_zeros_in_it() -> None:
    spec = _spec()
    assert spec.client_plan and spec.plan_version == "client"
    assert spec.plan_layout == (("weight", (1, 13), "float32"), ("bias", (1,), "float32"))
    pinned, weights = prepare(spec)
    assert pinned.plan_sha256 == ""  # each hospital's file is its own; the node checks it
    assert list(weights) == ["weight", "bias"]
    assert weights["weight"].shape == (1, 13) and weights["bias"].dtype == np.float32
    assert not weights["weight"].any()
    assert StudySpec.from_json(spec.to_json()) == spec
    assert spec_from_proto(spec_to_proto(spec)).client_plan  # the coordinator's copy


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("[privacy]\nepsilon = 1.0\n", "record-level DP .* refused for client plans"),
        ('[strategy]\nname = "scaffold"\n', "scaffold is refused for client plans"),
    ],
)
def test_what_needs_medfeds_own_loop_is_refused_with_the_reason(extra: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        _spec(extra)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (CLIENT.replace('[1], dtype = "float32"', '[1], dtype = "object"'), "dtype 'object'"),
        (CLIENT.replace("shape = [1]", "shape = [0]"), "shape .* unusable"),
        (CLIENT.replace('"bias"', '"weight"'), "unique"),
        (CLIENT.replace('"bias"', '"a/b"'), "not a plain name"),
        (CLIENT.split("layout", maxsplit=1)[0], "needs layout"),
        (CLIENT.replace('kind = "client"', 'kind = "wasm"'), "plan kind must be"),
        (CLIENT.replace('kind = "client"', 'kind = "client"\nversion = "1"'), "has no version"),
        (CLIENT.replace('kind = "client"', 'version = "1"'), 'only for kind = "client"'),
    ],
    ids=["dtype", "shape", "duplicate", "name", "no-layout", "kind", "version", "installed"],
)  # fmt: skip
def test_a_bad_declaration_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        _spec(text=text)


def test_an_init_file_beside_the_spec_is_the_initial_model_if_it_is_the_layout(
    tmp_path: Path,
) -> None:
    arrays = [np.arange(13, dtype=np.float32).reshape(1, 13), np.ones(1, np.float32)]
    write_safetensors(tmp_path / "init.safetensors", _spec().plan_layout, arrays)
    (tmp_path / "study.toml").write_text(
        CLIENT.replace("[plan]", '[plan]\ninit = "init.safetensors"')
    )
    spec = load_spec(tmp_path / "study.toml")
    assert spec.plan_init == str(tmp_path / "init.safetensors")
    _, weights = prepare(spec)
    assert list(weights) == ["weight", "bias"]
    np.testing.assert_array_equal(weights["weight"], arrays[0])

    write_safetensors(tmp_path / "init.safetensors", _spec().plan_layout, [arrays[0], np.ones(2)])
    with pytest.raises(ConfigError, match="not the study's layout"):
        prepare(spec)
    (tmp_path / "init.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="not a safetensors file"):
        prepare(spec)
    with pytest.raises(ConfigError, match="only for kind"):
        _spec(
            text=CLIENT.replace('kind = "client"', 'version = "1"\ninit = "x"').split(
                "layout", maxsplit=1
            )[0]
        )
