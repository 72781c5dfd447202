"""SecAgg+ under attack over real mTLS: one hospital breaks the protocol, live.

Each study ends with the model the simulator computes in the clear from the honest survivors
(an attacker refused at stage 1 or 2 is not in the sum; one refused at stage 4 sent its input
before it cheated), or a round aborts with nothing committed; either way the study's record
names the attacker.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import grpc
import numpy as np
import pytest

from medfed.cli.study import prepare
from medfed.coordinator.rounds import OpenRound, TaskBoard
from medfed.coordinator.spec import StudySpec
from medfed.data.heart_disease import heart_disease_centres
from medfed.node.client import CoordinatorClient
from medfed.node.secure import SecureAggregationClient
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.protocol.v1 import medfed_pb2_grpc as rpc
from medfed.secagg.messages import Reveal
from medfed.secagg.protocol import ClientRound
from medfed.simulation.runner import simulate
from medfed.transport.grpc_factory import MAX_MESSAGE_BYTES
from tests.e2e.harness import HOSPITALS, Network, small_study

ATTACKER = "hungary"


def _secure(rounds: int, **changes: object) -> StudySpec:
    spec = small_study(
        rounds=rounds, name="attacked", secure_aggregation=True, eval_every=0,
        secagg_stage_deadline_s=20.0,
    )  # fmt: skip
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def _check_model(
    network: Network,
    status: pb.StudyStatus,
    study: tuple[StudySpec, tensors.Weights],
    sites: set[str],
) -> None:
    """The committed model is the one the simulator trains on ``sites`` alone, in the clear."""
    centres = {k: v for k, v in heart_disease_centres().items() if k in sites}
    expected = simulate(study[0], centres, study[1]).model
    for name, array in network.admin.download(status.model_sha256).items():
        np.testing.assert_allclose(
            array.astype(np.float64), expected[name].astype(np.float64), atol=1e-5
        )


@contextmanager
def _raw_stub(network: Network, name: str) -> Iterator[rpc.NodeServiceStub]:
    """NodeService with ``name``'s own certificate and none of the client's message caps."""
    certs = network.consortium.node_certs(name)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.crt").read_bytes(),
        private_key=(certs / f"{name}.key").read_bytes(),
        certificate_chain=(certs / f"{name}.crt").read_bytes(),
    )
    channel = grpc.secure_channel(
        network.consortium.address,
        credentials,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    try:
        yield rpc.NodeServiceStub(channel)
    finally:
        channel.close()


@pytest.fixture
def stage_tasks(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, int], str]:
    """(node, stage) -> the id of the secure-aggregation task last sent to that node."""
    seen: dict[tuple[str, int], str] = {}
    real_open = TaskBoard.open

    def spy(self: TaskBoard, round_: OpenRound) -> None:
        for task_id, slot in round_.slots.items():
            if round_.kind == pb.TASK_KIND_SECAGG:
                seen[slot.node, slot.task.secagg.stage] = task_id
        real_open(self, round_)

    monkeypatch.setattr(TaskBoard, "open", spy)
    return seen


def test_answers_for_another_node_or_from_outside_the_study_are_refused_by_name(
    network: Network, monkeypatch: pytest.MonkeyPatch, stage_tasks: dict[tuple[str, int], str]
) -> None:
    """Hungary answers Cleveland's task with its own certificate, and advertises its keys in
    Cleveland's name; Switzerland, not in the study, answers a task of it. Hungary is left out
    of the round; Cleveland and VA Long Beach are summed."""
    in_study = ("cleveland", ATTACKER, "va_long_beach")
    forged: list[pb.SubmitReply] = []
    real_answer = SecureAggregationClient.answer

    def attack(self: SecureAggregationClient, task: pb.Task) -> pb.SecAggAnswer:
        answer = real_answer(self, task)
        if self.me != ATTACKER or task.secagg.stage != 1 or task.secagg.params.purpose:
            return answer
        victim = stage_tasks["cleveland", 1]
        for sender in (ATTACKER, "switzerland"):
            with _raw_stub(network, sender) as stub:
                forged.append(stub.SubmitSecAgg(
                    pb.SecAggAnswer(task_id=victim, advertisement=answer.advertisement), timeout=10
                ))  # fmt: skip
        answer.advertisement.node = "cleveland"
        return answer

    monkeypatch.setattr(SecureAggregationClient, "answer", attack)
    network.start_coordinator()
    network.start_nodes()
    pinned, init = prepare(_secure(rounds=1, nodes=in_study, min_nodes=2))
    study_id = network.admin.submit(pinned, init)
    status = network.wait_done(study_id, timeout_s=180)
    assert status.state == "completed", status.message

    assert [r.accepted for r in status.rounds] == [2]
    assert [(f.accepted, f.reason.split(" was ")[-1]) for f in forged] == [
        (False, "not issued to 'hungary'"),
        (False, "not issued to 'switzerland'"),
    ]
    reasons = network.rejections(study_id)
    assert "hungary: advertised keys in the name of 'cleveland'" in reasons, reasons
    _check_model(network, status, (pinned, init), {"cleveland", "va_long_beach"})


def _spoiled_shares(attempt: int, answer: pb.SecAggAnswer) -> None:
    """Hungary's stage-2 answer, spoiled a different way at each attempt of a round."""
    shares = answer.shares
    if attempt == 0:  # a share for a node outside the round
        shares.add(node="stranger", sealed=shares[0].sealed)
    elif attempt == 1:  # right sizes, garbage inside: only the holders can tell
        for share in shares:
            share.sealed = bytes(len(share.sealed))
    elif attempt == 2:
        shares[0].sealed += b"\0" * 100_000
    else:  # an absurd count, under the message cap
        shares.extend(pb.SealedShare(node=f"n{i}", sealed=b"x" * 32) for i in range(5_000))


def test_malformed_and_oversized_shares_leave_the_sender_out_or_abort_the_round(
    network: Network, monkeypatch: pytest.MonkeyPatch, stage_tasks: dict[tuple[str, int], str]
) -> None:
    """Every training round, Hungary sends spoiled shares: first an answer over the message
    cap, then shares to a stranger (round 1), garbage ciphertexts that its neighbours cannot
    open (round 2 aborts, nothing committed), an oversized share (round 2 again), 5000 shares
    (round 3). The three others are summed in every committed round."""
    attempts: list[int] = []
    too_big: list[grpc.StatusCode] = []
    real_answer = SecureAggregationClient.answer

    def attack(self: SecureAggregationClient, task: pb.Task) -> pb.SecAggAnswer:
        answer = real_answer(self, task)
        if self.me != ATTACKER or task.secagg.stage != 2 or task.secagg.params.purpose:
            return answer
        if not attempts:
            with _raw_stub(network, ATTACKER) as stub:
                huge = pb.SealedShare(node="cleveland", sealed=bytes(MAX_MESSAGE_BYTES + 1))
                with pytest.raises(grpc.RpcError) as info:
                    stub.SubmitSecAgg(pb.SecAggAnswer(task_id=task.task_id, shares=[huge]))
                too_big.append(info.value.code())
        _spoiled_shares(len(attempts), answer)
        attempts.append(task.round)
        return answer

    monkeypatch.setattr(SecureAggregationClient, "answer", attack)
    network.start_coordinator()
    network.start_nodes()
    pinned, init = prepare(_secure(rounds=3, min_nodes=3))
    study_id = network.admin.submit(pinned, init)
    status = network.wait_done(study_id, timeout_s=240)
    assert status.state == "completed", status.message

    assert attempts == [1, 2, 2, 3]
    assert too_big == [grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert [r.accepted for r in status.rounds] == [3, 3, 3]
    assert all(r.rejected == 1 for r in status.rounds)
    reasons = network.rejections(study_id)
    expected = [
        "hungary: sent shares to 'stranger', whose keys it was not sent",
        "refused the share from 'hungary'",  # each honest holder, in the aborted attempt
        "hungary: sent a share of 100",
        "hungary: sent 5003 shares in a round of 4 nodes",
    ]
    for part in expected:
        assert any(part in r for r in reasons), (part, reasons)
    aborted = [r for r in reasons if "refused the share from 'hungary'" in r]
    assert sorted(r.split(":")[0] for r in aborted) == sorted(set(HOSPITALS) - {ATTACKER})
    _check_model(network, status, (pinned, init), set(HOSPITALS) - {ATTACKER})


def test_a_double_reveal_is_refused_and_a_flood_of_answers_changes_nothing(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hungary reveals both shares of a neighbour (its input arrived: it stays in the sum, its
    reveal is refused); Switzerland answers every stage once more with fresh keys and then 20
    times again. The sum of all four is exact."""
    real_reveal = ClientRound.reveal

    def both(self: ClientRound, survivors: Sequence[str]) -> Reveal:
        held = dict(self._held)
        reveal = real_reveal(self, survivors)
        if self.me != ATTACKER or self.params.purpose:
            return reveal
        owner = next(o for o in sorted(reveal.self_mask_shares) if o != ATTACKER)
        keys = {**reveal.key_seed_shares, owner: (held[owner].index, held[owner].key_seed)}
        return dataclasses.replace(reveal, key_seed_shares=keys)

    flood: list[pb.SubmitReply] = []
    real_submit = CoordinatorClient.submit_secagg

    def repeat(
        self: CoordinatorClient, answer: pb.SecAggAnswer, timeout_s: float = 60.0
    ) -> pb.SubmitReply:
        reply = real_submit(self, answer, timeout_s)
        if self is network.agents["switzerland"][0]._client:
            other = pb.SecAggAnswer()
            other.CopyFrom(answer)
            other.advertisement.cipher_public = bytes(32)
            for again in [other] + [answer] * 20:
                flood.append(real_submit(self, again, timeout_s))
        return reply

    monkeypatch.setattr(ClientRound, "reveal", both)
    monkeypatch.setattr(CoordinatorClient, "submit_secagg", repeat)
    network.start_coordinator()
    network.start_nodes()
    pinned, init = prepare(_secure(rounds=2, min_nodes=4))
    study_id = network.admin.submit(pinned, init)
    status = network.wait_done(study_id, timeout_s=180)
    assert status.state == "completed", status.message

    assert [r.accepted for r in status.rounds] == [4, 4]
    stages = 3 * (2 + 1)  # stages 1, 2 and 4 of each training round and of the last evaluation
    # Switzerland's last flood runs on its agent's thread after its real answer closed the study
    deadline = time.monotonic() + 60
    while len(flood) < 21 * stages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(flood) == 21 * stages
    assert not any(f.accepted for f in flood)
    # refused as a second answer; or, once the stage had every answer, as too late
    assert all(("duplicate submission" in f.reason) != ("no open stage" in f.reason) for f in flood)
    double = [r for r in network.rejections(study_id) if "both the self-mask" in r]
    assert [r.split(":")[0] for r in double] == [ATTACKER, ATTACKER], double
    _check_model(network, status, (pinned, init), set(HOSPITALS))
