from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import root
from medfed.web.server import TOKEN_ENV


def test_dashboard_command_refuses_a_public_address_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    args = ["dashboard", "--config", str(tmp_path / "admin.toml"), "--host", "0.0.0.0"]

    result = CliRunner().invoke(root, args)

    assert result.exit_code == 2
    assert "refusing to serve the dashboard on 0.0.0.0:8050 without authentication" in " ".join(
        result.output.split()
    )


def test_cli_import_loads_no_web_stack() -> None:
    code = (
        "import sys, medfed.cli.app; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'jinja2', 'prometheus_client', 'selenium')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
