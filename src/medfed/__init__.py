"""medfed: federated learning for cross-institutional medical research."""

__version__ = "0.1.0"
