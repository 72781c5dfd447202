"""The coordinator: study specs, the round engine, the gRPC servicers and their wiring."""
