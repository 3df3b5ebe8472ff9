"""harness.norms: duality <G, D> = N_dual(G) with N(D) = 1 at the steepest direction, the dual
of the dual, the ordering ||A||_max <= N(A) and N_dual(A) <= ||A||_sum, and agreement with the
mpmath reference (harness.precise)."""

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness import precise
from harness.errors import HarnessInputError
from harness.native import native_spectral_norms, spectral_norm_kernel
from harness.norms import Norm, norm_value, steepest_direction

NAMES = ("max", "sum", "fro", "l3", "l1.5", "spectral", "nuclear", "s3")

matrices = st.tuples(st.integers(1, 5), st.integers(1, 5)).flatmap(
    lambda shape: arrays(np.float64, shape, elements=st.floats(-1e3, 1e3, allow_subnormal=False)))


@given(matrices, st.sampled_from(NAMES))
def test_steepest_direction_attains_the_dual_norm(G, name):
    N = Norm.parse(name)
    Gt = torch.as_tensor(G)
    D = steepest_direction(Gt, N)
    dual = float(N.dual_value(Gt))
    assert math.isclose(float((Gt * D).sum()), dual, rel_tol=1e-9, abs_tol=1e-12 * (1 + dual))
    if dual > 0:
        assert math.isclose(float(N.value(D)), 1.0, rel_tol=1e-9)
    else:
        assert float(N.value(D)) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_dual_of_dual_is_the_norm(name):
    N = Norm.parse(name)
    assert N.dual.dual == N


@given(matrices, st.sampled_from(NAMES))
def test_max_and_sum_bracket_every_norm(A, name):
    N, At = Norm.parse(name), torch.as_tensor(A)
    top, total = float(At.abs().max()), float(At.abs().sum())
    assert top <= float(N.value(At)) * (1 + 1e-12) + 1e-300
    assert float(N.dual_value(At)) <= total * (1 + 1e-12) + 1e-300


@pytest.mark.parametrize("name", NAMES)
def test_norms_match_mpmath(name):
    A = np.random.default_rng(3).normal(size=(3, 4))
    with precise.precision(50):
        exact, exact_dual = precise.norm(A, name), precise.dual_norm(A, name)
        assert abs(mpmath.mpf(norm_value(A, name)) - exact) <= 1e-13 * exact
        assert abs(mpmath.mpf(float(Norm.parse(name).dual_value(torch.as_tensor(A))))
                   - exact_dual) <= 1e-13 * exact_dual


def test_truncated_svd_ignores_the_rank_deficient_direction():
    """Rows summing to zero (a CE gradient): rank <= k - 1, the spectral direction has
    exactly k - 1 unit singular values."""
    G = np.random.default_rng(4).normal(size=(3, 5))
    G -= G.mean(axis=0)
    D = steepest_direction(torch.as_tensor(G), "spectral")
    sigma = torch.linalg.svdvals(D).numpy()
    assert np.allclose(sigma[:2], 1.0) and sigma[2] < 1e-10


@pytest.mark.parametrize("bad", ["l0.5", "banana", "s"])
def test_unknown_norm_is_a_one_line_error(bad):
    with pytest.raises(HarnessInputError) as info:
        Norm.parse(bad)
    assert "\n" not in str(info.value)


@pytest.fixture(params=["native", "torch"])
def spectral_path(request, monkeypatch):
    """Both implementations of the spectral norm: the CPU kernel (spectral_norm.c, Jacobi)
    and the torch path (eigvalsh), the reference and the fallback."""
    if request.param == "native":
        if spectral_norm_kernel() is None:
            pytest.skip("native kernel unavailable")
    else:
        monkeypatch.setenv("HARNESS_NATIVE", "0")
    return request.param


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (5, 10), (10, 5), (10, 25), (4, 4),
                                   (16, 16), (17, 20)])
@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_spectral_norm_matches_mpmath_on_both_sides(shape, scale, spectral_path):
    """The spectral norm (the Gram matrix of the smaller side) against the singular values at
    50 digits, wide and tall, near both ends of float64's range; a near-degenerate top pair
    (two equal singular values up to 1e-9) too. (17, 20) is past the kernel's largest side:
    the torch path on both parameters."""
    rng = np.random.default_rng(sum(shape))
    A = rng.normal(size=shape) * scale
    U, _, Vt = np.linalg.svd(rng.normal(size=shape), full_matrices=False)
    tail = 0.5 ** np.arange(1, U.shape[1])
    close_pair = (U * np.r_[1.0, 1.0 - 1e-9, tail[1:]][:U.shape[1]]) @ Vt * scale
    for M in (A, close_pair):
        with precise.precision(50):
            exact = precise.norm(M, "spectral")
            value = mpmath.mpf(float(Norm.parse("spectral").value(torch.as_tensor(M))))
            assert abs(value - exact) <= 4e-15 * exact


def test_spectral_norm_batched_zero_and_nonfinite(spectral_path):
    """Batched values equal the one-at-a-time ones; zero is 0; a non-finite matrix is NaN and
    leaves the others alone."""
    A = torch.randn(6, 5, 10, dtype=torch.float64)
    A[2] = 0.0
    A[4, 1, 3] = math.inf
    values = Norm.parse("spectral").value(A)
    assert values[2] == 0.0 and math.isnan(values[4])
    for b in (0, 1, 3, 5):
        expected = float(np.linalg.norm(A[b].numpy(), 2))
        assert math.isclose(float(values[b]), expected, rel_tol=1e-14)


def test_spectral_norm_does_not_depend_on_the_batch(spectral_path):
    """A matrix's spectral norm is the same bits alone and inside any batch (a run's curve row
    must not depend on the runs beside it)."""
    A = torch.randn(64, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batched = Norm.parse("spectral").value(A)
    assert all(batched[b] == Norm.parse("spectral").value(A[b]) for b in range(64))


@pytest.mark.parametrize("matrix", ["orthonormal rows", "rank one", "diagonal with a tie"])
def test_spectral_norm_kernel_on_degenerate_spectra(matrix, spectral_path):
    """Equal or zero singular values (a Gram matrix already diagonal, or rank one), where a
    Jacobi rotation meets a zero pivot G_pq or a zero difference G_qq - G_pp: 50-digit
    agreement, as for random matrices."""
    rng = np.random.default_rng(7)
    if matrix == "orthonormal rows":
        M = np.linalg.qr(rng.normal(size=(10, 10)))[0][:5] * 3.0
    elif matrix == "rank one":
        M = np.outer(rng.normal(size=5), rng.normal(size=10))
    else:
        M = np.zeros((5, 10))
        M[np.arange(5), np.arange(5)] = [2.0, 2.0, 1.0, 2.0, 1e-8]
    with precise.precision(50):
        exact = precise.norm(M, "spectral")
        value = mpmath.mpf(float(Norm.parse("spectral").value(torch.as_tensor(M))))
        assert abs(value - exact) <= 4e-15 * exact


def test_native_spectral_norms_where_they_apply():
    """The kernel takes CPU float64 tensors without autograd whose smaller side is at most
    spectral_norm_max_side(); Norm.value gives its bits there, and the torch path's elsewhere."""
    kernel = spectral_norm_kernel()
    if kernel is None:
        pytest.skip("native kernel unavailable")
    side = kernel.spectral_norm_max_side()
    A = torch.randn(9, side, side + 3, dtype=torch.float64)
    native = native_spectral_norms(A)
    assert native is not None and torch.equal(native, Norm.parse("spectral").value(A))
    assert native_spectral_norms(torch.randn(3, side + 1, side + 1, dtype=torch.float64)) is None
    assert native_spectral_norms(A.float()) is None
    assert native_spectral_norms(A.clone().requires_grad_()) is None
    assert native_spectral_norms(A[:0]) is None
