"""The native span stepper (harness/native/steepest_steps.c) against the engine's torch stepper.

Both take the same steps of entrywise normalized steepest descent; the C matrix products sum
in another order than BLAS, so W agrees to rounding (1e-10 relative over hundreds of steps, as
the item-4 cross-checks ask of the engine against the numpy loop) and the recorded curves and
invariant summaries agree to the same order. The naive-loop cross-checks of
tests/test_optimizers.py run through this stepper as well (it is the engine's CPU path).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import harness.engine as engine
from harness.engine import RunSpec, run_batch
from harness.native import native_log, steepest_steps_data, steepest_steps_kernel
from tests.test_optimizers import toy_dataset


@pytest.fixture(autouse=True, scope="module")
def _kernel():
    if steepest_steps_kernel() is None:
        pytest.skip("native kernel unavailable (no C compiler)")


def _runs(specs, steps, monkeypatch, native: bool, threads: int = 1, loss: str = "ce"):
    monkeypatch.setenv("HARNESS_NATIVE", "1" if native else "0")
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    made = []
    real_make = engine._make_stepper

    def make(group, loss_name):
        stepper = real_make(group, loss_name)
        made.append(type(stepper).__name__)
        return stepper

    monkeypatch.setattr(engine, "_make_stepper", make)
    result = run_batch(specs, steps, compute_references=False, progress=False, loss=loss)
    expected = "_NativeSteepestStepper" if native else "_Stepper"
    assert made and all(name == expected for name in made)
    return result


def _assert_same_trajectories(got, want):
    assert got.steps_done == want.steps_done
    for run_id, W in want.final_W.items():
        scale = max(np.abs(W).max(), 1e-300)
        assert np.abs(got.final_W[run_id] - W).max() <= 1e-10 * scale, run_id
    assert [(r["run_id"], r["t"]) for r in got.rows] == [(r["run_id"], r["t"]) for r in want.rows]
    for a, b in zip(got.rows, want.rows, strict=True):
        for key in ("log_loss", "log_proxy", "margin"):
            assert math.isclose(a[key], b[key], rel_tol=1e-9, abs_tol=1e-9), (key, a["t"])
    for run_id, summary in want.invariants.items():
        other = got.invariants[run_id]
        for key in ("separation_time", "stalled_steps", "nonfinite_steps"):
            assert other[key] == summary[key], (run_id, key)


@pytest.mark.parametrize("name, hyper", [("signgd", {}), ("ngd", {}), ("nsd", {"p": 3.0}),
                                         ("nsd", {"p": 1.5}), ("cd", {})])
@pytest.mark.parametrize("loss", ["ce", "exp"])
def test_native_stepper_matches_torch_stepper(monkeypatch, name, hyper, loss):
    data = toy_dataset()
    specs = [RunSpec(data, name, 0.05 * (1 + i), 0.5, hyper=hyper, references={},
                     run_id=f"r{i}", init_scale=0.1 * i, seed=i) for i in range(3)]
    want = _runs(specs, 600, monkeypatch, native=False, loss=loss)
    got = _runs(specs, 600, monkeypatch, native=True, threads=2, loss=loss)
    _assert_same_trajectories(got, want)


def test_per_run_data_and_thread_counts(monkeypatch):
    """Runs with their own data (a (B, n, d) group) and 1, 2 or 5 threads for 4 runs."""
    specs = [RunSpec(toy_dataset(seed), "signgd", 0.1, 0.5, references={}, run_id=f"s{seed}")
             for seed in range(4)]
    want = _runs(specs, 400, monkeypatch, native=False)
    for threads in (1, 2, 5):
        _assert_same_trajectories(_runs(specs, 400, monkeypatch, True, threads), want)


def test_long_run_stays_exact_past_underflow(monkeypatch):
    """Far below L = e^-745 (the regime the log frame exists for) the two steppers still agree
    and every step moves W."""
    specs = [RunSpec(toy_dataset(), "signgd", 1.0, 0.2, references={}, run_id="far")]
    want = _runs(specs, 3000, monkeypatch, native=False)
    got = _runs(specs, 3000, monkeypatch, native=True)
    assert want.rows[-1]["log_loss"] < -745
    _assert_same_trajectories(got, want)
    assert got.invariants["far"]["stalled_steps"] == 0


def _kernel_steps(W, data, steps, eta0=0.1, a=0.5, p=math.inf, threads=0):
    """Advance every run of ``W`` (B, k, d) on the shared ``data`` by ``steps`` steps with one
    kernel call (``threads=0``: the whole range in one static call; else that many threads
    claiming chunks of runs through a shared counter); returns (run-steps taken in vector
    lanes, the (steps, 6, B) fields)."""
    kernel = steepest_steps_kernel()
    X = torch.as_tensor(data.X, dtype=torch.float64).contiguous()
    y = torch.as_tensor(data.y, dtype=torch.int64).contiguous()
    XT, Xp = steepest_steps_data(kernel, X)
    B, k, d = W.shape
    n = X.shape[0]
    t = torch.arange(steps, dtype=torch.float64)[:, None]
    eta = (eta0 * (t + 1) ** -a).expand(steps, B).contiguous()
    fields = torch.empty((steps, 6, B), dtype=torch.float64)
    scratch = torch.empty((max(threads, 1), kernel.steepest_steps_scratch(k, d, n)),
                          dtype=torch.float64)
    claimed = torch.zeros(1, dtype=torch.int64)

    def call(i: int) -> int:
        return kernel.steepest_steps(W.data_ptr(), X.data_ptr(), 0, XT.data_ptr(), 0,
                                     Xp.data_ptr(), 0, y.data_ptr(), 0, B, k, d, n, 1, p,
                                     eta.data_ptr(), steps, 0, B, fields.data_ptr(),
                                     scratch[i].data_ptr(),
                                     claimed.data_ptr() if threads else None)

    if not threads:
        return call(0), fields
    with ThreadPoolExecutor(threads) as pool:
        lanes = sum(pool.map(call, range(threads)))
    assert claimed.item() >= B  # every chunk was claimed
    return lanes, fields


def _assert_lanes_match_single_runs(W0, data, steps, **schedule):
    """Nine runs in one call (a group of eight in the lanes, one on its own) against each run
    alone (the per-run step): W to 1e-12 relative, every invariant field to 1e-12."""
    W = W0.clone()
    lanes, fields = _kernel_steps(W, data, steps, **schedule)
    for b in range(W0.shape[0]):
        alone = W0[b:b + 1].clone()
        taken, own = _kernel_steps(alone, data, steps, **schedule)
        assert taken == 0
        scale = alone.abs().max().item()
        assert (W[b] - alone[0]).abs().max().item() <= 1e-12 * scale, b
        np.testing.assert_allclose(fields[:, :5, b].numpy(), own[:, :5, 0].numpy(),
                                   rtol=1e-12, atol=1e-12)
    return lanes


@pytest.mark.parametrize("p", [math.inf, 2.0, 1.0])
def test_lane_groups_take_the_per_run_steps(p):
    """Runs sharing their data advance eight at a time in vector lanes: every step of a group
    stays there early in a run, and each run's trajectory is the per-run step's."""
    gen = torch.Generator().manual_seed(0)
    W0 = 0.3 * torch.randn((9, 4, 6), generator=gen, dtype=torch.float64)
    lanes = _assert_lanes_match_single_runs(W0, toy_dataset(), 300, p=p)
    assert lanes == 8 * 300


def test_lane_groups_fall_back_past_underflow():
    """Past L = e^-745 coefficients leave the normal range: those steps of the group go to the
    per-run step (its subnormal bookkeeping), and the runs still agree with single runs."""
    lanes = _assert_lanes_match_single_runs(torch.zeros((9, 4, 6), dtype=torch.float64),
                                            toy_dataset(), 3000, eta0=1.0, a=0.2)
    assert 0 < lanes < 8 * 3000


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_claimed_chunks_give_the_static_range(threads):
    """Threads claiming chunks of eight runs through the shared counter (the engine's way)
    advance every run exactly as one call over the whole range does: the same W and fields,
    bit for bit, and the same count of lane run-steps (19 runs: two lane groups and three
    single runs)."""
    W0 = 0.05 * torch.randn((19, 4, 6), dtype=torch.float64,
                            generator=torch.Generator().manual_seed(3))
    static = W0.clone()
    lanes_static, fields_static = _kernel_steps(static, toy_dataset(), 200)
    claimed = W0.clone()
    lanes_claimed, fields_claimed = _kernel_steps(claimed, toy_dataset(), 200, threads=threads)
    assert lanes_static == lanes_claimed == 2 * 8 * 200
    assert torch.equal(static, claimed)
    assert torch.equal(fields_static.nan_to_num(7.0), fields_claimed.nan_to_num(7.0))


@pytest.mark.parametrize("name, hyper", [("signgd", {}), ("ngd", {}), ("nsd", {"p": 3.0}),
                                         ("cd", {})])
@pytest.mark.parametrize("loss", ["ce", "exp"])
def test_lane_groups_match_torch_stepper(monkeypatch, name, hyper, loss):
    """19 runs on shared data over 2 threads (chunks of eight runs claimed as the threads go:
    two lane groups, then three single runs) against the torch stepper."""
    data = toy_dataset()
    specs = [RunSpec(data, name, 0.05 * (1 + i % 4), 0.5, hyper=hyper, references={},
                     run_id=f"r{i}", init_scale=0.05 * i, seed=i) for i in range(19)]
    want = _runs(specs, 400, monkeypatch, native=False, loss=loss)
    got = _runs(specs, 400, monkeypatch, native=True, threads=2, loss=loss)
    _assert_same_trajectories(got, want)


def test_nan_in_one_lane_leaves_the_others_exact(monkeypatch):
    """A NaN W in one run of a lane group: that run is NaN on every row, the group's steps go
    to the per-run step, and the other eight runs are those of a clean batch."""
    build = engine._build_groups
    poison = {"on": False}

    def poisoned(*args, **kwargs):
        groups = build(*args, **kwargs)
        if poison["on"]:
            groups[0].W[3, 0, 0] = math.nan
        return groups

    monkeypatch.setattr(engine, "_build_groups", poisoned)
    specs = [RunSpec(toy_dataset(), "signgd", 0.1, 0.5, references={}, run_id=f"r{i}",
                     init_scale=0.1, seed=i) for i in range(9)]
    clean = _runs(specs, 50, monkeypatch, native=True)
    poison["on"] = True
    dirty = _runs(specs, 50, monkeypatch, native=True)
    assert dirty.invariants["r3"]["nonfinite_steps"] == 51
    for run_id, W in clean.final_W.items():
        if run_id != "r3":
            scale = np.abs(W).max()
            assert np.abs(dirty.final_W[run_id] - W).max() <= 1e-12 * scale, run_id
            assert dirty.invariants[run_id]["nonfinite_steps"] == 0


@pytest.mark.parametrize("native", [False, True])
def test_nonfinite_weights_give_nan_steps(monkeypatch, native):
    """A NaN in W: every row is counted non-finite, the checkpoints record NaN (the spectral
    norm's SVD does not stop the batch), and the run goes on to its last step."""
    build = engine._build_groups

    def poisoned(*args, **kwargs):
        groups = build(*args, **kwargs)
        groups[0].W[0, 0, 0] = math.nan
        return groups

    monkeypatch.setattr(engine, "_build_groups", poisoned)
    specs = [RunSpec(toy_dataset(), "signgd", 0.1, 0.5, references={}, run_id="bad")]
    result = _runs(specs, 20, monkeypatch, native=native)
    # 20 steps and the final state's row
    assert result.invariants["bad"]["nonfinite_steps"] == 21 and result.steps_done["bad"] == 20
    assert all(math.isnan(row["log_loss"]) for row in result.rows)
    assert np.isnan(result.final_W["bad"]).any()


def test_stepper_choice():
    """The native stepper takes entrywise steepest descent only."""
    data = toy_dataset()
    for name, native in (("signgd", True), ("cd", True), ("spectral_gd", False),
                         ("signum", False), ("adam", False), ("gd", False)):
        (group,) = engine._build_groups([RunSpec(data, name, 0.1, references={})], "cpu",
                                        torch.float64, False)
        assert engine._NativeSteepestStepper.eligible(group, "ce") is native, name
        assert not engine._NativeSteepestStepper.eligible(group, "pairlog")
    (group,) = engine._build_groups([RunSpec(data, "signgd", 0.1, references={})], "cpu",
                                    torch.float32, False)
    assert not engine._NativeSteepestStepper.eligible(group, "ce")
    assert steepest_steps_kernel() is not None


def test_native_log_within_one_ulp_of_mpmath():
    import mpmath

    rng = np.random.default_rng(0)
    x = np.concatenate([np.exp(rng.uniform(-740, 709, 3000)), rng.uniform(0.5, 2.0, 3000),
                        [5e-324, 2.2250738585072014e-308, 1.0, 2.0, np.sqrt(0.5), np.sqrt(2.0),
                         np.nextafter(np.sqrt(2.0), 3.0), 1.7976931348623157e308]])
    got = native_log(x)
    mpmath.mp.prec = 120
    for value, result in zip(x, got, strict=True):
        exact = mpmath.log(mpmath.mpf(float(value)))
        ulp = np.spacing(abs(float(exact))) if exact != 0 else 5e-324
        assert abs(mpmath.mpf(float(result)) - exact) <= ulp, value
    special = native_log(np.array([0.0, -1.0, np.inf, np.nan, -np.inf]))
    assert special[0] == -np.inf and np.isnan(special[1]) and special[2] == np.inf
    assert np.isnan(special[3]) and np.isnan(special[4])
