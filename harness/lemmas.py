"""The lemma catalogue: one entry per ID of THEORY.md section 2.

A lemma is data (DESIGN.md): ID, statement, source tag, input strategy, its two sides, its
constants (with the 1%-tighter value of every sharp one, for the teeth), pinned examples. The
properties (``properties/``), the teeth tests, ``python -m harness lemmas`` and the lemma report
all read :data:`CATALOGUE`.

Sides. ``sides(ar, case, constants)`` returns ``{part: (lhs, rhs)}``; the statement says
``lhs <= rhs`` for every part (identities: ``|residual| <= tolerance * scale``), or ``None``
when the case does not meet the statement's premise (a vacuous example). The code is written
once over an arithmetic ``ar`` (:mod:`harness.lemma_arith`): float64 for the search's
``target()``, mpmath for the verdict. Every cancellation-prone quantity is written as a sum of
positive terms (``1 - s_c = sum_{j != c} s_j``; variances centred at the top class), so even the
mpmath side needs no more than its working precision where the softmax saturates.

Constants. ``constants`` maps a constant's name to its value; the teeth run replaces one sharp
constant at a time by its ``tighter`` value (1% stronger) and requires a violation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from harness import lemma_cases, lemma_pool
from harness.losses import evaluate

Parts = dict[str, tuple]


@dataclass(frozen=True)
class Constant:
    """A named constant of a statement; ``tighter`` is the 1%-stronger value (sharp ones)."""

    name: str
    value: float
    tighter: float | None = None

    @property
    def sharp(self) -> bool:
        return self.tighter is not None


@dataclass(frozen=True)
class Lemma:
    """One statement of THEORY.md section 2 (see the module docstring)."""

    id: str
    statement: str
    tag: str
    strategy: Callable[[], object]
    sides: Callable[[object, dict, Mapping[str, float]], Parts | None]
    constants: tuple[Constant, ...] = ()
    family: str = ""
    tightness: str = ""
    examples: tuple[dict, ...] = ()
    xfail: str | None = None
    notes: str = ""

    @property
    def default_constants(self) -> dict[str, float]:
        return {c.name: c.value for c in self.constants}

    @property
    def sharp_constants(self) -> tuple[Constant, ...]:
        return tuple(c for c in self.constants if c.sharp)

    @property
    def sharp_constant(self) -> float | dict[str, float] | None:
        """The report's ``sharp_constant``: one value, a dict for several, or None."""
        sharp = self.sharp_constants
        if not sharp:
            return None
        if len(sharp) == 1:
            return sharp[0].value
        return {c.name: c.value for c in sharp}

    def tightened(self, name: str) -> dict[str, float]:
        """The constants with ``name`` replaced by its 1%-stronger value."""
        values = self.default_constants
        values[name] = next(c.tighter for c in self.constants if c.name == name)
        return values


# ----------------------------------------------------------------------------------------------
# helpers shared by several lemmas (all over an arithmetic ``ar``)
# ----------------------------------------------------------------------------------------------

def logit_scale(case: dict) -> float:
    """``T``: the largest ``sum_j |M_cj x_ij|`` over the case's classifiers ``M`` (``W``,
    ``W + D``, ``A``) and samples, or ``max |z|`` for simplex cases.

    Rounding at p digits perturbs every logit gap by up to ``10^-p T`` in absolute terms, i.e.
    every pair weight ``exp(-r)`` by a relative ``10^-p T``: the verdict therefore works at
    ``dps + log10(T)`` digits (:func:`harness.lemma_search.judge`), so a huge W with tiny data
    (a common row component of 1e104 cancelling in the gaps) is judged as exactly as a unit one.
    """
    if "z" in case:
        return float(np.abs(case["z"]).max())
    if "W" not in case:
        return 0.0
    X, _ = _data(case)
    mats = [case["W"]] + [case[key] for key in ("A",) if key in case]
    if "D" in case:
        mats.append(case["W"] + case["D"])
    return max(float((np.abs(X) @ np.abs(M).T).max()) for M in mats)


def _data(case: dict) -> tuple[np.ndarray, np.ndarray]:
    if "ds" in case:
        return lemma_pool.dataset(case["ds"])
    return case["X"], case["y"]


def _data_bound(ar, X):
    """``B = max_i ||x_i||_1``."""
    return max(ar.fsum(abs(v) for v in row) for row in ar.array(X))


def _ratio(lhs, rhs) -> float:
    if rhs > 0:
        return float(lhs / rhs)
    return 0.0 if lhs <= rhs else math.inf


def _worst(pairs) -> tuple:
    """The ``(lhs, rhs)`` pair with the largest ratio."""
    return max(pairs, key=lambda pair: _ratio(*pair))


def _max_abs(ar, A):
    return max(abs(v) for v in ar.array(A).flat)


def _sum_abs(ar, A):
    return ar.fsum(abs(v) for v in ar.array(A).flat)


def _complements(ar, s) -> list:
    """``1 - s_j = sum_{i != j} s_i`` for every j, never by subtraction."""
    return [ar.fsum(s[i] for i in range(len(s)) if i != j) for j in range(len(s))]


def _centred_variance(ar, s, v):
    """``v^T (diag(s) - s s^T) v``, centred at the top class ``a`` of ``s``:
    ``sum_j s_j u_j^2 - (sum_j s_j u_j)^2`` with ``u = v - v_a``. Near a vertex the second term
    is at most ``(1 - s_a)`` times the first, so nothing cancels."""
    a = int(np.argmax([float(x) for x in s]))
    u = [v[j] - v[a] for j in range(len(s))]
    first = ar.fsum(s[j] * u[j] * u[j] for j in range(len(s)))
    mean = ar.fsum(s[j] * u[j] for j in range(len(s)))
    return first - mean * mean


# ----------------------------------------------------------------------------------------------
# sides of each lemma
# ----------------------------------------------------------------------------------------------

#: Tolerance of the float64 harness gradient against the reference, relative to the sum of
#: the absolute values of its terms, in ulps per unit of the error model
#: ``n k + d + |log_scale| + 4 max|z_ic|``: sums of that many terms, ``exp`` of a rounded
#: log-scale, and the gaps ``r_ic = z_{i,y_i} - z_ic`` formed from float64 logits, whose
#: absolute error ``eps (|z_{i,y_i}| + |z_ic|)`` becomes a relative error of ``w_ic = f(r)``
#: (the conditioning of float64 logits; exact gaps would need ``(W_y - W_c) x_i`` per pair).
FLOAT64_GRADIENT_ULPS = 4.0


def grad_sides(ar, case, k) -> Parts:
    """GRAD: ``<A, -grad L> = (1/n) sum_i sum_{c != y_i} s_ic (e_{y_i} - e_c)^T A x_i`` (the
    pair-sum formula), with ``grad L`` from :func:`harness.precise.gradient` (``gradient``) and
    as the derivative ``-d/dt L(W + tA)`` (``derivative``: :func:`mpmath.diff` in mpmath,
    autograd in float64); ``float64``: the engine's log-domain float64 gradient against this
    arithmetic's, within ``FLOAT64_GRADIENT_ULPS`` ulps of its error model."""
    W, X, y, A = case["W"], case["X"], case["y"], case["D"]
    n, d = X.shape
    w = ar.pair_weights(W, X, y)
    formula = ar.fsum((w * ar.gaps(A, X, y)).flat) / n
    row_l1 = [ar.fsum(abs(v) for v in row) for row in ar.array(X)]
    mass = ar.fsum(ar.fsum(w[i]) * row_l1[i] for i in range(n)) / n
    scale = 2 * _max_abs(ar, A) * mass
    tol = ar.identity_tol * scale
    gradient = ar.gradient(W, X, y)
    # numerical differentiation resolves a derivative only to a relative 10^-p of L itself
    diff_tol = ar.identity_tol * (scale + ar.loss(W, X, y))
    parts = {
        "gradient": (abs(-ar.inner(A, gradient) - formula), tol),
        "derivative": (abs(-ar.directional_derivative(W, A, X, y) - formula), diff_tol),
    }
    ev = evaluate(torch.as_tensor(W), torch.as_tensor(X), torch.as_tensor(y))
    log_scale = float(ev.log_scale)
    rebuilt = ar.array(ev.grad_tilde.numpy()) * ar.exp(ar.scalar(log_scale))
    logit_size = float(np.abs(X @ W.T).max())
    ulps = FLOAT64_GRADIENT_ULPS * (n * w.shape[1] + d + abs(log_scale) + 4 * logit_size
                                    ) * 2.0 ** -52
    parts["float64"] = (_sum_abs(ar, rebuilt - gradient), ulps * 2 * ar.fsum(
        ar.fsum(w[i]) * row_l1[i] for i in range(n)) / n)
    return parts


def grad_lb_sides(ar, case, k) -> Parts | None:
    """GRAD-LB: ``c G(W) m(A) <= <A, -grad L(W)>`` for ``m(A) >= 0``."""
    W, X, y, A = case["W"], case["X"], case["y"], case["A"]
    m_A = ar.margin(A, X, y)
    if m_A < 0:
        return None
    return {"bound": (k["c"] * ar.proxy(W, X, y) * m_A, -ar.inner(A, ar.gradient(W, X, y)))}


def _curvature(ar, W, D, X, xi):
    """``Q(xi) = (1/2n) sum_i (D x_i)^T (diag(s_i') - s_i' s_i'^T) (D x_i)``, ``s'`` at
    ``W + xi D``."""
    S = ar.softmax_rows(ar.array(W) + ar.scalar(xi) * ar.array(D), X)
    V = ar.array(X) @ ar.array(D).T
    n = V.shape[0]
    return ar.fsum(_centred_variance(ar, S[i], V[i]) for i in range(n)) / (2 * n)


def _curvature_extremes(W, D, X) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Cached :func:`_find_curvature_extremes` (the float64 and mpmath sides share it)."""
    return _cached_extremes(W.tobytes(), D.tobytes(), X.tobytes(), W.shape, X.shape)


@functools.lru_cache(maxsize=4)
def _cached_extremes(W: bytes, D: bytes, X: bytes, w_shape, x_shape):
    def load(buf, shape):
        return np.frombuffer(buf, dtype=np.float64).reshape(shape).copy()

    return _find_curvature_extremes(load(W, w_shape), load(D, w_shape), load(X, x_shape))


def _find_curvature_extremes(W, D, X) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Candidate ``xi`` for ``min Q`` and for ``max Q`` on [0, 1], best first (float64).

    Candidates: a 129-point grid plus every ``xi`` where two logits of one sample cross while
    they are that sample's top two (the peaks of ``Q``; narrower than any grid when D moves
    logits by 1e3). W and D are centred first (subtracting the same vector from every row
    changes no softmax and no variance, and removes a common row component whose logits would
    cancel catastrophically in float64). Each list ends with a 17-point grid, the fallback the
    verdict walks through when float64 misjudged the order (see :func:`hess_sides`).
    """
    W, D = W - W.mean(axis=0), D - D.mean(axis=0)
    z0, dz = X @ W.T, X @ D.T
    num = z0[:, None, :] - z0[:, :, None]
    den = dz[:, :, None] - dz[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = num / den
    inside = (cross >= 0) & (cross <= 1)
    i_idx = np.nonzero(inside)[0]
    xs = cross[inside]
    if xs.size:
        at = z0[i_idx] + xs[:, None] * dz[i_idx]
        top2 = np.sort(at, axis=1)[:, -2:]
        xs = xs[np.isclose(top2[:, 0], top2[:, 1], rtol=1e-9, atol=1e-12)]
    grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, 129), xs]))
    Wt = torch.as_tensor(W)[None] + torch.as_tensor(grid)[:, None, None] * torch.as_tensor(D)
    S = torch.softmax(torch.as_tensor(X) @ Wt.transpose(-1, -2), dim=-1)
    V = torch.as_tensor(dz)
    mean = (S * V).sum(-1, keepdim=True)
    order = np.argsort((S * (V - mean) ** 2).sum(-1).mean(-1).numpy(), kind="stable")
    fallback = tuple(np.linspace(0.0, 1.0, 17))
    return (tuple(grid[order[:8]]) + fallback, tuple(grid[order[::-1][:8]]) + fallback)


def _bracketing_curvature(ar, W, D, X, candidates, reaches, best):
    """``Q`` at the first candidate with ``reaches(Q)``, else ``best`` of all values seen
    (walks the float64-ranked candidates in this arithmetic; normally the first one
    reaches)."""
    seen = []
    for xi in candidates:
        q = _curvature(ar, W, D, X, xi)
        if reaches(q):
            return q
        seen.append(q)
    return best(seen)


def hess_sides(ar, case, k) -> Parts:
    """HESS: the Taylor remainder ``R = L(W+D) - L(W) - <grad L(W), D>`` lies between
    ``min_xi Q(xi)`` and ``max_xi Q(xi)``. A pass is constructive: it exhibits ``xi_lo`` and
    ``xi_hi`` with ``Q(xi_lo) <= R <= Q(xi_hi)`` (candidates from
    :func:`_curvature_extremes`). The tolerance covers the rounding of ``R`` (a difference of
    terms of size ``|L(W+D)| + |L(W)| + |<grad, D>|``) at this arithmetic's precision."""
    W, X, y, D = case["W"], case["X"], case["y"], case["D"]
    L0, L1 = ar.loss(W, X, y), ar.loss(ar.array(W) + ar.array(D), X, y)
    linear = ar.inner(ar.gradient(W, X, y), D)
    R = L1 - L0 - linear
    tol = ar.identity_tol * (abs(L0) + abs(L1) + abs(linear))
    lows, highs = _curvature_extremes(W, D, X)
    q_hi = _bracketing_curvature(ar, W, D, X, highs, lambda q: R <= q + tol, max)
    q_lo = _bracketing_curvature(ar, W, D, X, lows, lambda q: q <= R + tol, min)
    return {"upper": (R, q_hi + tol), "lower": (q_lo, R + tol)}


def softmax_var_sides(ar, case, k) -> Parts:
    """SOFTMAX-VAR: ``1 - sum_j s_j^2 = sum_j s_j (1 - s_j) <= c (1 - s_c)``."""
    s = ar.softmax(case["z"])
    rest = _complements(ar, s)
    return {"bound": (ar.fsum(s[j] * rest[j] for j in range(len(s))),
                      k["c"] * rest[case["c"]])}


def softmax_quad_sides(ar, case, k) -> Parts:
    """SOFTMAX-QUAD: ``v^T (diag(s) - s s^T) v <= c ||v||_inf^2 (1 - s_c)``."""
    s = ar.softmax(case["z"])
    v = ar.array(case["v"])
    top = _max_abs(ar, v)
    return {"bound": (_centred_variance(ar, s, v),
                      k["c"] * top * top * _complements(ar, s)[case["c"]])}


def dual_lb_sides(ar, case, k) -> Parts:
    """DUAL-LB: ``c gamma_N G(W) <= ||grad L(W)||_dual`` (``gamma_N`` from the certified
    bracket: its upper end for a pass, its lower end to confirm a violation)."""
    X, y = _data(case)
    W, loss, norm = case["W"], case.get("loss", "ce"), case["norm"]
    gamma = ar.gamma(lemma_pool.certificate(case["ds"], norm))
    return {"dual-lb": (k["c_lb"] * gamma * ar.proxy(W, X, y, loss),
                        ar.dual_norm(ar.gradient(W, X, y, loss), norm))}


def dual_ub_sides(ar, case, k) -> Parts:
    """DUAL-UB: ``||grad L(W)||_sum <= c B G(W)``."""
    X, y = _data(case)
    W, loss = case["W"], case.get("loss", "ce")
    return {"dual-ub": (_sum_abs(ar, ar.gradient(W, X, y, loss)),
                        k["c_ub"] * _data_bound(ar, X) * ar.proxy(W, X, y, loss))}


def gl_sandwich_sides(ar, case, k) -> Parts:
    """GL-SANDWICH: ``L (1 - c_half n L) <= G <= c_upper L``."""
    W, X, y = case["W"], case["X"], case["y"]
    L, G, n = ar.loss(W, X, y), ar.proxy(W, X, y), len(y)
    return {"upper": (G, k["c_upper"] * L), "lower": (L * (1 - k["c_half"] * n * L), G)}


def l_le_2g_sides(ar, case, k) -> Parts | None:
    """L-LE-2G: if ``L <= log(2)/n`` or ``G <= 1/(2n)`` then ``L <= c G``."""
    W, X, y = case["W"], case["X"], case["y"]
    L, G, n = ar.loss(W, X, y), ar.proxy(W, X, y), len(y)
    if not (n * L <= ar.log(ar.scalar(2.0)) or 2 * n * G <= 1):
        return None
    return {"bound": (L, k["c"] * G)}


def loss_diff_sides(ar, case, k) -> Parts:
    """LOSS-DIFF: ``L(W) - L(W') <= c B G(W) ||W - W'||_max`` with ``W' = W + D``."""
    W, X, y, D = case["W"], case["X"], case["y"], case["D"]
    L0, L1 = ar.loss(W, X, y), ar.loss(ar.array(W) + ar.array(D), X, y)
    return {"bound": (L0 - L1, k["c"] * _data_bound(ar, X) * ar.proxy(W, X, y)
                      * _max_abs(ar, D))}


def separates_sides(ar, case, k) -> Parts | None:
    """SEPARATES: if ``L < log(2)/n`` then ``c (-log(exp(n L) - 1)) <= m(W)``."""
    W, X, y = case["W"], case["X"], case["y"]
    log_nL = ar.log_loss(W, X, y) + ar.log(ar.scalar(len(y)))
    if not log_nL < ar.log(ar.log(ar.scalar(2.0))):
        return None
    return {"bound": (-k["c"] * ar.log_expm1_exp(log_nL), ar.margin(W, X, y))}


def g_ratio_sides(ar, case, k) -> Parts:
    """G-RATIO: ``G(W') / G(W) <= exp(c B ||W' - W||_max)`` (in logs: no underflow)."""
    W, X, y, D = case["W"], case["X"], case["y"], case["D"]
    shift = ar.log_proxy(ar.array(W) + ar.array(D), X, y) - ar.log_proxy(W, X, y)
    return {"bound": (ar.exp(shift), ar.exp(k["c"] * _data_bound(ar, X) * _max_abs(ar, D)))}


def descent_sides(ar, case, k) -> Parts:
    """DESCENT: ``L(W - eta D) + eta gamma_N G <= L(W) + c eta^2 B^2 exp(2 B eta) G`` with
    ``D`` the steepest direction of N at ``grad L(W)`` (computed in this arithmetic)."""
    X, y = _data(case)
    W, norm, eta = case["W"], case["norm"], case["eta"]
    eta_ = ar.scalar(eta)
    gamma = ar.gamma(lemma_pool.certificate(case["ds"], norm))
    D = ar.steepest(ar.gradient(W, X, y), norm)
    G, B = ar.proxy(W, X, y), _data_bound(ar, X)
    stepped = ar.loss(ar.array(W) - eta_ * D, X, y)
    return {"bound": (stepped + eta_ * gamma * G,
                      ar.loss(W, X, y) + k["c"] * eta_ * eta_ * B * B * ar.exp(2 * B * eta_) * G)}


def per_class_sides(ar, case, k) -> Parts:
    """PER-CLASS: ``sum_c G_c = sum_c Q_c = G`` and ``||grad L[c,:]||_1 <= c B (G_c + Q_c)``."""
    W, X, y = case["W"], case["X"], case["y"]
    G_c, Q_c = ar.class_proxies(W, X, y)
    G = ar.proxy(W, X, y)
    g, B = ar.gradient(W, X, y), _data_bound(ar, X)
    tol = ar.identity_tol * G
    return {"sum-G": (abs(ar.fsum(G_c) - G), tol), "sum-Q": (abs(ar.fsum(Q_c) - G), tol),
            "rows": _worst((ar.fsum(abs(v) for v in g[c]), k["c"] * B * (G_c[c] + Q_c[c]))
                           for c in range(len(G_c)))}


def adam_ratio_sides(ar, case, k) -> Parts | None:
    """ADAM-RATIO: ``|m_t| <= c alpha sqrt(v_t)`` and ``|m^_t| <= c alpha sqrt(v^_t)`` for
    every t and entry, ``alpha = (1 - b1) / sqrt((1 - b2)(1 - b1^2 / b2))``."""
    b1, b2 = ar.scalar(case["beta1"]), ar.scalar(case["beta2"])
    if not b1 * b1 < b2:
        return None
    bound = k["c"] * (1 - b1) / ar.sqrt((1 - b2) * (1 - b1 * b1 / b2))
    g = ar.array(case["g"])
    m = v = ar.array(np.zeros(g.shape[1]))
    raw, corrected = [], []
    for t in range(g.shape[0]):
        m = b1 * m + (1 - b1) * g[t]
        v = b2 * v + (1 - b2) * g[t] * g[t]
        c1, c2 = 1 - b1 ** (t + 1), 1 - b2 ** (t + 1)
        for j in range(g.shape[1]):
            raw.append((abs(m[j]), bound * ar.sqrt(v[j])))
            corrected.append((abs(m[j]) / c1, bound * ar.sqrt(v[j] / c2)))
    return {"raw": _worst(raw), "corrected": _worst(corrected)}


def other_loss_sides(ar, case, k) -> Parts:
    """OTHER-LOSS: DUAL-LB and DUAL-UB for the exponential loss and PairLogLoss."""
    return {**dual_lb_sides(ar, case, k), **dual_ub_sides(ar, case, k)}


# ----------------------------------------------------------------------------------------------
# pinned examples (found once, kept forever)
# ----------------------------------------------------------------------------------------------

#: k = 2, antipodal rows: the per-sample gradient terms of DUAL-UB add without cancellation, so
#: ``||grad||_sum = 2 B G`` exactly (the equality case of the sharp constant 2).
_ANTIPODAL = {"W": np.array([[0.5, -1.0], [-0.25, 2.0]]),
              "X": np.array([[1.0, -2.0], [-1.0, 2.0]]), "y": np.array([0, 1]),
              "A": np.array([[1.0, -1.0], [-1.0, 1.0]])}

#: Found by the GRAD search (ci profile): the directional derivative is -1.5e-127 while
#: L = 0.42; mpmath.diff resolves derivatives only to about 10^-p L, so its tolerance now
#: includes that floor (before, the search reported a false violation here).
_TINY_DERIVATIVE = {
    "W": np.array([[-48037.83644276781], [59203.632981889685]]),
    "X": np.array([[-0.005732828563245766], [0.005732828563245766], [3.044124420255034e-201],
                   [-3.044124420255034e-201], [1.3217729313632565e-130]]),
    "y": np.array([0, 1, 1, 0, 1]), "A": np.array([[-0.6222723907842241], [0.7669118546303451]]),
    "D": np.array([[5807.200659180954], [-5807.200659180954]]),
}

#: A margin of 800 on every pair: ``L`` is far below exp(-745) (float64 underflows).
_SATURATED = {"W": np.array([[400.0, 0.0], [0.0, 400.0], [-400.0, -400.0]]),
              "X": np.array([[1.0, -1.0], [-1.0, 1.0], [-0.5, -0.5]]),
              "y": np.array([0, 1, 2]), "A": np.array([[1.0, -1.0], [-1.0, 1.0],
                                                       [-1.0, -1.0]])}


#: Found by the HESS search (ci profile): rows of W share a component of 1e104 that cancels in
#: every gap, data entries of 1e-108. At a flat 50 digits the judge lost D in ``W + D`` and
#: reported a false violation; the verdict now adds ``log10`` of the logit scale to its digits.
_ILL_CONDITIONED = {
    "W": np.array([[1.1247975255009668e+104, 1.1247975255009668e+104, -1.4760361535479462e-65],
                   [1.1247975255009668e+104, 1.1247975255009668e+104, 1.1247975255009668e+104],
                   [1.1247975255009668e+104, 1.3408631395880816e+108, 1.1247975255009668e+104]]),
    "X": np.array([[2.6838350296900547e-108, 2.6838350296900547e-108, -3.4557024274166737e-146],
                   [-2.6838350296900547e-108, -2.6838350296900547e-108, 3.4557024274166737e-146],
                   [-0.017276690148899817, 2.6838350296900547e-108, 2.6838350296900547e-108],
                   [0.017276690148899817, -2.6838350296900547e-108, -2.6838350296900547e-108]]),
    "y": np.array([0, 1, 2, 0]),
    "A": np.array([[1e-11, 1e-11, -1.3122683150378937e-180], [1e-11, 1e-11, 1e-11],
                   [1e-11, 1.192092896e-07, 1e-11]]),
    "D": 0.0012203772835102653 * np.array([[0.0, 0.0, 0.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]),
}


def _problems_any_loss_level():
    """Problems scaled by their widest logit gap, or by their margin (the small-loss regime
    where the sandwich and sum-norm bounds are approached)."""
    return lemma_cases.problems() | lemma_cases.problems(separating=True)


def _with(case: dict, **extra) -> dict:
    return {**case, **extra}


_POOL_NORMS = lemma_pool.POOL_NORMS
_PROBLEM_NORMS = "max, entrywise p (p = 3), Frobenius, spectral"

CATALOGUE: tuple[Lemma, ...] = (
    Lemma("GRAD", "grad L = -(1/n) sum_i (e_{y_i} - s_i) x_i^T; for every A: <A, -grad L(W)> "
          "= (1/n) sum_i sum_{c != y_i} s_ic (e_{y_i} - e_c)^T A x_i", "D",
          lambda: lemma_cases.problems_with_step(), grad_sides, family="grad",
          tightness="identity",
          examples=(_with(_SATURATED, D=np.array([[1.0, 0.5], [-0.5, 1.0], [0.25, -2.0]])),
                    _TINY_DERIVATIVE)),
    Lemma("GRAD-LB", "for every A with m(A) >= 0: <A, -grad L(W)> >= G(W) m(A)", "D",
          lambda: lemma_cases.problems(teacher=True), grad_lb_sides,
          (Constant("c", 1.0, 1.01),), family="grad",
          tightness="sharp: equality when the loss concentrates on the pairs at A's margin"),
    Lemma("HESS", "L(W+D) = L(W) + <grad L(W), D> + (1/2n) sum_i (D x_i)^T (diag(s_i') - "
          "s_i' s_i'^T)(D x_i), s' at W + xi D for some xi in [0,1]", "D",
          lambda: lemma_cases.problems_with_step(-6, 3), hess_sides, family="grad",
          tightness="identity (mean-value form)", examples=(_ILL_CONDITIONED,)),
    Lemma("SOFTMAX-VAR", "for s in the simplex and any class c: 1 - sum_j s_j^2 <= 2 (1 - s_c)",
          "P", lambda: lemma_cases.simplex_points(), softmax_var_sides,
          (Constant("c", 2.0, 1.98),), family="softmax", tightness="2 is sharp (s_c -> 1)"),
    Lemma("SOFTMAX-QUAD", "for s in the simplex, any c, any v: v^T (diag(s) - s s^T) v <= "
          "4 ||v||_inf^2 (1 - s_c)", "P", lambda: lemma_cases.simplex_points(with_vector=True),
          softmax_quad_sides, (Constant("c", 4.0, 3.96),), family="softmax",
          tightness="4 is sharp (s_c -> 1, v = -1 at c, +1 elsewhere)"),
    Lemma("DUAL-LB", f"||grad L(W)||_dual >= gamma_N G(W) for N = {_PROBLEM_NORMS}", "P",
          lambda: lemma_cases.pool_cases(_POOL_NORMS), dual_lb_sides,
          (Constant("c_lb", 1.0),), family="dual", tightness="approached"),
    Lemma("DUAL-UB", "||grad L(W)||_sum <= 2 B G(W) (hence every dual norm too)", "P",
          lambda: _problems_any_loss_level(), dual_ub_sides, (Constant("c_ub", 2.0, 1.98),),
          family="dual", tightness="2 is sharp (equality for antipodal k = 2 data)",
          examples=(_ANTIPODAL,)),
    Lemma("GL-SANDWICH", "L(W) (1 - n L(W)/2) <= G(W) <= L(W)", "P",
          lambda: _problems_any_loss_level(), gl_sandwich_sides,
          (Constant("c_upper", 1.0, 0.99), Constant("c_half", 0.5, 0.495)), family="sandwich",
          tightness="both constants sharp as L -> 0 with one sample carrying the loss",
          examples=(_SATURATED,)),
    Lemma("L-LE-2G", "if L(W) <= log(2)/n or G(W) <= 1/(2n) then L(W) <= 2 G(W)", "P",
          lambda: lemma_cases.problems(separating=True), l_le_2g_sides,
          (Constant("c", 2.0),), family="sandwich", tightness="not sharp (L/G <= 1.53 there)"),
    Lemma("LOSS-DIFF", "for all W, W': L(W) - L(W') <= 2 B G(W) ||W - W'||_max", "D",
          lambda: lemma_cases.problems_with_step(), loss_diff_sides, (Constant("c", 2.0),),
          family="loss_diff", tightness="not marked sharp"),
    Lemma("SEPARATES", "if L(W) < log(2)/n then m(W) >= -log(exp(n L(W)) - 1) > 0", "D",
          lambda: lemma_cases.problems(separating=True), separates_sides,
          (Constant("c", 1.0, 1.01),), family="sandwich",
          tightness="sharp: one sample and one competing class carry the loss"),
    Lemma("G-RATIO", "for all W, W': G(W') / G(W) <= exp(2 B ||W' - W||_max); the factor 2 is "
          "needed", "P", lambda: lemma_cases.problems_with_step(), g_ratio_sides,
          (Constant("c", 2.0, 1.98),), family="loss_diff",
          tightness="THEORY.md: not sharp, factor 2 needed; the search falsifies 1.98 (ratio "
                    "1 + 2e-8, ci profile): 2 is sharp in the limit (one saturated sample, "
                    "W' - W = delta (e_c - e_y) sign(x_i)^T)"),
    Lemma("DESCENT", "for W, eta > 0, D = argmax_{N(D) <= 1} <grad L(W), D> with N in "
          f"{{{_PROBLEM_NORMS}}}: L(W - eta D) <= L(W) - eta gamma_N G(W) + "
          "2 eta^2 B^2 exp(2 B eta) G(W)", "P",
          lambda: lemma_cases.pool_cases(_POOL_NORMS, with_step=True), descent_sides,
          (Constant("c", 2.0),), family="descent", tightness="not sharp"),
    Lemma("PER-CLASS", "sum_c G_c = sum_c Q_c = G; ||grad L(W)[c,:]||_1 <= B (G_c(W) + Q_c(W)) "
          "for each class c", "D", lambda: _problems_any_loss_level(), per_class_sides,
          (Constant("c", 1.0, 0.99),), family="per_class",
          tightness="identity; the row bound is sharp (one sample with ||x_i||_1 = B)"),
    Lemma("ADAM-RATIO", "Adam, eps = 0, beta1^2 < beta2, m_{-1} = v_{-1} = 0, any gradients: "
          "|m_t| <= alpha sqrt(v_t), alpha = (1 - beta1) / sqrt((1 - beta2)(1 - beta1^2/beta2))"
          "; the same alpha bounds the bias-corrected ratio", "D",
          lambda: lemma_cases.gradient_histories(), adam_ratio_sides,
          (Constant("c", 1.0, 0.99),), family="adam_ratio",
          tightness="alpha is sharp (geometric gradients g_s ~ (beta2/beta1)^s, t -> inf)"),
    Lemma("OTHER-LOSS", "for the multiclass exponential loss and PairLogLoss, with G the mean "
          "of the summed pair weights: DUAL-LB and DUAL-UB hold with the same constants", "D",
          lambda: lemma_cases.pool_cases(_POOL_NORMS, losses=("exp", "pairlog")),
          other_loss_sides, (Constant("c_lb", 1.0), Constant("c_ub", 2.0)), family="dual",
          tightness="-"),
)

IDS = tuple(lemma.id for lemma in CATALOGUE)
_BY_ID = {lemma.id: lemma for lemma in CATALOGUE}


def get(lemma_id: str) -> Lemma:
    """The catalogue entry of ``lemma_id`` (exact ID, e.g. ``"GL-SANDWICH"``)."""
    from harness.errors import HarnessInputError

    try:
        return _BY_ID[lemma_id]
    except KeyError:
        raise HarnessInputError(
            f"unknown lemma {lemma_id!r}; known: {', '.join(IDS)}") from None


def family(name: str) -> tuple[Lemma, ...]:
    """The lemmas of one property module (``properties/test_<family>.py``)."""
    return tuple(lemma for lemma in CATALOGUE if lemma.family == name)


