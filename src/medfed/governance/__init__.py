"""Consortium governance: the rules in force, council proposals and votes, contributions,
reputation and rewards, as pure functions over what the ledger records."""
