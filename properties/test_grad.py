"""Properties GRAD, GRAD-LB, HESS (THEORY.md section 2): the gradient, its lower bound, the
Hessian remainder; and the gradient against torch autograd and mpmath.diff."""

import mpmath
import numpy as np
import torch
from hypothesis import given

from harness import losses, precise
from harness.lemma_cases import problems
from properties._support import teeth_test, verdict_test

test_lemma_holds = verdict_test("grad")
test_teeth = teeth_test("grad")


# ---- gradient identities against torch autograd and mpmath.diff ----------------------------



def _autograd_ce_gradient(W, X, y):
    """The textbook gradient: autograd through ``torch.nn.functional.cross_entropy``."""
    Wt = torch.tensor(W, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(torch.as_tensor(X) @ Wt.T, torch.as_tensor(y))
    (grad,) = torch.autograd.grad(loss, Wt)
    return grad.numpy()


@given(problems())
def test_gradient_matches_autograd_where_nothing_saturates(case):
    W, X, y = case["W"], case["X"], case["y"]
    z = X @ W.T
    gaps = z[np.arange(len(y)), y][:, None] - z
    if np.abs(gaps).max() > 10.0:  # saturation is where autograd goes wrong (next test)
        W = W * (10.0 / np.abs(gaps).max())
    ours = losses.gradient(W, X, y)
    theirs = _autograd_ce_gradient(W, X, y)
    # autograd forms s - onehot by subtraction: an absolute rounding error of ~eps per entry
    # (a relative eps / (1 - s_y), the cancellation harness.losses avoids), times |x_i| / n
    k = W.shape[0]
    autograd_error = 64 * np.finfo(float).eps * k * np.abs(X).sum() / len(y)
    scale = 2 * np.abs(X).sum(axis=1).max() * losses.proxy(W, X, y)
    assert np.abs(ours - theirs).sum() <= 1e-12 * scale + autograd_error


def test_gradient_entries_match_mpmath_diff():
    rng = np.random.default_rng(7)
    W, X, y = rng.normal(size=(3, 2)) * 3, rng.normal(size=(5, 2)), np.array([0, 1, 2, 0, 1])
    with precise.precision(50):
        exact = precise.gradient(W, X, y)
        for c in range(3):
            for j in range(2):
                def along(t, c=c, j=j):
                    Wt = precise.mp_matrix(W)
                    Wt[c][j] += t
                    return precise.loss(Wt, X, y)
                numeric = mpmath.diff(along, 0)
                assert abs(numeric - exact[c][j]) <= mpmath.mpf(10) ** -35 * (1 + abs(numeric))


def test_autograd_label_entry_is_exactly_zero_where_ours_is_right():
    """Margin 40 on both samples: float64 rounds s_y to 1, so autograd's (label, feature)
    entries are exactly 0; harness.losses keeps 1 - s_y = sum_{c != y} s_c and matches mpmath."""
    W = np.array([[20.0, -20.0], [-20.0, 20.0]])
    X, y = np.eye(2), np.array([0, 1])
    autograd = _autograd_ce_gradient(W, X, y)
    ours = losses.gradient(W, X, y)
    with precise.precision(50):
        exact = precise.gradient(W, X, y)
        for c in range(2):  # entry (y_i, i): only sample i, through 1 - s_{i, y_i}
            assert autograd[c, c] == 0.0
            assert ours[c, c] != 0.0
            assert abs(mpmath.mpf(float(ours[c, c])) - exact[c][c]) <= 1e-14 * abs(exact[c][c])
        assert autograd[0, 1] != 0.0  # the off-label entries survive in autograd
