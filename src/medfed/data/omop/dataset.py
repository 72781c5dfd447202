"""An OMOP-backed dataset of the node's registry: a pinned spec run against the node's store.

The steward registers a spec file once (``medfed node dataset add-omop``); the registry pins the
spec's hash, the store's location and, optionally, the consent study every load reads through.
Each load re-reads the spec (a changed spec is refused until re-registered, as a changed CSV is),
opens the store, and builds the matrix -- through the consent reader when a study is named, so
only consented persons are ever read, and the round learns the consented N and watermark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from medfed.data.omop.features import Extraction, extract
from medfed.data.omop.spec import CohortSpec, load_spec
from medfed.data.omop.store import OmopStore, open_store
from medfed.errors import ConsentError, DatasetError


@dataclass(frozen=True)
class OmopLoad:
    """One build of an OMOP dataset; ``consented_n`` and ``watermark`` are None when it was read
    without a consent study (the steward's own view, e.g. at registration)."""

    extraction: Extraction
    consented_n: int | None
    watermark: int | None


def pinned_spec(path: Path, sha256: str, dataset: str) -> CohortSpec:
    """The spec at ``path``, refused when it no longer hashes to what the steward registered."""
    spec = load_spec(path)
    if spec.sha256 != sha256:
        raise DatasetError(
            f"dataset {dataset!r}: the spec {path} changed since it was registered (sha256 "
            f"{spec.sha256[:16]}…, registered {sha256[:16]}…); review it, then re-register it "
            f"with `medfed node dataset add-omop`"
        )
    return spec


def build(
    spec: CohortSpec,
    location: str,
    schema: str,
    *,
    study_id: str = "",
    cache_dir: Path | None = None,
) -> OmopLoad:
    """The spec's matrix from the store at ``location`` (a DuckDB file or a PostgreSQL URL),
    read through ``study_id``'s consent reader when one is given.

    A store that cannot be read, or a consent scope that cannot be opened, is a
    :class:`DatasetError` naming the store (password hidden): the node refuses the task with
    that reason instead of failing the round.
    """
    store = open_store(location, schema)
    try:
        return _build(store, spec, study_id, cache_dir)
    except sa.exc.SQLAlchemyError as exc:
        where = store.engine.url.render_as_string(hide_password=True)
        raise DatasetError(
            f"OMOP store {where} ({schema}): {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    except ConsentError as exc:
        raise DatasetError(f"consent for study {study_id!r}: {exc}") from exc
    finally:
        store.close()


def _build(store: OmopStore, spec: CohortSpec, study_id: str, cache_dir: Path | None) -> OmopLoad:
    if not study_id:
        return OmopLoad(extract(store.engine, spec, cache_dir=cache_dir), None, None)
    from medfed.data.consent import consented_reader  # only stores with consent need it

    with consented_reader(store, study_id) as reader:
        extraction = extract(
            reader.connection,
            spec,
            cache_dir=cache_dir,
            watermark=f"{study_id}:{reader.watermark}",
        )
        return OmopLoad(extraction, reader.consented_n, reader.watermark)
