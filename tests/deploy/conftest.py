from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "containers: builds the images and runs the compose consortium with podman "
        "(deploy/; skipped with the reason where podman is not installed)",
    )
