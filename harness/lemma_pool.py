"""A small fixed pool of seeded separable datasets with certified max margins ``gamma_N``.

DUAL-LB, DESCENT and OTHER-LOSS need ``gamma_N = max_{N(W) <= 1} m(W)``. Solving for it per
hypothesis example would dominate the run, so hypothesis picks a dataset from this pool and
varies ``W`` / ``eta``; each certificate is computed once per process (cached).

Datasets ("cones"): class directions ``v_c`` are random unit vectors, so each is a vertex of
their convex hull and owns a non-empty cone ``{x : argmax_c v_c^T x = c}``; points are
``r (v_y + sigma xi)`` kept only inside their cone, with per-row scales ``r`` spanning a decade
and a per-dataset scale (non-unit data). Sizes cover k = 2..20, n = k..45.

Certificates come from :func:`harness.margins.max_margin` (the project's one max-margin
solver). Its bracket ``[lower, upper]`` is evaluated in float64; for the mpmath verdicts here
``lower`` is recomputed exactly as ``m(W*) / N(W*)`` at the returned ``W*`` (any ``W != 0``
bounds the maximum from below) and ``upper`` is widened by the relative
``UPPER_ROUNDING_ALLOWANCE`` that covers the float64 rounding of its one matrix product and
one dual norm (about 1e-15 relative according to :mod:`harness.margins`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from harness import precise
from harness.margins import max_margin

#: (k, d, points per class, data scale, seed) of every pool dataset.
POOL = (
    (2, 1, 2, 1.0, 0),
    (2, 3, 4, 1.0, 1),
    (3, 2, 3, 30.0, 2),
    (4, 4, 5, 1.0, 3),
    (5, 3, 2, 0.05, 4),
    (10, 4, 2, 1.0, 5),
    (20, 3, 1, 1.0, 6),
    (3, 6, 15, 3.0, 7),
)

#: Norms certified for every pool dataset (max, entrywise 3, Frobenius, spectral).
POOL_NORMS = ("max", "l3", "fro", "spectral")

_SIGMA = 0.05


@dataclass(frozen=True)
class Certificate:
    """``lower <= gamma_N <= upper`` (floats rounded outward) and the solution ``W``."""

    lower: float
    upper: float
    W: np.ndarray


@functools.cache
def dataset(index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of pool dataset ``index`` (deterministic in its seed)."""
    k, d, per_class, scale, seed = POOL[index]
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(k, d))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    X, y = [], []
    for c in range(k):
        kept = 0
        while kept < per_class:
            x = 10.0 ** rng.uniform(-0.5, 0.5) * (V[c] + _SIGMA * rng.normal(size=d))
            if np.argmax(V @ x) == c:
                X.append(x)
                y.append(c)
                kept += 1
    return scale * np.asarray(X), np.asarray(y, dtype=np.int64)


#: Relative outward widening of the float64 upper bound of :func:`harness.margins.max_margin`.
UPPER_ROUNDING_ALLOWANCE = 1e-12


@functools.cache
def certificate(index: int, norm: str) -> Certificate:
    """The certified bracket of ``gamma_N`` for pool dataset ``index`` (see module doc)."""
    X, y = dataset(index)
    solved = max_margin(X, y, norm)
    W_star = np.asarray(solved.W, dtype=np.float64)
    with precise.precision(50):
        lower = precise.margin(W_star, X, y) / precise.norm(W_star, norm)
        lower_f = float(lower)
        if lower_f > lower:
            lower_f = float(np.nextafter(lower_f, -np.inf))
    upper_f = solved.upper * (1.0 + UPPER_ROUNDING_ALLOWANCE)
    if not 0 < lower_f <= upper_f:
        raise RuntimeError(f"pool dataset {index} ({norm}): bad bracket [{lower_f}, {upper_f}]")
    return Certificate(lower_f, upper_f, W_star)
