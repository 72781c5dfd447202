"""The plans installed on this machine, looked up by name and version, and hashed for approval.

A hospital approves a plan by (name, version, sha256). The hash covers the plan's module source
*and* the shared code it runs through (local loop, standardization, metrics, the contract), so an
edit anywhere in what executes at the node changes the hash the hospital approved. Hashing reads
source files only: nothing is imported, so the coordinator can hash without torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
from pathlib import Path

from medfed.errors import TrainingError
from medfed.training.plan import TrainingPlan
from medfed.training.plans.cnn import CnnPlan
from medfed.training.plans.logistic_regression import LogisticRegressionPlan
from medfed.training.plans.mlp import MlpPlan
from medfed.training.plans.passthrough import PassthroughPlan
from medfed.training.plans.resnet import ResNetPlan

_PLANS: tuple[TrainingPlan, ...] = (
    LogisticRegressionPlan(),
    MlpPlan(),
    CnnPlan(),
    ResNetPlan(),
    PassthroughPlan(),
)
_SHARED_MODULES = (
    "medfed.training.plan",
    "medfed.training.metrics",
    "medfed.training.standardize",
    "medfed.training.plans._torch",
    "medfed.training.plans._vision",
    "medfed.training.plans._networks",
)
_HASH_DOMAIN = b"medfed/plan/v1\n"


def installed_plans() -> list[TrainingPlan]:
    return list(_PLANS)


def get_plan(name: str, version: str) -> TrainingPlan:
    for plan in _PLANS:
        if plan.name == name and plan.version == version:
            return plan
    installed = ", ".join(f"{p.name} {p.version}" for p in _PLANS)
    raise TrainingError(f"no training plan {name!r} version {version!r}; installed: {installed}")


def plan_sha256(plan: TrainingPlan) -> str:
    """SHA-256 over the plan's module file and the shared modules, each framed by name and size."""
    try:
        own = inspect.getsourcefile(type(plan))
    except TypeError:
        own = None
    if own is None:
        raise TrainingError(f"plan {plan.name!r} has no source file to hash")
    files = [("plan", Path(own))] + [(name, _module_file(name)) for name in _SHARED_MODULES]
    digest = hashlib.sha256(_HASH_DOMAIN)
    for label, path in files:
        data = path.read_bytes()
        digest.update(f"{label}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise TrainingError(f"shared plan module {module} has no source file")
    return Path(spec.origin)
