"""Record-level DP at one site: the noise multiplier a site derives for its own data, and the
epsilon it has spent.

The study asks for a target epsilon per site for the whole study (or a fixed noise multiplier).
Each site knows what the coordinator does not need to: its number of training rows n. With
Poisson sampling at rate q = batch_size / n and K local steps per round, a study of R rounds is
R x K steps of the subsampled Gaussian mechanism; the site chooses the smallest noise multiplier
whose epsilon over all R x K steps stays at or under the target (``accounting.noise_for_epsilon``,
which never overshoots). Every step is counted, retries included (the site's ledger adds the steps
of every training run it actually performs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medfed.errors import ConfigError
from medfed.privacy.accounting import Accountant, dpsgd_epsilon, noise_for_epsilon


@dataclass(frozen=True)
class RecordDpRequest:
    """What a study asks of every site (``RecordDp`` on the wire)."""

    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    accountant: Accountant = "rdp"

    @property
    def enabled(self) -> bool:
        return self.epsilon > 0 or self.noise_multiplier > 0


@dataclass(frozen=True)
class RecordDpPlan:
    """One site's DP-SGD settings for one study."""

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps_per_round: int
    planned_steps: int
    delta: float
    accountant: Accountant

    def epsilon_after(self, steps: int) -> float:
        """The site's epsilon for this study after ``steps`` noisy steps in total."""
        return dpsgd_epsilon(
            self.noise_multiplier, self.sample_rate, steps, self.delta, self.accountant
        )


def plan_record_dp(
    request: RecordDpRequest,
    n_train: int,
    batch_size: int,
    local_steps: int,
    local_epochs: int,
    total_rounds: int,
) -> RecordDpPlan:
    """This site's noise multiplier for the whole study, derived from its own data size."""
    if n_train < 1:
        raise ConfigError("DP-SGD needs at least one training row")
    if total_rounds < 1:
        raise ConfigError("DP-SGD needs the study's planned number of rounds")
    sample_rate = min(1.0, batch_size / n_train)
    per_round = local_steps if local_steps > 0 else local_epochs * math.ceil(n_train / batch_size)
    if per_round < 1:
        raise ConfigError("DP-SGD needs at least one local step per round")
    planned = per_round * total_rounds
    sigma = request.noise_multiplier or noise_for_epsilon(
        request.epsilon, request.delta, sample_rate, planned, request.accountant
    )
    return RecordDpPlan(
        noise_multiplier=sigma,
        max_grad_norm=request.max_grad_norm,
        sample_rate=sample_rate,
        steps_per_round=per_round,
        planned_steps=planned,
        delta=request.delta,
        accountant=request.accountant,
    )
