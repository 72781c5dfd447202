from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from medfed.compat import flwr_shim
from medfed.compat.loader import load_client
from medfed.errors import ClientPlanError

HEADER = "import flwr as fl\nimport numpy as np\n\n"
CLIENT = (
    "class Hospital(fl.client.NumPyClient):\n"
    "    def fit(self, parameters, config):\n"
    "        return parameters, 1, {}\n"
    "    def evaluate(self, parameters, config):\n"
    "        return 0.0, 1, {}\n"
)


def _load(tmp_path: Path, body: str) -> object:
    path = tmp_path / "client.py"
    path.write_text(HEADER + body)
    return load_client(path.read_bytes(), path)


def test_real_flwr_is_absent_and_the_shim_leaves_no_trace(tmp_path: Path) -> None:
    assert importlib.util.find_spec("flwr") is None
    client = _load(tmp_path, CLIENT)
    assert type(client).__name__ == "Hospital"
    assert "flwr" not in sys.modules
    assert not flwr_shim.real_flwr_installed()


def test_start_numpy_client_hands_over_the_client_and_ignores_the_address(
    tmp_path: Path,
) -> None:
    client = _load(
        tmp_path,
        CLIENT + "marker = Hospital()\n"
        "fl.client.start_numpy_client(server_address='10.0.0.1:8080', client=marker)\n",
    )
    assert type(client).__name__ == "Hospital"
    assert client is vars(sys.modules[type(client).__module__])["marker"]


def test_flowers_connection_arguments_are_ignored(tmp_path: Path) -> None:
    body = CLIENT + (
        "fl.client.start_numpy_client(server_address='h:1', client=Hospital(), "
        "root_certificates=b'ca', insecure=False, transport='grpc-bidi')\n"
    )
    assert type(_load(tmp_path, body)).__name__ == "Hospital"


def test_start_client_with_to_client_is_unwrapped(tmp_path: Path) -> None:
    body = CLIENT + "fl.client.start_client(server_address='x', client=Hospital().to_client())\n"
    assert type(_load(tmp_path, body)).__name__ == "Hospital"


def test_a_main_guarded_script_is_found_by_its_one_client_class(tmp_path: Path) -> None:
    body = CLIENT + "if __name__ == '__main__':\n    raise SystemExit('must not run')\n"
    assert type(_load(tmp_path, body)).__name__ == "Hospital"


def test_a_module_level_client_is_used(tmp_path: Path) -> None:
    body = CLIENT + "class Other(Hospital):\n    pass\nclient = Other()\n"
    assert type(_load(tmp_path, body)).__name__ == "Other"


def test_two_client_classes_and_no_start_are_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ClientPlanError, match=r"exactly one client class.*Hospital, Other"):
        _load(tmp_path, CLIENT + "class Other(Hospital):\n    pass\n")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("fl.client.start_numpy_client(server_address='x', client=Hospital(), "
         "client_fn=None)\n", "client_fn.*not supported"),
        ("app = fl.client.ClientApp(client_fn=None)\n", "ClientApp.*not supported"),
        ("fl.client.start_client(server_address='x', client=object())\n", "to_client"),
        ("raise RuntimeError('no data here')\n", "loading client file .*no data here"),
    ],
    ids=["unknown-arguments", "client-app", "start-client-without-numpy", "script-raises"],
)  # fmt: skip
def test_unsupported_flower_api_is_refused_with_the_reason(
    tmp_path: Path, body: str, reason: str
) -> None:
    with pytest.raises(ClientPlanError, match=reason):
        _load(tmp_path, CLIENT + body)
    assert "flwr" not in sys.modules


class _Client:
    def fit(self, parameters: object, config: object) -> None: ...

    def evaluate(self, parameters: object, config: object) -> None: ...


def test_start_outside_a_loader_is_refused() -> None:
    with pytest.raises(ClientPlanError, match="outside medfed"):
        flwr_shim.start_numpy_client(server_address="x", client=_Client())


FAKE_FLWR = {
    "flwr/__init__.py": "from flwr import client\n",
    "flwr/client.py": (
        "class NumPyClient:\n"
        "    def to_client(self):\n"
        "        return _Wrapped(self)\n"
        "class _Wrapped:\n"
        "    def __init__(self, inner):\n"
        "        self.numpy_client = inner\n"
        "def start_numpy_client(*, server_address, client):\n"
        "    raise RuntimeError('the real flwr would dial ' + server_address)\n"
        "start_client = start_numpy_client\n"
    ),
}


def test_with_a_real_flwr_installed_its_start_functions_are_patched_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for an installed flwr (its own NumPyClient class and to_client wrapper)."""
    site = tmp_path / "site"
    for name, text in FAKE_FLWR.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    monkeypatch.syspath_prepend(str(site))
    try:
        assert flwr_shim.real_flwr_installed()
        body = (
            CLIENT + "fl.client.start_client(server_address='x:1', client=Hospital().to_client())\n"
        )
        client = _load(tmp_path, body)
        assert type(client).__name__ == "Hospital"
        assert type(client).__mro__[1] is sys.modules["flwr.client"].NumPyClient  # Flower's own
        real = sys.modules["flwr.client"]
        with pytest.raises(RuntimeError, match="would dial x:1"):
            real.start_numpy_client(server_address="x:1", client=client)
    finally:
        for name in ("flwr", "flwr.client"):
            sys.modules.pop(name, None)
