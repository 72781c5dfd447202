"""The DICOM connector: a folder of radiographs plus a labels file becomes an ``ImageDataset``.

Registration (``scan``) decodes every labelled image once, runs the PHI gate on every header,
and pins a manifest hash over the labels file and each image's bytes. Loading (``load``) checks
the manifest again -- a file re-exported, swapped or truncated since registration is refused --
and then reads the decoded pixels from a local cache, so rounds after the first never re-decode.
The cache is safetensors (raw arrays plus a JSON header; nothing executes on load) and is keyed
by the manifest and image size, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom

from medfed.data.csv_source import random_split
from medfed.data.dicom.labels import Labels, parse_labels
from medfed.data.dicom.reader import RADIOGRAPHS, DicomReadError, read_radiograph
from medfed.data.images import ImageDataset
from medfed.errors import DatasetError

TEST_FRACTION = 0.2
SPLIT_SEED = 43
_SHOWN = 20
_CACHE_FORMAT = "medfed/dicom-cache/v2"


@dataclass(frozen=True)
class DicomSource:
    """What the data steward registered: where the images are and how to read them."""

    folder: Path
    labels: Path
    label: str
    split_column: str | None
    size: int
    allow_bad: bool = False
    modalities: frozenset[str] = RADIOGRAPHS


@dataclass(frozen=True)
class Scan:
    dataset: ImageDataset
    manifest_sha256: str
    bad: tuple[tuple[str, str], ...]
    """(file, reason) for each labelled image left out; empty unless ``allow_bad``."""


@dataclass(frozen=True)
class _Read:
    """The labels and every image file's bytes, read once, and the manifest over them."""

    labels: Labels
    contents: dict[str, bytes | None]
    manifest: str


def scan(source: DicomSource) -> Scan:
    """Decode and gate every labelled image; refuse with every bad file named, or (when the
    steward allows it) leave the bad ones out and say which. PHI findings always refuse."""
    if not 8 <= source.size <= 1024:
        raise DatasetError(f"image size must be in [8, 1024] pixels, got {source.size}")
    return _decode(source, _read(source))


def _decode(source: DicomSource, read: _Read) -> Scan:
    labels = read.labels
    images: dict[str, npt.NDArray[np.float32]] = {}
    uids: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    phi: dict[str, list[str]] = {}
    for name, data in read.contents.items():
        if data is None:
            bad.append((name, "file not found or unreadable"))
            continue
        try:
            image = read_radiograph(data, source.size, source.modalities)
        except DicomReadError as exc:
            bad.append((name, exc.reason))
            continue
        if findings := phi_findings(image.header):
            phi[name] = findings
        images[name] = image.pixels
        uids[str(image.header.get("SOPInstanceUID", ""))] = name
    if phi:
        per_file = [f"{name} ({', '.join(f)})" for name, f in phi.items()]
        raise DatasetError(
            f"{source.folder}: {len(phi)} file(s) fail the PHI gate -- headers still identify "
            f"patients or carry private data: {_listing(per_file)}. `medfed node dicom check DIR` "
            "shows every finding; de-identify (`medfed node dicom deidentify IN OUT`) and "
            "register OUT"
        )
    x, y, splits = _match(labels, images, uids, bad)
    if bad and not source.allow_bad:
        raise DatasetError(
            f"{source.folder}: {len(bad)} labelled image(s) cannot be used: "
            f"{_listing([f'{n}: {r}' for n, r in bad])}. Fix or remove them, or register with "
            "--skip-bad to train on the others"
        )
    return Scan(_split(source, x, y, splits), read.manifest, tuple(bad))


def phi_findings(header: pydicom.Dataset) -> list[str]:
    """The attributes behind one header's blocking PHI-gate findings, e.g. ``PatientName``."""
    from medfed.data.dicom.phi import check_dataset

    return [f.keyword or f.tag for f in check_dataset(header) if f.blocking]


def load(source: DicomSource, manifest_sha256: str, cache_dir: Path) -> ImageDataset:
    """The registered dataset, from the cache when the files are still the registered ones;
    every file is read once, for the manifest and, on a cache miss, for decoding."""
    read = _read(source)
    digest = read.manifest
    if digest != manifest_sha256:
        raise DatasetError(
            f"{source.folder}: images or labels changed since registration (manifest "
            f"{digest[:16]}…, registered {manifest_sha256[:16]}…); check them, then re-register "
            "with `medfed node dataset add`"
        )
    cached = _read_cache(_cache_path(cache_dir, manifest_sha256, source), manifest_sha256, source)
    if cached is not None:
        return cached
    return write_cache(cache_dir, manifest_sha256, source, _decode(source, read).dataset)


def _read(source: DicomSource) -> _Read:
    try:
        raw = source.labels.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{source.labels}: cannot read ({exc.strerror or exc})") from None
    labels = parse_labels(
        raw, source=str(source.labels), label=source.label, split_column=source.split_column
    )
    contents = dict(_files(source, labels))
    return _Read(labels, contents, _manifest(raw, contents))


def _files(source: DicomSource, labels: Labels) -> Iterator[tuple[str, bytes | None]]:
    """(name relative to the folder, bytes or None) of every file the dataset reads.

    Keyed by file: the labelled paths only, each kept inside the folder. Keyed by SOP Instance
    UID: every file under the folder (hidden files and the labels file excepted)."""
    root = source.folder.resolve()
    if not root.is_dir():
        raise DatasetError(f"{source.folder}: not a folder")
    if labels.key_kind == "file":
        names = [row.key for row in labels.rows]
    else:
        skip = source.labels.resolve()
        names = sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and p.resolve() != skip and not p.name.startswith(".")
        )
    for name in names:
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            raise DatasetError(f"{source.labels}: file {name!r} points outside {root}")
        try:
            yield name, path.read_bytes()
        except OSError:
            yield name, None


def _manifest(labels: bytes, files: dict[str, bytes | None]) -> str:
    digest = hashlib.sha256(b"medfed/dicom-manifest/v1\n")
    digest.update(hashlib.sha256(labels).digest())
    for name in sorted(files):
        data = files[name]
        content = b"missing" if data is None else hashlib.sha256(data).digest()
        digest.update(f"{len(name)}:{name}".encode() + content)
    return digest.hexdigest()


def _match(
    labels: Labels,
    images: dict[str, npt.NDArray[np.float32]],
    uids: dict[str, str],
    bad: list[tuple[str, str]],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], list[str | None]]:
    """Images in label-file order; a labelled key with no usable image is added to ``bad``."""
    known_bad = {name for name, _ in bad}
    xs: list[npt.NDArray[np.float32]] = []
    ys: list[float] = []
    splits: list[str | None] = []
    for row in labels.rows:
        name = row.key if labels.key_kind == "file" else uids.get(row.key)
        if name is None:
            bad.append((row.key, "no DICOM file in the folder has this SOP Instance UID"))
        elif name in images:
            xs.append(images[name])
            ys.append(row.label)
            splits.append(row.split)
        elif name not in known_bad:
            bad.append((name, "not decoded"))
    if not xs:
        raise DatasetError("no labelled image could be read")
    return np.stack(xs)[:, None], np.asarray(ys, dtype=np.float32), splits


def _split(
    source: DicomSource,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    splits: list[str | None],
) -> ImageDataset:
    if source.split_column is None:
        train = random_split(str(source.labels), y, TEST_FRACTION, SPLIT_SEED)
    else:
        train = np.array([s == "train" for s in splits], dtype=bool)
    for name, mask in (("train", train), ("test", ~train)):
        if not bool(mask.any()):
            raise DatasetError(f"{source.labels}: the {name} split is empty")
    return ImageDataset(
        label=source.label, x_train=x[train], y_train=y[train], x_test=x[~train], y_test=y[~train]
    )


def _cache_meta(manifest: str, source: DicomSource) -> dict[str, str]:
    return {
        "format": _CACHE_FORMAT,
        "manifest": manifest,
        "size": str(source.size),
        "allow_bad": str(source.allow_bad),
        "modalities": ",".join(sorted(source.modalities)),
    }


def _read_cache(path: Path, manifest: str, source: DicomSource) -> ImageDataset | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            if handle.metadata() != _cache_meta(manifest, source):
                return None
            arrays = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        return ImageDataset(label=source.label, **arrays)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, DatasetError):
        return None  # missing, partial or foreign: decode again


def _cache_path(cache_dir: Path, manifest: str, source: DicomSource) -> Path:
    return cache_dir / f"{manifest[:32]}-{source.size}.safetensors"


def write_cache(
    cache_dir: Path, manifest: str, source: DicomSource, data: ImageDataset
) -> ImageDataset:
    """Store decoded pixels (write-then-rename), float32 as decoded, so a round that reads the
    cache trains on exactly what the first decode gave (and what a simulation gives)."""
    from safetensors.numpy import save_file

    arrays = {"x_train": data.x_train, "y_train": data.y_train,
              "x_test": data.x_test, "y_test": data.y_test}  # fmt: skip
    path = _cache_path(cache_dir, manifest, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(arrays, str(tmp), _cache_meta(manifest, source))
    os.replace(tmp, path)
    return data


def _listing(items: list[str]) -> str:
    shown = "; ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown}; and {len(items) - _SHOWN} more"
