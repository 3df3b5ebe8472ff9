"""Name -> optimizer factory. ``make_optimizer("signgd")``, ``make_optimizer("adam", eps=1e-8)``.

Every entry validates its hyper-parameters and rejects unknown ones with a one-line
:class:`harness.errors.HarnessInputError`, so a typo in a scenario never runs silently with
defaults.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import cache

from harness.errors import HarnessInputError
from harness.optimizers.adam import Adam
from harness.optimizers.base import Optimizer
from harness.optimizers.gd import GradientDescent
from harness.optimizers.nmd import MomentumSteepestDescent, NewtonSchulzMuon
from harness.optimizers.nsd import SteepestDescent


def _entrywise_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (1.0 < p < math.inf):
        raise HarnessInputError(f"nsd needs an entrywise exponent p with 1 < p < inf, got {p!r}")
    return float(p)


def _nsd(p=None) -> Optimizer:
    p = _entrywise_p(p)
    return SteepestDescent("nsd", f"l{p:g}", {"p": p})


def _steepest(name: str, norm: str) -> Callable[[], Optimizer]:
    def make() -> Optimizer:
        return SteepestDescent(name, norm)
    return make


def _momentum(name: str, norm: str) -> Callable[..., Optimizer]:
    def make(beta1: float = 0.9) -> Optimizer:
        return MomentumSteepestDescent(name, norm, beta1)
    return make


#: Registry: name -> factory taking the hyper-parameters as keyword arguments.
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "gd": GradientDescent,
    "signgd": _steepest("signgd", "max"),
    "ngd": _steepest("ngd", "fro"),
    "nsd": _nsd,
    "cd": _steepest("cd", "sum"),
    "spectral_gd": _steepest("spectral_gd", "spectral"),
    "shampoo": _steepest("shampoo", "spectral"),
    "signum": _momentum("signum", "max"),
    "momentum_ngd": _momentum("momentum_ngd", "fro"),
    "muon": _momentum("muon", "spectral"),
    "muon_ns": NewtonSchulzMuon,
    "adam": Adam,
}

#: The registered names, in the order above.
OPTIMIZER_NAMES: tuple[str, ...] = tuple(OPTIMIZERS)


@cache
def _hyper_parameters(key: str) -> tuple[str, ...]:
    """The keyword arguments of a registered factory (its signature, read once per name: a
    batch of 1024 runs read it 1024 times, 0.13 s)."""
    return tuple(p for p in inspect.signature(OPTIMIZERS[key]).parameters if p != "name")


def make_optimizer(name: str, **hyper) -> Optimizer:
    """Build a registered optimizer; raises a one-line HarnessInputError for an unknown name,
    an unknown hyper-parameter or an invalid value."""
    key = str(name).strip().lower()
    if key not in OPTIMIZERS:
        raise HarnessInputError(
            f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    factory = OPTIMIZERS[key]
    accepted = _hyper_parameters(key)
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise HarnessInputError(
            f"optimizer {key!r} has no hyper-parameter {unknown[0]!r} (accepted: {allowed})")
    return factory(**hyper)
