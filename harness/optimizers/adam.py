"""Adam (family ``adam``, own norm max), with ``eps >= 0`` and bias correction on or off.

``m_t = beta1 m_{t-1} + (1 - beta1) g_t``, ``v_t = beta2 v_{t-1} + (1 - beta2) g_t^2``,
``m_{-1} = v_{-1} = 0``; with bias correction ``m^_t = m_t / (1 - beta1^{t+1})`` and
``v^_t = v_t / (1 - beta2^{t+1})`` (otherwise ``m^ = m``, ``v^ = v``); the direction is
``D_t = m^_t / (sqrt(v^_t) + eps)``. ``eps = 0`` is the algorithm of paper 000; an entry with
``v = 0`` (its gradient has always been exactly 0) then gets ``D = 0``, the limit of ``eps -> 0``.

In the frame (THEORY.md section 5) ``m`` has degree 1 and ``v`` degree 2, and ``eps`` becomes
``eps * exp(-phi_t)``, so the trajectory is exact for every ``eps``. With ``eps > 0`` Adam turns
into gradient descent once ``sqrt(v)`` falls below ``eps`` (THEORY.md section 4), and its
steps then shrink with the loss like GD's: that is the true algorithm.
"""

from __future__ import annotations

import math

import torch

from harness.optimizers.base import Optimizer, check_beta, check_eps, check_flag, eps_in_frame


class Adam(Optimizer):
    """Batched Adam in the moving frame."""

    family = "adam"
    buffers = {"m": 1, "v": 2}

    def __init__(self, name: str = "adam", beta1: float = 0.9, beta2: float = 0.99,
                 eps: float = 0.0, bias_correction: bool = True):
        hyper = {"beta1": check_beta("beta1", beta1), "beta2": check_beta("beta2", beta2),
                 "eps": check_eps("eps", eps),
                 "bias_correction": check_flag("bias_correction", bias_correction)}
        super().__init__(name, "max", hyper)
        self.beta1, self.beta2 = hyper["beta1"], hyper["beta2"]
        self.eps, self.bias_correction = hyper["eps"], hyper["bias_correction"]

    @property
    def scale_invariant(self) -> bool:
        return self.eps == 0.0

    @property
    def ratio_bound(self) -> float:
        """ADAM-RATIO's ``alpha = (1 - beta1) / sqrt((1 - beta2)(1 - beta1^2 / beta2))``;
        ``inf`` unless ``beta1^2 < beta2`` (the lemma's hypothesis)."""
        if self.beta1 ** 2 >= self.beta2:
            return math.inf
        return (1 - self.beta1) / math.sqrt((1 - self.beta2) * (1 - self.beta1 ** 2 / self.beta2))

    def corrections(self, t: int) -> tuple[float, float]:
        """``(1 - beta1^{t+1}, 1 - beta2^{t+1})``, or ``(1, 1)`` without bias correction."""
        if not self.bias_correction:
            return 1.0, 1.0
        return 1.0 - self.beta1 ** (t + 1), 1.0 - self.beta2 ** (t + 1)

    def update_moments(self, g: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        """The two EMA updates, in place."""
        state["m"].mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
        state["v"].mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)

    def direction(self, g, state, t, log_frame):
        self.update_moments(g, state)
        c1, c2 = self.corrections(t)
        denom = torch.sqrt(state["v"] / c2)
        if self.eps > 0:
            return (state["m"] / c1) / (denom + eps_in_frame(self.eps, log_frame))
        return torch.where(denom > 0, state["m"] / c1, torch.zeros_like(denom)) / torch.where(
            denom > 0, denom, torch.ones_like(denom))
