"""gRPC server and channel factories with mutual TLS, peer identity, size limits."""
