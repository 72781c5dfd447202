"""SecAgg+ (Bell et al., CCS 2020) over the double masking of Bonawitz et al. (CCS 2017).

What the round engine and the node call. One :class:`ClientRound` per node and round, one
:class:`ServerRound` at the coordinator, driven stage by stage:

    node                                   coordinator
    advertise() -> Advertisement  ------>  forward_advertisements(ads) -> per node, its neighbours'
    share(ads) -> sealed shares   ------>  route_shares(shares) -> U2, per node its sealed shares
    mask(U2, sealed, x) -> y      ------>  add_masked(node, y)       (running sum, O(d) memory)
    reveal(U3) -> Reveal          ------>  unmask(reveals) -> sum of the survivors' x, exactly

y = x + PRG(b_u) + sum_{v in N(u) & U2} +-PRG(s_uv) (mod 2^32): the pairwise masks cancel in the
sum; the self mask b_u is removed by reconstructing b_u from t shares of the survivors; for a node
that dropped after sharing, its mask-key seed is reconstructed instead and its pairwise masks with
the survivors removed. A survivor reveals, per neighbour, one of the two shares, never both, so
the coordinator never learns both b_v and s_v of one node -- a late input stays masked.

Unlike the public implementations, advertisements are signed with the node's certificate key and
checked against the consortium CA by every receiving node: a coordinator that swaps a key is
caught and the round aborts. The coordinator is otherwise trusted to send every node the same
survivor sets (the semi-honest model of the paper; its consistency-check round is not run).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from medfed.errors import SecAggError
from medfed.secagg import screening
from medfed.secagg.graph import neighbours
from medfed.secagg.hazmat import keys, prg, shamir
from medfed.secagg.messages import (
    Advertisement,
    MaskedInput,
    Reveal,
    RoundParams,
    ShareSet,
    _fields,
)

U32 = npt.NDArray[np.uint32]


class Signer(Protocol):
    @property
    def certificate_pem(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    def __call__(self, advertisement: Advertisement, params: RoundParams) -> None:
        """Raise SecAggError unless the advertisement is signed by the certificate of the node it
        names, and that certificate is the consortium's."""
        ...


def _pair_seed(own: X25519PrivateKey, peer_public: bytes, params: RoundParams) -> bytes:
    return keys.agree(own, peer_public, keys.MASK_INFO, params.context)


def _self_seed(seed: bytes, params: RoundParams) -> bytes:
    return keys.derive(seed, keys.SELF_MASK_INFO, params.context)


def _share_aad(params: RoundParams, owner: str, holder: str) -> bytes:
    return _fields(params.context, owner.encode(), holder.encode())


class ClientRound:
    """One node's side of one round; every stage may be called once, in order."""

    def __init__(self, params: RoundParams, me: str, signer: Signer, verifier: Verifier) -> None:
        if me not in params.nodes:
            raise SecAggError(f"node {me!r} is not part of this secure-aggregation round")
        self.params, self.me = params, me
        self._signer, self._verify = signer, verifier
        self._neighbours = frozenset(neighbours(params.nodes, params.degree, params.graph_seed)[me])
        self._cipher_key = X25519PrivateKey.generate()
        self._key_seed = os.urandom(shamir.SECRET_BYTES)
        self._mask_key = keys.private_key_from_seed(self._key_seed, params.context)
        self._self_seed = os.urandom(shamir.SECRET_BYTES)
        self._ads: dict[str, Advertisement] = {}
        self._held: dict[str, ShareSet] = {}
        self._u2: frozenset[str] = frozenset()
        self._stage = 0

    def _enter(self, stage: int) -> None:
        if self._stage != stage - 1:
            raise SecAggError(f"secure-aggregation stage {stage} asked out of order")
        self._stage = stage

    def advertise(self) -> Advertisement:
        self._enter(1)
        unsigned = Advertisement(
            node=self.me,
            cipher_public=keys.public_bytes(self._cipher_key),
            mask_public=keys.public_bytes(self._mask_key),
            signature=b"",
            certificate_pem=self._signer.certificate_pem,
        )
        signature = self._signer.sign(unsigned.signed_bytes(self.params))
        return dataclasses.replace(unsigned, signature=signature)

    def share(self, ads: Mapping[str, Advertisement]) -> dict[str, bytes]:
        """Verify the neighbours' advertisements, then Shamir-share both seeds among them."""
        self._enter(2)
        for name, ad in ads.items():
            if name not in self._neighbours or ad.node != name:
                raise SecAggError(f"the coordinator sent an advertisement for {name!r}")
            self._verify(ad, self.params)
        self._ads = dict(ads)
        holders = sorted([*ads, self.me])
        t = self.params.threshold
        if len(holders) < t:
            raise SecAggError(f"only {len(holders)} of threshold {t} nodes left to share with")
        b_shares = shamir.split(self._self_seed, t, len(holders))
        s_shares = shamir.split(self._key_seed, t, len(holders))
        sealed: dict[str, bytes] = {}
        for holder, (i, b), (_, s) in zip(holders, b_shares, s_shares, strict=True):
            shares = ShareSet(self.me, i, b, s)
            if holder == self.me:
                self._held[self.me] = shares
                continue
            key = keys.agree(
                self._cipher_key, ads[holder].cipher_public, keys.SHARE_KEY_INFO,
                self.params.context,
            )  # fmt: skip
            aad = _share_aad(self.params, self.me, holder)
            sealed[holder] = keys.seal(key, shares.encode(holder), aad)
        return sealed

    def mask(
        self, survivors: Sequence[str], sealed: Mapping[str, bytes], encoded: U32
    ) -> MaskedInput:
        """Store the shares sent to us, then mask ``encoded`` with b_u and the pairwise masks."""
        self._enter(3)
        u2 = frozenset(survivors)
        if self.me not in u2:
            raise SecAggError("the coordinator left this node out of the round's survivors")
        peers = u2 & self._neighbours
        if not peers <= self._ads.keys() or set(sealed) != peers:
            raise SecAggError("the shares sent do not match the round's survivors")
        for owner in sorted(peers):
            key = keys.agree(
                self._cipher_key, self._ads[owner].cipher_public, keys.SHARE_KEY_INFO,
                self.params.context,
            )  # fmt: skip
            try:
                aad = _share_aad(self.params, owner, self.me)
                plain = keys.open_sealed(key, sealed[owner], aad)
                self._held[owner] = ShareSet.decode(plain, owner, self.me)
            except SecAggError as exc:  # the refusal names the owner: the coordinator records it
                raise SecAggError(f"refused the share from {owner!r}: {exc}") from None
        if len(peers) + 1 < self.params.threshold:
            raise SecAggError("fewer than the threshold of neighbours shared their keys")
        out = np.array(encoded, dtype=np.uint32)  # our own copy, masked in place
        if out.shape != (self.params.dimension,):
            raise SecAggError(
                f"the encoded update has {out.size} words, the round {self.params.dimension}"
            )
        self._u2 = u2
        prg.add_into(_self_seed(self._self_seed, self.params), out)
        for peer in sorted(peers):
            seed = _pair_seed(self._mask_key, self._ads[peer].mask_public, self.params)
            prg.add_into(seed, out, subtract=self.me > peer)  # wraps mod 2^32
        return out

    def reveal(self, survivors: Sequence[str]) -> Reveal:
        """Per owner, the share of b (its input arrived) or of s (it dropped): never both."""
        self._enter(4)
        u3 = frozenset(survivors)
        if not u3 <= self._u2 or self.me not in u3:
            raise SecAggError("the round's final survivors are not a subset of those who shared")
        if len(u3) < self.params.threshold:
            raise SecAggError(
                f"only {len(u3)} inputs arrived, under the threshold {self.params.threshold}"
            )
        b = {o: (s.index, s.self_mask) for o, s in self._held.items() if o in u3}
        s = {o: (s.index, s.key_seed) for o, s in self._held.items() if o not in u3}
        self._held.clear()
        return Reveal(self.me, b, s)


@dataclass
class ServerRound:
    """The coordinator's side: routes messages, sums masked inputs, removes the masks.

    Every node's message is screened on its own (:mod:`medfed.secagg.screening`): a node that
    sends something malformed, or something the protocol forbids, is refused and left out of
    the rest of the round, and :attr:`refusals` says who and why; the others go on."""

    params: RoundParams
    refusals: list[tuple[str, str]] = field(default_factory=list, init=False)
    """(node, reason) for each message refused, in the order refused."""
    _graph: dict[str, tuple[str, ...]] = field(init=False)
    _ads: dict[str, Advertisement] = field(default_factory=dict, init=False)
    _sent_keys: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False)
    """Per node, the neighbours whose keys it was forwarded (the holders of its shares)."""
    _u2: tuple[str, ...] = field(default=(), init=False)
    _sum: U32 | None = field(default=None, init=False)
    _u3: list[str] = field(default_factory=list, init=False)
    _inputs_closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        p = self.params
        self._graph = neighbours(p.nodes, p.degree, p.graph_seed)

    def _require(self, count: int, what: str) -> None:
        if count < self.params.threshold:
            raise SecAggError(
                f"only {count} nodes {what}, under the threshold {self.params.threshold}: "
                "the round is aborted"
            )

    def refuse(self, node: str, reason: str) -> None:
        """Put a refusal on record (the round engine also calls this for an answer it could
        not decode)."""
        self.refusals.append((node, reason))

    def _screened(self, node: str, check: Callable[[], None]) -> bool:
        if node not in self._graph:
            self.refuse(node, "is not part of this secure-aggregation round")
            return False
        try:
            check()
        except SecAggError as exc:
            self.refuse(node, str(exc))
            return False
        return True

    def forward_advertisements(
        self, ads: Mapping[str, Advertisement]
    ) -> dict[str, dict[str, Advertisement]]:
        self._ads = {
            n: a
            for n, a in sorted(ads.items())
            if self._screened(n, partial(screening.check_advertisement, n, a))
        }
        self._require(len(self._ads), "advertised keys")
        self._sent_keys = {u: tuple(v for v in self._graph[u] if v in self._ads) for u in self._ads}
        return {u: {v: self._ads[v] for v in vs} for u, vs in self._sent_keys.items()}

    def route_shares(
        self, shares: Mapping[str, Mapping[str, bytes]]
    ) -> tuple[tuple[str, ...], dict[str, dict[str, bytes]]]:
        """U2 (who shared) and, per member of U2, the sealed shares addressed to it."""

        def check(owner: str) -> None:
            if owner not in self._ads:
                raise SecAggError("sent shares but its keys were not forwarded")
            screening.check_shares(owner, shares[owner], self._sent_keys[owner])

        u2 = tuple(o for o in sorted(shares) if self._screened(o, partial(check, o)))
        self._require(len(u2), "shared their keys")
        members = set(u2)
        routed: dict[str, dict[str, bytes]] = {u: {} for u in u2}
        for owner in u2:
            for holder, sealed in shares[owner].items():
                if holder in members:
                    routed[holder][owner] = sealed
        self._u2 = u2
        return u2, routed

    def add_masked(self, node: str, masked: MaskedInput) -> None:
        if self._inputs_closed:
            raise SecAggError(f"the masked input of {node!r} came after the survivors were fixed")
        if node not in self._u2 or node in self._u3:
            raise SecAggError(f"no masked input expected from {node!r}")
        y = np.asarray(masked)
        if y.dtype != np.uint32 or y.shape != (self.params.dimension,):
            raise SecAggError(f"the masked input of {node!r} has the wrong dtype or length")
        if self._sum is None:
            self._sum = y.copy()
        else:
            np.add(self._sum, y, out=self._sum)
        self._u3.append(node)

    @property
    def survivors(self) -> tuple[str, ...]:
        """U3: the nodes whose masked input arrived (in name order)."""
        return tuple(sorted(self._u3))

    def close_inputs(self) -> tuple[str, ...]:
        """Fix U3 before asking for reveals: a late input is refused from now on (its owner's
        mask-key seed is about to be revealed, so it must never enter the sum)."""
        self._inputs_closed = True
        return self.survivors

    def unmask(self, reveals: Mapping[str, Reveal]) -> U32:
        """The exact modular sum of the survivors' encoded inputs."""
        u3 = set(self._u3)
        self._require(len(u3), "sent a masked input")
        if self._sum is None:
            raise SecAggError("no masked input arrived")
        responders = self._screen_reveals(reveals)
        self._require(len(responders), "revealed their shares")
        total = self._sum.copy()
        for owner in sorted(u3):
            seed = self._recover(owner, [r.self_mask_shares for r in responders.values()])
            prg.add_into(_self_seed(seed, self.params), total, subtract=True)
        for gone in sorted(set(self._u2) - u3):
            seed = self._recover(gone, [r.key_seed_shares for r in responders.values()])
            key = keys.private_key_from_seed(seed, self.params.context)
            if keys.public_bytes(key) != self._ads[gone].mask_public:
                raise SecAggError(f"the shares of {gone!r} do not rebuild its advertised key")
            for peer in self._graph[gone]:
                if peer in u3:
                    seed = _pair_seed(key, self._ads[peer].mask_public, self.params)
                    prg.add_into(seed, total, subtract=peer < gone)
        return total

    def _screen_reveals(self, reveals: Mapping[str, Reveal]) -> dict[str, Reveal]:
        """The reveals of survivors that keep to the protocol, each cut to its usable shares:
        a reveal that breaks a rule is refused whole; a share with the wrong index or size (its
        owner may have sealed it so) is set aside alone."""
        u3 = set(self._u3)
        dropped = set(self._u2) - u3

        def check(node: str, reveal: Reveal) -> None:
            if node not in u3:
                raise SecAggError("revealed shares, but its masked input did not arrive")
            screening.check_reveal(node, reveal, self._graph[node], u3, dropped)

        kept: dict[str, Reveal] = {}
        for node, reveal in sorted(reveals.items()):
            if self._screened(node, partial(check, node, reveal)):
                kept[node] = Reveal(
                    node,
                    self._usable(node, "self-mask", reveal.self_mask_shares),
                    self._usable(node, "mask-key", reveal.key_seed_shares),
                )
        return kept

    def _usable(
        self, node: str, what: str, held: Mapping[str, tuple[int, bytes]]
    ) -> dict[str, tuple[int, bytes]]:
        usable = {}
        for owner, (index, share) in sorted(held.items()):
            expected = screening.holder_index(owner, self._sent_keys.get(owner, ()), node)
            problem = screening.share_problem(index, share, expected)
            if problem is None:
                usable[owner] = (index, share)
            else:
                self.refuse(node, f"revealed a {what} share of {owner!r} with {problem}: unused")
        return usable

    def _recover(self, owner: str, held: Sequence[Mapping[str, tuple[int, bytes]]]) -> bytes:
        """``owner``'s secret from the revealed shares. A self-mask seed has nothing public to
        check it against: a wrong share would silently give a wrong sum, so when more shares
        than the threshold came back, they must all agree, or the round aborts."""
        shares = [h[owner] for h in held if owner in h]
        t = self.params.threshold
        if len(shares) < t:
            raise SecAggError(
                f"only {len(shares)} shares of {owner!r} came back, under the threshold "
                f"{t}: the round is aborted"
            )
        if not shamir.consistent(shares, t):
            raise SecAggError(
                f"the shares of {owner!r} revealed by its neighbours disagree (one of them "
                "revealed a wrong share): the round is aborted"
            )
        return shamir.combine(shares, t)
