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
from pydicom.errors import InvalidDicomError
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
    """The library's tag -> action map for the pinned edition (cached: built from ~660 tags).

    Callers must not change it; :mod:`~medfed.data.dicom.deidentify` hands the library a copy.
    """
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

    Reads headers only; pixel data is neither needed nor touched.
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
    """Read a DICOM file, refusing what pydicom would quietly half-read.

    pydicom stops at the end of the bytes without complaint, so a copy cut short reads as a
    smaller data set; here each element's declared end is measured against the file size.
    ``headers_only`` leaves long values (pixel data) on disk instead of ``stop_before_pixels``,
    which would hide both a cut in the pixel data and any attribute stored after it.
    """
    try:
        with warnings.catch_warnings():
            # pydicom reports a sequence cut short with a UserWarning and carries on.
            warnings.filterwarnings("error", message=".*(EOF|[Ee]nd of file).*")
            ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES if headers_only else None)
        size = path.stat().st_size
    except (InvalidDicomError, OSError, EOFError, UserWarning, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: not a readable DICOM file ({exc})") from exc
    if len(ds) == 0:
        raise DatasetError(f"{path}: no data set after the file meta header (truncated?)")
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and _ends_past(raw, size):
            raise DatasetError(f"{path}: truncated: {_tag(tag)} ends past the end of the file")
    if headers_only:
        for tag in PIXEL_TAGS & set(ds.keys()):
            del ds[tag]  # still deferred: deleting it reads nothing
    return ds


def _ends_past(raw: RawDataElement, size: int) -> bool:
    return not raw.is_undefined_length and raw.value_tell + raw.length > size


def _walk(
    ds: Dataset, path: tuple[str, ...], inherited: str | None
) -> Iterator[PhiFinding]:
    """Judge each element; ``inherited`` is the action of an enclosing Z/D sequence, whose
    whole content the library empties or replaces."""
    for elem in ds:
        if elem.tag.is_private:
            yield _finding(elem, "private attribute present", path, "all private tags: X")
            continue
        action = inherited or annex_e_action(elem.tag)
        if action is None:
            if elem.VR == "SQ":
                yield from _walk_items(elem, path, None)
        elif elem.VR == "UI" and action != "X":
            continue  # replaced by a random UID: nothing to tell by the value
        elif action == "X":
            if not elem.is_empty:
                yield _finding(elem, f"attribute to be removed is present ({_shown(elem)})",
                               path, "X")  # fmt: skip
        elif elem.VR == "SQ":
            yield from _walk_items(elem, path, action)
        elif not _blank_or_dummy(elem):
            yield _finding(elem, f"identifying attribute still filled ({_shown(elem)})",
                           path, action)  # fmt: skip


def _walk_items(elem: DataElement, path: tuple[str, ...], inherited: str | None) -> Iterator[
    PhiFinding
]:
    for index, item in enumerate(elem.value):
        yield from _walk(item, (*path, f"{_keyword(elem)}[{index}]"), inherited)


def _blank_or_dummy(elem: DataElement) -> bool:
    """True for the empty value and for the dummy the de-identifier writes for this VR."""
    if elem.is_empty:
        return True
    value: Any = elem.value
    if elem.VR in ("OB", "UN"):
        return value == _BYTES_DUMMY
    if elem.VR in _NUMBER_VRS:
        values = value if elem.VM > 1 else [value]
        return all(v == 0 for v in values)
    return elem.VM == 1 and str(value) in _DUMMY_TEXT.get(elem.VR, frozenset())


def _attestations(ds: Dataset) -> Iterator[PhiFinding]:
    removed = ds.get("PatientIdentityRemoved")
    if removed is None or removed.value != "YES":
        said = "absent" if removed is None else f"is {_shown(removed)}"
        yield PhiFinding("(0012,0062)", "PatientIdentityRemoved",
                         f"{said}; a de-identified file says YES", blocking=True)  # fmt: skip
    burned = ds.get("BurnedInAnnotation")
    if burned is None:
        yield PhiFinding("(0028,0301)", "BurnedInAnnotation",
                         "absent: pixel data not attested free of burned-in text", blocking=False)  # fmt: skip
    elif burned.value == "YES":
        yield PhiFinding("(0028,0301)", "BurnedInAnnotation",
                         "YES: the pixels show text, and the Basic Profile cannot clean pixels",
                         blocking=True)  # fmt: skip


def _finding(elem: DataElement, what: str, path: tuple[str, ...], action: str) -> PhiFinding:
    where = f" in {' > '.join(path)}" if path else ""
    reason = f"{what}{where}; Annex E action {action}"
    return PhiFinding(_tag(elem.tag), _keyword(elem), reason, blocking=True)


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
