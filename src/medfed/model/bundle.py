"""A model bundle: the trained weights and everything a hospital needs to use them, in one file.

Why: weights alone are not a usable model. Every site standardized its features with its own
training statistics (``medfed.training.standardize``), so the weights are defined on standardized
inputs; fed raw features, the heart-disease model scored accuracy 0.144 where the coordinator had
recorded 0.865, and nothing in the file said why. A bundle names the plan the weights belong to,
the features in model order, the label, the preprocessing, the study spec, and what each site
measured, so ``medfed model evaluate`` can reproduce a site's numbers on its raw data.

The file is safetensors: raw tensors plus a JSON header; loading it runs no code (no pickle). The
header's ``__metadata__`` (string -> string) holds ``format`` (``FORMAT``) and ``bundle``, one JSON
document::

    study_id, study_name, study_state, round, model_sha256, tensors (names in model order),
    plan {name, version, sha256}, label,
    inputs {kind: "table", features: [{name, dtype}]} | {kind: "image", feature, shape, dtype},
    preprocessing {kind: "site_standardization" | "pooled_standardization" | "image_scale",
                   description},
    spec {json, sha256},
    metrics {round, aggregate, sites: [{site, num_examples, metrics}]}

Reading checks the format, the type of every field, that the tensors are exactly the listed ones,
and that their canonical SHA-256 (``protocol.tensors.weights_sha256``, the coordinator's model id)
and the spec's SHA-256 match the document. That catches a truncated, edited or mixed-up file. It is
not a signature -- whoever edits a file can recompute both -- so to trust a bundle, compare its
``model_sha256`` with the coordinator's record (``medfed study status``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from medfed.data.images import parse_image_feature
from medfed.errors import BundleError, ProtocolError
from medfed.model._fields import Fields
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb

FORMAT = "medfed/model-bundle/v1"
InputKind = Literal["table", "image"]
Preprocessing = Literal["site_standardization", "pooled_standardization", "image_scale"]
PREPROCESSING: dict[Preprocessing, str] = {
    "site_standardization": (
        "each feature z = (x - mean) / std, with the mean and population std of the training "
        "rows of the site using the model (a column constant there is centred, not scaled): "
        "every site trained and evaluated on its own statistics"
    ),
    "pooled_standardization": (
        "z = (x - mean) / std with the pooled mean and sample std of all sites (federated "
        "standardization from a statistics study; the values are in the bundled spec's "
        "pooled_standardization) for the features listed there, each site's own training "
        "statistics for the others"
    ),
    "image_scale": "pixels windowed to [0, 1] by the DICOM connector, then (x - 0.5) / 0.5",
}
"""What the plans' input preparation (``training.plans._torch._inputs``) does, in words."""


@dataclass(frozen=True)
class SiteMetrics:
    site: str
    num_examples: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class RecordedMetrics:
    """What the coordinator recorded for the bundled model: its round's aggregate metrics and each
    site's test metrics (``round`` 0 and nothing when the model's round was never recorded)."""

    round: int
    aggregate: Mapping[str, float]
    sites: tuple[SiteMetrics, ...]

    def site(self, name: str) -> SiteMetrics:
        for entry in self.sites:
            if entry.site == name:
                return entry
        known = ", ".join(s.site for s in self.sites) or "none"
        raise BundleError(f"the bundle records no metrics for site {name!r}; recorded: {known}")


@dataclass(frozen=True)
class BundleInfo:
    """The bundle's document. ``features`` are the table's columns in model order, or the one
    ``image:CxHxW`` feature of an imaging study; inputs are float32 either way."""

    study_id: str
    study_name: str
    study_state: str
    round: int
    model_sha256: str
    tensors: tuple[str, ...]
    plan: str
    plan_version: str
    plan_sha256: str
    features: tuple[str, ...]
    label: str
    spec_json: str
    metrics: RecordedMetrics

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        if len(self.features) != 1:
            return None
        return parse_image_feature(self.features[0])

    @property
    def input_kind(self) -> InputKind:
        return "table" if self.image_shape is None else "image"

    @property
    def preprocessing(self) -> Preprocessing:
        """Tables: each site's own standardization, or the study's pooled statistics;
        images: a fixed scale."""
        if self.image_shape is not None:
            return "image_scale"
        return "pooled_standardization" if self.pooled_statistics else "site_standardization"

    @property
    def pooled_statistics(self) -> dict[str, tuple[float, float]]:
        """Feature -> (mean, std) of federated standardization, from the bundled spec."""
        try:
            raw = json.loads(self.spec_json).get("pooled_standardization") or {}
            return {str(k): (float(m), float(s)) for k, (m, s) in raw.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise BundleError(
                f"the bundled spec's pooled statistics are unreadable: {exc}"
            ) from exc

    @property
    def spec_sha256(self) -> str:
        return hashlib.sha256(self.spec_json.encode()).hexdigest()


@dataclass(frozen=True)
class ModelBundle:
    info: BundleInfo
    weights: tensors.Weights


def bundle_from_status(
    status: pb.StudyStatus, weights: tensors.Weights, spec_json: str
) -> ModelBundle:
    """The bundle of the study's current model, as the admin API describes it; ``spec_json`` is
    the study spec in the coordinator's stored form (``StudySpec.to_json``)."""
    sha = tensors.weights_sha256(weights)
    if sha != status.model_sha256:
        raise BundleError(f"model {sha[:12]}… is not the study's current model")
    spec = status.spec
    info = BundleInfo(
        study_id=status.study_id,
        study_name=spec.name,
        study_state=status.state,
        round=status.completed_rounds,
        model_sha256=sha,
        tensors=tuple(weights),
        plan=spec.plan.name,
        plan_version=spec.plan.version,
        plan_sha256=spec.plan.sha256,
        features=tuple(spec.dataset.features),
        label=spec.dataset.label,
        spec_json=spec_json,
        metrics=recorded_metrics(status),
    )
    return ModelBundle(info, dict(weights))


def recorded_metrics(status: pb.StudyStatus) -> RecordedMetrics:
    """The metrics of the round that produced the current model; a round's metrics belong to its
    own model, so an earlier evaluated round is never passed off as this model's."""
    for r in status.rounds:
        if r.round == status.completed_rounds and r.model_sha256 == status.model_sha256:
            sites = sorted(r.per_node, key=lambda m: m.node)
            return RecordedMetrics(
                r.round,
                dict(r.metrics),
                tuple(SiteMetrics(m.node, m.num_examples, dict(m.metrics)) for m in sites),
            )
    return RecordedMetrics(0, {}, ())


def write_bundle(bundle: ModelBundle, path: Path) -> None:
    """Write-then-rename, so an interrupted download leaves no half bundle under the name."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(bundle.weights[name]) for name in bundle.info.tensors}
    metadata = {"format": FORMAT, "bundle": json.dumps(_document(bundle.info), sort_keys=True)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(arrays, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"cannot write {path}: {exc}") from None


def read_bundle(path: Path) -> ModelBundle:
    """Load and check a bundle; every failure is a ``BundleError`` that says what is wrong."""
    metadata, arrays = _read_safetensors(path)
    info = parse_info(metadata, str(path))
    if sorted(arrays) != sorted(info.tensors):
        raise BundleError(
            f"{path}: the file holds tensors {sorted(arrays)}, its document lists "
            f"{sorted(info.tensors)}; the file was altered"
        )
    weights = {name: arrays[name] for name in info.tensors}
    try:
        sha = tensors.weights_sha256(weights)
    except ProtocolError as exc:
        raise BundleError(f"{path}: {exc}") from None
    if sha != info.model_sha256:
        raise BundleError(
            f"{path}: model hash mismatch: the weights hash to {sha[:16]}…, the bundle says "
            f"{info.model_sha256[:16]}…; the weights were altered or the file is damaged"
        )
    return ModelBundle(info, weights)


def _read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray[Any, Any]]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (SafetensorError, ValueError, TypeError) as exc:
        raise BundleError(f"{path} is not a safetensors file ({exc})") from None
    return metadata, arrays


def parse_info(metadata: Mapping[str, str], source: str) -> BundleInfo:
    """The bundle document from a safetensors header, every field checked."""
    if metadata.get("format") != FORMAT:
        if "bundle" not in metadata:
            raise BundleError(
                f"{source} holds weights only, not a model bundle; download it again with "
                "`medfed study download` (without --weights-only)"
            )
        raise BundleError(
            f"{source}: bundle format {metadata.get('format')!r} is not {FORMAT!r} "
            "(made by another medfed version?)"
        )
    try:
        doc = json.loads(metadata["bundle"])
    except ValueError as exc:
        raise BundleError(f"{source}: the bundle document is not JSON ({exc})") from None
    info = _info(Fields(doc, source))
    _check_consistent(info, Fields(doc, source), source)
    return info


def _info(doc: Fields) -> BundleInfo:
    plan = doc.table("plan")
    spec = doc.table("spec")
    inputs = doc.table("inputs")
    return BundleInfo(
        study_id=doc.text("study_id"),
        study_name=doc.text("study_name"),
        study_state=doc.text("study_state"),
        round=doc.integer("round"),
        model_sha256=doc.text("model_sha256"),
        tensors=doc.texts("tensors"),
        plan=plan.text("name"),
        plan_version=plan.text("version"),
        plan_sha256=plan.text("sha256"),
        features=_features(inputs),
        label=doc.text("label"),
        spec_json=spec.text("json"),
        metrics=_metrics(doc.table("metrics")),
    )


def _features(inputs: Fields) -> tuple[str, ...]:
    kind = inputs.choice("kind", get_args(InputKind))
    if kind == "image":
        return (inputs.text("feature"),)
    return tuple(f.text("name") for f in inputs.tables("features"))


def _metrics(doc: Fields) -> RecordedMetrics:
    sites = tuple(
        SiteMetrics(s.text("site"), s.integer("num_examples"), s.numbers("metrics"))
        for s in doc.tables("sites")
    )
    return RecordedMetrics(doc.integer("round"), doc.numbers("aggregate"), sites)


def _check_consistent(info: BundleInfo, doc: Fields, source: str) -> None:
    """The derived fields must agree with the ones they derive from: a document edited by hand
    (or by a newer medfed with a preprocessing this one cannot apply) is refused, not guessed at."""
    if doc.table("spec").text("sha256") != info.spec_sha256:
        raise BundleError(f"{source}: the study spec does not match its SHA-256; it was altered")
    try:
        Fields(json.loads(info.spec_json), source, "spec.json.")
    except ValueError:
        raise BundleError(f"{source}: bundle field spec.json is not a JSON object") from None
    inputs = doc.table("inputs")
    if inputs.text("kind") != info.input_kind or not info.features:
        raise BundleError(
            f"{source}: inputs of kind {inputs.text('kind')!r} list no usable features"
        )
    pre = doc.table("preprocessing").choice("kind", get_args(Preprocessing))
    if pre != info.preprocessing:
        raise BundleError(
            f"{source}: preprocessing {pre!r} does not fit {info.input_kind} inputs; this medfed "
            f"applies {info.preprocessing!r} to them"
        )
    if len(set(info.tensors)) != len(info.tensors) or len(set(info.features)) != len(info.features):
        raise BundleError(f"{source}: tensor or feature names are repeated")


def _document(info: BundleInfo) -> dict[str, Any]:
    shape = info.image_shape
    inputs: dict[str, Any] = (
        {"kind": "table", "features": [{"name": f, "dtype": "float32"} for f in info.features]}
        if shape is None
        else {
            "kind": "image",
            "feature": info.features[0],
            "shape": list(shape),
            "dtype": "float32",
        }
    )
    return {
        "study_id": info.study_id,
        "study_name": info.study_name,
        "study_state": info.study_state,
        "round": info.round,
        "model_sha256": info.model_sha256,
        "tensors": list(info.tensors),
        "plan": {"name": info.plan, "version": info.plan_version, "sha256": info.plan_sha256},
        "label": info.label,
        "inputs": inputs,
        "preprocessing": {
            "kind": info.preprocessing,
            "description": PREPROCESSING[info.preprocessing],
        },
        "spec": {"json": info.spec_json, "sha256": info.spec_sha256},
        "metrics": {
            "round": info.metrics.round,
            "aggregate": dict(info.metrics.aggregate),
            "sites": [
                {"site": s.site, "num_examples": s.num_examples, "metrics": dict(s.metrics)}
                for s in info.metrics.sites
            ],
        },
    }


def document_json(info: BundleInfo) -> str:
    """The document as written into the file, indented for people (``medfed model inspect``)."""
    return json.dumps(_document(info), indent=2, sort_keys=True)
