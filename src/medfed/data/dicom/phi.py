"""The PHI gate: may this DICOM file be registered for research?

The rules are DICOM PS3.15 Annex E, Table E.1-1 (Basic Application Level Confidentiality
Profile), edition 2026c, as shipped by dicom-anonymizer 2.1.0. The de-identifier
(:mod:`medfed.data.dicom.deidentify`) applies the same tables through the library; this module
is the other half the library lacks: it reads a file and says, attribute by attribute, what
still identifies a patient. It trusts no claim in the header: a file that says
``PatientIdentityRemoved = YES`` but still names the patient is blocked.

Values the de-identifier writes (empty values, and the library's per-VR dummies such as
``ANONYMIZED`` or ``00010101``) pass; anything else in a Z/D attribute is a finding. UIDs are
replaced by random ones and cannot be told apart by value, so they are not judged.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pydicom
from dicomanonymizer import simpledicomanonymizer as library
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.tag import BaseTag

from medfed.errors import DatasetError

PROFILE_EDITION = "2026c"
PROFILE = (
    f"DICOM PS3.15 {PROFILE_EDITION} Annex E, Basic Application Level Confidentiality Profile"
    " (dicom-anonymizer 2.1.0 tables)"
)
ANONYMIZER_TABLES = f"dicomfields_{PROFILE_EDITION}"

PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Float, double-float and integer Pixel Data: never read by the gate."""

_SHOWN_CHARS = 16
_UNDEFINED_LENGTH = 0xFFFFFFFF
_UNREADABLE = (
    InvalidDicomError,
    BytesLengthException,
    OSError,
    EOFError,
    struct.error,
    ValueError,
    TypeError,
    KeyError,
    UserWarning,
)
"""What pydicom raises on bytes that are not DICOM (UserWarning: when warnings are errors)."""
_DEFER_BYTES = 1 << 20
"""Values longer than this are left on disk until asked for, so pixel data is never loaded."""


@dataclass(frozen=True)
class PhiFinding:
    """One thing in a header that identifies a patient, or that a steward should know."""

    tag: str
    keyword: str
    reason: str
    blocking: bool

    def __str__(self) -> str:
        return f"{self.tag} {self.keyword}: {self.reason}"


# The library's action functions, named as Table E.1-1 names them. The combined actions are
# what the table allows; which one the library performs is in its docstrings (X/Z -> Z,
# X/D, Z/D and X/Z/D -> D, X/Z/U* -> U for UIDs else Z).
_ACTION_NAMES: dict[Callable[..., None], str] = {
    library.replace: "D",
    library.empty: "Z",
    library.delete: "X",
    library.replace_UID: "U",
    library.empty_or_replace: "Z/D",
    library.delete_or_empty: "X/Z",
    library.delete_or_replace: "X/D",
    library.delete_or_empty_or_replace: "X/Z/D",
    library.delete_or_empty_or_replace_UID: "X/Z/U*",
}

# The dummies dicom-anonymizer 2.1.0 writes: ``replace_element`` (D) and ``empty_element`` (Z)
# in dicomanonymizer/simpledicomanonymizer.py. tests/data/dicom/test_phi.py checks this table
# against the library itself, so a new library version that changes a dummy fails a test.
_PRIVATE_RULE = "the Basic Profile removes every private tag"
_TEXT_DUMMY = frozenset({"ANONYMIZED"})
_DUMMY_TEXT: dict[str, frozenset[str]] = {
    **dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"), _TEXT_DUMMY),
    "AS": frozenset({"000Y"}),
    "UR": frozenset({"http://anonymized.invalid"}),
    "DS": frozenset({"0"}),
    "IS": frozenset({"0"}),
    "DA": frozenset({"00010101"}),
    "DT": frozenset({"00010101010101.000000+0000"}),
    "TM": frozenset({"000000.00"}),
}
_NUMBER_VRS = frozenset({"FD", "FL", "SS", "US", "SL", "UL"})
_BYTES_DUMMY = b"Anonymized"


@cache
def basic_profile_rules() -> dict[tuple[int, ...], Callable[..., None]]:
    """The library's tag -> action map for the pinned edition; cached, so never mutate it."""
    rules: dict[tuple[int, ...], Callable[..., None]] = library.initialize_actions(
        ANONYMIZER_TABLES
    )
    return rules


@cache
def _action_tables() -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for tag, action in basic_profile_rules().items():
        name = _ACTION_NAMES[action]
        if len(tag) == 2:
            exact[(tag[0] << 16) | tag[1]] = name
        else:  # a repeating group such as (50xx,xxxx) Curve Data: (group, element, masks)
            masked.append((tag[0], tag[1], tag[2], tag[3], name))
    return exact, tuple(masked)


def annex_e_action(tag: BaseTag) -> str | None:
    """Table E.1-1's action for ``tag`` ("X", "Z", "D", "U", "X/Z/D"...), None when unlisted."""
    exact, masked = _action_tables()
    if (name := exact.get(int(tag))) is not None:
        return name
    for group, element, group_mask, element_mask, name in masked:
        if tag.group & group_mask == group & group_mask and (
            tag.element & element_mask == element & element_mask
        ):
            return name
    return None


def check_dataset(ds: Dataset) -> list[PhiFinding]:
    """Every identifying attribute left in ``ds``, nested ones included, plus the attestations.

    Reads headers only; pixel data is never decoded.
    """
    findings = list(_walk(ds, path=(), inherited=None))
    findings.extend(_attestations(ds))
    return findings


def check_file(path: Path) -> list[PhiFinding]:
    """:func:`check_dataset` on a file; :class:`DatasetError` when it is not readable DICOM."""
    return check_dataset(read_dicom(path, headers_only=True))


def blocking(findings: Iterable[PhiFinding]) -> list[PhiFinding]:
    """The findings that stop a file from being registered."""
    return [finding for finding in findings if finding.blocking]


def files_under(path: Path) -> list[Path]:
    """``path`` itself, or every regular file below it in a stable order."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def read_dicom(path: Path, *, headers_only: bool) -> Dataset:
    """Read and parse a whole DICOM file, refusing what pydicom would quietly half-read.

    pydicom stops at the end of the bytes without complaint, so a copy cut short reads as a
    smaller data set; here the last element's declared end is measured against the file size.
    ``headers_only`` leaves long values (pixel data) on disk, rather than ``stop_before_pixels``,
    which would hide both a cut in the pixel data and any attribute stored after it. Every
    other value is parsed here, so a corrupt one is reported as this file's fault.
    """
    try:
        with warnings.catch_warnings():
            # pydicom reports a sequence cut short with a UserWarning and carries on.
            warnings.filterwarnings("error", message=".*(EOF|[Ee]nd of file).*")
            ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES if headers_only else None)
            _refuse_truncated(ds, path.stat().st_size)
            for tag in PIXEL_TAGS & set(ds.keys()) if headers_only else ():
                del ds[tag]  # still on disk: deleting it reads nothing
            ds.walk(lambda _ds, _elem: None)
    except _UNREADABLE as exc:
        raise DatasetError(f"{path}: not a readable DICOM file ({exc})") from exc
    except _Truncated as exc:
        raise DatasetError(f"{path}: truncated: {exc}") from None
    return ds


class _Truncated(Exception):
    """Internal: the file ends before its last element does."""


def _refuse_truncated(ds: Dataset, size: int) -> None:
    """A cut exactly between two header elements leaves a valid, shorter file: not caught."""
    keys = set(ds.keys())
    if not keys:
        raise _Truncated("no data set after the file meta header")
    last = ds.get_item(max(keys), keep_deferred=True)
    # A sequence or encapsulated value has no length to check: pydicom found its delimiter.
    if isinstance(last, RawDataElement) and last.length != _UNDEFINED_LENGTH:
        end = last.value_tell + last.length
        if end > size:
            raise _Truncated(f"{_tag(last.tag)} ends at byte {end}, the file at byte {size}")
        if end < size:
            raise _Truncated(f"{size - end} stray byte(s) after the last element (a cut header?)")
    if 0x00280010 in keys and not PIXEL_TAGS & keys:
        raise _Truncated("image attributes (Rows) but no pixel data")


def _walk(ds: Dataset, path: tuple[str, ...], inherited: str | None) -> Iterator[PhiFinding]:
    """Judge each element; ``inherited`` is the action of an enclosing Z/D sequence, whose
    whole content the library empties or replaces."""
    for elem in ds:
        if elem.tag.is_private:
            yield _finding(elem, "private attribute present", path, _PRIVATE_RULE)
            continue
        action = inherited or annex_e_action(elem.tag)
        if action is None:
            if elem.VR == "SQ":
                yield from _walk_items(elem, path, None)
        elif elem.VR == "UI" and action != "X":
            continue  # replaced by a random UID: nothing to tell by the value
        elif action == "X":
            if not elem.is_empty:
                what = f"attribute to be removed is present ({_shown(elem)})"
                yield _finding(elem, what, path, f"Annex E action {action}")
        elif elem.VR == "SQ":
            yield from _walk_items(elem, path, action)
        elif not _blank_or_dummy(elem):
            what = f"identifying attribute still filled ({_shown(elem)})"
            yield _finding(elem, what, path, f"Annex E action {action}")


def _walk_items(
    elem: DataElement, path: tuple[str, ...], inherited: str | None
) -> Iterator[PhiFinding]:
    for index, item in enumerate(elem.value):
        yield from _walk(item, (*path, f"{_keyword(elem)}[{index}]"), inherited)


def _blank_or_dummy(elem: DataElement) -> bool:
    """True for the empty value and for the dummy the de-identifier writes for this VR."""
    if elem.is_empty:
        return True
    value: Any = elem.value
    if elem.VR in ("OB", "UN"):
        return bool(value == _BYTES_DUMMY)
    if elem.VR in _NUMBER_VRS:
        values = value if elem.VM > 1 else [value]
        return all(v == 0 for v in values)
    return elem.VM == 1 and str(value) in _DUMMY_TEXT.get(elem.VR, frozenset())


def _attestations(ds: Dataset) -> Iterator[PhiFinding]:
    """What the header says of itself: trusted only to block, never to pass."""
    removed = ds.get(0x00120062)
    if removed is None or removed.value != "YES":
        said = "absent" if removed is None else f"is {_shown(removed)}"
        reason = f"{said}; a de-identified file says YES"
        yield PhiFinding("(0012,0062)", "PatientIdentityRemoved", reason, blocking=True)
    burned = ds.get(0x00280301)
    if burned is None:
        reason = "absent: pixel data not attested free of burned-in text"
        yield PhiFinding("(0028,0301)", "BurnedInAnnotation", reason, blocking=False)
    elif burned.value == "YES":
        reason = "YES: text in the pixels, which the Basic Profile cannot clean"
        yield PhiFinding("(0028,0301)", "BurnedInAnnotation", reason, blocking=True)


def _finding(elem: DataElement, what: str, path: tuple[str, ...], rule: str) -> PhiFinding:
    where = f" in {' > '.join(path)}" if path else ""
    return PhiFinding(_tag(elem.tag), _keyword(elem), f"{what}{where}; {rule}", blocking=True)


def _shown(elem: DataElement) -> str:
    """The value as a steward may see it: cut to 16 characters, so a report does not become
    a second copy of the PHI it warns about."""
    if elem.VR == "SQ":
        return f"{len(elem.value)} item(s)"
    if isinstance(elem.value, bytes):
        return f"{len(elem.value)} bytes"
    text = str(elem.value)
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def _keyword(elem: DataElement) -> str:
    return elem.keyword or elem.name


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
