"""Secure aggregation (SecAgg+) over real mTLS: four hospitals, the heart-disease study."""

from __future__ import annotations

import dataclasses
import itertools
import statistics

import numpy as np
import pytest

from medfed.cli.study import decrypted_rounds, prepare
from medfed.coordinator.spec import StudySpec
from medfed.data.heart_disease import heart_disease_centres
from medfed.node.secure import SecureAggregationClient
from medfed.secagg import ckks
from medfed.secagg.hazmat import keys
from medfed.secagg.protocol import ServerRound
from medfed.simulation.runner import simulate
from medfed.training.score_histogram import SCORE_BINS, histogram_metrics, sum_histograms
from tests.e2e.harness import HOSPITALS, Network, passthrough_study, small_study

ROUNDS = 3


def _secure(**changes: object) -> StudySpec:
    spec = small_study(rounds=ROUNDS, name="secure", secure_aggregation=True, min_nodes=4)
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "strategy",
    [
        {},
        {"strategy": "fedprox", "strategy_params": {"mu": 0.1}},
        {"strategy": "normbound", "strategy_params": {"max_norm": 0.05}},  # each site clips
    ],
    ids=["fedavg", "fedprox", "normbound"],
)
def test_secure_study_matches_plain_fedavg_within_quantization_error(
    network: Network, monkeypatch: pytest.MonkeyPatch, strategy: dict[str, object]
) -> None:
    seen: list[np.ndarray] = []
    add_masked = ServerRound.add_masked

    def spy(self: ServerRound, node: str, masked: np.ndarray) -> None:
        seen.append(np.array(masked, copy=True))
        add_masked(self, node, masked)

    monkeypatch.setattr(ServerRound, "add_masked", spy)
    network.start_coordinator()
    network.start_nodes()
    pinned, init = prepare(_secure(**strategy))
    status = network.wait_done(network.admin.submit(pinned, init), timeout_s=180)
    assert status.state == "completed", status.message
    assert all(r.accepted == len(HOSPITALS) for r in status.rounds)

    plain = simulate(pinned, heart_disease_centres(), init)  # the simulator sums in the clear
    final = network.admin.download(status.model_sha256)
    for name in final:
        np.testing.assert_allclose(final[name], plain.model[name], atol=1e-5)
    secure_acc = {m.node: m.metrics["accuracy"] for m in status.rounds[-1].per_node}
    plain_eval = plain.evaluate()
    plain_acc = {s: r.metrics["accuracy"] for s, r in plain_eval.items()}
    assert secure_acc == pytest.approx(plain_acc, abs=0.02)
    # The pooled AUC comes from the masked sum of the sites' histograms, as the clear sum gives it.
    clear = histogram_metrics(
        sum_histograms(r.histogram for r in plain_eval.values() if r.histogram)
    )
    assert status.rounds[-1].metrics["auc_pooled"] == pytest.approx(clear["auc"], abs=0.01)

    # What reached the coordinator: masked words only, one per element plus the weight, and
    # after each round's training, each site's masked score histogram.
    dim = sum(a.size for a in init.values()) + 1
    updates = [m for m in seen if m.shape == (dim,)]
    histograms = [m for m in seen if m.shape == (2 * SCORE_BINS,)]
    assert len(updates) == len(histograms) == ROUNDS * len(HOSPITALS) == len(seen) / 2
    for masked in updates:
        assert masked.dtype == np.uint32
        assert masked[-1] > 10_000  # the weight word is masked too (a site has < 300 rows)
    for masked in histograms:  # a site has < 300 test rows: counts that big are masks
        assert masked.dtype == np.uint32 and (masked > 10_000).mean() > 0.9
    assert all(r.metrics["secagg_clipped"] == 0 for r in status.rounds[-1].per_node)


def test_a_hospital_dropping_after_sharing_keys_is_unmasked_without_it(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Switzerland shares its keys, then crashes before sending its masked input, every round:
    the three others' sum is recovered exactly (threshold 3 of 4)."""
    real_mask = SecureAggregationClient.mask

    def crash(self: SecureAggregationClient, *args: object, **kw: object) -> object:
        if self.me == "switzerland":
            raise RuntimeError("power cut after the share stage")
        return real_mask(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(SecureAggregationClient, "mask", crash)
    network.start_coordinator()
    network.start_nodes()
    # A crash is silent: the round waits out its (short) deadline for Switzerland each time.
    pinned, init = prepare(_secure(min_nodes=3, round_deadline_s=6.0))
    status = network.wait_done(network.admin.submit(pinned, init), timeout_s=180)
    assert status.state == "completed", status.message
    assert [r.accepted for r in status.rounds] == [3] * ROUNDS
    survivors = {k: v for k, v in heart_disease_centres().items() if k != "switzerland"}
    expected = simulate(pinned, survivors, init).model
    for name, array in network.admin.download(status.model_sha256).items():
        np.testing.assert_allclose(array, expected[name], atol=1e-5)


def test_a_coordinator_swapping_a_key_is_caught_and_nothing_is_committed(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    forward = ServerRound.forward_advertisements

    def swap(self: ServerRound, ads: dict[str, object]) -> object:
        out = forward(self, ads)  # type: ignore[arg-type]
        mine = keys.public_bytes(keys.X25519PrivateKey.generate())  # the coordinator's own key
        for theirs in out.values():
            if "cleveland" in theirs:
                theirs["cleveland"] = dataclasses.replace(theirs["cleveland"], mask_public=mine)
        return out

    monkeypatch.setattr(ServerRound, "forward_advertisements", swap)
    network.start_coordinator()
    network.start_nodes()
    pinned, init = prepare(_secure(rounds=1, secagg_stage_deadline_s=5.0))
    study_id = network.admin.submit(pinned, init)
    status = network.wait_until(study_id, lambda s: "aborted" in s.message, timeout_s=60)
    assert status.completed_rounds == 0
    assert "shared their keys" in status.message
    reasons = network.rejections(study_id)
    assert any("not signed by its certificate key" in r for r in reasons), reasons


def test_a_strategy_that_needs_individual_updates_is_refused(network: Network) -> None:
    network.start_coordinator()
    for changes in ({"strategy": "median"}, {"compression": "q8"}):
        pinned, init = prepare(_secure(**changes))
        with pytest.raises(Exception, match="secure aggregation"):
            network.admin.submit(pinned, init)


def test_distributed_dp_under_secure_aggregation_carries_the_planned_noise(
    network: Network,
) -> None:
    """DP-FedAvg, noise added by the sites, summed under SecAgg+. The sites' updates are zero
    (passthrough plan, delta 0), so each round's change of the global model is the mean of the
    four sites' noise: N(0, (z C / m)^2) per coordinate, which the test checks with a chi-square
    interval on 4 rounds x 2000 coordinates (p = 1e-6 on each side)."""
    z, clip, m, rounds, dim = 1.0, 0.5, len(HOSPITALS), 4, 2000
    spec = passthrough_study(
        rounds=rounds,
        dim=dim,
        plan_options={"dim": float(dim), "delta": 0.0},
        strategy="dpfedavg",
        strategy_params={"clip_norm": clip, "noise_multiplier": z, "distributed": 1.0},
        secure_aggregation=True,
        min_nodes=m,
        eval_every=0,
    )
    network.start_coordinator()
    network.start_nodes()
    pinned, init = prepare(spec)
    study_id = network.admin.submit(pinned, init)
    status = network.wait_done(study_id, timeout_s=120)
    assert status.state == "completed", status.message
    models = [init["w"]] + [network.admin.download(r.model_sha256)["w"] for r in status.rounds]
    changes = np.concatenate([b.astype(np.float64) - a for a, b in itertools.pairwise(models)])
    planned = (z * clip / m) ** 2
    dof = changes.size
    statistic = float(np.sum(changes**2)) / planned  # chi-square with dof degrees if right
    low, high = chi2_interval(dof, p=1e-6)
    assert low < statistic < high, (statistic / dof, "x the planned variance")
    assert abs(float(changes.mean())) < 6 * np.sqrt(planned / dof)
    last = status.rounds[-1].metrics
    assert last["client_noise_multiplier"] == pytest.approx(z)  # all four sites survived


def chi2_interval(dof: int, p: float) -> tuple[float, float]:
    """Two-sided interval of a chi-square(dof) variable, from the Wilson-Hilferty cube-root
    normal approximation (exact to a fraction of a percent at thousands of degrees)."""
    z = statistics.NormalDist().inv_cdf(1 - p)
    c = 2 / (9 * dof)
    return tuple(dof * (1 - c + s * z * np.sqrt(c)) ** 3 for s in (-1, 1))  # type: ignore[return-value]


def test_encrypted_evaluation_reaches_only_the_researcher(network: Network) -> None:
    """The researcher's CKKS public key goes with the study; every site encrypts
    [n, n x accuracy, ...]; the coordinator stores only the sum of ciphertexts, which the
    researcher's key turns into the same weighted means as a plaintext evaluation."""
    researcher = ckks.ResearcherKeys.generate()
    network.start_coordinator()
    network.start_nodes()
    pinned, init = prepare(small_study(rounds=2, name="ckks-eval", min_nodes=4))
    study_id = network.admin.submit(pinned, init, he_public_context=researcher.public_context())
    status = network.wait_done(study_id, timeout_s=120)
    assert status.state == "completed", status.message

    last = status.rounds[-1]
    assert all(not m.metrics for m in last.per_node)  # no plaintext metric left any hospital
    assert "accuracy" not in last.metrics
    sealed = last.encrypted_eval
    assert sealed.sites == len(HOSPITALS) and sealed.names[0] == "num_examples"
    stored_context = network.admin.download(status.spec.he_context_sha256)
    public = ckks.blob_bytes(stored_context, ckks.CONTEXT_TENSOR)
    ckks.check_public_context(public)  # the coordinator holds no secret key
    with pytest.raises(ckks.CkksError):
        ckks.ResearcherKeys.load(public)

    rows = decrypted_rounds(network.admin, study_id, researcher)
    assert [r[0] for r in rows] == [1, 2]
    decrypted = rows[-1][2]
    plain = simulate(pinned, heart_disease_centres(), init).evaluate()
    n = sum(r.num_examples for r in plain.values())
    assert decrypted["num_examples"] == n
    for metric in ("accuracy", "loss"):
        expected = sum(r.num_examples * r.metrics[metric] for r in plain.values()) / n
        assert decrypted[metric] == pytest.approx(expected, abs=1e-4)


def test_scaffold_control_variates_are_masked_with_the_update(network: Network) -> None:
    """SCAFFOLD's control-variate changes ride, unweighted, in the same masked vector as the
    weighted model change: the coordinator sees neither on its own, and the trajectory is the
    one the simulator computes in the clear."""
    network.start_coordinator()
    network.start_nodes()
    # clip 1000 (the default is 1e4): a finer fixed-point step for the small, unweighted
    # control changes; each site's 200-odd rows x its model change stays far inside it.
    pinned, init = prepare(_secure(strategy="scaffold", learning_rate=0.05, secagg_clip=1000.0))
    status = network.wait_done(network.admin.submit(pinned, init), timeout_s=180)
    assert status.state == "completed", status.message
    plain = simulate(pinned, heart_disease_centres(), init).model
    final = network.admin.download(status.model_sha256)
    for name in final:
        np.testing.assert_allclose(final[name], plain[name], atol=1e-5)
