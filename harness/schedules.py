"""Step-size schedules ``eta_t = eta_0 (t+1)^(-a)`` (``a = 0``: constant).

THEORY.md section 4 states every rate for this polynomial schedule: ``a = 1/2`` for the NSD and
NMD methods, ``a = 2/3`` for Adam, ``a = 0`` for GD with a constant step. ``t`` counts the steps
already taken, so the first step (``t = 0``) uses ``eta_0``. The engine evaluates the schedule
for a whole batch at once (one ``eta_0`` and ``a`` per run) with :func:`step_sizes`, or for a
block of steps with :func:`step_size_table`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harness.errors import HarnessInputError


def check_eta0(eta0: float) -> float:
    """Return ``eta0`` as a float or raise: it must be finite and > 0."""
    value = float(eta0)
    if not (math.isfinite(value) and value > 0.0):
        raise HarnessInputError(f"eta0 must be a finite number > 0, got {eta0!r}")
    return value


def check_exponent(a: float) -> float:
    """Return the step exponent ``a`` or raise: THEORY.md covers ``0 <= a <= 1``."""
    value = float(a)
    if not (0.0 <= value <= 1.0):
        raise HarnessInputError(f"step exponent a must lie in [0, 1], got {a!r}")
    return value


def check_steps(steps: int) -> int:
    """Return ``steps`` as an int or raise: it must be an integer >= 1."""
    if isinstance(steps, bool) or int(steps) != steps or int(steps) < 1:
        raise HarnessInputError(f"steps must be an integer >= 1, got {steps!r}")
    return int(steps)


@dataclass(frozen=True)
class Schedule:
    """``eta_t = eta0 (t+1)^(-a)``; ``a = 0`` is the constant step ``eta0``."""

    eta0: float
    a: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "eta0", check_eta0(self.eta0))
        object.__setattr__(self, "a", check_exponent(self.a))

    @classmethod
    def constant(cls, eta0: float) -> Schedule:
        """The constant schedule ``eta_t = eta0``."""
        return cls(eta0, 0.0)

    def eta(self, t: int) -> float:
        """The step size used by step ``t`` (``t = 0, 1, ...``)."""
        return self.eta0 * (t + 1.0) ** (-self.a)


def step_size_table(eta0: torch.Tensor, a: torch.Tensor, start: int, count: int
                    ) -> torch.Tensor:
    """``eta0 * (t+1)^(-a)`` for ``t = start, ..., start + count - 1`` and a batch of runs
    (``eta0``, ``a`` of shape ``(B,)``): shape ``(count, B)``.

    Computed as ``eta0 * exp(-a log(t+1))``, one ``log`` per step for the whole batch; the
    engine takes a table per block of steps instead of three small kernels per step.
    """
    logs = torch.tensor([-math.log(t + 1.0) for t in range(start, start + count)],
                        dtype=a.dtype, device=a.device)
    return eta0 * torch.exp(a * logs[:, None])


def step_sizes(eta0: torch.Tensor, a: torch.Tensor, t: int) -> torch.Tensor:
    """``eta0 * (t+1)^(-a)`` for a batch of runs at one step ``t``: shape ``(B,)``."""
    return step_size_table(eta0, a, t, 1)[0]
