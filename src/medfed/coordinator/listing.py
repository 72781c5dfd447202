"""Admin listings in pages: no reply may outgrow the message cap, however many nodes or studies.

A listing in one message broke for every admin once one node announced a large dataset list (the
reply passed gRPC's 4 MiB cap). Pages are cut by count and by bytes, so each reply stays far below
the cap whatever the items hold; the page token is the key of the last item sent, so a page
boundary stays put while items are added elsewhere in the listing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from medfed.errors import ProtocolError
from medfed.protocol.v1 import medfed_pb2 as pb

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_PAGE_BYTES = 1 << 20
"""A quarter of the message cap (:data:`medfed.transport.grpc_factory.MAX_MESSAGE_BYTES`)."""
_FIELD_OVERHEAD = 8
"""Tag and length prefix of one repeated item, rounded up."""


class Sized(Protocol):
    def ByteSize(self) -> int: ...


T = TypeVar("T", bound=Sized)


def page(
    items: Sequence[T], key: Callable[[T], str], request: pb.PageRequest
) -> tuple[list[T], str]:
    """The page of ``items`` (in listing order) that ``request`` asks for, and the token of the
    next one ("" when this page ends the listing)."""
    start = 0
    if request.page_token:
        keys = [key(item) for item in items]
        if request.page_token not in keys:
            raise ProtocolError(f"unknown page token {request.page_token[:80]!r}")
        start = keys.index(request.page_token) + 1
    wanted = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    chosen: list[T] = []
    total = 0
    for item in items[start : start + wanted]:
        size = item.ByteSize() + _FIELD_OVERHEAD
        if chosen and total + size > MAX_PAGE_BYTES:
            break
        chosen.append(item)
        total += size
    more = start + len(chosen) < len(items)
    return chosen, key(chosen[-1]) if more and chosen else ""
