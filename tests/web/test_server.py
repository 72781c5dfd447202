from __future__ import annotations

import pytest

from medfed.errors import ConfigError
from medfed.web.server import TOKEN_ENV, check_binding, is_loopback

TOKEN = "a-long-enough-token-0123"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "fl.example.org"])
def test_dashboard_refuses_a_non_loopback_address_without_a_token(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"without authentication.*--token"):
        check_binding(host, 8050)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "localhost", "::1", "[::1]"])
def test_loopback_needs_no_token(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    binding = check_binding(host, 8050)
    assert binding.loopback and binding.token == ""
    assert "*" not in binding.allowed_hosts()


def test_a_token_from_the_option_or_the_environment_allows_any_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert check_binding("0.0.0.0", 8050, TOKEN).allowed_hosts() == ("*",)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert check_binding("0.0.0.0", 8050).token == TOKEN


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        check_binding("0.0.0.0", 8050, "short")


def test_is_loopback_does_not_trust_host_names() -> None:
    assert not is_loopback("localhost.evil.example")
    assert is_loopback("127.0.0.1")
