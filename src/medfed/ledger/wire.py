"""Ledger heads and entries on the wire (``medfed.v1.LedgerHead``, ``LedgerPage``)."""

from __future__ import annotations

from medfed.errors import LedgerError
from medfed.ledger.entry import Entry, Head, parse_line
from medfed.protocol.v1 import medfed_pb2 as pb


def to_proto(head: Head) -> pb.LedgerHead:
    return pb.LedgerHead(seq=head.seq, hash=head.hash, signature=head.signature)


def from_proto(message: pb.LedgerHead) -> Head:
    if len(message.hash) != 64:
        raise LedgerError(f"a ledger head at height {message.seq} carries no SHA-256 hash")
    return Head(message.seq, message.hash, bytes(message.signature))


def page_entries(page: pb.LedgerPage) -> list[Entry]:
    return [parse_line(bytes(line)) for line in page.entries]
