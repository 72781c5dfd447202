"""Typed access to a parsed TOML spec: each refusal names the file and the key."""

from __future__ import annotations

import math
import re
from typing import Any, get_args

from medfed.errors import DatasetError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


class SpecError(DatasetError):
    """A cohort/feature spec that cannot be run: the message names the key and what is wrong."""


class SpecReader:
    """Typed access to the parsed TOML, each refusal naming the file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _fail(self, where: str, key: str, what: str) -> SpecError:
        path = f"{where}.{key}" if where else key
        return SpecError(f"{self.source}: {path} {what}")

    def keys(self, body: dict[str, Any], where: str, allowed: set[str]) -> None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise SpecError(
                f"{self.source}: unknown key(s) {unknown} in {where or 'the top level'}; "
                f"allowed: {sorted(allowed)}"
            )

    def table(
        self, body: dict[str, Any], key: str, where: str, *, required: bool = True
    ) -> dict[str, Any]:
        if key not in body and not required:
            return {}
        value = body.get(key)
        if not isinstance(value, dict):
            raise self._fail(where, key, "must be a table")
        return value

    def array(
        self, body: dict[str, Any], key: str, where: str, *, required: bool = True
    ) -> list[Any]:
        if key not in body and not required:
            return []
        value = body.get(key)
        if not isinstance(value, list):
            raise self._fail(where, key, "must be an array")
        return value

    def check_name(self, name: str, where: str) -> str:
        if not _NAME.fullmatch(name):
            raise SpecError(f"{self.source}: {where}: {name!r} is not a name ({_NAME.pattern})")
        return name

    def name(self, body: dict[str, Any], key: str, where: str) -> str:
        value = body.get(key)
        if not isinstance(value, str):
            raise self._fail(where, key, "must be a string")
        return self.check_name(value, f"{where}.{key}" if where else key)

    def integer(self, body: dict[str, Any], key: str, where: str) -> int:
        value = body.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(where, key, "must be an integer")
        return value

    def optional_int(self, body: dict[str, Any], key: str, where: str) -> int | None:
        return self.integer(body, key, where) if key in body else None

    def number(self, body: dict[str, Any], key: str, where: str) -> float:
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(where, key, "must be a number")
        if not math.isfinite(value):
            raise self._fail(where, key, "must be finite")
        return float(value)

    def boolean(self, body: dict[str, Any], key: str, where: str, default: bool) -> bool:
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(where, key, "must be true or false")
        return value

    def choice(self, body: dict[str, Any], key: str, where: str, kind: Any, default: str) -> str:
        value = body.get(key, default)
        if value not in get_args(kind):
            raise self._fail(where, key, f"must be one of {list(get_args(kind))}, got {value!r}")
        return str(value)

    def concept_id(self, text: str, where: str) -> int:
        if not re.fullmatch(r"[0-9]{1,10}", text):
            raise SpecError(f"{self.source}: {where}: key {text!r} is not a concept id")
        return int(text)

    def ids(self, body: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
        value = body.get(key)
        if not isinstance(value, list) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value
        ):
            raise self._fail(where, key, "must be a list of concept ids (integers >= 0)")
        return tuple(sorted(set(value)))

    def window(self, body: dict[str, Any], key: str, where: str) -> tuple[int, int]:
        value = body.get(key)
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
            or value[0] > value[1]
        ):
            raise self._fail(where, key, "must be [start, end] days from index, start <= end")
        return (value[0], value[1])
