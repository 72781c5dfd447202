"""Prometheus metrics of the coordinator and of a hospital node.

The coordinator's series are read from its state store when Prometheus scrapes
(:mod:`medfed.observability.coordinator`), so they agree with ``medfed study status``; a node
counts what only it sees (:mod:`medfed.observability.node`). Both listen on 127.0.0.1 only and
only when a ``metrics_port`` is configured; ``deploy/grafana/medfed.json`` charts them.
"""
