"""The hospital's privacy budget ledger: what each study has spent of each dataset's epsilon.

A data use agreement such as "epsilon < 1 per patient" is the hospital's to enforce, not the
researcher's. The data steward sets a budget per registered dataset, ``(epsilon, delta)``, through
the local CLI or this library only: the ledger is a SQLite file in the node's state folder
(separate from the coordinator's store) and no network message can set, raise or reset a budget.
The node only *spends* from it, before training, so a round the budget cannot pay for never
touches the data.

Each study that trains with record-level DP on a dataset has one entry: its DP-SGD mechanism
(noise multiplier, sample rate, delta, accountant), which must not change mid-study, the steps it
has taken so far, every training run counted (a retried round touched the data again, so its steps
count again), and its epsilon after those steps as the caller's accountant computed it. The ledger
never runs an accountant itself; it books the numbers it is given.

Studies on one dataset compose by the basic composition theorem (Dwork & Roth, *The Algorithmic
Foundations of Differential Privacy*, 2014, Thm. 3.16): mechanisms that are (eps_i, delta_i)-DP
are (sum eps_i, sum delta_i)-DP together, so the dataset's spent epsilon is the sum of its
studies' epsilons. RDP composition across the different studies' mechanisms would be tighter;
basic composition is simple and never optimistic. The budget's delta bounds each study's delta, so
k studies together hold delta <= k * budget delta. The guarantee is per *record*: it is per
patient only when each patient contributes one row.

Spending is one write transaction (SQLite ``BEGIN IMMEDIATE``, as in ``medfed.store.db``): the
check and the booking happen under the database's write lock, so two threads or processes spending
concurrently cannot both pass a check that only one of them fits in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Double, Engine, Integer, String, create_engine, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medfed.errors import ConfigError, PolicyError
from medfed.store.db import SQLITE_BUSY_TIMEOUT_S, WRITE_OPTION, own_sqlite_transactions

__all__ = ["Budget", "EpsilonOf", "PrivacyLedger", "StudySpend"]


EpsilonOf = Callable[[int], float]
"""A study's epsilon after a total number of steps (its accountant, bound to its mechanism)."""


@dataclass(frozen=True)
class Budget:
    """A dataset's total epsilon across all studies, and the largest delta one study may use."""

    dataset: str
    epsilon: float
    delta: float


@dataclass(frozen=True)
class StudySpend:
    """What one study has spent of one dataset so far."""

    dataset: str
    study_id: str
    noise_multiplier: float
    sample_rate: float
    delta: float
    accountant: str
    steps: int
    epsilon: float
    updated_unix: float


class _Base(DeclarativeBase):
    pass


class _BudgetRow(_Base):
    __tablename__ = "budgets"
    dataset: Mapped[str] = mapped_column(String(255), primary_key=True)
    epsilon: Mapped[float] = mapped_column(Double)
    delta: Mapped[float] = mapped_column(Double)
    updated_unix: Mapped[float] = mapped_column(Double)


class _StudyRow(_Base):
    __tablename__ = "study_spends"
    dataset: Mapped[str] = mapped_column(String(255), primary_key=True)
    study_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    noise_multiplier: Mapped[float] = mapped_column(Double)
    sample_rate: Mapped[float] = mapped_column(Double)
    delta: Mapped[float] = mapped_column(Double)
    accountant: Mapped[str] = mapped_column(String(64))
    steps: Mapped[int] = mapped_column(Integer)
    epsilon: Mapped[float] = mapped_column(Double)
    started_unix: Mapped[float] = mapped_column(Double)
    updated_unix: Mapped[float] = mapped_column(Double)


@dataclass(frozen=True)
class _Mechanism:
    noise_multiplier: float
    sample_rate: float
    delta: float
    accountant: str


class PrivacyLedger:
    """The per-dataset privacy budgets of one node and what each study has spent of them.

    Every call opens its own transaction, so one ledger serves many threads, and a new ledger on
    the same file (after a restart) sees everything booked before. Times are parameters.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._engine = _sqlite_engine(path)
        self._write = self._engine.execution_options(**{WRITE_OPTION: True})
        with self._write.begin() as conn:
            _Base.metadata.create_all(conn)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with Session(self._engine) as session, session.begin():
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        with Session(self._write) as session, session.begin():
            yield session

    # -- the data steward's side (local only) -----------------------------------------------------

    def set_budget(self, dataset: str, epsilon: float, delta: float, now: float) -> None:
        """Set, raise or lower ``dataset``'s budget. Lowering it below what is already spent is
        allowed and refuses every further spend; nothing already booked is forgotten."""
        _check_dataset(dataset)
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise ConfigError(
                f"epsilon budget of {dataset!r} must be > 0 and finite, not {epsilon}"
            )
        _check_delta(delta, f"budget delta of {dataset!r}")
        with self._writing() as session:
            row = session.get(_BudgetRow, dataset)
            if row is None:
                session.add(_BudgetRow(dataset=dataset, epsilon=epsilon, delta=delta,
                                       updated_unix=now))  # fmt: skip
            else:
                row.epsilon, row.delta, row.updated_unix = epsilon, delta, now

    # -- reading ----------------------------------------------------------------------------------

    def budget(self, dataset: str) -> Budget | None:
        with self._reading() as session:
            row = session.get(_BudgetRow, dataset)
            return None if row is None else Budget(row.dataset, row.epsilon, row.delta)

    def spent(self, dataset: str) -> float:
        """The dataset's epsilon spent by all studies together (basic composition: their sum)."""
        with self._reading() as session:
            return math.fsum(row.epsilon for row in _study_rows(session, dataset))

    def study(self, dataset: str, study_id: str) -> StudySpend | None:
        with self._reading() as session:
            row = session.get(_StudyRow, (dataset, study_id))
            return None if row is None else _spend(row)

    def studies(self, dataset: str) -> list[StudySpend]:
        """The dataset's studies in the order they first spent."""
        with self._reading() as session:
            return [_spend(row) for row in _study_rows(session, dataset)]

    # -- spending ---------------------------------------------------------------------------------

    def check(self, dataset: str, study_id: str, new_study_epsilon: float, delta: float) -> float:
        """The budget left if ``study_id``'s epsilon on ``dataset`` became ``new_study_epsilon``;
        PolicyError (``privacy_budget_missing``, ``privacy_delta_too_large`` or
        ``privacy_budget_exhausted``) if the budget cannot pay for it. Books nothing."""
        _check_epsilon(new_study_epsilon)
        _check_delta(delta, "a study's delta")
        with self._reading() as session:
            return _remaining(session, dataset, study_id, new_study_epsilon, delta)

    def consume(
        self,
        dataset: str,
        study_id: str,
        steps: int,
        new_study_epsilon: float | EpsilonOf,
        noise_multiplier: float,
        sample_rate: float,
        delta: float,
        accountant: str,
        now: float,
    ) -> StudySpend:
        """Book a training run of ``steps`` noisy steps, atomically, or refuse it as ``check`` does.

        ``new_study_epsilon`` is the study's epsilon after all its steps including these. Pass an
        ``EpsilonOf`` instead to have it computed from the booked total inside the transaction: two
        runs of one study racing then cannot both book the epsilon of the same total. The study's
        mechanism (noise multiplier, sample rate, delta, accountant) must be the one it started
        with, and its epsilon can only grow (ConfigError otherwise).
        """
        _check_dataset(dataset)
        if not study_id:
            raise ConfigError("a privacy ledger entry needs a non-empty study id")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"a training run must book at least one step, not {steps!r}")
        mechanism = _mechanism(noise_multiplier, sample_rate, delta, accountant)
        with self._writing() as session:
            row = session.get(_StudyRow, (dataset, study_id))
            if row is not None:
                _check_same_mechanism(row, mechanism)
            total = (0 if row is None else row.steps) + steps
            epsilon = new_study_epsilon(total) if callable(new_study_epsilon) else new_study_epsilon
            _check_epsilon(epsilon)
            _remaining(session, dataset, study_id, epsilon, delta)
            if row is None:
                row = _StudyRow(
                    dataset=dataset,
                    study_id=study_id,
                    noise_multiplier=mechanism.noise_multiplier,
                    sample_rate=mechanism.sample_rate,
                    delta=mechanism.delta,
                    accountant=mechanism.accountant,
                    steps=total,
                    epsilon=epsilon,
                    started_unix=now,
                    updated_unix=now,
                )
                session.add(row)
            else:
                row.steps, row.epsilon, row.updated_unix = total, epsilon, now
            session.flush()
            return _spend(row)


# -- helpers --------------------------------------------------------------------------------------


def _sqlite_engine(path: Path) -> Engine:
    engine = create_engine(
        URL.create("sqlite", database=str(path)),
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
    )
    own_sqlite_transactions(engine)  # a booked spend must survive a power cut
    return engine


def _study_rows(session: Session, dataset: str) -> list[_StudyRow]:
    stmt = (
        select(_StudyRow)
        .where(_StudyRow.dataset == dataset)
        .order_by(_StudyRow.started_unix, _StudyRow.study_id)
    )
    return list(session.scalars(stmt))


def _remaining(
    session: Session, dataset: str, study_id: str, new_study_epsilon: float, delta: float
) -> float:
    budget = session.get(_BudgetRow, dataset)
    if budget is None:
        raise PolicyError(
            "privacy_budget_missing",
            f"dataset {dataset!r} has no privacy budget: DP training is refused until its data "
            "steward sets one (medfed node privacy budget)",
        )
    if delta > budget.delta:
        raise PolicyError(
            "privacy_delta_too_large",
            f"study {study_id!r} asks for delta {delta:g} on dataset {dataset!r}, above the "
            f"largest delta its budget allows per study ({budget.delta:g})",
        )
    rows = _study_rows(session, dataset)
    current = next((r.epsilon for r in rows if r.study_id == study_id), 0.0)
    if new_study_epsilon < current:
        raise ConfigError(
            f"study {study_id!r} on {dataset!r}: epsilon cannot shrink from {current:.6g} to "
            f"{new_study_epsilon:.6g} (its steps only grow)"
        )
    spent = math.fsum(r.epsilon for r in rows)
    total = math.fsum([*(r.epsilon for r in rows if r.study_id != study_id), new_study_epsilon])
    if total > budget.epsilon:
        raise PolicyError(
            "privacy_budget_exhausted",
            f"privacy budget of dataset {dataset!r} exhausted: {spent:.6g} already spent, this "
            f"round would add {new_study_epsilon - current:.6g} (study {study_id!r} to epsilon "
            f"{new_study_epsilon:.6g}), {total:.6g} in all, over the budget of "
            f"{budget.epsilon:.6g}",
        )
    return budget.epsilon - total


def _spend(row: _StudyRow) -> StudySpend:
    return StudySpend(
        dataset=row.dataset,
        study_id=row.study_id,
        noise_multiplier=row.noise_multiplier,
        sample_rate=row.sample_rate,
        delta=row.delta,
        accountant=row.accountant,
        steps=row.steps,
        epsilon=row.epsilon,
        updated_unix=row.updated_unix,
    )


def _mechanism(
    noise_multiplier: float, sample_rate: float, delta: float, accountant: str
) -> _Mechanism:
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ConfigError(f"noise multiplier must be > 0 and finite, not {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample rate must be in (0, 1], not {sample_rate}")
    _check_delta(delta, "a study's delta")
    if not accountant:
        raise ConfigError("a privacy ledger entry needs the accountant's name")
    return _Mechanism(noise_multiplier, sample_rate, delta, accountant)


def _check_same_mechanism(row: _StudyRow, new: _Mechanism) -> None:
    old = _Mechanism(row.noise_multiplier, row.sample_rate, row.delta, row.accountant)
    if old != new:
        raise ConfigError(
            f"study {row.study_id!r} on {row.dataset!r} changed its DP mechanism mid-study "
            f"(was {old}, now {new}): its epsilon so far was accounted for the first one"
        )


def _check_dataset(dataset: str) -> None:
    if not dataset:
        raise ConfigError("a privacy budget needs a non-empty dataset name")


def _check_delta(delta: float, what: str) -> None:
    if not 0 < delta < 1:
        raise ConfigError(f"{what} must be in (0, 1), not {delta}")


def _check_epsilon(epsilon: float) -> None:
    """NaN would pass every ``>`` comparison, so it is refused here; infinity is left to the
    budget check, which refuses it as exhausted."""
    if math.isnan(epsilon) or epsilon < 0:
        raise ConfigError(f"a study's epsilon must be >= 0, not {epsilon}")
