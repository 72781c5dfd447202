"""The consortium ledger: an append-only, hash-chained log of every consequential event, signed by
the coordinator and verified by every node with nothing but the consortium CA certificate."""
