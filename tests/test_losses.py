"""harness.losses against the mpmath reference (harness.precise) at 50 digits, across
magnitudes: small logits, margins of 40 (s_y rounds to 1 in float64) and 800 (L below
exp(-745), reachable only through log_loss / log_proxy), for CE, exp and PairLogLoss."""

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import losses, precise
from harness.lemma_cases import problems

LOSSES = ("ce", "exp", "pairlog")


def _problem(margin: float):
    """k = 3, n = 4, every pairwise gap at least ``margin`` (and some much larger)."""
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [2.0, 0.5]])
    y = np.array([0, 1, 2, 0])
    V = np.array([[1.0, -0.5], [-0.5, 1.0], [-0.5, -0.5]])
    base = precise.margin(V, X, y)
    return V * (margin / float(base)), X, y


def _close(value: float, exact, rel: float = 1e-13) -> bool:
    return abs(mpmath.mpf(value) - exact) <= rel * abs(exact)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("margin", [1e-3, 1.0, 40.0, 800.0])
def test_log_loss_and_log_proxy_match_mpmath(margin, loss):
    W, X, y = _problem(margin)
    with precise.precision(50):
        L, G = precise.loss(W, X, y, loss), precise.proxy(W, X, y, loss)
        for ours, exact in ((losses.log_loss(W, X, y, loss), mpmath.log(L)),
                            (losses.log_proxy(W, X, y, loss), mpmath.log(G))):
            assert abs(ours - exact) <= 1e-13 * abs(exact) + 1e-15
    if margin == 800.0:
        assert L < mpmath.exp(-745)  # below float64: only the logs carry it
        assert losses.loss_value(W, X, y, loss) == 0.0
        assert math.isfinite(losses.log_loss(W, X, y, loss))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("margin", [1e-3, 1.0, 40.0, 800.0])
def test_scaled_gradient_matches_mpmath(margin, loss):
    W, X, y = _problem(margin)
    g_tilde, log_scale = losses.scaled_gradient(W, X, y, loss)
    with precise.precision(50):
        exact = precise.gradient(W, X, y, loss)
        scale = mpmath.exp(mpmath.mpf(log_scale))
        size = max(abs(v) for row in exact for v in row)
        for c in range(3):
            for j in range(2):
                err = abs(mpmath.mpf(float(g_tilde[c, j])) * scale - exact[c][j])
                assert err <= 1e-12 * size


@pytest.mark.parametrize("margin", [40.0, 800.0])
def test_label_complement_is_not_rounded_to_zero(margin):
    """1 - s_y is a sum of positive terms: the label row of the gradient stays nonzero."""
    W, X, y = _problem(margin)
    g_tilde, _ = losses.scaled_gradient(W, X, y)
    assert np.all(np.abs(g_tilde).sum(axis=1) > 0)


@pytest.mark.parametrize("loss", LOSSES)
def test_per_class_proxies_sum_to_proxy(loss):
    W, X, y = _problem(2.0)
    G_c, Q_c = losses.per_class_proxies(W, X, y, loss)
    with precise.precision(50):
        exact_G, exact_Q = precise.class_proxies(W, X, y, loss)
        for c in range(3):
            assert _close(float(G_c[c]), exact_G[c]) and _close(float(Q_c[c]), exact_Q[c])
    assert math.isclose(G_c.sum(), losses.proxy(W, X, y, loss), rel_tol=1e-14)
    assert math.isclose(Q_c.sum(), losses.proxy(W, X, y, loss), rel_tol=1e-14)


def test_margin_and_normalized_margin_match_mpmath():
    W, X, y = _problem(3.0)
    with precise.precision(50):
        m = precise.margin(W, X, y)
        assert _close(losses.margin_value(W, X, y), m, 1e-15)
        assert _close(losses.normalized_margin(W, X, y, "max"), m / precise.norm(W, "max"), 1e-14)


@given(problems(), st.sampled_from(LOSSES))
def test_log_quantities_match_mpmath_on_random_problems(case, loss):
    W, X, y = case["W"], case["X"], case["y"]
    with precise.precision(50):
        log_L = mpmath.log(precise.loss(W, X, y, loss))
        log_G = mpmath.log(precise.proxy(W, X, y, loss))
    # relative to the log-magnitude, plus the float64 conditioning of the logits
    slack = 1e-12 * (1 + abs(float(log_L)) + float(np.abs(X @ W.T).max()))
    assert abs(losses.log_loss(W, X, y, loss) - log_L) <= slack
    assert abs(losses.log_proxy(W, X, y, loss) - log_G) <= slack
