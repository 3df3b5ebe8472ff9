"""THEORY.md section 5: the moving log-frame against the exact algorithm (mpmath, 50 digits).

The frame stores the gradient as ``exp(phi) g~`` with the largest pair weight of ``g~`` equal
to 1, so every entry of ``g~`` more than about e^-745 below the largest underflows to 0. For
the scale-invariant methods whose direction depends on each entry separately (SignGD, Signum,
Adam: the sign or the ratio of an entry, whatever its size) such an entry's update becomes 0
where the exact algorithm's is +-eta. THEORY.md section 5 says the frame "is exact up to
float64 rounding"; the second test is a counterexample to that sentence, pinned as a strict
xfail (measured on the paper data: the smallest gradient entry relative to the largest is
e^-74 after 1e5 SignGD steps, so real runs reach this regime only far beyond 1e6 steps).
"""

import mpmath
import numpy as np
import pytest
import torch

from harness import precise
from harness.losses import evaluate
from harness.optimizers import make_optimizer

X = np.eye(3)  # logits z_i = W[:, i], gradient entries = pair weights
y = np.array([0, 1, 2])


def _signgd_directions(W):
    """(engine direction, exact direction) of one SignGD step at ``W``."""
    Wt = torch.as_tensor(W)[None]
    ev = evaluate(Wt, torch.as_tensor(X), torch.as_tensor(y))
    opt = make_optimizer("signgd")
    direction = opt.direction(ev.grad_tilde, opt.init_state(Wt), 0, ev.log_scale)[0]
    with precise.precision(50):
        exact = [[int(mpmath.sign(g)) for g in row] for row in precise.gradient(W, X, y)]
    return direction.numpy(), np.array(exact, dtype=float)


def _W(separation: float) -> np.ndarray:
    """Classes 0 and 1 confused at scale 1; class 2 separated from both by ``separation``."""
    return np.array([[0.0, -1.0, -separation],
                     [-1.0, 0.0, -separation],
                     [-separation, -separation, 0.0]])


def test_signgd_direction_is_exact_within_the_frames_range():
    engine, exact = _signgd_directions(_W(300.0))  # class-2 row ~ e^-300 of the largest
    np.testing.assert_array_equal(engine, exact)


@pytest.mark.xfail(strict=True, reason=(
    "THEORY.md section 5 counterexample: gradient entries below ~e^-745 of the largest "
    "underflow in the log-frame, so SignGD's sign there is 0 instead of +-1 (class-2 row at "
    "e^-800 here); the frame is exact only while a gradient's entries span < 745 nats"))
def test_signgd_direction_is_exact_beyond_the_frames_range():
    engine, exact = _signgd_directions(_W(800.0))
    assert (exact[2] != 0).all()  # the exact direction moves the separated class's row
    np.testing.assert_array_equal(engine, exact)
