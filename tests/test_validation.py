"""Bad input (issue 2, item 8): the public functions of losses, norms and precise reject NaN/inf,
wrong shapes, labels out of range and empty classes with a one-line ValueError naming the
problem."""

import math

import numpy as np
import pytest

from harness import losses, precise
from harness.errors import HarnessInputError
from harness.norms import Norm

W = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
X = np.array([[1.0, 0.5], [0.2, 1.0], [-1.0, -0.3]])
Y = np.array([0, 1, 2])

PUBLIC = [losses.log_loss, losses.log_proxy, losses.loss_value, losses.proxy, losses.gradient,
          losses.scaled_gradient, losses.per_class_proxies, losses.evaluate_np]


def _with(array, index, value):
    out = np.array(array, dtype=float)
    out[index] = value
    return out


BAD = {
    "NaN in W": ((_with(W, (0, 0), math.nan), X, Y), "W contains 1 NaN or infinite"),
    "inf in X": ((W, _with(X, (1, 1), math.inf), Y), "X contains 1 NaN or infinite"),
    "-inf in W": ((_with(W, (2, 1), -math.inf), X, Y), "W contains 1 NaN or infinite"),
    "W not 2-D": ((W[0], X, Y), "W must be 2-dimensional"),
    "X not 2-D": ((W, X.ravel(), Y), "X must be 2-dimensional"),
    "feature mismatch": ((W, np.hstack([X, X]), Y), "W has 2 columns but X has 4 features"),
    "label count": ((W, X, Y[:2]), "y has 2 labels but X has 3 rows"),
    "label out of range": ((W, X, np.array([0, 1, 3])), "labels out of range"),
    "negative label": ((W, X, np.array([0, -1, 2])), "labels out of range"),
    "empty class": ((W, X, np.array([0, 0, 2])), "class 1 has no samples"),
    "fractional label": ((W, X, np.array([0.0, 1.5, 2.0])), "integer class labels"),
    "empty data": ((W, np.zeros((0, 2)), np.zeros(0, dtype=int)), "X is empty"),
}


@pytest.mark.parametrize("function", PUBLIC, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", list(BAD), ids=str)
def test_losses_reject_bad_input_in_one_line(function, case):
    args, message = BAD[case]
    with pytest.raises(ValueError) as info:
        function(*args)
    assert isinstance(info.value, HarnessInputError)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("function", [losses.margin_value, losses.softmax_probs],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", ["NaN in W", "label out of range", "empty class"], ids=str)
def test_margin_and_softmax_reject_bad_input(function, case):
    args, message = BAD[case]
    with pytest.raises(HarnessInputError, match=message):
        function(*args)


def test_unknown_loss_is_named():
    with pytest.raises(HarnessInputError, match="unknown loss 'hinge'"):
        losses.log_loss(W, X, Y, "hinge")


def test_normalized_margin_of_zero_w_is_an_error():
    with pytest.raises(HarnessInputError, match="W is zero"):
        losses.normalized_margin(np.zeros_like(W), X, Y, "max")


@pytest.mark.parametrize("spec", ["l0.5", "nope", "", "s0"])
def test_norms_reject_unknown_names(spec):
    with pytest.raises(HarnessInputError) as info:
        Norm.parse(spec)
    assert "\n" not in str(info.value)


def test_norms_reject_exponent_below_one():
    with pytest.raises(HarnessInputError, match="p must be >= 1"):
        Norm("entrywise", 0.5)


@pytest.mark.parametrize("case", list(BAD), ids=str)
def test_precise_rejects_bad_input_in_one_line(case):
    args, message = BAD[case]
    with pytest.raises(HarnessInputError) as info, precise.precision(50):
        precise.loss(*args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_precise_rejects_unknown_loss():
    with pytest.raises(HarnessInputError, match="unknown loss"), precise.precision(50):
        precise.loss(W, X, Y, "hinge")
