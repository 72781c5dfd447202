"""A node that breaks the SecAgg+ protocol is refused by name; the honest ones still get their
exact sum, or the round aborts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from medfed.errors import SecAggError
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.secagg import wire
from medfed.secagg.graph import neighbours
from medfed.secagg.hazmat import keys
from medfed.secagg.messages import Advertisement, Reveal, RoundParams, ShareSet, _fields
from medfed.secagg.protocol import ClientRound, ServerRound

U32 = npt.NDArray[np.uint32]
NODES = tuple(f"n{i}" for i in range(7))
DIM = 33
Sealed = dict[str, dict[str, bytes]]


class FakeSigner:
    @property
    def certificate_pem(self) -> bytes:
        return b"not a certificate"

    def sign(self, data: bytes) -> bytes:
        return b"not a signature"


def accept_all(advertisement: Advertisement, params: RoundParams) -> None:
    return None


@dataclass
class Live:
    """One round driven stage by stage, honest unless a test changes a message on the way."""

    params: RoundParams
    clients: dict[str, ClientRound]
    server: ServerRound
    inputs: dict[str, U32]

    @property
    def graph(self) -> dict[str, tuple[str, ...]]:
        return neighbours(self.params.nodes, self.params.degree, self.params.graph_seed)

    def advertise(self) -> dict[str, Advertisement]:
        return {u: c.advertise() for u, c in self.clients.items()}

    def share(self, forwarded: Mapping[str, Mapping[str, Advertisement]]) -> Sealed:
        return {u: self.clients[u].share(ads) for u, ads in forwarded.items()}

    def mask(self, u2: tuple[str, ...], routed: Sealed, skip: frozenset[str] = frozenset()) -> None:
        for u in u2:
            if u not in skip:
                self.server.add_masked(u, self.clients[u].mask(u2, routed[u], self.inputs[u]))

    def reveal(self) -> dict[str, Reveal]:
        u3 = self.server.close_inputs()
        return {u: self.clients[u].reveal(u3) for u in u3}

    def expected(self, who: tuple[str, ...] | None = None) -> U32:
        total = np.zeros(DIM, np.uint32)
        for u in self.server.survivors if who is None else who:
            total += self.inputs[u]  # wraps mod 2^32
        return total


def live(degree: int = len(NODES) - 1, threshold: int = 4, round_no: int = 3) -> Live:
    params = RoundParams("study", round_no, NODES, threshold, degree, b"graph", 1.0, DIM)
    rng = np.random.default_rng(round_no)
    return Live(
        params,
        {u: ClientRound(params, u, FakeSigner(), accept_all) for u in NODES},
        ServerRound(params),
        {u: rng.integers(0, 2**32, DIM, dtype=np.uint32) for u in NODES},
    )


def finish(r: Live, forwarded: Mapping[str, Mapping[str, Advertisement]]) -> U32:
    """Stages 2 to 4, every node honest."""
    u2, routed = r.server.route_shares(r.share(forwarded))
    r.mask(u2, routed)
    return r.server.unmask(r.reveal())


def refused(r: Live) -> dict[str, str]:
    return dict(r.server.refusals)


# -- stage 1: keys --------------------------------------------------------------------------------


def test_keys_sent_in_another_nodes_name_are_refused() -> None:
    r = live()
    ads = r.advertise()
    ads["n1"] = ads["n2"]  # n1 answers the stage with n2's advertisement
    forwarded = r.server.forward_advertisements(ads)
    assert refused(r) == {"n1": "advertised keys in the name of 'n2'"}
    assert "n1" not in forwarded and all("n1" not in ads for ads in forwarded.values())
    np.testing.assert_array_equal(finish(r, forwarded), r.expected())
    assert "n1" not in r.server.survivors


def _low_order_point() -> bytes:
    return bytes(32)  # x = 0: every exchange with it gives the all-zero secret


@pytest.mark.parametrize("field", ["cipher_public", "mask_public"])
@pytest.mark.parametrize(
    "key", [b"\x09" * 31, b"\x09" * 33, _low_order_point()], ids=["short", "long", "low-order"]
)
def test_unusable_keys_are_refused_before_any_neighbour_sees_them(field: str, key: bytes) -> None:
    r = live()
    ads = r.advertise()
    ad = ads["n3"]
    bad = {"cipher_public": ad.cipher_public, "mask_public": ad.mask_public, field: key}
    ads["n3"] = Advertisement("n3", bad["cipher_public"], bad["mask_public"], b"", b"")
    forwarded = r.server.forward_advertisements(ads)
    assert list(refused(r)) == ["n3"]
    assert "unusable" in refused(r)["n3"]
    np.testing.assert_array_equal(finish(r, forwarded), r.expected())  # no neighbour failed


@pytest.mark.parametrize("field", ["certificate_pem", "signature"])
def test_a_bloated_advertisement_is_refused_before_it_is_forwarded(field: str) -> None:
    r = live()
    ads = r.advertise()
    ad, bloat = ads["n3"], b"x" * (1 << 20)
    ads["n3"] = Advertisement(
        "n3", ad.cipher_public, ad.mask_public,
        bloat if field == "signature" else ad.signature,
        bloat if field == "certificate_pem" else ad.certificate_pem,
    )  # fmt: skip
    forwarded = r.server.forward_advertisements(ads)
    assert list(refused(r)) == ["n3"] and "1048576" in refused(r)["n3"]
    assert all("n3" not in ads for ads in forwarded.values())


# -- stage 2: shares ------------------------------------------------------------------------------


def _bad_shares(kind: str, r: Live, sealed: dict[str, bytes]) -> tuple[dict[str, bytes], str]:
    """n1's shares, spoiled one way; and what its refusal must say."""
    some = sorted(sealed)[0]
    if kind == "missing":
        return {h: s for h, s in sealed.items() if h != some}, f"sent no share to {some!r}"
    if kind == "outsider":  # a node outside the round, or one whose keys n1 never saw
        return {**sealed, "stranger": sealed[some]}, "'stranger', whose keys it was not sent"
    if kind == "non-neighbour":
        other = next(u for u in NODES if u != "n1" and u not in r.graph["n1"])
        return {**sealed, other: sealed[some]}, f"{other!r}, whose keys it was not sent"
    size = len(sealed[some])
    blob = sealed[some][:-1] if kind == "short" else sealed[some] + b"\0" * 10_000
    return {**sealed, some: blob}, f"to {some!r} (a share seals to {size})"


@pytest.mark.parametrize("kind", ["missing", "outsider", "non-neighbour", "short", "oversized"])
def test_shares_that_do_not_match_the_keys_sent_are_refused(kind: str) -> None:
    r = live(degree=4, threshold=3)
    forwarded = r.server.forward_advertisements(r.advertise())
    shares = r.share(forwarded)
    shares["n1"], reason = _bad_shares(kind, r, shares["n1"])
    u2, routed = r.server.route_shares(shares)
    assert list(refused(r)) == ["n1"] and reason in refused(r)["n1"], refused(r)
    assert "n1" not in u2 and all("n1" not in held for held in routed.values())
    r.mask(u2, routed)  # a holder missing n1's share would refuse here (it did, before)
    np.testing.assert_array_equal(r.server.unmask(r.reveal()), r.expected())
    assert set(r.server.survivors) == set(NODES) - {"n1"}


def test_share_lists_with_a_name_twice_or_too_many_entries_are_refused_on_the_wire() -> None:
    twice = [pb.SealedShare(node="n2", sealed=b"a"), pb.SealedShare(node="n2", sealed=b"b")]
    with pytest.raises(SecAggError, match="two shares for one node"):
        wire.shares_from_pb(twice, 7)
    flood = [pb.SealedShare(node=f"x{i}", sealed=b"") for i in range(10_000)]
    with pytest.raises(SecAggError, match="10000 shares in a round of 7 nodes"):
        wire.shares_from_pb(flood, 7)
    again = pb.ShareOfSecret(owner="n2", index=1, share=bytes(17))
    with pytest.raises(SecAggError, match="two self-mask shares of one owner"):
        wire.reveal_from_pb("n1", pb.SecAggAnswer(self_mask_shares=[again, again]), 7)
    with pytest.raises(SecAggError, match="8 mask-key shares in a round of 7"):
        wire.reveal_from_pb("n1", pb.SecAggAnswer(key_seed_shares=[again] * 8), 7)


def _reseal(r: Live, owner: str, holder: str, plain: bytes) -> bytes:
    """What a dishonest ``owner`` seals for ``holder`` in place of its honest share."""
    own, theirs = r.clients[owner], r.clients[holder]
    key = keys.agree(
        own._cipher_key, keys.public_bytes(theirs._cipher_key), keys.SHARE_KEY_INFO,
        r.params.context,
    )  # fmt: skip
    return keys.seal(key, plain, _fields(r.params.context, owner.encode(), holder.encode()))


def _plain(owner: str, holder: str, index: bytes, share: bytes) -> bytes:
    return _fields(owner.encode(), holder.encode(), index, share, bytes(17))


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r, blob: bytes(len(blob)),  # right size, not a ciphertext
        lambda r, blob: _reseal(r, "n1", "n0", _plain("n1", "n0", b"\0\0\0\1", bytes(16))),
        lambda r, blob: _reseal(r, "n1", "n0", _plain("n1", "n0", b"\0\0\0\0", bytes(17))),
    ],
    ids=["garbage", "short-share", "index-0"],
)
def test_the_holder_of_a_share_it_cannot_use_names_its_owner(
    spoil: Callable[[Live, bytes], bytes],
) -> None:
    """The coordinator cannot open a share: its holder refuses the stage and names the owner."""
    r = live()
    forwarded = r.server.forward_advertisements(r.advertise())
    u2, routed = r.server.route_shares(r.share(forwarded))
    routed["n0"]["n1"] = spoil(r, routed["n0"]["n1"])
    with pytest.raises(SecAggError, match="refused the share from 'n1'"):
        r.clients["n0"].mask(u2, routed["n0"], r.inputs["n0"])


def test_a_share_sealed_for_another_round_does_not_open() -> None:
    r, other = live(round_no=3), live(round_no=4)
    stale = other.share(other.server.forward_advertisements(other.advertise()))["n1"]["n0"]
    forwarded = r.server.forward_advertisements(r.advertise())
    u2, routed = r.server.route_shares(r.share(forwarded))
    with pytest.raises(SecAggError, match="refused the share from 'n1'"):
        r.clients["n0"].mask(u2, {**routed["n0"], "n1": stale}, r.inputs["n0"])


# -- stage 4: reveals -----------------------------------------------------------------------------


Held = dict[str, dict[str, ShareSet]]


def _to_reveals(r: Live, drop: frozenset[str] = frozenset()) -> tuple[dict[str, Reveal], Held]:
    forwarded = r.server.forward_advertisements(r.advertise())
    u2, routed = r.server.route_shares(r.share(forwarded))
    r.mask(u2, routed, skip=drop)
    held = {u: dict(r.clients[u]._held) for u in NODES}  # what each node could reveal
    return r.reveal(), held


def test_a_reveal_of_both_shares_of_one_neighbour_is_refused() -> None:
    r = live()
    reveals, held = _to_reveals(r)
    both = {"n2": (held["n1"]["n2"].index, held["n1"]["n2"].key_seed)}
    reveals["n1"] = dataclasses.replace(reveals["n1"], key_seed_shares=both)
    total = r.server.unmask(reveals)
    assert refused(r) == {
        "n1": "revealed both the self-mask and the mask-key share of 'n2': that would unmask "
        "an individual input"
    }
    np.testing.assert_array_equal(total, r.expected())  # n1's input arrived; its reveal unused


def test_too_many_double_reveals_abort_the_round_and_name_each_node() -> None:
    r = live()
    reveals, held = _to_reveals(r)
    cheats = ["n1", "n2", "n3", "n4"]  # 3 honest reveals left, under the threshold 4
    for u in cheats:
        owner = r.graph[u][0]
        key = {owner: (held[u][owner].index, held[u][owner].key_seed)}
        reveals[u] = dataclasses.replace(reveals[u], key_seed_shares=key)
    with pytest.raises(SecAggError, match="only 3 nodes revealed their shares"):
        r.server.unmask(reveals)
    assert sorted(refused(r)) == cheats
    assert all("both the self-mask and the mask-key share" in why for why in refused(r).values())


def _spoil_reveal(kind: str, r: Live, reveals: dict[str, Reveal], held: Held) -> str:
    """Change n1's reveal one way; return what its refusal must say."""
    mine = reveals["n1"]
    if kind == "key-of-survivor":  # its input arrived: only its self mask may come back
        peer = r.graph["n1"][0]
        key = {**mine.key_seed_shares, peer: (held["n1"][peer].index, held["n1"][peer].key_seed)}
        self_ = {o: s for o, s in mine.self_mask_shares.items() if o != peer}
        reveals["n1"] = Reveal("n1", self_, key)
        return f"mask-key share of {peer!r}, whose input arrived"
    if kind == "self-of-dropped":  # it dropped: only its mask key may come back
        gone = _dropped(r)
        self_ = {**mine.self_mask_shares, gone: mine.key_seed_shares[gone]}
        key = {o: s for o, s in mine.key_seed_shares.items() if o != gone}
        reveals["n1"] = Reveal("n1", self_, key)
        return f"self-mask share of {gone!r}, whose input did not arrive"
    if kind == "other-name":
        reveals["n1"] = reveals["n2"]
        return "revealed shares in the name of 'n2'"
    stranger = next(u for u in NODES if u != "n1" and u not in r.graph["n1"])
    share = reveals[stranger].self_mask_shares[stranger]
    reveals["n1"] = dataclasses.replace(mine, self_mask_shares={
        **mine.self_mask_shares, stranger: share
    })  # fmt: skip
    return f"revealed shares of {stranger!r}, not its neighbours"


def _dropped(r: Live) -> str:
    """A neighbour of n1 that sends no masked input."""
    return r.graph["n1"][-1]


@pytest.mark.parametrize("kind", ["key-of-survivor", "self-of-dropped", "other-name", "stranger"])
def test_a_reveal_breaking_the_protocol_is_refused_whole(kind: str) -> None:
    r = live(degree=4, threshold=3)
    drop = frozenset({_dropped(r)}) if kind == "self-of-dropped" else frozenset()
    reveals, held = _to_reveals(r, drop)
    reason = _spoil_reveal(kind, r, reveals, held)
    total = r.server.unmask(reveals)
    assert list(refused(r)) == ["n1"] and reason in refused(r)["n1"], refused(r)
    np.testing.assert_array_equal(total, r.expected())


def test_a_revealed_share_with_a_wrong_index_or_size_is_set_aside_alone() -> None:
    r = live()
    reveals, _ = _to_reveals(r)
    mine = dict(reveals["n1"].self_mask_shares)
    index, share = mine["n2"]
    mine["n2"] = (index + 1, share)  # as if n2 had sealed n1 the wrong index
    mine["n3"] = (mine["n3"][0], mine["n3"][1] + b"\0")
    reveals["n1"] = dataclasses.replace(reveals["n1"], self_mask_shares=mine)
    total = r.server.unmask(reveals)
    assert [n for n, _ in r.server.refusals] == ["n1", "n1"]
    assert (
        f"self-mask share of 'n2' with index {index + 1}, expected {index}"
        in (r.server.refusals[0][1])
    )
    assert "self-mask share of 'n3' with 18 bytes, expected 17" in r.server.refusals[1][1]
    np.testing.assert_array_equal(total, r.expected())  # n1's other shares were used


def test_a_wrong_self_mask_share_aborts_the_round_instead_of_a_wrong_sum() -> None:
    """Nothing public checks a rebuilt self-mask seed; the 7 shares of each (threshold 4) must
    agree, so one altered share aborts the round (before, the sum came out wrong)."""
    r = live()
    reveals, _ = _to_reveals(r)
    mine = dict(reveals["n1"].self_mask_shares)
    index, share = mine["n0"]
    mine["n0"] = (index, (int.from_bytes(share, "big") + 1).to_bytes(17, "big"))
    reveals["n1"] = dataclasses.replace(reveals["n1"], self_mask_shares=mine)
    with pytest.raises(SecAggError, match="the shares of 'n0' revealed by its neighbours disagree"):
        r.server.unmask(reveals)


def test_a_share_owned_by_a_node_outside_the_round_is_refused() -> None:
    r = live()
    ads = r.advertise()
    forwarded = r.server.forward_advertisements({**ads, "stranger": ads["n1"]})
    shares = r.share(forwarded)
    u2, _ = r.server.route_shares({**shares, "stranger": shares["n1"]})
    assert "stranger" not in forwarded and "stranger" not in u2
    assert r.server.refusals == [("stranger", "is not part of this secure-aggregation round")] * 2
