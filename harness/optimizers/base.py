"""The batched optimizer interface shared by every family, and its hyper-parameter checks.

An optimizer here is the map from the gradient history to the update direction ``D_t`` of
``W_{t+1} = W_t - eta_t D_t``; the step size comes from :mod:`harness.schedules` and the
engine applies it. Everything is batched over runs: ``W``, the gradient and every buffer have
shape ``(B, k, d)``, and one optimizer object serves the whole batch.

The moving log-frame (THEORY.md section 5). The engine hands the optimizer the gradient in a
per-run frame ``phi_t``: ``g = grad L(W_t) / exp(phi_t)``, of order one, so nothing underflows
even where ``L`` is far below ``exp(-745)``. Buffers live in the same frame: when the frame
moves from ``phi_old`` to ``phi_new`` a buffer of degree ``p`` in the gradient (``p = 1`` for a
momentum, ``p = 2`` for a second moment) is multiplied by ``exp(p (phi_old - phi_new))``
(:meth:`Optimizer.rescale`). An optimizer that is invariant to rescaling the whole gradient
history (every one here except GD, and Adam/Newton-Schulz only with ``eps = 0``) then follows
the exact algorithm up to float64 rounding; a constant ``eps`` is brought into the frame as
``eps * exp(-phi_t)`` (:func:`eps_in_frame`), which keeps Adam with ``eps > 0`` exact too.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from harness.errors import HarnessInputError
from harness.norms import Norm

FAMILIES = ("gd", "nsd", "nmd", "adam")


def check_beta(name: str, value) -> float:
    """An EMA factor: a number in ``[0, 1)``."""
    beta = _number(name, value)
    if not (0.0 <= beta < 1.0):
        raise HarnessInputError(f"{name} must lie in [0, 1), got {value!r}")
    return beta


def check_eps(name: str, value) -> float:
    """A stabilising constant: a finite number ``>= 0``."""
    eps = _number(name, value)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise HarnessInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return eps


def check_count(name: str, value) -> int:
    """A positive integer (iteration counts)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value \
            or value < 1:
        raise HarnessInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_flag(name: str, value) -> bool:
    """A boolean switch (``True``/``False`` only, so a typo like ``"no"`` is not truthy)."""
    if not isinstance(value, bool):
        raise HarnessInputError(f"{name} must be true or false, got {value!r}")
    return value


def _number(name: str, value) -> float:
    if isinstance(value, bool):
        raise HarnessInputError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise HarnessInputError(f"{name} must be a number, got {value!r}") from None


def next_log_frame(log_scale, previous, buffer_log_scale):
    """The frame ``phi_t = max(log_scale_t, phi_{t-1} + s_t)`` of a method with buffers.

    ``log_scale_t`` is the gradient's own scale (``grad = exp(log_scale) g~``), ``s_t`` the
    buffers' scale in the old frame (``max log|buffer| / degree``). The frame never drops below
    the buffers, so none of them can overflow when moved into it, and never below the gradient,
    so the gradient in the frame has entries of order at most one; a gradient that underflows
    in it is below float64 resolution of the buffers, as in the exact algorithm. The first
    frame (``previous`` None) is the gradient's scale. Works on per-run tensors (the engine)
    and on floats (the gate's single runs) alike.
    """
    if previous is None:
        return log_scale
    if isinstance(log_scale, torch.Tensor):
        return torch.maximum(log_scale, previous + buffer_log_scale)
    return max(log_scale, previous + buffer_log_scale)


def eps_in_frame(eps: float, log_frame: torch.Tensor) -> torch.Tensor:
    """``eps * exp(-phi)`` of shape ``(B, 1, 1)``: a constant ``eps`` seen from the frame.

    ``inf`` once ``phi < log(eps) - 709``: the true gradient is then negligible next to
    ``eps`` and the quotient it guards is exactly 0, as it is in the true algorithm.
    """
    return (eps * torch.exp(-log_frame))[:, None, None]


class Optimizer:
    """Base class: subclasses set the class attributes and implement :meth:`direction`.

    Attributes:
        name: registry name (``"signgd"``, ``"adam"``, ...).
        family: ``"gd"``, ``"nsd"`` (normalized steepest descent), ``"nmd"`` (normalized
            momentum descent) or ``"adam"``; selects the rate row of THEORY.md section 4.
        norm: the algorithm's own norm (the one its implicit bias maximises the margin in).
        buffers: ``{buffer name: degree in the gradient}`` of the state kept between steps.
        hyper: the validated hyper-parameters (recorded in every curve row).
    """

    family: ClassVar[str]
    buffers: ClassVar[dict[str, int]] = {}

    def __init__(self, name: str, norm: str | Norm, hyper: dict):
        self.name = name
        self.norm = Norm.parse(norm)
        self.hyper = dict(hyper)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.hyper.items()))
        return f"{type(self).__name__}({self.name!r}{', ' if args else ''}{args})"

    @property
    def scale_invariant(self) -> bool:
        """Whether the directions are unchanged by a positive rescaling of the whole gradient
        history; only then does the frame ``phi_t`` not matter (see the module docstring)."""
        return True

    def init_state(self, W: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zero buffers (``M_{-1} = v_{-1} = 0``) shaped like ``W``."""
        return {key: torch.zeros_like(W) for key in self.buffers}

    def rescale(self, state: dict[str, torch.Tensor], shift: torch.Tensor) -> None:
        """Move the buffers from frame ``phi_old`` to ``phi_new``; ``shift = phi_old - phi_new``
        of shape ``(B,)``. In place."""
        for key, degree in self.buffers.items():
            state[key].mul_(torch.exp(degree * shift)[:, None, None])

    def state_log_scale(self, state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """``max_buffers log(max |buffer|) / degree`` per run (the scale the buffers are at in
        the current frame; ``-inf`` where all are zero), or None without buffers. The engine
        keeps the frame at least this high so no buffer overflows."""
        scales = [torch.log(state[key].abs().amax(dim=(-2, -1))) / degree
                  for key, degree in self.buffers.items()]
        if not scales:
            return None
        return torch.stack(scales).amax(dim=0)

    def direction(self, g: torch.Tensor, state: dict[str, torch.Tensor], t: int,
                  log_frame: torch.Tensor) -> torch.Tensor:
        """The update direction ``D_t`` (``W_{t+1} = W_t - eta_t D_t``), shape ``(B, k, d)``.

        Args:
            g: the gradient at ``W_t`` in the frame: ``grad L(W_t) = exp(log_frame) * g``.
            state: the buffers, already moved into the current frame; updated in place.
            t: the number of steps taken so far (0 for the first step).
            log_frame: ``phi_t``, shape ``(B,)``.
        """
        raise NotImplementedError
