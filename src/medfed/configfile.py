"""TOML config files read through declared keys, so the parser, the files ``medfed <role> init``
writes and the README's reference table come from one list and cannot drift apart.

Each role declares its keys (:data:`medfed.coordinator.config.COORDINATOR_KEYS`,
:data:`medfed.coordinator.config.ADMIN_KEYS`, :data:`medfed.node.config.NODE_KEYS`): a dotted
name (``tls.cert`` is ``cert`` in the ``[tls]`` table), a kind, a default or "required", and one
line of help. :func:`parse` accepts exactly those keys: a misspelt key is an error, not a setting
silently left at its default (a hospital would otherwise run with the wrong value and not know).
"""

from __future__ import annotations

import json
import textwrap
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from medfed.errors import ConfigError
from medfed.transport.tls import TlsFiles

Value = str | int | float | Path


class Kind(StrEnum):
    TEXT = "text"
    PATH = "path"
    INT = "integer"
    FLOAT = "number"


@dataclass(frozen=True)
class Key:
    """One config key. ``default`` None and ``required`` False: optional, absent means unset."""

    name: str
    kind: Kind
    help: str
    default: Value | None = None
    required: bool = False
    minimum: float | None = None

    @property
    def table(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def leaf(self) -> str:
        return self.name.rpartition(".")[2]


TLS_KEYS: tuple[Key, ...] = (
    Key("tls.cert", Kind.PATH, "This party's certificate (PEM), issued by the consortium CA.",
        required=True),
    Key("tls.key", Kind.PATH, "Its private key (PEM, mode 0600); never leaves this machine.",
        required=True),
    Key("tls.ca", Kind.PATH, "The consortium CA certificate (ca.crt): the only root trusted.",
        required=True),
)  # fmt: skip
"""Every role talks mutual TLS; relative paths are taken from the config file's folder."""


def tls_files(values: Mapping[str, Any]) -> TlsFiles:
    """The ``[tls]`` paths of a parsed file (see :data:`TLS_KEYS`)."""
    return TlsFiles(values["tls.cert"], values["tls.key"], values["tls.ca"])


def read_toml(path: Path, what: str = "config") -> dict[str, Any]:
    """Parse a TOML file (data only: tomllib builds no objects), naming the file on error."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def require_table(doc: Mapping[str, Any], key: str, source: object) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: [{key}] table is missing")
    return value


def load(path: Path, keys: Sequence[Key], what: str) -> dict[str, Any]:
    """Read ``path`` and :func:`parse` it; relative paths are relative to the file's folder."""
    return parse(read_toml(path, what), keys, base=path.parent, source=str(path))


def parse(
    doc: Mapping[str, Any], keys: Sequence[Key], *, base: Path, source: str
) -> dict[str, Any]:
    """Every declared key's value by dotted name (defaults filled in, paths resolved)."""
    given = _flatten(doc)
    declared = {key.name: key for key in keys}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(declared)}"
        )
    values: dict[str, Any] = {}
    for key in keys:
        if key.name in given:
            values[key.name] = _convert(key, given[key.name], base, source)
        elif key.required:
            raise ConfigError(f"{source}: missing key {key.name!r} ({key.help})")
        else:
            values[key.name] = key.default
    return values


def render(title: str, keys: Sequence[Key], values: Mapping[str, Value]) -> str:
    """A commented TOML file: every key with its help; keys not in ``values`` are commented
    out at their default, so the file shows every setting there is."""
    lines = [f"# {line}" if line else "#" for line in title.splitlines()]
    tables = sorted(dict.fromkeys(key.table for key in keys), key=bool)  # top-level keys first
    for table in tables:
        lines += ["", f"[{table}]"] if table else []
        for key in (k for k in keys if k.table == table):
            lines += ["", *_comment(key)]
            if key.name in values:
                lines.append(f"{key.leaf} = {_toml_value(values[key.name])}")
            elif key.default is not None:
                lines.append(f"# {key.leaf} = {_toml_value(key.default)}")
    return "\n".join(lines) + "\n"


def reference_table(keys: Sequence[Key]) -> str:
    """The README's configuration reference for one role, as a Markdown table."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key in keys:
        rows.append(f"| `{key.name}` | {key.kind.value} | {_default_cell(key)} | {key.help} |")
    return "\n".join(rows)


def _default_cell(key: Key) -> str:
    if key.required:
        return "required"
    return "unset" if key.default is None else f"`{_toml_value(key.default)}`"


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _convert(key: Key, value: object, base: Path, source: str) -> Value:
    where = f"{source}: {key.name}"
    if key.kind in (Kind.TEXT, Kind.PATH):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a quoted string, got {value!r}")
        if key.kind is Kind.TEXT:
            return value
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    whole = key.kind is Kind.INT
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (whole and isinstance(value, float))
    ):
        raise ConfigError(
            f"{where} must be {'an' if whole else 'a'} {key.kind.value}, got {value!r}"
        )
    number = int(value) if whole else float(value)
    if key.minimum is not None and number < key.minimum:
        raise ConfigError(f"{where} must be at least {key.minimum:g}, got {number}")
    return number


def _comment(key: Key) -> list[str]:
    status = "required" if key.required else "optional"
    text = f"{key.help} ({key.kind.value}, {status})"
    return [f"# {line}" for line in textwrap.wrap(text, width=94)]


def _toml_value(value: Value) -> str:
    """TOML literal for a value. JSON's string escapes are TOML basic-string escapes, but JSON's
    surrogate pairs are not (so no ASCII-only escaping) and TOML also requires DEL escaped."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)
