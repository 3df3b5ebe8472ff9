"""Normalized momentum descent (family ``nmd``): Signum, momentum NGD, Muon.

EMA momentum ``M_t = beta1 M_{t-1} + (1 - beta1) grad L(W_t)``, ``M_{-1} = 0`` (THEORY.md
section 3, MOMENTUM-TRACK), then the steepest direction of ``M_t`` in the method's norm: max
(Signum), Frobenius (momentum NGD), spectral (Muon: exact ``U V^T`` of the truncated SVD).
``M`` is a degree-1 buffer: the engine multiplies it by ``exp(phi_old - phi_new)`` when the
frame moves, so the directions are those of the exact algorithm.

:class:`NewtonSchulzMuon` replaces the exact orthogonalization by the quintic Newton-Schulz
iteration shipped with Keller Jordan's Muon (coefficients ``(3.4445, -4.7750, 2.0315)``, 5
iterations, applied to ``M / (||M||_F + eps)``). Its output is only approximately orthogonal
(singular values land roughly in ``[0.7, 1.2]``): that is the shipped algorithm. The shipped
code uses ``eps = 1e-7`` on the raw momentum and bfloat16; here the iteration runs in the
working dtype and ``eps`` (default 0, which makes the method scale-invariant) is brought into
the frame like Adam's.
"""

from __future__ import annotations

import torch

from harness.norms import Norm, steepest_direction
from harness.optimizers.base import Optimizer, check_beta, check_count, check_eps, eps_in_frame

#: Coefficients of the quintic Newton-Schulz iteration in Keller Jordan's Muon.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


class MomentumSteepestDescent(Optimizer):
    """EMA momentum followed by the steepest direction of the momentum in ``norm``."""

    family = "nmd"
    buffers = {"M": 1}

    def __init__(self, name: str, norm: str | Norm, beta1: float = 0.9):
        super().__init__(name, norm, {"beta1": check_beta("beta1", beta1)})
        self.beta1 = self.hyper["beta1"]

    def update_momentum(self, g: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """``M <- beta1 M + (1 - beta1) g`` in place; returns ``M``."""
        return state["M"].mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)

    def direction(self, g, state, t, log_frame):
        return steepest_direction(self.update_momentum(g, state), self.norm)


def newton_schulz(M: torch.Tensor, steps: int, eps: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Quintic Newton-Schulz approximation of the orthogonal factor of ``M`` (batched).

    ``X_0 = M / (||M||_F + eps)``; ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``, worked
    on the wide orientation (``X X^T`` is the smaller Gram matrix). Zero ``M`` gives zero.
    """
    a, b, c = NS_COEFFICIENTS
    tall = M.shape[-2] > M.shape[-1]
    X = M.mT if tall else M
    norm = torch.linalg.matrix_norm(X, ord="fro", keepdim=True) + eps
    X = X / torch.where(norm > 0, norm, torch.ones_like(norm))
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.mT if tall else X


class NewtonSchulzMuon(MomentumSteepestDescent):
    """Muon as commonly shipped: EMA momentum, then Newton-Schulz instead of an exact SVD."""

    def __init__(self, name: str = "muon_ns", beta1: float = 0.9, ns_steps: int = 5,
                 eps: float = 0.0):
        super().__init__(name, "spectral", beta1)
        self.ns_steps = check_count("ns_steps", ns_steps)
        self.eps = check_eps("eps", eps)
        self.hyper.update(ns_steps=self.ns_steps, eps=self.eps)

    @property
    def scale_invariant(self) -> bool:
        return self.eps == 0.0

    def direction(self, g, state, t, log_frame):
        M = self.update_momentum(g, state)
        eps = eps_in_frame(self.eps, log_frame) if self.eps > 0 else 0.0
        return newton_schulz(M, self.ns_steps, eps)
