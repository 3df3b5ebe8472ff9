"""The native CPU kernel (harness/native) against the torch reference path and mpmath.

The kernel and ``losses._evaluate_factored`` compute the same log-domain formulas in a
different order, so they agree to float64 rounding of log-domain quantities: an exp argument
of magnitude ``s`` carries an absolute rounding error of a few ``eps * s``, which is a relative
error of the same size in the exp. ``_tolerance`` states that bound (32 eps (1 + s): four
roundings of size eps s per argument in each path, plus two ulps of exp in each), plus one
subnormal ulp per path where the result is subnormal.
"""

import math
import re

import mpmath
import numpy as np
import pytest
import torch

from harness import losses, native
from harness.errors import HarnessInputError
from harness.native import build

EPS = np.finfo(np.float64).eps
SUBNORMAL_ULP = float(np.finfo(np.float64).smallest_subnormal)


@pytest.fixture(autouse=True)
def _fresh_library_choice(monkeypatch):
    """Each test decides HARNESS_NATIVE itself; the loaded library is kept across tests."""
    monkeypatch.delenv("HARNESS_NATIVE", raising=False)
    native._auto_library.cache_clear()
    native._warned.clear()
    yield
    native._auto_library.cache_clear()
    native._warned.clear()


def _reference(W, X, y, loss):
    """The torch path: the evaluation and its coefficient matrix (the logits buffer)."""
    workspace = losses.Workspace(W, X, y)
    ev = losses._evaluate_factored(W, X, y, loss, workspace)
    return ev, workspace.logits.clone()


def _native(W, X, y, loss):
    workspace = losses.Workspace(W, X, y)
    assert workspace.native is not None
    ev = losses.evaluate(W, X, y, loss, workspace)
    return ev, workspace.coefficients.clone()


def _tolerance(W, X, ev):
    """Relative tolerance per run (see the module docstring)."""
    z = torch.matmul(W, X.transpose(-1, -2))
    scale = z.abs().flatten(-2).amax(dim=-1) + ev.log_scale.abs() + math.log(X.shape[-2])
    return 32 * EPS * (1.0 + scale)


def _assert_agree(W, X, y, loss):
    """Coefficients (the kernel writes those below e^-708 as 0), outputs and gradients."""
    ref, A_ref = _reference(W, X, y, loss)
    got, A = _native(W, X, y, loss)
    tol = _tolerance(W, X, ref)[..., None, None]
    # the kernel writes 0 where exp(arg) < e^-708, with arg rounded: decided either way there
    dropped = A_ref.abs() < math.exp(-708.0) * (1 - 1e-9)
    assert (A[dropped] == 0).all(), "a coefficient below e^-708 was kept"
    either = ~dropped & (A_ref.abs() < math.exp(-708.0) * (1 + 1e-9)) & (A == 0)
    excess = torch.where(dropped | either, 0.0, (A - A_ref).abs() - tol * A_ref.abs())
    assert (excess <= 0).all(), f"coefficient error exceeds the bound by {excess.max():.3g}"
    for name in ("log_loss", "log_proxy", "log_scale"):
        a, b = getattr(got, name), getattr(ref, name)
        assert ((a - b).abs() <= _tolerance(W, X, ref) * (1 + b.abs())).all(), name
    assert torch.equal(got.margin, ref.margin)
    _assert_gradients_agree(got.grad_tilde, ref.grad_tilde, A_ref, X, tol)
    return A, A_ref


def _assert_gradients_agree(grad, grad_ref, A_ref, X, tol):
    """Entrywise: |dG| <= tol sum_i |A_ic x_ij| + 2 subnormal ulps (rounding of A^T X)."""
    magnitude = torch.matmul(A_ref.abs(), X.abs())
    bound = (tol + 64 * EPS) * magnitude + 2 * SUBNORMAL_ULP
    assert ((grad - grad_ref).abs() <= bound).all(), "gradients differ beyond rounding"


@pytest.mark.parametrize("loss", ["ce", "exp"])
@pytest.mark.parametrize("B,k,d,n,scale", [(3, 10, 25, 500, 3.0), (4, 5, 10, 50, 100.0),
                                            (2, 2, 3, 7, 1000.0), (5, 3, 4, 1, 3.0),
                                            (6, 4, 6, 33, 0.01), (3, 7, 5, 40, 300.0)])
def test_kernel_matches_torch_path(loss, B, k, d, n, scale):
    gen = torch.Generator().manual_seed(B * 1000 + n)
    W = scale * torch.randn((B, k, d), generator=gen, dtype=torch.float64)
    X = torch.randn((n, d), generator=gen, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=gen)
    _assert_agree(W, X, y, loss)


@pytest.mark.parametrize("loss", ["ce", "exp"])
def test_per_run_data_and_labels(loss):
    gen = torch.Generator().manual_seed(7)
    W = 5 * torch.randn((4, 3, 6), generator=gen, dtype=torch.float64)
    X = torch.randn((4, 20, 6), generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (4, 20), generator=gen)
    _assert_agree(W, X, y, loss)


def test_separated_regime_uses_the_exp_formulas_exactly():
    """Margins > 38 + log k: the kernel's one-log per-sample path, against the torch path."""
    X = torch.eye(6, dtype=torch.float64)  # logits = W^T
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    W = torch.full((1, 3, 6), -60.0, dtype=torch.float64)
    W[0, y, torch.arange(6)] = torch.tensor([0.0, 3.0, 9.0, 1.0, 0.5, 7.0], dtype=torch.float64)
    _assert_agree(W, X, y, "ce")


def _mpmath_log_loss(z: np.ndarray, y: np.ndarray, loss: str) -> float:
    """log L at 60 digits from logits z (n, k): CE's log(1 + sum_c e^(z_c - z_y)) or the
    exponential loss's sum_c e^(z_c - z_y), averaged over the samples."""
    with mpmath.workdps(60):
        terms = []
        for row, label in zip(z, y, strict=True):
            s = mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - mpmath.mpf(float(row[label])))
                            for c, v in enumerate(row) if c != label)
            terms.append(mpmath.log1p(s) if loss == "ce" else s)
        return float(mpmath.log(mpmath.fsum(terms) / len(terms)))


@pytest.mark.parametrize("loss,tops", [
    ("ce", [2.0, -30.0, -709.5, -2000.0]),   # a misclassified sample: the loss frame is 0
    ("ce", [0.0, -1.0, -708.2]),             # top = 0 exactly, a term at the flush edge
    ("ce", [-5.0, -12.0, -712.0, -760.0]),   # every sample classified: frame max top
    ("ce", [-45.0, -46.0, -300.0, -900.0]),  # separated: the exponential-loss formulas
    ("exp", [800.0, 0.0, -50.0]),            # exp loss above e^709: the frame is max top
    ("exp", [-900.0, -905.0, -1700.0]),      # exp loss far below e^-745
    ("ce", [30.0, 0.5, -0.25, -36.0, -700.0]),  # terms of both kinds, each side dominant
    ("ce", [-20.0, -20.5, -21.0, -33.3, -705.0]),  # a_i = top_i - log w_i rounded near 20
    ("exp", [3.0, -1.0, -650.0, -760.0]),    # exp loss, classified and misclassified
])
def test_loss_sum_in_its_frame_matches_mpmath(loss, tops):
    """log L summed in the coefficients' frame (log_frame.h: v_i = g_i f_i, or
    ell_i e^-log_scale / n for CE's samples with top_i >= 0; 0 where f_i is flushed below
    e^-708) against mpmath at 60 digits, and the torch path likewise: samples with
    top_i = tops[i] (logits = W^T with X = I; the other non-label class 3 nats lower)."""
    n, k = len(tops), 3
    X = torch.eye(n, dtype=torch.float64)
    y = torch.zeros(n, dtype=torch.int64)
    W = torch.zeros((1, k, n), dtype=torch.float64)
    W[0, 1] = torch.tensor(tops, dtype=torch.float64)
    W[0, 2] = W[0, 1] - 3.0
    want = _mpmath_log_loss(W[0].T.numpy(), y.numpy(), loss)
    for ev in (_native(W, X, y, loss)[0], _reference(W, X, y, loss)[0]):
        assert abs(float(ev.log_loss[0]) - want) <= 8 * EPS * (1 + abs(want)), \
            (float(ev.log_loss[0]), want)


def _subnormal_problem():
    """Logits (= W^T with X = I) chosen so A has subnormal entries: sample 0's class-2
    entry exp(-719 + log f_0), and sample 1 (top = -720), whose f_1 is subnormal. With X = I
    the gradient's entries are those coefficients themselves."""
    X = torch.eye(2, dtype=torch.float64)
    y = torch.tensor([0, 1])
    W = torch.tensor([[[0.0, -720.0], [-1.0, 0.0], [-720.0, -2000.0]]], dtype=torch.float64)
    return W, X, y


def test_subnormal_contributions_reach_the_gradient():
    """Gradient entries made only of subnormal coefficients (X = I): the kernel drops them
    from A and adds their part of A^T X after the product."""
    W, X, y = _subnormal_problem()
    ref, A_ref = _reference(W, X, y, "ce")
    got, A = _native(W, X, y, "ce")
    tiny = (ref.grad_tilde != 0) & (ref.grad_tilde.abs() < np.finfo(np.float64).tiny)
    assert tiny.sum() >= 3  # the problem really has subnormal gradient entries
    assert (got.grad_tilde[tiny] != 0).all()
    assert (A.abs() < np.finfo(np.float64).tiny).sum() >= 3  # dropped from A
    _assert_gradients_agree(got.grad_tilde, ref.grad_tilde, A_ref, X,
                            _tolerance(W, X, ref)[..., None, None])


@pytest.mark.parametrize("shared", [True, False])
def test_dropped_part_with_per_run_data(shared):
    """Many subnormal coefficients, with shared and per-run data and labels."""
    gen = torch.Generator().manual_seed(11)
    W = 100 * torch.randn((4, 5, 10), generator=gen, dtype=torch.float64)
    X = torch.randn((50, 10) if shared else (4, 50, 10), generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (50,) if shared else (4, 50), generator=gen)
    _, A_ref = _reference(W, X, y, "ce")
    assert ((A_ref != 0) & (A_ref.abs() < math.exp(-708.0))).sum() >= 5
    _assert_agree(W, X, y, "ce")


def test_teeth_gradient_check_catches_dropped_contributions():
    """Without the recomputation (the kernel's raw A^T X), the gradient check fails."""
    W, X, y = _subnormal_problem()
    ref, A_ref = _reference(W, X, y, "ce")
    _, A = _native(W, X, y, "ce")
    with pytest.raises(AssertionError, match="beyond rounding"):
        _assert_gradients_agree(torch.matmul(A, X), ref.grad_tilde, A_ref, X,
                                _tolerance(W, X, ref)[..., None, None])


def test_nonfinite_logits_give_nan():
    W = torch.randn((3, 4, 5), dtype=torch.float64)
    W[1, 0, 0], W[2, 1, 1] = math.nan, math.inf
    X = torch.randn((20, 5), dtype=torch.float64)
    ev = losses.evaluate(W, X, torch.arange(20) % 4)
    assert math.isfinite(ev.log_loss[0]) and ev.log_loss[1:].isnan().all()
    assert ev.grad_tilde[1:].isnan().all()


def test_exp_polynomial_is_the_minimax_one():
    """The exp polynomial in log_frame.h is harness/native/exp_minimax.py's degree-11 minimax
    polynomial rounded to float64 (recomputed here), and its relative error on the reduced
    range is below a quarter ulp."""
    from harness.native.exp_minimax import DEGREE, largest_error, minimax_exp

    header = (build.SOURCE_DIR / "log_frame.h").read_text()
    body = header[header.index("minimax polynomial of degree 11"):]
    body = body[:body.index("int64_t t_bits")]
    literals = re.findall(r"(0x[0-9a-f.]+p[-+]?\d+|1\.0);", body)
    in_header = [float.fromhex(v) if v.startswith("0x") else float(v) for v in literals]
    coefficients, equioscillation = minimax_exp(DEGREE)
    assert in_header[::-1] == [float(c) for c in coefficients]
    assert equioscillation < 4e-18 and largest_error(in_header[::-1]) < 2.0 ** -55


def test_flush_exp_within_two_ulps_of_mpmath():
    rng = np.random.default_rng(0)
    x = np.concatenate([-rng.uniform(0, 1, 3000) * 10.0 ** rng.uniform(-300, 2.85, 3000),
                        [0.0, -0.0, -708.0, -1e-300]])
    got = native.flush_exp(x)
    with mpmath.workdps(40):
        want = np.array([float(mpmath.exp(mpmath.mpf(v))) for v in x])
    ulp = np.spacing(want)
    assert (np.abs(got - want) <= 2 * ulp).all(), np.max(np.abs(got - want) / ulp)
    below = native.flush_exp(np.array([-708.01, -720.0, -745.0, -1e300, -math.inf]))
    assert (below == 0).all()
    assert math.isnan(native.flush_exp(np.array([math.nan]))[0])


def test_switch_off_uses_torch(monkeypatch):
    monkeypatch.setenv("HARNESS_NATIVE", "0")
    W = torch.zeros((2, 3, 4), dtype=torch.float64)
    assert losses.Workspace(W, torch.ones((5, 4), dtype=torch.float64),
                            torch.arange(5) % 3).native is None


def test_switch_rejects_unknown_value(monkeypatch):
    monkeypatch.setenv("HARNESS_NATIVE", "maybe")
    with pytest.raises(HarnessInputError, match="HARNESS_NATIVE"):
        native.native_mode()


def test_missing_compiler_is_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    with pytest.raises(build.NativeBuildError, match="not found") as info:
        build.load_library("log_frame_ce.c")
    assert "\n" not in str(info.value)


def test_auto_falls_back_with_one_warning(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_library", _uncached_library)
    assert native.log_frame_kernel() is None
    assert native.log_frame_kernel() is None
    err = capsys.readouterr().err
    assert err.count("warning: native kernel unavailable") == 1


def _uncached_library(source="log_frame_ce.c"):
    return build.load_library(source)


def test_build_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    build.load_library("log_frame_ce.c")
    built = list(tmp_path.rglob("*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    build.load_library("log_frame_ce.c")
    assert [p.stat().st_mtime_ns for p in tmp_path.rglob("*.so")] == [stamp]


def test_unwritable_cache_is_one_line_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(blocker))
    with pytest.raises(build.NativeBuildError) as info:
        build.load_library("log_frame_ce.c")
    assert "\n" not in str(info.value)


def test_damaged_library_is_one_line_error(monkeypatch, tmp_path):
    """A cached library that does not load (a truncated file at a path not loaded before)."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "good"))
    build.load_library("log_frame_ce.c")
    (built,) = (tmp_path / "good").rglob("*.so")
    damaged = tmp_path / "damaged" / built.relative_to(tmp_path / "good")
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"truncated")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "damaged"))
    with pytest.raises(build.NativeBuildError, match="log_frame_ce.c") as info:
        build.load_library("log_frame_ce.c")
    assert "\n" not in str(info.value)


def test_required_kernel_that_cannot_build_exits_2(monkeypatch, tmp_path, capsys):
    from harness.cli import main

    monkeypatch.setenv("HARNESS_NATIVE", "1")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    native._library.cache_clear()
    try:
        assert main(["bench", "--cases", "small", "--steps", "2", "--naive-steps", "2"]) == 2
    finally:
        native._library.cache_clear()
    err = capsys.readouterr().err
    assert "C compiler" in err and err.count("\n") == 1
