"""What the coordinator checks in one node's secure-aggregation message before it uses it.

Each check raises :class:`SecAggError` with a reason that says what the node did; the
:class:`~medfed.secagg.protocol.ServerRound` then refuses that node alone (and names it), so one
misbehaving hospital never makes honest ones fail:

* stage 1: keys in the node's own name, 32 bytes, usable (a low-order point would make every
  neighbour's key agreement fail, knocking honest nodes out of the round), with a certificate
  and signature of sane size;
* stage 2: exactly one sealed share per neighbour whose keys it was sent, each of the one size a
  well-formed share seals to (a missing share would make its holder refuse to mask; extra ones,
  to nodes outside its neighbourhood or outside the round, have no holder);
* stage 4: per owner one share, of the secret its fate calls for: the self-mask share of a
  neighbour whose input arrived, the mask-key share of one that dropped, never both (Bonawitz et
  al. 2017, section 4: both shares of one node would let the coordinator unmask its input).

A share whose contents only the holder can open (right size, wrong ciphertext) is caught by the
holder, which refuses the stage naming the owner (:meth:`ClientRound.mask`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from medfed.errors import SecAggError
from medfed.secagg.hazmat import keys
from medfed.secagg.hazmat.shamir import SHARE_BYTES
from medfed.secagg.messages import Advertisement, Reveal, ShareSet


def _names(nodes: Collection[str], most: int = 3) -> str:
    """A few names for a reason (a flood of bogus names must not flood the record)."""
    shown = sorted(nodes)[:most]
    more = f" and {len(nodes) - most} more" if len(nodes) > most else ""
    return ", ".join(repr(n[:64]) for n in shown) + more


MAX_CERTIFICATE_BYTES = 16 * 1024
"""A node's certificate is about 1 KiB. The coordinator sends each advertisement to every
neighbour inside one task: a bloated one must not push their tasks past the message cap."""
MAX_SIGNATURE_BYTES = 512
"""An ECDSA signature in DER is at most about 140 bytes (P-521)."""


def check_advertisement(node: str, ad: Advertisement) -> None:
    if ad.node != node:
        raise SecAggError(f"advertised keys in the name of {ad.node[:64]!r}" if ad.node else
                          "answered the advertise stage without keys")  # fmt: skip
    if len(ad.certificate_pem) > MAX_CERTIFICATE_BYTES or len(ad.signature) > MAX_SIGNATURE_BYTES:
        raise SecAggError(
            f"advertised a certificate of {len(ad.certificate_pem)} bytes and a signature of "
            f"{len(ad.signature)} (at most {MAX_CERTIFICATE_BYTES} and {MAX_SIGNATURE_BYTES})"
        )
    for what, key in (("encryption", ad.cipher_public), ("masking", ad.mask_public)):
        try:
            keys.check_public(key)
        except SecAggError as exc:
            raise SecAggError(f"advertised an unusable {what} key ({exc})") from None


def check_shares(owner: str, sealed: Mapping[str, bytes], holders: Collection[str]) -> None:
    """``holders``: the neighbours whose keys ``owner`` was sent (it must share with each)."""
    extra, missing = set(sealed) - set(holders), set(holders) - set(sealed)
    if extra:
        raise SecAggError(f"sent shares to {_names(extra)}, whose keys it was not sent")
    if missing:
        raise SecAggError(f"sent no share to {_names(missing)}")
    for holder, blob in sorted(sealed.items()):
        size = keys.sealed_size(ShareSet.encoded_size(owner, holder))
        if len(blob) != size:
            raise SecAggError(
                f"sent a share of {len(blob)} bytes to {holder!r} (a share seals to {size})"
            )


def check_reveal(
    node: str,
    reveal: Reveal,
    neighbours: Collection[str],
    arrived: Collection[str],
    dropped: Collection[str],
) -> None:
    """``arrived``: U3 (whose self masks are removed); ``dropped``: U2 - U3 (whose mask keys
    are rebuilt). A node holds shares of itself and of its neighbours only."""
    if reveal.node != node:
        raise SecAggError(f"revealed shares in the name of {reveal.node[:64]!r}")
    b, s = set(reveal.self_mask_shares), set(reveal.key_seed_shares)
    if b & s:
        raise SecAggError(
            f"revealed both the self-mask and the mask-key share of {_names(b & s)}: "
            "that would unmask an individual input"
        )
    held = {*neighbours, node}
    if (b | s) - held:
        raise SecAggError(f"revealed shares of {_names((b | s) - held)}, not its neighbours")
    if s - set(dropped):
        raise SecAggError(
            f"revealed the mask-key share of {_names(s - set(dropped))}, whose input arrived"
        )
    if b - set(arrived):
        raise SecAggError(
            f"revealed the self-mask share of {_names(b - set(arrived))}, whose input did "
            "not arrive"
        )


def share_problem(index: int, share: bytes, expected_index: int) -> str | None:
    """Why one revealed share cannot be used, or None. The holder may be honest and the owner
    the one that sealed a bad share, so only that share is set aside, not the whole reveal."""
    if index != expected_index:
        return f"index {index}, expected {expected_index}"
    if len(share) != SHARE_BYTES:
        return f"{len(share)} bytes, expected {SHARE_BYTES}"
    return None


def holder_index(owner: str, holders: Sequence[str], holder: str) -> int:
    """The Shamir x-coordinate ``owner`` gave ``holder``: its place among the sorted holders
    (the neighbours whose keys the owner was sent, and the owner itself), from 1."""
    ordered = sorted({*holders, owner})
    return ordered.index(holder) + 1 if holder in ordered else 0
