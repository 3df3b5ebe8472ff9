"""Input checks shared by every public entry point.

Each check raises :class:`harness.errors.HarnessInputError` (a ``ValueError``) whose message
names the argument and the problem on one line. Internal hot loops (the engine) validate once
up front and then call the unchecked torch kernels.
"""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessInputError


def _as_float_array(name: str, a, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HarnessInputError(f"{name} is not a numeric array ({exc})") from None
    if arr.ndim != ndim:
        raise HarnessInputError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise HarnessInputError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise HarnessInputError(f"{name} contains {bad} NaN or infinite entries")
    return arr


def check_matrix(name: str, a) -> np.ndarray:
    """Return ``a`` as a finite float64 matrix or raise naming ``name``."""
    return _as_float_array(name, a, 2)


def check_labels(y, n: int, k: int | None = None) -> tuple[np.ndarray, int]:
    """Check integer labels ``y`` for ``n`` samples; return ``(y, k)``.

    Labels must be integers in ``{0..k-1}`` and every class must be present (THEORY.md
    section 1). When ``k`` is None it is inferred as ``max(y) + 1``.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise HarnessInputError(f"y must be 1-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise HarnessInputError(f"y has {arr.shape[0]} labels but X has {n} rows")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise HarnessInputError("y must hold integer class labels")
    elif arr.dtype.kind not in "iub":
        raise HarnessInputError(f"y must hold integer class labels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if k is None:
        k = int(arr.max()) + 1 if arr.size else 0
    if k < 2:
        raise HarnessInputError(f"need at least 2 classes, got k={k}")
    if arr.min() < 0 or arr.max() >= k:
        raise HarnessInputError(
            f"labels out of range: found {int(arr.min())}..{int(arr.max())}, expected 0..{k - 1}"
        )
    counts = np.bincount(arr, minlength=k)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise HarnessInputError(
            f"class {int(empty[0])} has no samples (every class must be present)")
    return arr, k


def check_problem(W, X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a classifier ``W`` (k x d) with data ``X`` (n x d) and labels ``y``."""
    W = check_matrix("W", W)
    X = check_matrix("X", X)
    if W.shape[1] != X.shape[1]:
        raise HarnessInputError(
            f"W has {W.shape[1]} columns but X has {X.shape[1]} features (need W: k x d, X: n x d)"
        )
    y, _ = check_labels(y, X.shape[0], W.shape[0])
    return W, X, y


def check_data(X, y) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate a data set on its own; return ``(X, y, k)``."""
    X = check_matrix("X", X)
    y, k = check_labels(y, X.shape[0])
    return X, y, k
