"""The engine: ground-truth cross-checks, exactness past underflow, invariants, bad input."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import harness.engine as engine
from harness.curves import CHECKPOINT_COLUMNS, RUN_COLUMNS, geometric_grid
from harness.engine import RunSpec, run_batch
from harness.errors import HarnessInputError, NotSeparableError
from harness.losses import evaluate
from harness.metrics import checkpoint_metrics
from tests.test_optimizers import toy_dataset


def certificate(gamma, V, lower=None):
    return SimpleNamespace(gamma=gamma, lower=gamma if lower is None else lower, W=V)


def test_adam_matches_torch_optim_adam_fed_the_same_gradients():
    ds = toy_dataset(seed=3)
    steps, eta0, a, betas, eps = 300, 0.05, 0.5, (0.9, 0.999), 1e-8
    result = run_batch([RunSpec(ds, "adam", eta0, a, references={}, run_id="adam", hyper={
        "beta1": betas[0], "beta2": betas[1], "eps": eps, "bias_correction": True})],
        steps, compute_references=False, progress=False)
    X, y = torch.as_tensor(ds.X), torch.as_tensor(ds.y)
    W = torch.zeros((4, 6), dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([W], lr=eta0, betas=betas, eps=eps)
    for t in range(steps):
        W.grad = evaluate(W.detach(), X, y).gradient
        reference.param_groups[0]["lr"] = eta0 * (t + 1) ** (-a)
        reference.step()
    expected = W.detach().numpy()
    assert np.abs(result.final_W["adam"] - expected).max() <= 1e-10 * np.abs(expected).max()


def naive_autograd_signgd(ds, eta, steps):
    """torch cross_entropy + autograd + sign step: the textbook pipeline."""
    X, y = torch.as_tensor(ds.X), torch.as_tensor(ds.y)
    W = torch.zeros((int(y.max()) + 1, X.shape[1]), dtype=torch.float64, requires_grad=True)
    margins, losses = [], []
    for _ in range(steps + 1):
        loss = torch.nn.functional.cross_entropy(X @ W.T, y)
        with torch.no_grad():
            margins.append(float(evaluate(W, X, y).margin))
            losses.append(float(loss))
        loss.backward()
        with torch.no_grad():
            W -= eta * torch.sign(W.grad)
        W.grad = None
    return np.array(margins), np.array(losses), W.detach().numpy()


def test_naive_autograd_diverges_past_margin_37_while_the_engine_continues():
    ds, eta, steps = toy_dataset(), 0.5, 3000
    naive_margins, naive_losses, naive_W = naive_autograd_signgd(ds, eta, steps)
    result = run_batch([RunSpec(ds, "signgd", eta, 0.0, references={}, run_id="sign")], steps,
                       compute_references=False, progress=False, per_decade=100)
    rows = sorted(result.rows, key=lambda r: r["t"])
    t = np.array([r["t"] for r in rows])
    margins = np.array([r["margin"] for r in rows])
    agree = np.abs(margins - naive_margins[t]) <= 1e-9 * np.maximum(1.0, margins)
    first_split = int(np.argmin(agree))
    assert agree[:first_split].all() and not agree[first_split]
    # identical while every margin is below 30; split once the largest per-sample margins
    # pass ~37 (the smallest one, recorded here, is then a little above 30)
    assert margins[first_split - 1] > 29 and margins[first_split] > 30
    assert naive_losses[np.searchsorted(naive_margins, 40)] == 0.0  # s_y rounded to 1
    # the naive pipeline ends frozen (its gradient is exactly 0), far from the engine's W
    assert naive_margins[-1] == naive_margins[-101]
    assert np.abs(naive_W - result.final_W["sign"]).max() > 1e-2 * np.abs(naive_W).max()
    # the engine keeps going: every step moves W and log L keeps falling past exp(-745)
    log_loss = np.array([r["log_loss"] for r in rows])
    inv = result.invariants["sign"]
    assert inv["stalled_steps"] == 0 and inv["nonfinite_steps"] == 0
    assert np.all(np.diff(log_loss[t >= 100]) < 0)
    assert log_loss[-1] < -1000


def test_invariants_do_not_depend_on_the_history_block(monkeypatch):
    ds = toy_dataset(seed=1)
    refs = {"max": certificate(0.2, np.zeros((4, 6)))}
    specs = [RunSpec(ds, "signgd", 0.3, 0.5, references=refs, run_id="s"),
             RunSpec(ds, "adam", 0.1, 2 / 3, references=refs, run_id="a")]
    whole = run_batch(specs, 700, compute_references=False, progress=False).invariants
    monkeypatch.setattr(engine, "HISTORY_BLOCK", 7)
    blocks = run_batch(specs, 700, compute_references=False, progress=False).invariants
    assert whole == blocks
    assert whole["s"]["unnorm_margin"]["t0"] is not None
    assert whole["s"]["descent"]["checked"] and whole["a"]["adam_ratio"]["checked"]


@pytest.mark.parametrize("block, piece", [(1024, 5), (7, 3), (50, 256)])
def test_invariants_do_not_depend_on_the_checked_pieces(monkeypatch, block, piece):
    """The native stepper checks a block's rows in pieces of CHECK_STEPS beside the kernel:
    any piece size, with any block size, gives the summaries of one check per block."""
    ds = toy_dataset(seed=1)
    refs = {"max": certificate(0.2, np.zeros((4, 6)))}
    specs = [RunSpec(ds, "signgd", 0.3 * (1 + i / 9), 0.5, references=refs, run_id=f"s{i}")
             for i in range(9)]
    monkeypatch.setattr(engine, "CHECK_STEPS", 10 ** 9)
    whole = run_batch(specs, 1500, compute_references=False, progress=False).invariants
    monkeypatch.setattr(engine, "HISTORY_BLOCK", block)
    monkeypatch.setattr(engine, "CHECK_STEPS", piece)
    pieces = run_batch(specs, 1500, compute_references=False, progress=False).invariants
    assert whole == pieces
    assert whole["s0"]["descent"]["checked"] and whole["s0"]["steps"] == 1500


def test_trajectory_invariants_hold_with_certified_references():
    from harness.margins import max_margin

    ds = toy_dataset(seed=2)
    refs = {name: max_margin(ds.X, ds.y, name) for name in ("max", "fro", "spectral", "sum")}
    specs = [RunSpec(ds, name, 0.2, 0.5, references=refs, run_id=name)
             for name in ("signgd", "ngd", "spectral_gd", "cd", "signum", "adam")]
    result = run_batch(specs, 3000, compute_references=False, progress=False)
    for name in ("signgd", "ngd", "spectral_gd", "cd"):
        inv = result.invariants[name]
        assert inv["descent"]["violations"] == 0, name
        assert inv["mono"]["violations"] == 0, name
        assert inv["unnorm_margin"]["violations"] == 0, name
        assert inv["descent"]["min_relative_slack"] > -1e-9, name
    adam = result.invariants["adam"]["adam_ratio"]
    assert 0 < adam["max"] <= adam["bound"] and adam["violations"] == 0
    track = result.invariants["signum"]["momentum_track"]
    assert len(track["series"]) > 20 and all(r > 0 for t, r in track["series"] if t > 0)
    assert 0.9 < result.invariants["signgd"]["g_over_l_final"] <= 1.0
    assert result.invariants["signgd"]["separation_time"] is not None


def test_rows_follow_the_curve_format_and_the_grid():
    ds = toy_dataset()
    V = np.ones((4, 6)) / 24
    refs = {"max": certificate(0.5, V), "fro": certificate(0.4, V)}
    result = run_batch([RunSpec(ds, "ngd", 0.1, 0.5, references=refs, run_id="r")], 500,
                       compute_references=False, progress=False)
    assert [r["t"] for r in result.rows] == geometric_grid(500).tolist()
    for row in result.rows:
        assert set(RUN_COLUMNS + CHECKPOINT_COLUMNS) <= set(row)
    last = result.rows[-1]
    assert last["family"] == "nsd" and last["own_norm"] == "fro"
    assert last["gap_max"] == pytest.approx(0.5 - last["nmargin_max"], abs=1e-15)
    assert math.isnan(last["gap_spectral"])  # no spectral reference given
    recomputed = checkpoint_metrics(result.final_W["r"], ds.X, ds.y, refs, "fro")
    for column, value in recomputed.items():
        assert value == last[column] or (math.isnan(value) and math.isnan(last[column])), column
    assert math.isnan(result.rows[0]["nmargin_max"])  # W_0 = 0 has no direction


@pytest.mark.parametrize("optimizer", ["signgd", "signum"])  # native and torch stepper
def test_interior_checkpoint_rows_describe_the_iterate_of_their_t(optimizer):
    """A checkpoint row is built from the step's own evaluation of W_t: it must equal the
    metrics of W_t recomputed from scratch (W_t = the final W of a run stopped at t)."""
    ds = toy_dataset(seed=3)
    V = np.ones((4, 6)) / 24
    refs = {"max": certificate(0.5, V)}
    spec = RunSpec(ds, optimizer, 0.1, 0.5, references=refs, run_id="r")
    rows = run_batch([spec], 400, compute_references=False, progress=False).rows
    for row in rows[5::7]:
        t = row["t"]
        if t == 0 or t == 400:
            continue
        W_t = run_batch([spec], t, compute_references=False, progress=False).final_W["r"]
        expected = checkpoint_metrics(W_t, ds.X, ds.y, refs, "max")
        for column in ("log_loss", "log_proxy", "margin", "norm_max", "gap_max", "corr_max"):
            assert row[column] == pytest.approx(expected[column], rel=1e-11, abs=1e-12), \
                (t, column)


def test_runs_on_different_datasets_in_one_group_match_separate_runs():
    first, second = toy_dataset(seed=4, name="a"), toy_dataset(seed=5, name="b")
    specs = [RunSpec(ds, "muon", 0.05, 0.5, references={}, run_id=ds.name)
             for ds in (first, second)]
    together = run_batch(specs, 200, compute_references=False, progress=False)
    for spec in specs:
        alone = run_batch([spec], 200, compute_references=False, progress=False)
        np.testing.assert_array_equal(alone.final_W[spec.run_id],
                                      together.final_W[spec.run_id])


def _interrupt_at(monkeypatch, call: int) -> None:
    """Make the engine's ``call``-th evaluation raise KeyboardInterrupt (Ctrl-C) inside a step
    of the torch stepper (the native one is switched off: it evaluates inside its kernel)."""
    monkeypatch.setenv("HARNESS_NATIVE", "0")
    calls = {"n": 0}
    real = engine.evaluate

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate", interrupting)


def test_interrupt_keeps_what_was_recorded(monkeypatch):
    _interrupt_at(monkeypatch, 150)
    result = run_batch([RunSpec(toy_dataset(), "signgd", 0.1, 0.5, references={},
                                run_id="x")], 1000, compute_references=False, progress=False)
    assert result.interrupted and result.invariants["x"]["interrupted"]
    assert result.steps_done["x"] == 149
    assert max(r["t"] for r in result.rows) < 149 and result.rows


def test_interrupt_lists_groups_that_never_started(monkeypatch):
    """Ctrl-C in the first optimizer group: the second group's runs are listed with 0 steps."""
    _interrupt_at(monkeypatch, 20)
    data = toy_dataset()
    specs = [RunSpec(data, "signgd", 0.1, 0.5, references={}, run_id="first"),
             RunSpec(data, "ngd", 0.1, 0.5, references={}, run_id="second")]
    result = run_batch(specs, 100, compute_references=False, progress=False)
    assert result.interrupted
    assert result.steps_done == {"first": 19, "second": 0}
    np.testing.assert_array_equal(result.final_W["second"], np.zeros_like(result.final_W["first"]))
    assert all(row["run_id"] == "first" for row in result.rows)


class _InterruptingKernel:
    """The native stepper's kernel, raising KeyboardInterrupt (as Ctrl-C would, once the C call
    returns) after its ``call``-th call on the first thread's scratch; the engine sees it when
    it collects the span, as it sees a Ctrl-C while it waits."""

    def __init__(self, kernel, call: int, first_scratch: int):
        self.kernel, self.call, self.calls = kernel, call, 0
        self.first_scratch = first_scratch
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.kernel, name)

    def steepest_steps(self, *args):
        lanes = self.kernel.steepest_steps(*args)
        if args[20] == self.first_scratch:  # the first thread's call
            with self.lock:
                self.calls += 1
                if self.calls == self.call:
                    raise KeyboardInterrupt
        return lanes


def test_native_interrupt_finishes_the_span_on_every_thread(monkeypatch):
    """Ctrl-C inside a span on two threads: the other thread's runs finish the span too, so every
    run has taken the steps reported, and its W is that of an uninterrupted run that long."""
    from harness.native import steepest_steps_kernel

    kernel = steepest_steps_kernel()
    if kernel is None:
        pytest.skip("native kernel unavailable")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    real_make = engine._make_stepper

    def make(group, loss):
        stepper = real_make(group, loss)
        assert isinstance(stepper, engine._NativeSteepestStepper) and stepper.threads == 2
        stepper.kernel = _InterruptingKernel(kernel, 30, stepper.scratch[0].data_ptr())
        return stepper

    monkeypatch.setattr(engine, "_make_stepper", make)
    data = toy_dataset()
    specs = [RunSpec(data, "signgd", 0.1 * (1 + i), 0.5, references={}, run_id=f"r{i}")
             for i in range(20)]  # three chunks of runs for the two threads to claim
    result = run_batch(specs, 5000, compute_references=False, progress=False)
    assert result.interrupted
    done = set(result.steps_done.values())
    assert len(done) == 1 and 30 <= done.pop() < 5000
    steps = result.steps_done["r0"]
    monkeypatch.setattr(engine, "_make_stepper", real_make)
    again = run_batch(specs, steps, compute_references=False, progress=False)
    for run_id, W in again.final_W.items():
        np.testing.assert_array_equal(result.final_W[run_id], W)
    assert max(r["t"] for r in result.rows) < steps


def test_native_interrupt_during_the_overlapped_python_work(monkeypatch):
    """Ctrl-C while the native stepper builds a checkpoint's rows (its Python work overlaps
    the next span on the worker threads): that span still completes on every run, the rows of
    every other checkpoint are kept, and the invariants cover every step taken."""
    if engine.steepest_steps_kernel() is None:
        pytest.skip("native kernel unavailable")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    real_record = engine._NativeSteepestStepper.record
    calls = {"n": 0}
    grid = sorted(set(geometric_grid(5000).tolist()))
    fatal = next(i for i, t in enumerate(grid) if t > 1500) + 1  # past one history block

    def record(self, *args):
        calls["n"] += 1
        if calls["n"] == fatal:
            raise KeyboardInterrupt
        return real_record(self, *args)

    monkeypatch.setattr(engine._NativeSteepestStepper, "record", record)
    # a reference margin far above the data's makes every step a DESCENT violation: the count
    # is then the number of steps checked
    refs = {"max": certificate(1e3, np.zeros((4, 6)))}
    specs = [RunSpec(toy_dataset(), "signgd", 0.1 * (1 + i), 0.5, references=refs,
                     run_id=f"r{i}") for i in range(10)]
    result = run_batch(specs, 5000, compute_references=False, progress=False)
    assert result.interrupted
    (steps,) = set(result.steps_done.values())
    kept = sorted({row["t"] for row in result.rows})
    # the checkpoint whose rows were being built is lost; every other one before the stop is
    # built in settle() (the stepper queues rows while early spans are short)
    assert kept == [t for t in grid if t < steps and t != grid[fatal - 1]]
    assert steps < 5000
    monkeypatch.setattr(engine._NativeSteepestStepper, "record", real_record)
    again = run_batch(specs, steps, compute_references=False, progress=False)
    for run_id, W in again.final_W.items():
        np.testing.assert_array_equal(result.final_W[run_id], W)
        got, want = result.invariants[run_id], again.invariants[run_id]
        for key in ("separation_time", "stalled_steps", "nonfinite_steps"):
            assert got[key] == want[key], (run_id, key)
        # every step was checked, but the one into W_steps (only the full run evaluates it)
        assert got["steps"] == steps - 1 and want["steps"] == steps
        assert got["descent"]["violations"] == want["descent"]["violations"] - 1 > 1024


def test_native_settle_hands_out_the_pending_rows_and_checks():
    """The native stepper builds a span's checkpoint rows and block checks during the next
    span; settle() (the end of a run or Ctrl-C between spans) must hand out those rows and
    run those checks, so nothing recorded is lost."""
    if engine.steepest_steps_kernel() is None:
        pytest.skip("native kernel unavailable")
    specs = [RunSpec(toy_dataset(), "signgd", 0.1, 0.5, references={}, run_id=f"r{i}")
             for i in range(9)]
    (group,) = engine._build_groups(specs, "cpu", torch.float64, False)
    stepper = engine._make_stepper(group, "ce")
    assert isinstance(stepper, engine._NativeSteepestStepper)
    grid = sorted(set(geometric_grid(5000).tolist()))
    rows = []
    with torch.no_grad():
        while stepper.t < 1030 or not stepper.pending:  # past a full block of 1024 steps,
            rows.extend(stepper.advance(5000, grid))    # stopped after a checkpoint's span
    rows.extend(stepper.settle())
    stepper.close()
    assert sorted({row["t"] for row in rows}) == [t for t in grid if t < stepper.t]
    assert len(rows) == 9 * len([t for t in grid if t < stepper.t])
    assert all(summary["steps"] == stepper.t - 1 for summary in stepper.invariants.summary())


def _native_rows(monkeypatch, threads: int):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    specs = [RunSpec(toy_dataset(), "signgd", 0.1 * (1 + i / 16), 0.5, references={},
                     run_id=f"r{i}") for i in range(16)]
    return run_batch(specs, 3000, compute_references=False, progress=False)


def test_native_rows_do_not_depend_on_the_overlap(monkeypatch):
    """Two threads (rows built beside the kernel, queued while spans are short, two history
    blocks) and one (everything between the spans) give the same rows in the same order and
    the same invariant summaries: 16 runs, so both split the runs into the same lane groups."""
    if engine.steepest_steps_kernel() is None:
        pytest.skip("native kernel unavailable")
    overlapped, sequential = _native_rows(monkeypatch, 2), _native_rows(monkeypatch, 1)
    assert len(overlapped.rows) == len(sequential.rows) == 16 * len(geometric_grid(3000))
    for got, want in zip(overlapped.rows, sequential.rows, strict=True):
        assert got.keys() == want.keys()
        assert all(got[key] == want[key] or got[key] != got[key] and want[key] != want[key]
                   for key in got), got["t"]
    assert overlapped.invariants == sequential.invariants


class _Running:
    """A future that is never done (a span still running)."""

    def done(self) -> bool:
        return False


def test_native_queue_waits_for_a_span_long_enough():
    """Beside a span that should end now, no queued item starts (its rows wait for a longer
    span); beside a long one they all run, oldest first; none runs once the span is done."""
    if engine.steepest_steps_kernel() is None:
        pytest.skip("native kernel unavailable")
    specs = [RunSpec(toy_dataset(), "signgd", 0.1, 0.5, references={}, run_id="r")]
    (group,) = engine._build_groups(specs, "cpu", torch.float64, False)
    stepper = engine._make_stepper(group, "ce")
    order = []
    for i in range(3):
        stepper.pending.append(("rows", lambda i=i: order.append(i) or [{"i": i}]))
    stepper.item_seconds["rows"] = 1.0
    stepper.work_beside_kernel([_Running()], engine.time.perf_counter() + 0.1)
    assert order == [] and len(stepper.pending) == 3
    stepper.work_beside_kernel([SimpleNamespace(done=lambda: True)], math.inf)
    assert order == []
    stepper.work_beside_kernel([_Running()], math.inf)
    assert order == [0, 1, 2] and stepper.take_ready() == [{"i": 0}, {"i": 1}, {"i": 2}]
    stepper.close()


def test_native_full_block_without_a_free_one_gets_a_new_block():
    """A Ctrl-C inside a block's checks loses that block (it never returns to the free list);
    when the next block fills with nothing queued to free one, the stepper takes a new block
    instead of failing on the empty queue."""
    if engine.steepest_steps_kernel() is None:
        pytest.skip("native kernel unavailable")
    specs = [RunSpec(toy_dataset(), "signgd", 0.1, 0.5, references={}, run_id="r")]
    (group,) = engine._build_groups(specs, "cpu", torch.float64, False)
    stepper = engine._make_stepper(group, "ce")
    full = stepper.block
    stepper.free_blocks.clear()
    stepper.rows_in_block = engine.HISTORY_BLOCK
    stepper.queue_span_work(5, None, full[:1])
    assert stepper.block is not full and stepper.rows_in_block == 0
    assert [kind for kind, _ in stepper.pending] == ["checks"]
    stepper.close()


def test_native_ctrl_c_while_freeing_a_block_keeps_the_full_blocks_checks():
    """A full block waits for the other block's queued checks; a Ctrl-C inside one of the
    items it runs meanwhile must still leave the full block's checks queued (settle() runs
    them), or the invariants would miss its steps."""
    if engine.steepest_steps_kernel() is None:
        pytest.skip("native kernel unavailable")
    specs = [RunSpec(toy_dataset(), "signgd", 0.1, 0.5, references={}, run_id="r")]
    (group,) = engine._build_groups(specs, "cpu", torch.float64, False)
    stepper = engine._make_stepper(group, "ce")

    def interrupted():
        raise KeyboardInterrupt

    full = stepper.block
    stepper.free_blocks.clear()
    stepper.pending.append(("rows", interrupted))
    stepper.rows_in_block = engine.HISTORY_BLOCK
    with pytest.raises(KeyboardInterrupt):
        stepper.queue_span_work(5, None, full[:1])
    assert [kind for kind, _ in stepper.pending] == ["checks"]
    assert stepper.block is not full and stepper.rows_in_block == 0
    stepper.close()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"steps": 0}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"loss": "hinge"}, "unknown loss"),
])
def test_bad_run_arguments(kwargs, fragment):
    spec = RunSpec(toy_dataset(), "signgd", 0.1, 0.5, references={})
    args = {"steps": 10, **kwargs}
    with pytest.raises(HarnessInputError, match=fragment):
        run_batch([spec], args.pop("steps"), compute_references=False, progress=False, **args)


def test_bad_runs_raise_one_line_errors():
    ds = toy_dataset()
    bad_data = SimpleNamespace(X=np.full((4, 2), np.nan), y=np.array([0, 1, 0, 1]))
    cases = [
        (RunSpec(ds, "adamw", 0.1), "unknown optimizer"),
        (RunSpec(ds, "adam", 0.1, hyper={"beta1": 1.0}), "beta1"),
        (RunSpec(ds, "signgd", 0.1, a=2.0), "exponent a"),
        (RunSpec(ds, "signgd", -0.1), "eta0"),
        (RunSpec(bad_data, "signgd", 0.1), "NaN"),
        (RunSpec(object(), "signgd", 0.1), "X and y"),
    ]
    for spec, fragment in cases:
        with pytest.raises(HarnessInputError, match=fragment) as info:
            run_batch([spec], 10, compute_references=False, progress=False)
        assert "\n" not in str(info.value)
    with pytest.raises(NotSeparableError):
        run_batch([RunSpec(ds, "signgd", 0.1, references={"max": certificate(
            -0.1, np.zeros((4, 6)))})], 10, compute_references=False, progress=False)
    twice = RunSpec(ds, "signgd", 0.1, references={}, run_id="same")
    with pytest.raises(HarnessInputError, match="duplicate"):
        run_batch([twice, twice], 10, compute_references=False, progress=False)


def test_non_separable_data_is_refused_when_certifying():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    data = SimpleNamespace(X=X, y=np.array([0, 1, 0, 1]), name="xor", seed=0)
    with pytest.raises(NotSeparableError):
        run_batch([RunSpec(data, "signgd", 0.1)], 10, progress=False)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    ds = toy_dataset()
    specs = [RunSpec(ds, name, 0.05, 0.5, references={}, run_id=name)
             for name in ("signgd", "muon", "adam")]
    cpu = run_batch(specs, 300, compute_references=False, progress=False)
    gpu = run_batch(specs, 300, compute_references=False, progress=False, device="cuda")
    for name in cpu.final_W:
        np.testing.assert_allclose(gpu.final_W[name], cpu.final_W[name], rtol=1e-9, atol=1e-12)
