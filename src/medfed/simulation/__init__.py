"""A whole study in one process: the strategy and the nodes' update code, no network."""
