"""Certified max-margin references: ``gamma_N`` and a maximizer ``W*`` for every norm N.

The problem (THEORY.md section 1)::

    gamma_N = max_{N(W) <= 1} m(W),   m(W) = min_i min_{c != y_i} (e_{y_i} - e_c)^T W x_i.

Pair operator. Write ``A`` for the linear map ``W -> ((e_{y_i} - e_c)^T W x_i)_{(i, c)}`` over
all ``P = n (k - 1)`` pairs ``c != y_i``. With ``W`` flattened row-major (entry ``(c, j)`` at
``c d + j``), ``A`` is one sparse ``P x kd`` matrix whose row ``(i, c)`` holds ``x_i`` in block
``y_i`` and ``-x_i`` in block ``c`` (built in one vectorised shot, no loop per pair). Its
adjoint is ``A^T lam = sum_{i, c} lam_ic (e_{y_i} - e_c) x_i^T``, which is exactly the
``-n grad L`` form of :func:`harness.losses.coefficient_matrix` with pair weights ``lam``.

Two formulations (both solved with cvxpy):

* ``"margin"``: ``max t  s.t.  A w >= t 1,  N(w) <= 1`` (always feasible and bounded);
* ``"norm"``:   ``min N(w)  s.t.  A w >= 1`` (the hard-margin SVM form; ``gamma = 1 / N(w*)``
  and ``W* = w* / N(w*)``; infeasible iff the data are not separable).

Certificate (the reason this module exists). The returned number is never the solver's
objective value. Instead a bracket ``[lower, upper]`` is recomputed in float64 from what the
solver returned:

* ``lower = m(W) / N(W)`` from the primal ``W`` (:func:`harness.losses.pairwise_gaps`,
  :meth:`harness.norms.Norm.value`): any ``W != 0`` gives ``m(W)/N(W) <= gamma_N``.
* ``upper`` from the dual. By the minimax theorem (a bilinear function on the product of two
  compact convex sets, the unit ball of N and the probability simplex over pairs)::

      gamma_N = max_{N(W) <= 1} min_{lam in simplex} <lam, A W>
              = min_{lam in simplex} max_{N(W) <= 1} <A^T lam, W>
              = min_{lam in simplex} N_dual(A^T lam).

  So EVERY ``lam >= 0`` with ``sum lam > 0`` gives ``gamma_N <= N_dual(A^T lam) / sum(lam)``.
  The solver's multipliers of the pair constraints are such a ``lam`` (for ``"margin"``,
  stationarity in ``t`` gives ``sum lam = 1`` at the optimum; for ``"norm"``, ``lam / sum lam``
  is the optimal ``lam`` up to scale). Dual feasibility is enforced, not assumed: negative
  entries (solver round-off) are clipped to 0 before normalising, which keeps ``lam`` in the
  simplex, so the bound holds whatever the solver's accuracy. ``A^T lam`` and its dual norm are
  computed in float64 here, not taken from the solver.

Both bounds are rounded outward by a priori float64 error bounds of the products and norms
involved (see :func:`bracket`; typically a relative 1e-14, much less than any width asked
for), so ``lower <= gamma_N <= upper`` holds for the exact ``gamma_N``. A solve counts as
``"certified"`` when ``(upper - lower) / upper <= rtol``; a bracket wider than that is still
returned but with status ``"inaccurate"`` (never silently). ``gamma`` is ``lower``: the margin
attained by the returned ``W`` (``N(W) = 1``), rounded down.

Working set (why the benchmark is fast). Only a few pairs are active at the optimum, so the
default solve is a cutting-plane loop: start from the nearest pair of every class pair under
the class-mean classifier, solve the restricted problem, add the pairs that the restricted
``W`` violates (normalised gap below the current upper bound; the nearest per class pair),
repeat. The bracket
stays rigorous at every round: the restricted problem's multipliers, padded with zeros, are a
dual point of the full problem, and ``lower`` is always evaluated on all pairs.

Uniqueness. ``gamma_N`` is unique. Since ``(e_y - e_c)^T 1 = 0``, ``W`` and ``W + 1 v^T`` have the
same margin, but N is not shift invariant, so the problem is still well defined (compact
feasible set, continuous objective). The maximizer ``W*`` is unique when N is strictly convex
(entrywise p with 1 < p < inf, Frobenius included): two maximizers W1 != W2 would give
``(W1 + W2)/2`` with margin >= gamma (m is concave) and norm < 1, which rescales to a margin
> gamma. Uniqueness then also forces ``W*`` to be the smallest-norm member of its shift class
(for Frobenius: rows summing to zero). For max, sum, spectral and nuclear the unit ball has
flat faces and ``W*`` is in general NOT unique (e.g. a feature column no point uses is free in
[-1, 1] under the max norm): this module returns one maximizer (a vertex for the LP norms);
quantities derived from ``W*`` (correlations) inherit that choice, ``gamma`` does not.

Solvers, chosen deliberately: max and sum are LPs, solved by HiGHS (dual simplex: vertex
solutions, bracket widths ~1e-15); the p-norm, spectral and nuclear problems are conic (second
order, power and semidefinite cones) and go to Clarabel (interior point) with tolerances
tightened to 1e-10. While the bracket is wider than a tenth of ``rtol`` the solve escalates:
tighter tolerances (1e-12), the other formulation, another data scaling (see ``_attempts``),
finally all pairs at once. The bracket keeps the best lower and the best upper bound over all
solves, which is still rigorous.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

import cvxpy as cp
import numpy as np
import scipy.sparse as sparse
import torch

from harness.errors import HarnessError, HarnessInputError, NotSeparableError
from harness.losses import coefficient_matrix, pairwise_gaps
from harness.norms import Norm
from harness.validation import check_data

#: Default relative bracket width ``(upper - lower) / upper`` for a "certified" result.
DEFAULT_RTOL = 1e-8
#: Data count as separable only if ``lower > SEPARABILITY_RTOL * scale`` (see ``_data_scale``).
SEPARABILITY_RTOL = 1e-9
#: The solve goes on escalating until the width is below ``AIM_FRACTION * rtol`` (when cheap
#: escalations remain), so that "certified" results are not borderline.
AIM_FRACTION = 0.1
#: A working set that does not reach the width is replaced by all pairs (then the escalation
#: restarts) if there are at most this many; the interior point is sometimes more accurate on
#: the full problem than on the small, more degenerate restricted one (measured: nuclear norm,
#: 7e-9 on 34 pairs against 1e-10 on all 120).
FULL_SET_PAIRS = 20_000
#: Cutting-plane rounds before giving up on the working set.
MAX_ROUNDS = 60
FORMULATIONS = ("margin", "norm")
LP_SOLVER, CONIC_SOLVER = "HIGHS", "CLARABEL"
EPS = float(np.finfo(np.float64).eps)

#: Solver options per accuracy tier; a later tier is tried when the bracket is too wide.
_SOLVER_TIERS: dict[str, tuple[dict, ...]] = {
    "HIGHS": (
        {},
        {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    ),
    "CLARABEL": (
        {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10},
        {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10,
         "max_iter": 400},
    ),
    "SCS": ({"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},),
}


class MarginSolveError(HarnessError):
    """The convex solver failed (no primal/dual solution to certify)."""


@dataclass(frozen=True, eq=False)
class MarginCertificate:
    """A certified max margin.

    Attributes:
        norm: canonical norm name (:attr:`harness.norms.Norm.name`).
        gamma: the max margin reported: ``lower``, attained by ``W``.
        lower: ``m(W) / N(W)`` recomputed in float64 (a lower bound on ``gamma_N``).
        upper: ``N_dual(A^T lam) / sum(lam)`` from the clipped dual multipliers (an upper bound).
        W: k x d float64 maximizer with ``N(W) = 1`` (one of them; see the module docstring).
        solver: the cvxpy solver name (``HIGHS``, ``CLARABEL``, ...).
        status: ``"certified"`` (relative width <= rtol) or ``"inaccurate"``.
        solver_status: the solver's own last status (``optimal``, ``optimal_inaccurate``, ...).
        formulation: the formulations used, in order (``"margin"``, ``"margin+norm"``, ...).
        rounds: cutting-plane rounds (1 without the working set).
        active_pairs: pairs in the last solved problem.
        seconds: wall time of the whole certified solve.
    """

    norm: str
    gamma: float
    lower: float
    upper: float
    W: np.ndarray = field(repr=False)
    solver: str
    status: str
    solver_status: str = ""
    formulation: str = "margin"
    rounds: int = 1
    active_pairs: int = 0
    seconds: float = 0.0

    @property
    def width(self) -> float:
        """``upper - lower``."""
        return self.upper - self.lower

    @property
    def relative_width(self) -> float:
        """``(upper - lower) / upper``."""
        return self.width / self.upper if self.upper > 0 else math.inf

    def as_dict(self) -> dict:
        """The JSON record of the ``margins`` command (no ``W``)."""
        numbers = {"gamma": self.gamma, "lower": self.lower, "upper": self.upper}
        numbers = {key: value if math.isfinite(value) else str(value)  # "inf" as in storage
                   for key, value in numbers.items()}
        return {"norm": self.norm, **numbers, "solver": self.solver, "status": self.status}


class PairOperator:
    """The pair map ``A: W -> ((e_{y_i} - e_c)^T W x_i)`` for ``c != y_i`` and its adjoint.

    Pairs are addressed by a boolean ``(n, k)`` mask (label entries always False); rows of the
    sparse matrix follow the mask's row-major order.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, k: int):
        self.X, self.y, self.k = X, y, k
        self.n, self.d = X.shape
        self.X_t, self.y_t = torch.tensor(X), torch.tensor(y)
        self.all_pairs = np.ones((self.n, k), dtype=bool)
        self.all_pairs[np.arange(self.n), y] = False

    def matrix(self, mask: np.ndarray, X: np.ndarray | None = None) -> sparse.csr_matrix:
        """Sparse ``|mask| x kd`` matrix of the selected pairs (``X`` defaults to the data)."""
        X = self.X if X is None else X
        i_idx, c_idx = np.nonzero(mask)
        rows = np.repeat(np.arange(i_idx.size), self.d)
        feature = np.arange(self.d)
        pos = (self.y[i_idx, None] * self.d + feature).ravel()
        neg = (c_idx[:, None] * self.d + feature).ravel()
        vals = X[i_idx].ravel()
        return sparse.csr_matrix(
            (np.concatenate([vals, -vals]), (np.concatenate([rows, rows]),
                                             np.concatenate([pos, neg]))),
            shape=(i_idx.size, self.k * self.d))

    def adjoint(self, lam: np.ndarray) -> torch.Tensor:
        """``A^T lam = sum_ic lam_ic (e_{y_i} - e_c) x_i^T`` for ``lam`` of shape ``(n, k)``."""
        C = coefficient_matrix(torch.as_tensor(lam), self.y_t)
        return C.T @ self.X_t

    def scatter(self, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Put per-row ``values`` of :meth:`matrix` back into an ``(n, k)`` array (0 elsewhere)."""
        out = np.zeros((self.n, self.k))
        out[mask] = values
        return out


def _norm_expression(w: cp.Variable, N: Norm, k: int, d: int) -> cp.Expression:
    """``N(W)`` as a cvxpy expression of the row-major flattening ``w`` of ``W``."""
    if N.family == "entrywise":
        if math.isinf(N.p):
            return cp.norm_inf(w)
        if N.p == 1.0:
            return cp.norm1(w)
        if N.p == 2.0:
            return cp.norm(w, 2)
        return cp.pnorm(w, N.p)
    matrix = cp.reshape(w, (k, d), order="C")
    return cp.sigma_max(matrix) if math.isinf(N.p) else cp.normNuc(matrix)


def _unit_ball(w: cp.Variable, N: Norm, k: int, d: int) -> list[cp.Constraint]:
    """``N(w) <= 1``; the max-norm ball as plain bounds (no auxiliary variable in the LP)."""
    if N.family == "entrywise" and math.isinf(N.p):
        return [w <= 1, w >= -1]
    return [_norm_expression(w, N, k, d) <= 1]


def _check_norm(norm) -> Norm:
    N = Norm.parse(norm)
    if N.family == "schatten" and N.p not in (1.0, math.inf):
        raise HarnessInputError(
            f"max margin in the Schatten-{N.p:g} norm is not supported (cvxpy has no atom); "
            "use spectral, nuclear or an entrywise norm")
    return N


def default_solver(norm) -> str:
    """HiGHS for the LP norms (max, sum), Clarabel for the conic ones."""
    N = Norm.parse(norm)
    return LP_SOLVER if N.family == "entrywise" and N.p in (1.0, math.inf) else CONIC_SOLVER


@cache
def _silence_highs_banner() -> None:
    """Make this process's first ``highspy.Highs`` object with file descriptor 1 pointed at
    ``os.devnull``. highspy >= 1.16 prints a two-line banner from C on stdout when the first one
    is made, before cvxpy can set ``output_flag`` (cvxpy makes one just to read ``inf``): on
    stdout it would corrupt the ``--json`` documents of the CLI, and on stderr it would break
    the one-line error contract of every command that certifies a margin. Later objects print
    nothing, so one silenced construction per process is enough."""
    try:
        import highspy
    except ImportError:  # cvxpy then reports HIGHS as not installed
        return
    sys.stdout.flush()
    saved = os.dup(1)
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 1)
        highspy.Highs()
        ctypes.CDLL(None).fflush(None)  # anything C buffered goes to the sink, not to stdout
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(sink)


def _solve_restricted(A: sparse.csr_matrix, N: Norm, k: int, d: int, formulation: str,
                      solver: str, options: dict) -> tuple[np.ndarray | None, np.ndarray | None,
                                                           str]:
    """One cvxpy solve on the pairs of ``A``; returns ``(w, pair multipliers, status)``."""
    w = cp.Variable(k * d)
    if formulation == "margin":
        t = cp.Variable()
        pairs = A @ w - t >= 0
        problem = cp.Problem(cp.Maximize(t), [pairs, *_unit_ball(w, N, k, d)])
    else:
        pairs = A @ w >= 1
        problem = cp.Problem(cp.Minimize(_norm_expression(w, N, k, d)), [pairs])
    if solver == "HIGHS":
        _silence_highs_banner()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "may be inaccurate": we certify
            problem.solve(solver=solver, **options)
    except cp.error.SolverError as exc:
        return None, None, f"solver_error ({str(exc).splitlines()[0]})"
    return w.value, pairs.dual_value, str(problem.status)


def _gamma_factor(terms: int) -> float:
    """``gamma_m = m u / (1 - m u)``: the relative error bound of an m-term float64 sum of
    products (Higham, Accuracy and Stability, section 3.1), with a factor 2 of slack."""
    mu = (terms + 2) * EPS
    return 2.0 * mu / (1.0 - mu)


def bracket(op: PairOperator, W: np.ndarray, lam: np.ndarray, N: Norm) -> tuple[float, float]:
    """Float64 certificate ``(lower, upper)`` from a primal ``W`` (k x d) and multipliers
    ``lam`` (n x k, any real values): see the module docstring.

    Both ends are rounded outward by a priori float64 error bounds, so that ``lower`` and
    ``upper`` bound ``gamma_N`` themselves and not only their float64 approximations: the
    logit ``(W x)_c`` has error at most ``gamma_d (|W| |x|)_c``; ``G = A^T lam`` at most
    ``gamma_n |C|^T |X|`` entrywise, which moves ``N_dual`` by at most its entrywise 1-norm
    (``N_dual <= ||.||_sum`` for every supported norm); each norm evaluation is trusted to
    a relative ``gamma_{kd}`` (norms of SVDs: backward stable, same order).
    """
    k, d = op.k, op.d
    norm_slack = _gamma_factor(k * d + k + d)
    Wt = torch.as_tensor(W, dtype=torch.float64)
    size = float(N.value(Wt)) * (1.0 + norm_slack)
    gaps = pairwise_gaps(Wt, op.X_t, op.y_t)
    magnitude = op.X_t.abs() @ Wt.abs().T  # (|W| |x_i|)_c, shape (n, k)
    logit_error = _gamma_factor(d) * (magnitude.gather(1, op.y_t[:, None]) + magnitude)
    lower = float((gaps - logit_error).amin()) * (1.0 - EPS) / size if size > 0 else 0.0
    lam = np.clip(np.nan_to_num(lam, nan=0.0), 0.0, None) * op.all_pairs
    total = float(lam.sum()) * (1.0 - _gamma_factor(lam.size))
    if not total > 0:
        return max(lower, 0.0), math.inf
    G = op.adjoint(lam)
    C_abs = coefficient_matrix(torch.as_tensor(lam), op.y_t).abs()
    adjoint_error = float((C_abs.T @ op.X_t.abs()).sum()) * _gamma_factor(op.n + k)
    dual = float(N.dual_value(G)) * (1.0 + norm_slack) + adjoint_error
    return max(lower, 0.0), dual * (1.0 + EPS) / total  # gamma_N >= m(0) = 0 always


def _data_scale(X: np.ndarray, N: Norm) -> float:
    """``max_i N_dual((e_0 - e_1) x_i^T)``: the magnitude of the margins the data allow."""
    two_rows = torch.as_tensor(np.stack([X, -X], axis=1))
    return float(N.dual_value(two_rows).max())


def _nearest_pairs(op: PairOperator, W: torch.Tensor, mask: np.ndarray,
                   below: float) -> np.ndarray:
    """For every class pair ``(y, c)``, the pair ``(i, c)`` with ``y_i = y`` outside ``mask``
    whose normalised gap ``(e_y - e_c)^T W x_i / N(W)`` is smallest, if it is below ``below``.

    At most ``k (k - 1)`` pairs, spread over all class pairs: clustered data have many nearly
    identical points, and adding all violated pairs at once would flood the working set with
    near-duplicates (which also makes interior-point solves ill-conditioned).
    """
    gaps = pairwise_gaps(W, op.X_t, op.y_t).numpy().copy()
    gaps[mask] = np.inf
    flat = np.flatnonzero(gaps.ravel() < below)
    flat = flat[np.argsort(gaps.ravel()[flat], kind="stable")]
    i_idx, c_idx = np.divmod(flat, op.k)
    _, first = np.unique(op.y[i_idx] * op.k + c_idx, return_index=True)
    added = np.zeros(op.n * op.k, dtype=bool)
    added[flat[first]] = True
    return added.reshape(op.n, op.k)


def _initial_pairs(op: PairOperator) -> np.ndarray:
    """The nearest pair per class pair under the centred class-mean classifier."""
    means = torch.zeros(op.k, op.d, dtype=torch.float64).index_add_(0, op.y_t, op.X_t)
    means /= torch.bincount(op.y_t, minlength=op.k)[:, None]
    return _nearest_pairs(op, means - means.mean(0), np.zeros((op.n, op.k), dtype=bool),
                          math.inf)


def _violated_pairs(op: PairOperator, W: np.ndarray, N: Norm, mask: np.ndarray,
                    upper: float) -> np.ndarray:
    """Pairs outside ``mask`` whose normalised gap under ``W`` is below ``upper`` (the
    nearest per class pair): a larger working set would cut ``W`` off."""
    Wt = torch.as_tensor(W, dtype=torch.float64)
    return _nearest_pairs(op, Wt / N.value(Wt), mask, upper)


def _relative_width(lower: float, upper: float) -> float:
    return (upper - lower) / upper if upper > 0 else math.inf


def _attempts(solver: str, formulation: str, fallback: bool) -> list[tuple[str, dict, str]]:
    """``(formulation, solver options, scaling)`` in escalation order: the solver's accuracy
    tiers, then (``fallback``) the other formulation, then both at the other data scaling.

    Scaling ``"bound"`` solves on ``X / upper`` (optimum near 1, so absolute tolerances act as
    relative ones), ``"data"`` on ``X / max_i N_dual((e_0 - e_1) x_i^T)`` (entries of order 1).
    Interior points stall near 1e-9 on some degenerate spectral/nuclear SDPs in one of these
    four settings but not in another (measured on the 20-dataset test); every setting gives
    valid bounds, so trying the next one only ever narrows the bracket.
    """
    tiers = _SOLVER_TIERS.get(solver, ({},))
    attempts = [(formulation, options, "bound") for options in tiers]
    if fallback:
        other = next(f for f in FORMULATIONS if f != formulation)
        attempts += [(other, tiers[0], "bound"), (formulation, tiers[0], "data"),
                     (other, tiers[0], "data")]
    return attempts


def _certify(op: PairOperator, N: Norm, *, solver: str, formulation: str, rtol: float,
             working_set: bool, fallback: bool) -> MarginCertificate:
    start = time.perf_counter()
    k, d = op.k, op.d
    data_scale = _data_scale(op.X, N)  # an upper bound on gamma_N (one pair's dual point)
    zero_level = SEPARABILITY_RTOL * data_scale
    aim = AIM_FRACTION * rtol
    mask = _initial_pairs(op) if working_set else op.all_pairs.copy()
    attempts = _attempts(solver, formulation, fallback)
    attempt, rounds = 0, 0
    lower, upper, best_W, status = 0.0, math.inf, None, "not solved"
    while rounds < MAX_ROUNDS:
        rounds += 1
        # Margins are linear in X: solve on a rescaled X (see _attempts), certify on X itself.
        form, options, scaling = attempts[attempt]
        bound_known = zero_level < upper < math.inf
        solve_scale = upper if scaling == "bound" and bound_known else data_scale
        A = op.matrix(mask, op.X / solve_scale)
        w, duals, status = _solve_restricted(A, N, k, d, form, solver, options)
        if w is None or duals is None:
            if form == "norm" and status.startswith("infeasible"):
                # A subset of the pairs admits no W with all gaps >= 1: neither does the set.
                raise NotSeparableError(
                    f"data are not linearly separable: the {N.name}-norm hard-margin problem is "
                    f"infeasible (solver {solver}), i.e. the max margin is <= 0")
            if best_W is not None:
                break  # an escalation failed: keep the bracket already certified
            raise MarginSolveError(
                f"{solver} returned no solution for the {N.name}-norm max margin "
                f"({form} formulation): status {status}")
        W = w.reshape(k, d)
        lo, up = bracket(op, W, op.scatter(mask, np.asarray(duals).ravel()), N)
        upper = min(upper, up)  # every round's bounds are valid: keep the best of each
        if lo > lower or best_W is None:
            lower, best_W = lo, W
        if _relative_width(lower, upper) <= aim or upper <= zero_level:
            break  # certified with room to spare, or certified not separable
        added = _violated_pairs(op, W, N, mask, upper) if working_set else None
        if added is not None and added.any():
            mask |= added
        elif attempt + 1 < len(attempts):
            attempt += 1
        elif not mask[op.all_pairs].all() and op.all_pairs.sum() <= FULL_SET_PAIRS:
            mask, attempt = op.all_pairs.copy(), 0  # last resort: every pair at once
        else:
            break
    size = float(N.value(torch.as_tensor(best_W)))
    W_unit = best_W / size if size > 0 else best_W
    certified = _relative_width(lower, upper) <= rtol
    return MarginCertificate(
        norm=N.name, gamma=lower, lower=lower, upper=upper, W=W_unit, solver=solver,
        status="certified" if certified else "inaccurate", solver_status=status,
        formulation="+".join(dict.fromkeys(f for f, _, _ in attempts[:attempt + 1])),
        rounds=rounds, active_pairs=int(mask.sum()), seconds=time.perf_counter() - start)


def _require_separable(cert: MarginCertificate, X: np.ndarray, N: Norm) -> None:
    """Raise NotSeparableError unless ``lower`` is clearly positive: ``gamma_N >= m(0) = 0``
    always, and non-separable data have ``gamma_N = 0`` exactly, which a solver returns as
    round-off of either sign."""
    threshold = SEPARABILITY_RTOL * _data_scale(X, N)
    if cert.lower > threshold:
        return
    if cert.upper > threshold:
        raise NotSeparableError(
            f"could not certify that the data are separable: the max margin in the {N.name} "
            f"norm lies in [{cert.lower:.3g}, {cert.upper:.3g}], which contains 0 "
            f"(solver {cert.solver}: {cert.solver_status})")
    raise NotSeparableError(
        f"data are not linearly separable: the max margin found in the {N.name} norm is "
        f"{cert.lower:.3g} (certified bracket [{cert.lower:.3g}, {cert.upper:.3g}]), "
        f"not positive beyond {threshold:.2g}")


def max_margin(X, y, norm: str | Norm = "max", *, solver: str | None = None,
               formulation: str = "margin", rtol: float = DEFAULT_RTOL,
               working_set: bool = True, fallback: bool = True) -> MarginCertificate:
    """Certified ``gamma_N = max_{N(W) <= 1} m(W)`` and a maximizer (see the module docstring).

    Args:
        X: n x d data, finite.
        y: n labels in ``{0..k-1}``, every class present.
        norm: ``max``, ``sum``, ``l<p>`` (1 < p < inf), ``fro``/``l2``, ``spectral``, ``nuclear``.
        solver: a cvxpy solver name; default :func:`default_solver`.
        formulation: ``"margin"`` (default) or ``"norm"``.
        rtol: relative bracket width required for status ``"certified"``.
        working_set: use the cutting-plane loop (default) instead of all pairs at once.
        fallback: when the solver's tiers do not reach the width, also try the other
            formulation (the bracket keeps the best bound of every solve).

    Returns:
        A :class:`MarginCertificate`; its status says whether the bracket reached ``rtol``.

    Raises:
        HarnessInputError: bad data or an unknown norm (one-line message).
        NotSeparableError: no positive margin (the message states the margin found).
        MarginSolveError: the solver returned no solution.
    """
    return max_margins(X, y, [norm], solver=solver, formulation=formulation, rtol=rtol,
                       working_set=working_set, fallback=fallback)[0]


def _progress(items: Sequence, desc: str) -> Iterable:
    """tqdm over ``items``, quiet under CI, off a TTY, or for a single item."""
    from tqdm.auto import tqdm

    quiet = len(items) < 2 or bool(os.environ.get("CI")) or not sys.stderr.isatty()
    return tqdm(items, desc=desc, disable=quiet, leave=False)


def max_margins(X, y, norms: Iterable[str | Norm], *, solver: str | None = None,
                formulation: str = "margin", rtol: float = DEFAULT_RTOL,
                working_set: bool = True, fallback: bool = True) -> list[MarginCertificate]:
    """:func:`max_margin` for several norms on the same data (validated once)."""
    X, y, k = check_data(X, y)
    parsed = [_check_norm(norm) for norm in norms]
    if formulation not in FORMULATIONS:
        raise HarnessInputError(f"unknown formulation {formulation!r}; choose one of "
                               f"{', '.join(FORMULATIONS)}")
    op = PairOperator(X, y, k)
    if not np.abs(X).max() > 0:
        raise NotSeparableError("data are not linearly separable: every x_i is zero, so the "
                                "max margin is 0")
    out = []
    for N in _progress(parsed, "max margins"):
        cert = _certify(op, N, solver=(solver or default_solver(N)).upper(),
                        formulation=formulation, rtol=rtol, working_set=working_set,
                        fallback=fallback)
        _require_separable(cert, X, N)
        out.append(cert)
    return out
