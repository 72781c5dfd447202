"""The protocol's messages to and from their protobuf form (medfed.v1 SecAgg* messages)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medfed.errors import SecAggError
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.secagg.messages import Advertisement, Reveal, RoundParams


def params_to_pb(p: RoundParams) -> pb.SecAggParams:
    return pb.SecAggParams(
        nodes=list(p.nodes), threshold=p.threshold, degree=p.degree, graph_seed=p.graph_seed,
        clip=p.clip, dimension=p.dimension, purpose=p.purpose,
    )  # fmt: skip


def params_from_pb(m: pb.SecAggParams, study_id: str, round_no: int) -> RoundParams:
    return RoundParams(
        study_id=study_id, round=round_no, nodes=tuple(m.nodes), threshold=m.threshold,
        degree=m.degree, graph_seed=m.graph_seed, clip=m.clip, dimension=m.dimension,
        purpose=m.purpose,
    )  # fmt: skip


def ad_to_pb(a: Advertisement) -> pb.SecAggAdvertisement:
    return pb.SecAggAdvertisement(
        node=a.node, cipher_public=a.cipher_public, mask_public=a.mask_public,
        signature=a.signature, certificate_pem=a.certificate_pem,
    )  # fmt: skip


def ad_from_pb(m: pb.SecAggAdvertisement) -> Advertisement:
    return Advertisement(m.node, m.cipher_public, m.mask_public, m.signature, m.certificate_pem)


def shares_to_pb(sealed: Mapping[str, bytes]) -> list[pb.SealedShare]:
    return [pb.SealedShare(node=n, sealed=s) for n, s in sorted(sealed.items())]


def shares_from_pb(shares: Sequence[pb.SealedShare], most: int) -> dict[str, bytes]:
    """Sealed shares by node; refused when more than ``most`` (one per node of the round) or
    when one node is named twice (a dict would keep one silently)."""
    if len(shares) > most:
        raise SecAggError(f"sent {len(shares)} shares in a round of {most} nodes")
    out = {s.node: s.sealed for s in shares}
    if len(out) != len(shares):
        raise SecAggError("sent two shares for one node")
    return out


def reveal_to_pb(r: Reveal, task_id: str) -> pb.SecAggAnswer:
    def one(held: Mapping[str, tuple[int, bytes]]) -> list[pb.ShareOfSecret]:
        return [pb.ShareOfSecret(owner=o, index=i, share=s) for o, (i, s) in sorted(held.items())]

    return pb.SecAggAnswer(
        task_id=task_id,
        self_mask_shares=one(r.self_mask_shares),
        key_seed_shares=one(r.key_seed_shares),
    )


def reveal_from_pb(node: str, m: pb.SecAggAnswer, most: int) -> Reveal:
    """``node``'s reveal (the name comes from its certificate, never from the message); refused
    when it holds more than ``most`` shares of a kind, or two of one owner."""

    def one(held: Sequence[pb.ShareOfSecret], what: str) -> dict[str, tuple[int, bytes]]:
        if len(held) > most:
            raise SecAggError(f"revealed {len(held)} {what} shares in a round of {most} nodes")
        out = {s.owner: (s.index, s.share) for s in held}
        if len(out) != len(held):
            raise SecAggError(f"revealed two {what} shares of one owner")
        return out

    return Reveal(node, one(m.self_mask_shares, "self-mask"), one(m.key_seed_shares, "mask-key"))
