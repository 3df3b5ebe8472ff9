"""The reference: the quantities of :mod:`harness.losses` and :mod:`harness.norms` in mpmath.

Every property's verdict is taken here, at ``DEFAULT_DPS`` = 50 significant digits unless asked
otherwise, so a float64 rounding artifact can neither fail nor pass a lemma. Float64 inputs are
converted exactly (every double is a dyadic rational); all arithmetic then happens at the
working precision. Functions take plain nested lists / numpy arrays and return mpf values or
lists of lists of mpf. Use :func:`precision` to set the precision: it restores the previous one
on exit, also when the body raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import mpmath
import numpy as np

from harness.errors import HarnessInputError
from harness.validation import check_matrix, check_problem

DEFAULT_DPS = 50

Matrix = list  # list of rows, each a list of mpf


@contextlib.contextmanager
def precision(dps: int = DEFAULT_DPS) -> Iterator[int]:
    """Work at ``dps`` significant digits inside the block; restore the old precision after."""
    if dps < 15:
        raise HarnessInputError(f"precision must be at least 15 digits, got {dps}")
    with mpmath.workdps(dps):
        yield dps


def _mpf(v) -> mpmath.mpf:
    """``v`` as an mpf: float64 values exactly, mpf values as they are (no rounding to float)."""
    return v if isinstance(v, mpmath.mpf) else mpmath.mpf(float(v))


def mp_matrix(A) -> Matrix:
    """Exact conversion of a float or mpf array (any nesting accepted by numpy) to mpf rows.

    mpf entries pass through untouched, so points computed at high precision (``W - eta D``
    with an mpmath direction ``D``) are not rounded back to float64.
    """
    arr = np.asarray(A, dtype=object)
    if arr.ndim == 1:
        return [_mpf(v) for v in arr]
    return [[_mpf(v) for v in row] for row in arr]


def _dot(a: Sequence, b: Sequence):
    return mpmath.fsum(u * v for u, v in zip(a, b, strict=True))


def logits(W, X) -> Matrix:
    """``z_i = W x_i`` for every sample: n x k."""
    Wm, Xm = mp_matrix(W), mp_matrix(X)
    return [[_dot(w, x) for w in Wm] for x in Xm]


def _shadow(A) -> np.ndarray:
    """A float64 stand-in of ``A`` for validation only: same shape, mpf entries replaced by 0
    (finite) or NaN (not finite), so an mpf beyond float64's range is not misread as inf."""
    arr = np.asarray(A, dtype=object)
    if arr.size == 0:
        return np.zeros(arr.shape)
    return np.vectorize(lambda v: (0.0 if mpmath.isfinite(v) else np.nan)
                        if isinstance(v, mpmath.mpf) else v, otypes=[np.float64])(arr)


def gaps(W, X, y) -> Matrix:
    """``r_ic = z_{i,y_i} - z_ic``; the label entry is ``None``.

    Every loss, proxy, gradient and margin goes through here: the input is validated once
    (:func:`harness.validation.check_problem`: NaN/inf, shapes, labels, empty classes).
    """
    check_problem(_shadow(W), _shadow(X), y)
    z = logits(W, X)
    return [[None if c == yi else zi[yi] - zi[c] for c in range(len(zi))]
            for zi, yi in zip(z, np.asarray(y, dtype=int), strict=True)]


def margin(W, X, y):
    """``m(W) = min_i min_{c != y_i} r_ic``."""
    return min(r for row in gaps(W, X, y) for r in row if r is not None)


def _log1pexp(u):
    return mpmath.log1p(mpmath.exp(u)) if u < 0 else u + mpmath.log1p(mpmath.exp(-u))


def pair_weights(W, X, y, loss: str = "ce") -> Matrix:
    """``w_ic = -d ell_i / d r_ic`` (0 on the label entry); see :mod:`harness.losses`."""
    out = []
    for row in gaps(W, X, y):
        if loss == "ce":
            denom = 1 + mpmath.fsum(mpmath.exp(-r) for r in row if r is not None)
            out.append([mpmath.mpf(0) if r is None else mpmath.exp(-r) / denom for r in row])
        elif loss == "exp":
            out.append([mpmath.mpf(0) if r is None else mpmath.exp(-r) for r in row])
        elif loss == "pairlog":
            out.append([mpmath.mpf(0) if r is None else 1 / (1 + mpmath.exp(r)) for r in row])
        else:
            raise HarnessInputError(f"unknown loss {loss!r}")
    return out


def sample_losses(W, X, y, loss: str = "ce") -> list:
    """``ell_i(W)`` for every sample."""
    out = []
    for row in gaps(W, X, y):
        rs = [r for r in row if r is not None]
        if loss == "ce":
            out.append(mpmath.log1p(mpmath.fsum(mpmath.exp(-r) for r in rs)))
        elif loss == "exp":
            out.append(mpmath.fsum(mpmath.exp(-r) for r in rs))
        elif loss == "pairlog":
            out.append(mpmath.fsum(_log1pexp(-r) for r in rs))
        else:
            raise HarnessInputError(f"unknown loss {loss!r}")
    return out


def loss(W, X, y, loss: str = "ce"):
    """``L(W) = (1/n) sum_i ell_i(W)``."""
    ells = sample_losses(W, X, y, loss)
    return mpmath.fsum(ells) / len(ells)


def proxy(W, X, y, loss: str = "ce"):
    """``G(W) = (1/n) sum_i sum_{c != y_i} w_ic`` (``(1/n) sum (1 - s_{i,y_i})`` for CE)."""
    w = pair_weights(W, X, y, loss)
    return mpmath.fsum(mpmath.fsum(row) for row in w) / len(w)


def class_proxies(W, X, y, loss: str = "ce") -> tuple[list, list]:
    """``(G_c, Q_c)`` for c = 0..k-1 (see :func:`harness.losses.class_proxies`)."""
    w = pair_weights(W, X, y, loss)
    n, k = len(w), len(w[0])
    labels = np.asarray(y, dtype=int)
    G_c = [mpmath.fsum(mpmath.fsum(w[i]) for i in range(n) if labels[i] == c) / n
           for c in range(k)]
    Q_c = [mpmath.fsum(w[i][c] for i in range(n) if labels[i] != c) / n for c in range(k)]
    return G_c, Q_c


def gradient(W, X, y, loss: str = "ce") -> Matrix:
    """``grad L(W) = -(1/n) sum_i sum_{c != y_i} w_ic (e_{y_i} - e_c) x_i^T``: k x d."""
    w = pair_weights(W, X, y, loss)
    Xm = mp_matrix(X)
    labels = np.asarray(y, dtype=int)
    n, k, d = len(Xm), len(w[0]), len(Xm[0])
    coef = [[-w[i][c] for c in range(k)] for i in range(n)]
    for i in range(n):
        coef[i][labels[i]] = mpmath.fsum(w[i])
    return [[-mpmath.fsum(coef[i][c] * Xm[i][j] for i in range(n)) / n for j in range(d)]
            for c in range(k)]


def softmax(z) -> list:
    """``softmax(z)`` of one logit vector."""
    check_matrix("z", _shadow(z)[None, :] if np.ndim(z) == 1 else _shadow(z))
    zm = mp_matrix(z)
    top = max(zm)
    e = [mpmath.exp(v - top) for v in zm]
    total = mpmath.fsum(e)
    return [v / total for v in e]


def inner(A, B):
    """Frobenius inner product ``<A, B>``."""
    return mpmath.fsum(a * b for ra, rb in zip(A, B, strict=True)
                       for a, b in zip(ra, rb, strict=True))


def _p_norm(values: Sequence, p: float):
    vals = [abs(v) for v in values]
    if np.isinf(p):
        return max(vals)
    if p == 1:
        return mpmath.fsum(vals)
    pp = mpmath.mpf(p)
    return mpmath.fsum(v ** pp for v in vals) ** (1 / pp)


def singular_values(A) -> list:
    """Singular values of ``A`` at the working precision (mpmath's SVD)."""
    M = mpmath.matrix([[mpmath.mpf(v) for v in row] for row in A])
    return [abs(s) for s in mpmath.svd_r(M, compute_uv=False)]


def norm(A, spec) -> mpmath.mpf:
    """``N(A)`` for any :class:`harness.norms.Norm` (name or object)."""
    from harness.norms import Norm

    N = Norm.parse(spec)
    check_matrix("A", _shadow(A))
    rows = [[_mpf(v) for v in row] for row in A]
    if N.family == "entrywise":
        return _p_norm([v for row in rows for v in row], N.p)
    return _p_norm(singular_values(rows), N.p)


def dual_norm(A, spec) -> mpmath.mpf:
    """``N_dual(A)``."""
    from harness.norms import Norm

    return norm(A, Norm.parse(spec).dual)


def _sign(v) -> mpmath.mpf:
    return mpmath.mpf((v > 0) - (v < 0))


def _power_weights(values: Sequence, p: float) -> list:
    """Maximiser of ``<v, u>`` over ``||u||_p <= 1``: ``sign(v) |v|^(q-1) / ||v||_q^(q-1)``."""
    if np.isinf(p):
        return [_sign(v) for v in values]
    if p == 1:
        top = max(range(len(values)), key=lambda i: abs(values[i]))
        return [_sign(v) if i == top else mpmath.mpf(0) for i, v in enumerate(values)]
    from harness.norms import conjugate_exponent

    q = conjugate_exponent(float(p))
    total = _p_norm(values, q)
    if total == 0:
        return [mpmath.mpf(0) for _ in values]
    return [_sign(v) * (abs(v) / total) ** (q - 1) for v in values]


def steepest_direction(G, spec) -> Matrix:
    """``D = argmax_{N(D) <= 1} <G, D>`` at the working precision (see :mod:`harness.norms`).

    Schatten norms use mpmath's SVD; singular values below ``10^(-dps/2)`` times the largest
    count as zero (the CE gradient has rank at most k - 1, its last singular value is rounding
    noise at the working precision and must not get a unit weight).
    """
    from harness.norms import Norm

    N = Norm.parse(spec)
    rows = [[_mpf(v) for v in row] for row in G]
    k, d = len(rows), len(rows[0])
    if N.family == "entrywise":
        flat = _power_weights([v for row in rows for v in row], N.p)
        return [flat[c * d:(c + 1) * d] for c in range(k)]
    U, S, V = mpmath.svd_r(mpmath.matrix(rows), compute_uv=True)
    sigma = [abs(s) for s in S]
    cut = max(sigma) * mpmath.mpf(10) ** (-(mpmath.mp.dps // 2))
    kept = [s if s > cut else mpmath.mpf(0) for s in sigma]
    weights = [mpmath.mpf(s > 0) for s in kept] if np.isinf(N.p) else _power_weights(kept, N.p)
    return [[mpmath.fsum(U[c, r] * weights[r] * V[r, j] for r in range(len(kept)))
             for j in range(d)] for c in range(k)]
