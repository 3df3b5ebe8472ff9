"""Batched torch optimizers, one small module per family, and the registry.

``make_optimizer(name, **hyper)`` builds one; ``OPTIMIZER_NAMES`` lists the names. Each
optimizer declares its ``family`` (``gd``, ``nsd``, ``nmd``, ``adam``) and its own ``norm``.
See :mod:`harness.optimizers.base` for the interface and the moving log-frame.
"""

from harness.optimizers.base import FAMILIES, Optimizer
from harness.optimizers.registry import OPTIMIZER_NAMES, OPTIMIZERS, make_optimizer

__all__ = ["FAMILIES", "OPTIMIZERS", "OPTIMIZER_NAMES", "Optimizer", "make_optimizer"]
