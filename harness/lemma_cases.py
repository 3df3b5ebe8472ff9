"""Hypothesis strategies that generate lemma inputs ("cases"), aimed at the hard regions.

A case is a dict of numpy arrays and numbers. The strategies reach (issue 2, item 5):

* saturated softmax: the largest logit gap is drawn log-uniformly in ``[1e-6, 1e3]``;
* near-vertex simplex points: one logit pushed up by up to ``1e3``;
* tiny and huge W (the same log-uniform logit scale), non-unit data scales (``1e-3..1e3``);
* ``k`` from 2 to 20, ``n`` from ``k`` to 50 (half of the draws small, so the mpmath verdict of
  every example stays cheap);
* data with rows of equal l1 norm and antipodal rows (where the sum-norm bounds are equalities),
  teacher-labelled data (``m(A) >= 0`` for the teacher ``A``), random labels.

``target()`` on each lemma's ratio then climbs from these starting points.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

UNIT = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def log_uniform(lo_exp: float, hi_exp: float) -> st.SearchStrategy[float]:
    """``10^u`` with ``u`` uniform in ``[lo_exp, hi_exp]``."""
    return st.floats(lo_exp, hi_exp).map(lambda u: float(10.0 ** u))


def _small_or_any(lo: int, small: int, hi: int) -> st.SearchStrategy[int]:
    """Two draws in three from ``[lo, small]``, one from ``[lo, hi]``: every size is reached,
    and most examples stay cheap to judge in mpmath."""
    few = st.integers(lo, min(small, hi))
    return st.one_of(few, few, st.integers(lo, hi))


#: Matrices with more entries than this come from a drawn seed instead of entry by entry:
#: hypothesis's per-choice bookkeeping would otherwise dominate the run, and its mutations of
#: hundreds of entries climb ``target()`` no better than fresh draws. Small matrices (where one
#: entry matters: k = 2, n = 2) stay fully under hypothesis's control.
ENTRYWISE_MAX = 24


def _matrix(draw, rows: int, cols: int) -> np.ndarray:
    if rows * cols <= ENTRYWISE_MAX:
        return draw(arrays(np.float64, (rows, cols), elements=UNIT))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    return rng.uniform(-1.0, 1.0, size=(rows, cols))


def _unit_direction(M: np.ndarray) -> np.ndarray:
    scale = np.abs(M).max()
    return M / scale if scale > 0 else np.ones_like(M)


def _finite_logits(W: np.ndarray, X: np.ndarray) -> bool:
    """Rescaling for subnormal data can overflow: keep only cases whose logit terms
    ``|W_cj x_ij|`` summed stay finite in float64."""
    with np.errstate(all="ignore"):
        return bool(np.all(np.isfinite(W)) and np.all(np.isfinite(np.abs(X) @ np.abs(W).T)))


def _rescale_to_gap(W: np.ndarray, X: np.ndarray, y: np.ndarray, gap: float) -> np.ndarray:
    """``W`` scaled so that its largest |pairwise logit gap| is ``gap``."""
    z = X @ W.T
    widest = np.abs(z[np.arange(len(y)), y][:, None] - z).max()
    return W * (gap / widest) if widest > 0 else W * gap


def _margin(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    z = X @ W.T
    r = z[np.arange(len(y)), y][:, None] - z
    r[np.arange(len(y)), y] = np.inf
    return float(r.min())


@st.composite
def problems(draw, *, teacher: bool | None = None, separating: bool = False, k_max: int = 20,
             n_max: int = 50, d_max: int = 8) -> dict:
    """``{"W", "X", "y", "A"}``: a classifier, data, labels and a teacher ``A``.

    With teacher labels (``teacher=True``, or drawn when None) ``y_i = argmax_c (A x_i)_c``,
    empty classes removed (with their rows of ``A``), so ``m(A) >= 0``. ``W`` blends ``A`` with
    a random direction and is scaled so that its widest logit gap is ``10^[-6, 3]``; with
    ``separating=True`` (teacher labels, a blend of at most 0.3) so that its margin ``m(W)`` is
    ``10^[-1, 3]`` instead (the small-loss regime of L-LE-2G and SEPARATES).
    """
    teacher = True if separating else teacher
    k = draw(_small_or_any(2, 4, k_max))
    n = k + draw(_small_or_any(0, 3, n_max - k))
    d = draw(_small_or_any(1, 3, d_max))
    X = _matrix(draw, n, d)
    rows = draw(st.sampled_from(["raw", "equal-l1", "antipodal"]))
    if rows == "equal-l1":
        l1 = np.abs(X).sum(axis=1, keepdims=True)
        X = np.where(l1 > 0, X / np.where(l1 > 0, l1, 1.0), 1.0 / d)
    elif rows == "antipodal":
        X[1::2] = -X[0::2][: n // 2]
    X = X * draw(log_uniform(-3, 3))
    A = _matrix(draw, k, d)
    if teacher is None:
        teacher = draw(st.booleans())
    if teacher:
        labels = np.argmax(X @ A.T, axis=1)
        present = np.unique(labels)
        assume(len(present) >= 2)
        A = A[present]
        y = np.searchsorted(present, labels).astype(np.int64)
        k = len(present)
    else:
        rest = draw(st.lists(st.integers(0, k - 1), min_size=n - k, max_size=n - k))
        y = np.concatenate([np.arange(k), np.asarray(rest, dtype=np.int64)]).astype(np.int64)
    top = 0.3 if separating else 1.0
    blend = draw(st.one_of(st.just(0.0), st.just(top), st.floats(0.0, top)))
    W_dir = (1 - blend) * _unit_direction(A) + blend * _unit_direction(_matrix(draw, k, d))
    if separating:
        m = _margin(W_dir, X, y)
        assume(m > 0 and np.isfinite(m))
        with np.errstate(all="ignore"):
            W = W_dir * (draw(log_uniform(-1, 3)) / m)
    else:
        W = _rescale_to_gap(W_dir, X, y, draw(log_uniform(-6, 3)))
    assume(_finite_logits(W, X))
    return {"W": W, "X": X, "y": y, "A": A}


@st.composite
def steps(draw, case: dict, lo_exp: float = -6, hi_exp: float = 2.5) -> np.ndarray:
    """A perturbation ``D`` of ``W`` with ``B ||D||_max = 10^[lo_exp, hi_exp]``.

    Either random, or the worst direction for one sample i and class c:
    ``(e_c - e_{y_i}) sign(x_i)^T``, which moves the gap ``r_ic`` by ``-2 ||x_i||_1`` per unit.
    """
    W, X, y = case["W"], case["X"], case["y"]
    k, d = W.shape
    if draw(st.booleans()):
        D = _matrix(draw, k, d)
    else:
        i = draw(st.integers(0, len(y) - 1))
        c = draw(st.integers(0, k - 2))
        c = c + (c >= y[i])
        D = np.zeros((k, d))
        D[c] += np.sign(X[i])
        D[y[i]] -= np.sign(X[i])
    B = np.abs(X).sum(axis=1).max()
    size = np.abs(D).max() * B
    assume(size > 0)
    D = D * (draw(log_uniform(lo_exp, hi_exp)) / size)
    assume(_finite_logits(W + D, X))
    return D


@st.composite
def problems_with_step(draw, lo_exp: float = -6, hi_exp: float = 2.5) -> dict:
    """:func:`problems` plus a perturbation ``D`` (:func:`steps`)."""
    case = draw(problems())
    case["D"] = draw(steps(case, lo_exp, hi_exp))
    return case


@st.composite
def simplex_points(draw, with_vector: bool = False) -> dict:
    """``{"z", "c"[, "v"]}``: logits ``z`` (``s = softmax(z)``), a class ``c``, a vector ``v``.

    Near-vertex points come from pushing ``z_c`` up by up to ``1e3``; ``v`` is random or the
    sign pattern ``v_c = -1``, ``v_j = +1`` (where SOFTMAX-QUAD is an equality in the limit).
    """
    k = draw(_small_or_any(2, 4, 20))
    z = draw(arrays(np.float64, k, elements=UNIT)) * draw(log_uniform(-3, 3))
    c = draw(st.integers(0, k - 1))
    if draw(st.booleans()):
        z[c] = z.max() + draw(log_uniform(-2, 3))
    case = {"z": z, "c": c}
    if with_vector:
        if draw(st.booleans()):
            v = draw(arrays(np.float64, k, elements=UNIT))
        else:
            v = np.ones(k)
            v[c] = -1.0
        case["v"] = v * draw(log_uniform(-3, 3))
    return case


@st.composite
def gradient_histories(draw) -> dict:
    """``{"beta1", "beta2", "g"}``: Adam's betas with ``beta1^2 < beta2`` and a gradient
    history ``g`` (T x p), random or geometric ``g_s = q^(T-1-s)`` times signs and noise (the
    Cauchy-Schwarz equality case of ADAM-RATIO is geometric with ``q = beta1 / beta2``)."""
    beta1 = draw(st.floats(0.0, 0.999))
    beta2 = draw(st.floats(beta1 * beta1, 0.99999, exclude_min=True))
    assume(beta1 * beta1 < beta2 < 1.0)
    T = draw(st.integers(1, 100))
    p = draw(st.integers(1, 3))
    g = _matrix(draw, T, p)
    if draw(st.booleans()):
        q = draw(st.floats(0.0, 2.0))
        noise = draw(st.floats(0.0, 1.0)) * g
        g = (q ** np.arange(T - 1, -1, -1.0))[:, None] * (1.0 + noise)
    return {"beta1": beta1, "beta2": beta2, "g": g * draw(log_uniform(-5, 5))}


@st.composite
def pool_cases(draw, norms: tuple[str, ...], with_step: bool = False,
               losses: tuple[str, ...] = ("ce",)) -> dict:
    """``{"ds", "norm", "loss", "W"[, "eta"]}`` on a dataset of :mod:`harness.lemma_pool`.

    ``W`` blends the certified max-margin solution ``V_N`` with a random direction, scaled to a
    widest logit gap of ``10^[-6, 3]``; ``eta`` (DESCENT) is ``10^[-6, 1]``.
    """
    from harness import lemma_pool

    ds = draw(st.integers(0, len(lemma_pool.POOL) - 1))
    norm = draw(st.sampled_from(norms))
    X, y = lemma_pool.dataset(ds)
    V = lemma_pool.certificate(ds, norm).W
    blend = draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0)))
    W_dir = (1 - blend) * _unit_direction(V) + blend * _unit_direction(
        _matrix(draw, *V.shape))
    W = _rescale_to_gap(W_dir, X, y, draw(log_uniform(-6, 3)))
    assume(_finite_logits(W, X))
    case = {"ds": ds, "norm": norm, "loss": draw(st.sampled_from(losses)), "W": W}
    if with_step:
        case["eta"] = draw(log_uniform(-6, 1))
    return case
