"""Typed reading of a parsed JSON document, each failure naming the field.

A bundle arrives from outside (a download, a colleague's e-mail), so its document is checked
field by field instead of trusted: a wrong type is refused with the field's dotted path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medfed.errors import BundleError


class Fields:
    """One JSON object of a document; ``path`` is its dotted place in the whole."""

    def __init__(self, doc: object, source: str, path: str = "") -> None:
        if not isinstance(doc, dict):
            raise BundleError(
                f"{source}: bundle field {path.rstrip('.') or 'document'} is not an object"
            )
        self._doc: dict[str, Any] = doc
        self._source = source
        self._path = path

    def _get(self, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        if key not in self._doc:
            raise BundleError(f"{self._source}: bundle field {self._path}{key} is missing")
        value = self._doc[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BundleError(f"{self._source}: bundle field {self._path}{key} must be {what}")
        return value

    def text(self, key: str) -> str:
        value: str = self._get(key, str, "a string")
        return value

    def integer(self, key: str) -> int:
        value = self._get(key, int, "a whole number")
        if value < 0:
            raise BundleError(f"{self._source}: bundle field {self._path}{key} must be >= 0")
        return int(value)

    def choice(self, key: str, allowed: Sequence[str]) -> str:
        value = self.text(key)
        if value not in allowed:
            raise BundleError(
                f"{self._source}: bundle field {self._path}{key} is {value!r}, which this medfed "
                f"does not know (it knows {list(allowed)}); made by a newer version?"
            )
        return value

    def table(self, key: str) -> Fields:
        return Fields(self._get(key, dict, "an object"), self._source, f"{self._path}{key}.")

    def _list(self, key: str) -> list[Any]:
        value: list[Any] = self._get(key, list, "a list")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        values = self._list(key)
        if not all(isinstance(v, str) for v in values):
            raise BundleError(f"{self._source}: bundle field {self._path}{key} must list strings")
        return tuple(values)

    def tables(self, key: str) -> list[Fields]:
        return [
            Fields(v, self._source, f"{self._path}{key}[{i}].")
            for i, v in enumerate(self._list(key))
        ]

    def numbers(self, key: str) -> dict[str, float]:
        values: dict[str, Any] = self._get(key, dict, "an object of numbers")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()):
            raise BundleError(f"{self._source}: bundle field {self._path}{key} must hold numbers")
        return {str(k): float(v) for k, v in values.items()}
