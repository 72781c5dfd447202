import importlib.util
import subprocess
import sys

import pytest

from medfed.errors import TrainingError
from medfed.training.registry import get_plan, installed_plans, plan_sha256

PLAN_SOURCE = """
class TinyPlan:
    name = "tiny"
    version = "1"
"""


def test_installed_plans_by_name_and_version():
    names = [(p.name, p.version) for p in installed_plans()]
    assert names == [
        ("logistic_regression", "1"),
        ("mlp", "1"),
        ("cnn", "1"),
        ("resnet", "1"),
        ("passthrough", "1"),
    ]
    for name, version in names:
        assert get_plan(name, version).name == name


@pytest.mark.parametrize(("name", "version"), [("svm", "1"), ("mlp", "2")])
def test_unknown_plan_names_the_installed_ones(name, version):
    with pytest.raises(
        TrainingError,
        match="installed: logistic_regression 1, mlp 1, cnn 1, resnet 1, passthrough 1",
    ):
        get_plan(name, version)


def test_hashes_are_stable_and_distinct():
    hashes = [plan_sha256(p) for p in installed_plans()]
    assert hashes == [plan_sha256(p) for p in installed_plans()]
    assert len(set(hashes)) == len(hashes)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)


def load_plan(path, monkeypatch):
    name = f"tiny_plan_{path.stat().st_mtime_ns}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module.TinyPlan()


def test_editing_the_plan_source_changes_its_hash(tmp_path, monkeypatch):
    path = tmp_path / "tiny_plan.py"
    path.write_text(PLAN_SOURCE)
    plan = load_plan(path, monkeypatch)
    before = plan_sha256(plan)
    path.write_text(PLAN_SOURCE + "# learning rate tweaked\n")
    assert plan_sha256(plan) != before


def test_a_plan_without_source_cannot_be_hashed():
    class Builtin:
        name = "x"
        version = "1"

    Builtin.__module__ = "builtins"
    with pytest.raises(TrainingError, match="no source file"):
        plan_sha256(Builtin())


def test_looking_up_and_hashing_plans_does_not_import_torch():
    code = (
        "import sys\n"
        "from medfed.training.registry import get_plan, plan_sha256, installed_plans\n"
        "from medfed.strategies.registry import make_strategy\n"
        "[plan_sha256(p) for p in installed_plans()]\n"
        "plan = get_plan('passthrough', '1')\n"
        "plan.init_weights(0, 0, {'dim': 4.0})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
