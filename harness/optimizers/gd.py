"""Gradient descent ``W_{t+1} = W_t - eta_t grad L(W_t)`` (family ``gd``, own norm l2/Frobenius).

GD is not scale-invariant: its step is the true gradient ``exp(phi_t) * g``, and once ``L``
falls below about ``exp(-745)`` that product underflows to 0 and W stops moving. That is the
true float64 algorithm (the loss really is that small), not a defect of the frame; GD's margin
gap decays only like ``1 / log t`` (THEORY.md section 4) and the rate is read well before it.
"""

from __future__ import annotations

import torch

from harness.optimizers.base import Optimizer


class GradientDescent(Optimizer):
    """Plain gradient descent on the true (un-normalised) gradient."""

    family = "gd"

    def __init__(self, name: str = "gd"):
        super().__init__(name, "fro", {})

    @property
    def scale_invariant(self) -> bool:
        return False

    def direction(self, g, state, t, log_frame):
        return g * torch.exp(log_frame)[:, None, None]
