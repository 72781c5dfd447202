from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfed.configfile import TLS_KEYS, Key, Kind, parse, reference_table, render
from medfed.coordinator.config import (
    ADMIN_KEYS,
    COORDINATOR_KEYS,
    load_client_config,
    load_coordinator_config,
)
from medfed.errors import ConfigError
from medfed.node.config import NODE_KEYS, load_node_config

KEYS = (
    Key("address", Kind.TEXT, "Where.", required=True),
    Key("workers", Kind.INT, "How many.", default=2, minimum=1),
    Key("ratio", Kind.FLOAT, "How much.", default=0.5),
    Key("tls.cert", Kind.PATH, "Which file.", required=True),
    Key("tls.crl", Kind.PATH, "Optional file."),
)
README = Path(__file__).resolve().parents[1] / "README.md"
ROLES = {"coordinator": COORDINATOR_KEYS, "node": NODE_KEYS, "admin": ADMIN_KEYS}


def test_parse_fills_defaults_and_reads_paths_from_the_files_folder(tmp_path: Path) -> None:
    doc = {"address": "h:1", "tls": {"cert": "certs/a.crt"}}

    values = parse(doc, KEYS, base=tmp_path, source="t.toml")

    assert values == {
        "address": "h:1",
        "workers": 2,
        "ratio": 0.5,
        "tls.cert": tmp_path / "certs/a.crt",
        "tls.crl": None,
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"address": "h:1", "workerz": 3, "tls": {"cert": "a"}}, "unknown key(s) workerz"),
        ({"address": "h:1", "tls": {"cert": "a", "key": "b"}}, "unknown key(s) tls.key"),
        ({"address": "h:1"}, "missing key 'tls.cert'"),
        ({"address": 7, "tls": {"cert": "a"}}, "address must be a quoted string"),
        ({"address": "h", "workers": "3", "tls": {"cert": "a"}}, "workers must be an integer"),
        ({"address": "h", "workers": 2.5, "tls": {"cert": "a"}}, "workers must be an integer"),
        ({"address": "h", "workers": True, "tls": {"cert": "a"}}, "workers must be an integer"),
        ({"address": "h", "workers": 0, "tls": {"cert": "a"}}, "workers must be at least 1"),
        ({"address": "h", "ratio": "x", "tls": {"cert": "a"}}, "ratio must be a number"),
    ],
)
def test_parse_refuses_what_it_would_otherwise_silently_ignore(
    doc: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(doc, KEYS, base=Path("/"), source="t.toml")


def test_a_float_key_takes_a_whole_number() -> None:
    values = parse({"address": "h", "ratio": 2, "tls": {"cert": "a"}}, KEYS, base=Path("/"),
                   source="t")  # fmt: skip
    assert values["ratio"] == 2.0
    assert isinstance(values["ratio"], float)


@given(
    address=st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    workers=st.integers(min_value=1, max_value=2**62),
    ratio=st.floats(allow_nan=False),
)
def test_rendered_file_parses_back_to_the_values(address: str, workers: int, ratio: float) -> None:
    values = {"address": address, "workers": workers, "ratio": ratio, "tls.cert": Path("/c")}

    text = render("a title\nover two lines", KEYS, values)

    parsed = parse(tomllib.loads(text), KEYS, base=Path("/"), source="t")
    assert parsed == {**values, "tls.crl": None}


def test_rendered_file_documents_every_key_and_comments_out_unset_ones() -> None:
    text = render("t", KEYS, {"address": "h", "tls.cert": Path("c")})

    for key in KEYS:
        assert key.help in text
    assert "\n# workers = 2\n" in text
    assert "\n# ratio = 0.5\n" in text
    assert text.index("address =") < text.index("[tls]") < text.index("cert =")


@pytest.mark.parametrize("role", ROLES)
def test_readme_reference_lists_every_key_of_every_role(role: str) -> None:
    section = README.read_text().split(f"### {role} config", 1)[1].split("\n#", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))

    assert table == reference_table(ROLES[role]), (
        f"README's '{role} config' table is stale; paste reference_table({role.upper()}_KEYS)"
    )


@pytest.mark.parametrize(
    ("keys", "loader"),
    [
        (COORDINATOR_KEYS, load_coordinator_config),
        (NODE_KEYS, load_node_config),
        (ADMIN_KEYS, load_client_config),
    ],
)
def test_the_loaders_accept_exactly_the_declared_keys(
    tmp_path: Path, keys: tuple[Key, ...], loader: Callable[[Path], object]
) -> None:
    every = {k.name: k.default if k.default is not None else _example(k) for k in keys}
    config = tmp_path / "c.toml"
    config.write_text(render("all keys", keys, every))
    loader(config)

    config.write_text(render("all keys", keys, every) + "typo_s = 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        loader(config)


def test_every_role_speaks_mutual_tls() -> None:
    for keys in ROLES.values():
        assert set(TLS_KEYS) <= set(keys)


def _example(key: Key) -> str | int | float:
    return {Kind.TEXT: "h:1", Kind.PATH: "f", Kind.INT: 1, Kind.FLOAT: 1.0}[key.kind]
