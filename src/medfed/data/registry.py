"""The data steward's registry: which local files a node may train on, under which name and schema.

A study names a dataset; only the steward maps that name to a file. The file's SHA-256 is pinned at
registration so a file changed afterwards (re-exported, truncated, swapped) is refused until the
steward looks at it again, instead of silently joining a study with different data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medfed.data.csv_source import parse_csv
from medfed.data.dataset import Dataset, label_warnings
from medfed.data.images import image_feature
from medfed.errors import DatasetError, StoreError

if TYPE_CHECKING:  # pydicom loads with the first DICOM dataset, not with the node
    from medfed.data.dicom.connector import DicomSource
    from medfed.data.omop.dataset import OmopLoad

log = logging.getLogger("medfed.data")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_FILE_NAME = "datasets.json"
_FORMAT_VERSION = 1


Kind = Literal["csv", "dicom", "omop"]


@dataclass(frozen=True)
class DatasetEntry:
    """``path`` is the CSV file, the DICOM folder, or the OMOP cohort/feature spec; ``sha256``
    the file's hash, the DICOM manifest's (labels file and every image), or the spec's. The
    ``dicom`` and ``omop`` fields are unset for other kinds."""

    name: str
    kind: Kind
    path: Path
    label: str
    features: tuple[str, ...]
    split_column: str | None
    sha256: str
    rows: int
    added_unix: float
    labels: Path | None = None
    image_size: int = 0
    skipped: tuple[str, ...] = ()
    train_rows: int = 0
    test_rows: int = 0
    """Rows in each split; 0 and 0 in a registry written before they were recorded. For OMOP:
    at registration, without consent filtering (an upper bound for every later round)."""
    omop_location: str = ""
    omop_schema: str = ""
    consent_study: str = ""
    """OMOP: the consent study every load reads through ("" reads the store directly)."""

    def dicom_source(self) -> DicomSource:
        if self.kind != "dicom" or self.labels is None:
            raise DatasetError(f"dataset {self.name!r} is not a DICOM dataset")
        from medfed.data.dicom.connector import DicomSource

        return DicomSource(
            folder=self.path,
            labels=self.labels,
            label=self.label,
            split_column=self.split_column,
            size=self.image_size,
            allow_bad=bool(self.skipped),
        )


@dataclass(frozen=True)
class DatasetSizes:
    """A dataset's rows in its training and test splits."""

    name: str
    train_rows: int
    test_rows: int


class DatasetRegistry:
    """``<state_dir>/datasets.json``, rewritten atomically on every change."""

    def __init__(self, state_dir: Path) -> None:
        self._file = state_dir / _FILE_NAME
        self._counted: dict[str, tuple[int, int]] = {}

    def add(
        self,
        name: str,
        csv_path: Path,
        *,
        label: str,
        features: Sequence[str] | None = None,
        split_column: str | None = None,
        now: float,
        warn: Callable[[str], None] | None = None,
    ) -> DatasetEntry:
        """Register ``csv_path`` after loading it once; pins its hash and resolved features.
        ``warn`` hears what is accepted but worth a look (a one-class label); default: the log."""
        entries = self._free(name)
        path = csv_path.resolve()
        data = _read_bytes(path)
        dataset = parse_csv(
            data, source=str(path), features=features, label=label, split_column=split_column
        )
        _warn_labels(name, dataset, warn)
        entry = DatasetEntry(
            name=name,
            kind="csv",
            path=path,
            label=label,
            features=dataset.features,
            split_column=split_column,
            sha256=hashlib.sha256(data).hexdigest(),
            rows=dataset.rows,
            added_unix=float(now),
            train_rows=len(dataset.y_train),
            test_rows=len(dataset.y_test),
        )
        entries[name] = entry
        self._write(entries)
        return entry

    def add_dicom(
        self,
        name: str,
        source: DicomSource,
        *,
        now: float,
        warn: Callable[[str], None] | None = None,
    ) -> DatasetEntry:
        """Register a DICOM folder after decoding and PHI-gating every labelled image once;
        pins the manifest and fills the pixel cache, so the first round does not decode.
        ``warn`` as for :meth:`add`."""
        from medfed.data.dicom.connector import scan, write_cache

        entries = self._free(name)
        source = dataclasses.replace(
            source, folder=source.folder.resolve(), labels=source.labels.resolve()
        )
        result = scan(source)
        _warn_labels(name, result.dataset, warn)
        source = dataclasses.replace(source, allow_bad=bool(result.bad))  # as entry.dicom_source()
        write_cache(self._cache_dir(name), result.manifest_sha256, source, result.dataset)
        entry = DatasetEntry(
            name=name,
            kind="dicom",
            path=source.folder,
            label=source.label,
            features=(image_feature(*result.dataset.image_shape),),
            split_column=source.split_column,
            sha256=result.manifest_sha256,
            rows=result.dataset.rows,
            added_unix=float(now),
            labels=source.labels,
            image_size=source.size,
            skipped=tuple(f"{file}: {reason}" for file, reason in result.bad),
            train_rows=len(result.dataset.y_train),
            test_rows=len(result.dataset.y_test),
        )
        entries[name] = entry
        self._write(entries)
        return entry

    def add_omop(
        self,
        name: str,
        spec_path: Path,
        *,
        location: str,
        schema: str,
        consent_study: str = "",
        now: float,
        warn: Callable[[str], None] | None = None,
    ) -> DatasetEntry:
        """Register a cohort/feature spec over the node's OMOP store: builds the matrix once
        (directly, as the steward), pins the spec's hash and records the split sizes."""
        from medfed.data.omop.dataset import build
        from medfed.data.omop.spec import load_spec

        entries = self._free(name)
        path = spec_path.resolve()
        spec = load_spec(path)
        shutil.rmtree(self._cache_dir(name), ignore_errors=True)
        data = build(spec, location, schema, cache_dir=self._cache_dir(name)).extraction.dataset
        _warn_labels(name, data, warn)
        entry = DatasetEntry(
            name=name,
            kind="omop",
            path=path,
            label=data.label,
            features=data.features,
            split_column=None,
            sha256=spec.sha256,
            rows=data.rows,
            added_unix=float(now),
            train_rows=len(data.y_train),
            test_rows=len(data.y_test),
            omop_location=location,
            omop_schema=schema,
            consent_study=consent_study,
        )
        entries[name] = entry
        self._write(entries)
        return entry

    def load_omop(self, name: str, study_id: str = "") -> OmopLoad:
        """Build an OMOP dataset (cached while data and consent are unchanged), through the
        consent reader of ``study_id``, or of the study named at registration."""
        from medfed.data.omop.dataset import build, pinned_spec

        entry = self.get(name)
        if entry.kind != "omop":
            raise DatasetError(f"dataset {name!r} is a {entry.kind} dataset, not an OMOP one")
        spec = pinned_spec(entry.path, entry.sha256, name)
        return build(
            spec,
            entry.omop_location,
            entry.omop_schema,
            study_id=study_id or entry.consent_study,
            cache_dir=self._cache_dir(name),
        )

    def _free(self, name: str) -> dict[str, DatasetEntry]:
        """The registry's entries, after checking ``name`` is valid and not taken."""
        if not NAME_PATTERN.fullmatch(name):
            raise DatasetError(
                f"dataset name {name!r} must match {NAME_PATTERN.pattern} "
                "(lower-case letters, digits, '_', '.', '-'; at most 63 characters)"
            )
        entries = self._read()
        if name in entries:
            raise DatasetError(f"a dataset named {name!r} is already registered; remove it first")
        return entries

    def _cache_dir(self, name: str) -> Path:
        return self._file.parent / "cache" / name

    def remove(self, name: str) -> None:
        entries = self._read()
        if name not in entries:
            raise DatasetError(_unknown(name, entries))
        del entries[name]
        self._write(entries)
        shutil.rmtree(self._cache_dir(name), ignore_errors=True)

    def list(self) -> list[DatasetEntry]:
        return sorted(self._read().values(), key=lambda e: e.name)

    def sizes(self) -> Sequence[DatasetSizes]:
        """Every dataset with its split sizes, as the node announces them to the coordinator
        (which refuses a reply claiming more examples). A dataset registered before sizes were
        recorded is loaded once to count them; one that no longer loads is announced with no
        rows (its tasks are refused here anyway, with the reason)."""
        out = []
        for entry in self.list():
            if entry.train_rows or entry.test_rows:
                out.append(DatasetSizes(entry.name, entry.train_rows, entry.test_rows))
                continue
            counted = self._counted.get(entry.sha256)
            if counted is None:
                try:
                    data = self.load(entry.name)
                except DatasetError:
                    out.append(DatasetSizes(entry.name, 0, 0))
                    continue
                counted = self._counted[entry.sha256] = (len(data.y_train), len(data.y_test))
            out.append(DatasetSizes(entry.name, *counted))
        return out

    def get(self, name: str) -> DatasetEntry:
        entries = self._read()
        if name not in entries:
            raise DatasetError(_unknown(name, entries))
        return entries[name]

    def load(self, name: str) -> Dataset:
        """The dataset, after checking the file is byte-for-byte the one the steward registered."""
        entry = self.get(name)
        if entry.kind == "dicom":
            from medfed.data.dicom.connector import load

            return load(entry.dicom_source(), entry.sha256, self._cache_dir(name))
        if entry.kind == "omop":
            return self.load_omop(name).extraction.dataset
        data = _read_bytes(entry.path)
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise DatasetError(
                f"dataset {name!r}: {entry.path} changed since it was registered "
                f"(sha256 {digest[:16]}…, registered {entry.sha256[:16]}…); check the file, then "
                f"re-register it with `medfed node dataset add`"
            )
        return parse_csv(
            data,
            source=str(entry.path),
            features=entry.features,
            label=entry.label,
            split_column=entry.split_column,
        )

    def _read(self) -> dict[str, DatasetEntry]:
        try:
            text = self._file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StoreError(f"cannot read {self._file}: {exc}") from None
        try:
            doc = json.loads(text)
            if doc.get("version") != _FORMAT_VERSION:
                raise StoreError(f"{self._file}: unsupported format version {doc.get('version')!r}")
            return {e["name"]: _entry_from_json(e) for e in doc["datasets"]}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(
                f"{self._file} is corrupt ({exc!r}); restore it or re-add datasets"
            ) from None

    def _write(self, entries: dict[str, DatasetEntry]) -> None:
        """Write-then-rename so a crash leaves either the old or the new registry, never half."""
        doc = {
            "version": _FORMAT_VERSION,
            "datasets": [_entry_to_json(entries[n]) for n in sorted(entries)],
        }
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_name(f".{_FILE_NAME}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._file)


def _warn_labels(name: str, data: Dataset, warn: Callable[[str], None] | None) -> None:
    for message in label_warnings(data):
        (warn or log.warning)(f"dataset {name!r}: {message}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _unknown(name: str, entries: dict[str, DatasetEntry]) -> str:
    known = ", ".join(sorted(entries)) or "none"
    return f"no dataset named {name!r}; registered: {known}"


def _entry_to_json(entry: DatasetEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "kind": entry.kind,
        "path": str(entry.path),
        "label": entry.label,
        "features": list(entry.features),
        "split_column": entry.split_column,
        "sha256": entry.sha256,
        "rows": entry.rows,
        "added_unix": entry.added_unix,
        "train_rows": entry.train_rows,
        "test_rows": entry.test_rows,
    } | (
        {}
        if entry.kind == "csv"
        else {
            "omop_location": entry.omop_location,
            "omop_schema": entry.omop_schema,
            "consent_study": entry.consent_study,
        }
        if entry.kind == "omop"
        else {
            "labels": str(entry.labels),
            "image_size": entry.image_size,
            "skipped": list(entry.skipped),
        }
    )


def _entry_from_json(doc: dict[str, Any]) -> DatasetEntry:
    kind = doc["kind"]
    if kind not in ("csv", "dicom", "omop"):
        raise ValueError(f"dataset {doc['name']!r} has unknown kind {kind!r}")
    dicom = kind == "dicom"
    return DatasetEntry(
        name=str(doc["name"]),
        kind=kind,
        path=Path(doc["path"]),
        label=str(doc["label"]),
        features=tuple(str(f) for f in doc["features"]),
        split_column=None if doc["split_column"] is None else str(doc["split_column"]),
        sha256=str(doc["sha256"]),
        rows=int(doc["rows"]),
        added_unix=float(doc["added_unix"]),
        labels=Path(doc["labels"]) if dicom else None,
        image_size=int(doc["image_size"]) if dicom else 0,
        skipped=tuple(str(s) for s in doc["skipped"]) if dicom else (),
        train_rows=int(doc.get("train_rows", 0)),
        test_rows=int(doc.get("test_rows", 0)),
        omop_location=str(doc.get("omop_location", "")),
        omop_schema=str(doc.get("omop_schema", "")),
        consent_study=str(doc.get("consent_study", "")),
    )
