from __future__ import annotations

import pytest

from medfed.coordinator.listing import MAX_PAGE_BYTES, page
from medfed.errors import ProtocolError
from medfed.protocol.v1 import medfed_pb2 as pb


def _nodes(count: int, datasets: int = 1) -> list[pb.NodeInfo]:
    return [
        pb.NodeInfo(name=f"node-{i:03d}", datasets=[f"d{j:05d}" for j in range(datasets)])
        for i in range(count)
    ]


def _all(items: list[pb.NodeInfo], size: int) -> list[list[str]]:
    pages, token = [], ""
    while True:
        chosen, token = page(
            items, lambda n: n.name, pb.PageRequest(page_size=size, page_token=token)
        )
        pages.append([n.name for n in chosen])
        if not token:
            return pages


def test_pages_cover_the_listing_once_in_order() -> None:
    items = _nodes(7)

    pages = _all(items, 3)

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [name for p in pages for name in p] == [n.name for n in items]


def test_a_page_is_cut_by_bytes_below_the_message_cap() -> None:
    items = _nodes(30, datasets=10_000)  # ~80 KB each

    chosen, token = page(items, lambda n: n.name, pb.PageRequest(page_size=1000))

    assert token == chosen[-1].name
    assert 0 < len(chosen) < 30
    assert pb.NodeList(nodes=chosen, next_page_token=token).ByteSize() <= MAX_PAGE_BYTES + 64


def test_an_unknown_token_is_refused() -> None:
    with pytest.raises(ProtocolError, match="unknown page token"):
        page(_nodes(2), lambda n: n.name, pb.PageRequest(page_token="nope"))


def test_the_empty_listing_is_one_empty_page() -> None:
    assert page([], lambda n: n.name, pb.PageRequest()) == ([], "")
