"""De-identify DICOM files with the Basic Application Level Confidentiality Profile.

The action tables and the per-VR dummies are dicom-anonymizer's (edition pinned in
:data:`~medfed.data.dicom.phi.PROFILE`); this module adds what the library leaves undone:

* it applies the profile inside sequence items too (the library only looks at the top level
  for single tags, while Annex E applies to every nested data set);
* it removes attributes whose action is plain X even when they are dates (the library writes
  ``00010101`` into those instead of removing them);
* it records the de-identification (PatientIdentityRemoved, DeidentificationMethod and its
  code sequence) so the PHI gate and a later reader know what was done.

De-identified files never leave the hospital node; the profile decides what may be registered
for research. Pixel data is copied unchanged: the Basic Profile without the Clean Pixel Data
Option cannot clean pixels, so a file whose BurnedInAnnotation says YES keeps saying so and
stays blocked by :func:`~medfed.data.dicom.phi.check_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dicomanonymizer import simpledicomanonymizer as library
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medfed.data.dicom.phi import (
    PROFILE_EDITION,
    annex_e_action,
    basic_profile_rules,
    files_under,
    read_dicom,
)
from medfed.errors import ConfigError, DatasetError

DEIDENTIFICATION_METHOD = (
    f"DICOM PS3.15 {PROFILE_EDITION} Annex E",
    "Basic Application Level Confidentiality Profile",
    "dicom-anonymizer 2.1.0 tables",
)
"""PROFILE as three values: DeidentificationMethod is LO, at most 64 characters a value."""

BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
"""CID 7050 code for the profile: (CodeValue, CodingSchemeDesignator, CodeMeaning)."""


@dataclass(frozen=True)
class DeidentifyReport:
    """What :func:`deidentify_tree` did: files written, and each file it could not read."""

    written: int
    failed: list[tuple[Path, str]]


def deidentify_dataset(ds: Dataset) -> None:
    """Apply the Basic Profile to ``ds`` in place and record that it was applied.

    :class:`DatasetError` when the library meets a value representation it cannot blank.
    """
    # Parse every element first: on a raw one inside a sequence the library falls back to
    # pydicom's deprecated DataElement_from_raw.
    ds.walk(lambda _ds, _elem: None)
    try:
        _apply_profile(ds, top_level=True)
    except NotImplementedError as exc:  # the library's answer to a VR it has no dummy for
        raise DatasetError(f"the Basic Profile cannot be applied: {exc}") from exc
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(DEIDENTIFICATION_METHOD)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])


def deidentify_file(src: Path, dst: Path) -> None:
    """De-identify ``src`` into ``dst``, pixel data byte for byte.

    The file appears under its name only once complete, so an interrupted run leaves no
    half-written file that looks finished. :class:`DatasetError` when ``src`` is unreadable.
    """
    if dst.resolve() == src.resolve():
        raise ConfigError(f"{dst}: refusing to overwrite the input file")
    ds = read_dicom(src, headers_only=False)
    try:
        deidentify_dataset(ds)
    except DatasetError as exc:
        raise DatasetError(f"{src}: {exc}") from exc
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    try:
        ds.save_as(partial)
        os.replace(partial, dst)
    except ValueError as exc:  # pydicom refuses a value it cannot encode
        raise DatasetError(f"{src}: cannot be written after de-identification ({exc})") from exc
    finally:
        partial.unlink(missing_ok=True)


def deidentify_tree(src_dir: Path, dst_dir: Path) -> DeidentifyReport:
    """De-identify every file under ``src_dir`` into the same relative path under ``dst_dir``.

    A file that is not readable DICOM is listed in the report, not fatal: one stray file in a
    PACS export should not stop the rest. The two folders may not overlap, so no input is
    ever overwritten.
    """
    src, dst = src_dir.resolve(), dst_dir.resolve()
    if not src.is_dir():
        raise ConfigError(f"{src_dir}: not a folder")
    if dst.is_relative_to(src) or src.is_relative_to(dst):
        raise ConfigError(f"{dst_dir} and {src_dir} overlap: write the output elsewhere")
    written, failed = 0, []
    for path in files_under(src):
        try:
            deidentify_file(path, dst / path.relative_to(src))
        except DatasetError as exc:
            failed.append((src_dir / path.relative_to(src), str(exc).removeprefix(f"{path}: ")))
        else:
            written += 1
    return DeidentifyReport(written=written, failed=failed)


def _apply_profile(ds: Dataset, *, top_level: bool) -> None:
    """Run the library on ``ds`` and then on every item of the sequences Annex E keeps."""
    rules = _rules_for(ds, top_level=top_level)
    library.anonymize_dataset(ds, base_rules_gen=lambda: rules, delete_private_tags=top_level)
    for tag in list(ds.keys()):
        action = annex_e_action(tag)
        if action == "X":
            del ds[tag]  # a date the library dummied rather than removed
        elif action is None and ds[tag].VR == "SQ":
            for item in ds[tag].value:
                _apply_profile(item, top_level=False)


def _rules_for(ds: Dataset, *, top_level: bool) -> dict[tuple[int, ...], Callable[..., None]]:
    """The rules for the tags ``ds`` holds, as the library would pick them from the full table.

    The library looks every one of ~660 rules up in each data set it is given; restricted,
    a 12-lead ECG with 77 annotation items takes ~50 ms instead of ~400 ms. The repeating-group
    rules (curves, overlays) walk the whole data set, so they run once, at the top.
    """
    rules = basic_profile_rules()
    tags = list(ds.keys())  # keys(): iterating a Dataset yields elements, not tags
    file_meta = getattr(ds, "file_meta", None)
    if top_level and file_meta is not None:
        tags += file_meta.keys()
    present: list[tuple[int, ...]] = [(tag.group, tag.element) for tag in tags]
    chosen = {tag: rules[tag] for tag in present if tag in rules}
    if top_level:
        chosen.update(_repeating_group_rules())
    return chosen


@cache
def _repeating_group_rules() -> tuple[tuple[tuple[int, ...], Callable[..., None]], ...]:
    return tuple((tag, action) for tag, action in basic_profile_rules().items() if len(tag) > 2)
