"""Aggregation: pure numpy math (no torch) behind short strategy classes the round engine calls."""
