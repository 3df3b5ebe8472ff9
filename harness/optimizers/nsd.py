"""Normalized steepest descent (family ``nsd``): ``D_t = argmax_{N(D) <= 1} <grad L(W_t), D>``.

One class covers every member; the norm picks the algorithm (THEORY.md sections 2 and 4):
SignGD (max norm, ``D = sign(grad)``), NGD (Frobenius, ``grad / ||grad||_F``), NSD-p (entrywise
p), coordinate descent (sum norm: a signed one-hot at the largest gradient entry) and
Spectral-GD (spectral norm: ``U V^T`` of the truncated SVD, rank <= k-1). Shampoo without
accumulation is spectral steepest descent as well. The directions come from
:func:`harness.norms.steepest_direction`; they are invariant to rescaling the gradient, so the
frame of the engine does not change them at all.
"""

from __future__ import annotations

from harness.norms import Norm, steepest_direction
from harness.optimizers.base import Optimizer


class SteepestDescent(Optimizer):
    """Stateless steepest descent in a fixed norm."""

    family = "nsd"

    def __init__(self, name: str, norm: str | Norm, hyper: dict | None = None):
        super().__init__(name, norm, hyper or {})

    def direction(self, g, state, t, log_frame):
        return steepest_direction(g, self.norm)
