"""harness.precise: precision restored after every use (also on error), exact conversion of
float64 input, mpf input passed through, and its steepest directions."""

import mpmath
import numpy as np
import pytest

from harness import precise
from harness.errors import HarnessInputError


def test_precision_is_restored_after_the_block():
    before = mpmath.mp.dps
    with precise.precision(80) as dps:
        assert mpmath.mp.dps == dps == 80
    assert mpmath.mp.dps == before


def test_precision_is_restored_when_the_block_raises():
    before = mpmath.mp.dps
    with pytest.raises(ZeroDivisionError), precise.precision(60):
        raise ZeroDivisionError
    assert mpmath.mp.dps == before


def test_too_few_digits_is_an_input_error():
    with pytest.raises(HarnessInputError):
        with precise.precision(10):
            pass


def test_float64_input_is_converted_exactly():
    value = 0.1  # not a short decimal: its exact binary value has 55 significant digits
    with precise.precision(60):
        assert precise.mp_matrix([value])[0] == mpmath.mpf(value)
        assert precise.mp_matrix([value])[0] != mpmath.mpf("0.1")


def test_mpf_input_is_not_rounded_to_float64():
    with precise.precision(50):
        third = mpmath.mpf(1) / 3
        assert precise.mp_matrix([[third]])[0][0] == third


def test_loss_at_higher_precision_agrees_to_50_digits():
    W = np.array([[3.0, -1.0], [-2.0, 0.5]])
    X, y = np.array([[1.0, 2.0], [-0.5, 1.0]]), np.array([0, 1])
    with precise.precision(50):
        at_50 = precise.loss(W, X, y)
    with precise.precision(100):
        at_100 = precise.loss(W, X, y)
        assert abs(at_50 - at_100) <= mpmath.mpf(10) ** -48 * at_100


@pytest.mark.parametrize("name", ["max", "sum", "fro", "l3", "spectral", "nuclear"])
def test_precise_steepest_direction_attains_the_dual_norm(name):
    G = np.random.default_rng(5).normal(size=(3, 4))
    with precise.precision(50):
        D = precise.steepest_direction(G, name)
        gap = precise.inner(precise.mp_matrix(G), D) - precise.dual_norm(G, name)
        assert abs(gap) <= mpmath.mpf(10) ** -40
        assert abs(precise.norm(D, name) - 1) <= mpmath.mpf(10) ** -40
