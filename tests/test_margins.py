"""Certified max margins (harness.margins): brackets, cross-checks, closed forms, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.data import make_dataset
from harness.errors import HarnessInputError, NotSeparableError
from harness.margins import (
    DEFAULT_RTOL,
    MarginSolveError,
    PairOperator,
    bracket,
    default_solver,
    max_margin,
    max_margins,
)
from harness.norms import Norm

#: Every norm family max_margin supports (entrywise p on both sides of 2).
NORMS = ("max", "sum", "l1.5", "l3", "fro", "spectral", "nuclear")
N_RANDOM = 20


def random_separable(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Small separable datasets of varied shape and scale (paper generator, rescaled)."""
    rng = np.random.default_rng(1000 + index)
    ds = make_dataset("paper", index, k=2 + index % 4, d=3 + index % 5,
                      n_per_class=3 + index % 6, sigma=0.3)
    return ds.X * 10.0 ** rng.uniform(-2, 2), ds.y


def second_solve(X, y, norm):
    """An independent solve: the other formulation first, all pairs at once (no working set),
    and for the LP norms the other solver (Clarabel's interior point instead of HiGHS's
    simplex). It keeps the escalation (the norm formulation alone reached only 1.2e-8 on one
    spectral-norm dataset here)."""
    return max_margin(X, y, norm, formulation="norm", working_set=False, solver="CLARABEL")


def _margin_over_norm(W, X, y, norm) -> float:
    from harness.losses import margin

    Wt = torch.as_tensor(W)
    return float(margin(Wt, torch.as_tensor(X), torch.as_tensor(y)) / Norm.parse(norm).value(Wt))


@pytest.mark.parametrize("norm", NORMS)
def test_twenty_random_datasets_certified_and_two_solves_agree(norm):
    widths = []
    for index in range(N_RANDOM):
        X, y = random_separable(index)
        first, second = max_margin(X, y, norm), second_solve(X, y, norm)
        for cert in (first, second):
            assert cert.status == "certified", (index, cert)
            assert 0 < cert.lower <= cert.upper
            assert cert.relative_width <= DEFAULT_RTOL, (index, cert)
        # both brackets are rigorous, so they must intersect ...
        assert first.lower <= second.upper and second.lower <= first.upper, (index, first, second)
        # ... and the two values agree within the certified width
        assert abs(first.gamma - second.gamma) <= DEFAULT_RTOL * first.upper, (index, first, second)
        widths.append(max(first.relative_width, second.relative_width))
    print(f"{norm}: max relative bracket width over {N_RANDOM} datasets {max(widths):.2e}")


@pytest.mark.parametrize("norm", NORMS)
def test_returned_W_has_unit_norm_and_attains_gamma(norm):
    X, y = random_separable(3)
    cert = max_margin(X, y, norm)
    assert cert.norm == Norm.parse(norm).name
    assert cert.W.shape == (int(y.max()) + 1, X.shape[1]) and cert.W.dtype == np.float64
    assert float(Norm.parse(norm).value(torch.as_tensor(cert.W))) == pytest.approx(1.0, abs=1e-12)
    assert _margin_over_norm(cert.W, X, y, norm) == pytest.approx(cert.gamma, rel=1e-12)


def block_dataset(seed: int, k: int = 4, block: int = 3, per_class: int = 5, unused: int = 2):
    """Class c's points are positive on their own coordinate block only (then sign-flipped and
    permuted columns, plus unused zero columns), so ``gamma_max = 2 min_i ||x_i||_1`` exactly:
    ``(w_y - w_c)^T x <= 2 ||x||_1`` under ``||W||_max <= 1``, attained by ``W_cj = +1`` on
    c's block and -1 elsewhere."""
    rng = np.random.default_rng(seed)
    d = k * block + unused
    X = np.zeros((k * per_class, d))
    y = np.repeat(np.arange(k), per_class)
    for c in range(k):
        X[y == c, c * block:(c + 1) * block] = rng.uniform(0.5, 2.0, (per_class, block))
    X = X * rng.choice([-1.0, 1.0], size=d)
    X = X[:, rng.permutation(d)]
    return X, y, 2.0 * np.abs(X).sum(axis=1).min()


@pytest.mark.parametrize("seed", range(3))
def test_max_norm_margin_recovered_in_closed_form(seed):
    X, y, gamma = block_dataset(seed)
    for working_set in (True, False):
        cert = max_margin(X, y, "max", working_set=working_set)
        assert abs(cert.gamma - gamma) <= 1e-9 * gamma
        assert cert.lower <= gamma * (1 + 1e-15) and cert.upper >= gamma * (1 - 1e-15)


@pytest.mark.parametrize("norm", NORMS)
def test_collinear_two_class_data_closed_form_every_norm(norm):
    """Points ``s_i u`` (class 0) and ``-s_i u`` (class 1): the only direction that matters is
    ``A = (e_0 - e_1) u^T``, and ``gamma_N = min_i s_i N_dual(A)``."""
    rng = np.random.default_rng(7)
    u = rng.standard_normal(5)
    s = rng.uniform(0.5, 3.0, 6)
    X = np.concatenate([s[:3, None] * u, -s[3:, None] * u])
    y = np.array([0, 0, 0, 1, 1, 1])
    A = torch.as_tensor(np.stack([u, -u]))
    expected = s.min() * float(Norm.parse(norm).dual_value(A))
    assert max_margin(X, y, norm).gamma == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("norm", ["l1.5", "fro", "l3"])
def test_strictly_convex_maximizer_is_the_least_norm_shift(norm):
    """Docstring claim: for entrywise 1 < p < inf the unique maximizer minimises N over
    ``W + 1 v^T``, i.e. each column satisfies ``sum_c sign(W_cj) |W_cj|^(p-1) = 0``."""
    X, y = random_separable(5)
    p = Norm.parse(norm).p
    W = max_margin(X, y, norm).W
    stationarity = (np.sign(W) * np.abs(W) ** (p - 1)).sum(axis=0)
    assert np.abs(stationarity).max() <= 1e-4 * np.abs(W).max() ** (p - 1)


@pytest.mark.parametrize("norm", ["max", "fro", "spectral"])
def test_bracket_bounds_hold_for_arbitrary_primal_and_dual_points(norm):
    """The certificate's two formulas are bounds for ANY W and ANY real multipliers (clipped),
    not only for solver output: check them against the certified value."""
    X, y = random_separable(8)
    k = int(y.max()) + 1
    cert = max_margin(X, y, norm)
    op = PairOperator(X, y, k)
    rng = np.random.default_rng(0)
    for _ in range(50):
        lower, upper = bracket(op, rng.standard_normal((k, X.shape[1])),
                               rng.standard_normal((X.shape[0], k)), Norm.parse(norm))
        assert lower <= cert.upper * (1 + 1e-12)
        assert upper >= cert.lower * (1 - 1e-12)


def test_max_margins_shares_validation_and_keeps_order():
    X, y = random_separable(2)
    certs = max_margins(X, y, ["spectral", "max", "l2"])
    assert [c.norm for c in certs] == ["spectral", "max", "fro"]
    assert [c.solver for c in certs] == ["CLARABEL", "HIGHS", "CLARABEL"]
    assert default_solver("sum") == "HIGHS" and default_solver("l3") == "CLARABEL"


def test_invariant_to_data_scale():
    X, y = random_separable(4)
    base = max_margin(X, y, "fro").gamma
    assert max_margin(1e3 * X, y, "fro").gamma == pytest.approx(1e3 * base, rel=1e-8)


def test_too_strict_tolerance_is_reported_not_hidden():
    X, y = random_separable(6)
    cert = max_margin(X, y, "fro", rtol=1e-300)
    assert cert.status == "inaccurate"
    assert cert.lower <= cert.upper  # still an honest bracket


@pytest.mark.parametrize("X, y", [
    (np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]), np.array([0, 0, 1, 1])),
    (np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]]), np.array([0, 1, 1])),
    (np.zeros((4, 3)), np.array([0, 1, 0, 1])),
], ids=["xor", "duplicate-point", "all-zero"])
@pytest.mark.parametrize("norm", ["max", "fro"])
def test_non_separable_data_raise_with_the_margin_found(X, y, norm):
    with pytest.raises(NotSeparableError) as info:
        max_margin(X, y, norm)
    message = str(info.value)
    assert "not linearly separable" in message and "\n" not in message
    assert "margin" in message and any(ch.isdigit() for ch in message)


def test_norm_formulation_reports_infeasible_as_not_separable():
    X = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    with pytest.raises(NotSeparableError, match="infeasible"):
        max_margin(X, np.array([0, 0, 1, 1]), "fro", formulation="norm")


GOOD_X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
GOOD_Y = np.array([0, 1, 2])


@pytest.mark.parametrize("X, y, norm, fragment", [
    (np.array([[np.nan, 0.0], [0.0, 1.0], [-1.0, 0.0]]), GOOD_Y, "max", "NaN"),
    (np.array([[np.inf, 0.0], [0.0, 1.0], [-1.0, 0.0]]), GOOD_Y, "max", "infinite"),
    (np.array([1.0, 2.0, 3.0]), GOOD_Y, "max", "2-dimensional"),
    (GOOD_X, np.array([0, 1]), "max", "labels"),
    (GOOD_X, np.array([0, 1, -1]), "max", "out of range"),
    (GOOD_X, np.array([0, 2, 2]), "max", "class 1 has no samples"),
    (GOOD_X, np.array([0.5, 1, 2]), "max", "integer"),
    (GOOD_X, GOOD_Y, "l0.5", "p must be >= 1"),
    (GOOD_X, GOOD_Y, "hinge", "unknown norm"),
    (GOOD_X, GOOD_Y, "s3", "Schatten-3"),
], ids=["nan", "inf", "1d-X", "short-y", "negative-label", "empty-class", "float-label",
        "p-below-1", "unknown-norm", "schatten-3"])
def test_bad_input_one_line_error(X, y, norm, fragment):
    with pytest.raises(HarnessInputError) as info:
        max_margin(X, y, norm)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unknown_formulation_is_input_error():
    with pytest.raises(HarnessInputError, match="formulation"):
        max_margin(GOOD_X, GOOD_Y, "max", formulation="dual")


def test_solver_failure_is_reported():
    with pytest.raises(MarginSolveError, match="returned no solution"):
        max_margin(GOOD_X, GOOD_Y, "spectral", solver="SCIPY")


def test_infinite_upper_is_json_safe():
    X, y = random_separable(0)
    cert = max_margin(X, y, "max")
    record = cert.as_dict()
    assert set(record) == {"norm", "gamma", "lower", "upper", "solver", "status"}
    assert all(math.isfinite(record[key]) for key in ("gamma", "lower", "upper"))
