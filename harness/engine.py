"""The engine: many (dataset, optimizer, schedule, seed) runs as one batched tensor program.

``run_batch(specs, steps)`` groups the runs by optimizer (name and hyper-parameters) and data
shape, and advances each group as one ``(B, k, d)`` tensor program: per step one call of
:func:`harness.losses.evaluate` for the whole group (log-domain loss, proxy, scaled gradient
and margin), the optimizer's direction, and ``W <- W - eta_t D_t`` with the per-run schedule
``eta_t = eta_0 (t+1)^(-a)``. There is no Python loop over runs inside a step.

Exactness (THEORY.md section 5). ``evaluate`` returns ``grad L = exp(log_scale) g~`` with
``g~`` of order one. Each run has a frame ``phi_t``; the optimizer sees ``g = grad / exp(phi_t)``
and keeps its buffers in the same frame (rescaled by ``exp(degree (phi_old - phi_new))`` when
it moves; ``eps`` becomes ``eps exp(-phi_t)``). Stateless methods use ``phi_t = log_scale_t``.
Methods with buffers use ``phi_t = max(log_scale_t, phi_{t-1} + s_t)`` with ``s_t`` the scale
of the buffers in the old frame, so neither the gradient nor any buffer can overflow, and a
gradient that underflows in the frame is one below float64 resolution of the buffers (it
changes nothing in the exact algorithm either). Every scale-invariant method is then the exact
algorithm up to float64 rounding, for as many steps as asked, far past ``L < exp(-745)``. GD
uses the true gradient ``exp(phi_t) g`` and stops moving once it underflows: that is the
true float64 algorithm (see :mod:`harness.optimizers.gd`).

Steppers. ``_Stepper`` takes one step per call with torch tensors (the reference, used for
every optimizer on every device). On the CPU in float64, entrywise normalized steepest descent
(SignGD, NGD, NSD-p, CD) with CE or the exponential loss goes to ``_NativeSteepestStepper``,
which hands whole spans of steps between checkpoints to the C kernel of
:mod:`harness.native` (same formulas; tests/test_native_steps.py holds the two together).

Output. On the checkpoints of :func:`harness.curves.geometric_grid` (about 20 per decade) each
run emits a curve row (:mod:`harness.curves` columns, computed by
:func:`harness.metrics.checkpoint_columns` from the step's own evaluation of ``W_t``); every
step feeds the trajectory invariants (:mod:`harness.invariants`). Ctrl-C stops the batch,
keeps everything recorded so far and flags the result ``interrupted``; runs of groups it kept
from starting are listed with 0 steps done and their initial ``W``. A tqdm bar shows steps/s
and the ETA (quiet when ``CI`` is set or stderr is not a terminal).
"""

from __future__ import annotations

import bisect
import gc
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from harness.curves import CHECKPOINT_COLUMNS, METRIC_NORMS, geometric_grid
from harness.errors import HarnessInputError, NotSeparableError
from harness.invariants import FIELDS, TrajectoryInvariants, momentum_track_ratio
from harness.losses import LOSSES, Workspace, evaluate
from harness.metrics import (
    Reference,
    checkpoint_columns,
    log_class_proxy_sums,
    stack_references,
)
from harness.native import steepest_steps_data, steepest_steps_kernel
from harness.norms import Norm
from harness.optimizers import Optimizer, make_optimizer
from harness.optimizers.adam import Adam
from harness.optimizers.base import next_log_frame
from harness.optimizers.nmd import MomentumSteepestDescent
from harness.optimizers.nsd import SteepestDescent
from harness.schedules import check_eta0, check_exponent, check_steps, step_size_table
from harness.validation import check_data

#: Steps between progress-bar refreshes (a refresh per step would cost more than the step).
PROGRESS_EVERY = 256
#: Steps of invariant fields buffered on the device before they are checked (in numpy).
HISTORY_BLOCK = 1024
#: Rows of invariant fields the native stepper lets gather before it queues their checks.
CHECK_STEPS = 256
#: Longest span of steps the native stepper takes in one call (Ctrl-C and the progress bar
#: answer between spans).
SPAN_STEPS = 256


@dataclass(frozen=True)
class RunSpec:
    """One run: a dataset, an optimizer with hyper-parameters, a schedule and an init.

    Attributes:
        dataset: a :class:`harness.data.Dataset` or anything with ``X`` (n x d), ``y`` (n,),
            and optionally ``name`` and ``seed``.
        optimizer: registry name (:data:`harness.optimizers.OPTIMIZER_NAMES`).
        eta0: initial step size (> 0).
        a: step exponent in ``[0, 1]`` (0: constant step).
        hyper: the optimizer's hyper-parameters.
        init_scale: ``W_0 ~ init_scale * N(0, 1)`` entrywise; 0 (default) is the zero init of
            the papers.
        seed: seed of the random init (unused for the zero init).
        references: ``{norm: MarginCertificate}``; None lets the engine certify them with
            :func:`harness.margins.max_margin` (if asked to).
        run_id: name of the run in the curve rows (default: built from the fields).
    """

    dataset: object
    optimizer: str
    eta0: float
    a: float = 0.0
    hyper: Mapping = field(default_factory=dict)
    init_scale: float = 0.0
    seed: int = 0
    references: Mapping | None = None
    run_id: str | None = None


@dataclass
class BatchResult:
    """What :func:`run_batch` returns.

    Attributes:
        rows: curve rows (harness/curves.py format), one per (run, checkpoint).
        invariants: ``{run_id: summary}`` from :class:`harness.invariants.TrajectoryInvariants`.
        final_W: ``{run_id: W}`` at the last step taken.
        steps: steps requested; ``steps_done``: ``{run_id: steps actually taken}``.
        interrupted: True when Ctrl-C stopped the batch (everything recorded is kept).
        seconds: wall time of the stepping loops.
    """

    rows: list[dict]
    invariants: dict[str, dict]
    final_W: dict[str, np.ndarray]
    steps: int
    steps_done: dict[str, int]
    interrupted: bool = False
    seconds: float = 0.0


def quiet_progress() -> bool:
    """Progress bars are off under CI and when stderr is not a terminal."""
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def _dataset_arrays(dataset) -> tuple[np.ndarray, np.ndarray, int]:
    if not (hasattr(dataset, "X") and hasattr(dataset, "y")):
        raise HarnessInputError(
            f"dataset must have X and y attributes (a harness.data.Dataset), got {dataset!r}")
    return check_data(dataset.X, dataset.y)


def _run_id(index: int, spec: RunSpec) -> str:
    if spec.run_id is not None:
        return str(spec.run_id)
    name = getattr(spec.dataset, "name", "data")
    seed = getattr(spec.dataset, "seed", None)
    return f"{index:03d}-{spec.optimizer}-{name}-s{seed}-eta{spec.eta0:g}-a{spec.a:g}"


def certify_references(X: np.ndarray, y: np.ndarray, norms: Sequence[str]) -> dict[str, object]:
    """Certified max-margin solutions in each norm (harness.margins); raises
    NotSeparableError if the data are not separable."""
    from harness.margins import max_margin

    out = {}
    for name in norms:
        cert = max_margin(X, y, name)
        if not cert.gamma > 0:
            raise NotSeparableError(
                f"data are not linearly separable (max margin in {name} norm is {cert.gamma:g})")
        out[Norm.parse(name).name] = cert
    return out


@dataclass
class _Group:
    """Runs sharing an optimizer (name and hyper-parameters) and a data shape."""

    optimizer: Optimizer
    run_ids: list[str]
    specs: list[RunSpec]
    X: torch.Tensor  # (n, d) if every run shares the data, else (B, n, d)
    y: torch.Tensor
    eta0: torch.Tensor
    a: torch.Tensor
    W: torch.Tensor
    references: dict[str, Reference]
    data_bound: torch.Tensor


def _validate(spec: RunSpec) -> Optimizer:
    check_eta0(spec.eta0)
    check_exponent(spec.a)
    if not (math.isfinite(spec.init_scale) and spec.init_scale >= 0):
        raise HarnessInputError(f"init_scale must be a finite number >= 0, got {spec.init_scale}")
    return make_optimizer(spec.optimizer, **dict(spec.hyper))


def _build_groups(specs: Sequence[RunSpec], device, dtype, compute_references: bool
                  ) -> list[_Group]:
    buckets: dict[tuple, list[tuple[str, RunSpec, Optimizer, np.ndarray, np.ndarray, dict]]] = {}
    cache: dict[tuple[int, str], object] = {}
    ids = [_run_id(index, spec) for index, spec in enumerate(specs)]
    if len(set(ids)) != len(ids):
        raise HarnessInputError(
            f"duplicate run_id in batch: {sorted({i for i in ids if ids.count(i) > 1})}")
    for index, spec in enumerate(specs):
        optimizer = _validate(spec)
        X, y, k = _dataset_arrays(spec.dataset)
        refs = dict(spec.references or {})
        if compute_references and spec.references is None:
            wanted = [*METRIC_NORMS, optimizer.norm.name]
            for name in dict.fromkeys(wanted):
                key = (id(spec.dataset), name)
                if key not in cache:
                    cache[key] = certify_references(X, y, [name])[name]
                refs[name] = cache[key]
        for name, cert in refs.items():
            if not float(np.min(cert.gamma)) > 0:
                raise NotSeparableError(
                    f"data are not linearly separable (max margin in {name} norm is "
                    f"{float(np.min(cert.gamma)):g})")
        key = (optimizer.name, tuple(sorted(optimizer.hyper.items())), X.shape, k)
        buckets.setdefault(key, []).append((ids[index], spec, optimizer, X, y, refs))
    groups = []
    for members in buckets.values():
        shared = all(m[1].dataset is members[0][1].dataset for m in members)
        as_t = lambda a, dt=dtype: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
        if shared:
            X = as_t(members[0][3])
            y = torch.as_tensor(members[0][4], dtype=torch.int64, device=device)
        else:
            X = as_t(np.stack([m[3] for m in members]))
            y = torch.as_tensor(np.stack([m[4] for m in members]), device=device)
        k, d = int(members[0][4].max()) + 1, members[0][3].shape[1]
        W = torch.zeros((len(members), k, d), dtype=dtype, device=device)
        for i, (_, spec, *_rest) in enumerate(members):
            if spec.init_scale > 0:
                gen = torch.Generator().manual_seed(int(spec.seed))
                W[i] = spec.init_scale * torch.randn((k, d), generator=gen, dtype=dtype)
        data_bound = torch.as_tensor([float(np.abs(m[3]).sum(axis=1).max()) for m in members],
                                     dtype=dtype, device=device)
        groups.append(_Group(
            optimizer=members[0][2], run_ids=[m[0] for m in members],
            specs=[m[1] for m in members], X=X, y=y,
            eta0=as_t([m[1].eta0 for m in members]), a=as_t([m[1].a for m in members]), W=W,
            references=stack_references([m[5] for m in members], device, dtype),
            data_bound=data_bound))
    return groups


def is_checkpoint(grid: Sequence[int], t: int) -> bool:
    """Whether ``t`` is one of the sorted checkpoints ``grid``."""
    i = bisect.bisect_left(grid, t)
    return i < len(grid) and grid[i] == t


def _own_gamma(group: _Group) -> torch.Tensor:
    ref = group.references.get(group.optimizer.norm.name)
    return ref.lower if ref is not None else torch.full_like(group.eta0, math.nan)


def _row_heads(group: _Group) -> list[dict]:
    """Each run's curve-row template, made once per group: its fixed fields (everything but
    ``t`` and the metrics) and every checkpoint column as None. A row is then a copy of the
    template (a dict of the same keys is cloned whole, no insertions) with its values set:
    1.5 against 1.9 ms per 1024 rows for a copy of the fixed fields plus insertions."""
    opt = group.optimizer
    return [{"run_id": run_id, "algorithm": opt.name, "family": opt.family,
             "own_norm": opt.norm.name, "dataset": getattr(spec.dataset, "name", "data"),
             "data_seed": getattr(spec.dataset, "seed", None), "eta0": float(spec.eta0),
             "a": float(spec.a), "hyper": dict(opt.hyper), **dict.fromkeys(CHECKPOINT_COLUMNS)}
            for run_id, spec in zip(group.run_ids, group.specs, strict=True)]


def _rows(heads: list[dict], t: int, columns: dict[str, torch.Tensor]) -> list[dict]:
    """One curve row per run at checkpoint ``t``: its template with ``t`` and its metric
    values set (and a copy of its own ``hyper``, so no two rows share a mutable value). The
    columns go to Python floats as one ``(B, columns)`` matrix, a list per run of exactly
    the keys' length (so the inner zip needs no strict check): 1.45 against 1.68 ms per 1024
    rows for a list per column zipped into tuples with strict zips."""
    keys = list(columns)
    per_run = torch.stack([columns[key] for key in keys], dim=1).tolist()
    rows = []
    for head, values in zip(heads, per_run, strict=True):
        row = head.copy()
        row["hyper"], row["t"] = head["hyper"].copy(), t
        row.update(zip(keys, values, strict=False))
        rows.append(row)
    return rows


class _Stepper:
    """Advances one group step by step; all state is batched tensors on the group's device."""

    def __init__(self, group: _Group, loss: str):
        self.group, self.loss = group, loss
        self.opt = group.optimizer
        self.state = self.opt.init_state(group.W)
        self.log_frame: torch.Tensor | None = None
        adam_bound = None
        if isinstance(self.opt, Adam) and self.opt.eps == 0.0 and math.isfinite(
                self.opt.ratio_bound):
            adam_bound = self.opt.ratio_bound
        self.invariants = TrajectoryInvariants(self.opt.family, group.eta0, _own_gamma(group),
                                               group.data_bound, group.X.shape[-2], adam_bound)
        self.block = torch.empty((HISTORY_BLOCK, len(FIELDS), len(group.run_ids)),
                                 dtype=group.W.dtype, device=group.W.device)
        self.nan = torch.full_like(group.eta0, math.nan)
        self.rows_in_block, self.block_start = 0, 0
        self.rows_checked = 0  # rows of the block already handed to the checks
        self.eta_start, self.etas = -HISTORY_BLOCK, None  # step sizes, a block at a time
        self.t = 0  # steps taken
        self.row_heads = _row_heads(group)

    @cached_property
    def workspace(self) -> Workspace:
        """:func:`evaluate`'s buffers, made on first use (the native stepper evaluates in its
        kernel and needs them only for the final row)."""
        return Workspace(self.group.W, self.group.X, self.group.y)

    def advance(self, steps: int, grid: Sequence[int]) -> list[dict]:
        """Take the next step (at most ``steps`` in all); returns the checkpoint rows recorded.
        ``grid``: the sorted checkpoints. Subclasses may take a whole span of steps."""
        rows = self.step(self.t, is_checkpoint(grid, self.t))
        self.t += 1
        return rows

    def step_sizes(self, t: int) -> torch.Tensor:
        """The ``(B,)`` step sizes of step ``t`` (a row of the current table: see
        :func:`harness.schedules.step_size_table`)."""
        if not self.eta_start <= t < self.eta_start + HISTORY_BLOCK:
            self.eta_start = t
            self.etas = step_size_table(self.group.eta0, self.group.a, t, HISTORY_BLOCK)
        return self.etas[t - self.eta_start]

    def frame(self, log_scale: torch.Tensor) -> torch.Tensor:
        """The new frame ``phi_t``; moves the buffers into it (module docstring)."""
        if not self.opt.buffers or self.log_frame is None:
            return log_scale
        new = next_log_frame(log_scale, self.log_frame, self.opt.state_log_scale(self.state))
        self.opt.rescale(self.state, self.log_frame - new)
        return new

    def step(self, t: int, checkpoint: bool) -> list[dict]:
        """Evaluate at ``W_t``, record, and take step ``t`` (``W_t -> W_{t+1}``)."""
        g_ = self.group
        ev = evaluate(g_.W, g_.X, g_.y, self.loss, self.workspace)
        eta = self.step_sizes(t)
        rows = self.record(t, g_.W, ev.log_loss, ev.log_proxy, ev.margin) if checkpoint else []
        self.log_frame = self.frame(ev.log_scale)
        g = ev.grad_tilde
        if self.opt.buffers:
            g = g * torch.exp(ev.log_scale - self.log_frame)[:, None, None]
        D = self.opt.direction(g, self.state, t, self.log_frame)
        if checkpoint and isinstance(self.opt, MomentumSteepestDescent):
            log_sums = log_class_proxy_sums(g_.W, g_.X, g_.y, self.loss)
            self.invariants.observe_momentum(t, momentum_track_ratio(
                self.state["M"], g, self.opt.beta1, t, eta, log_sums, self.log_frame))
        # eps = 0: the Adam direction is m^/sqrt(v^) itself, ADAM-RATIO's left side.
        ratio = D.abs().amax(dim=(-2, -1)) if self.invariants.adam_bound is not None \
            else self.nan
        W_next = torch.addcmul(g_.W, eta[:, None, None], D, value=-1.0)
        moved = (W_next != g_.W).flatten(-2).any(dim=-1).to(eta.dtype)
        self.push(t, (ev.log_loss, ev.log_proxy, ev.margin, eta, moved, ratio))
        g_.W = W_next
        return rows

    def push(self, t: int, fields: tuple[torch.Tensor, ...]) -> None:
        """Record one row of invariant fields (:data:`harness.invariants.FIELDS`)."""
        if self.rows_in_block == 0:
            self.block_start = t
        torch.stack(fields, out=self.block[self.rows_in_block])
        self.rows_in_block += 1
        if self.rows_in_block == HISTORY_BLOCK:
            self.flush()

    def flush(self) -> None:
        """Hand the recorded rows not checked yet to the invariant checks."""
        self.invariants.consume(self.block_start + self.rows_checked,
                                self.block[self.rows_checked:self.rows_in_block])
        self.rows_in_block = self.rows_checked = 0

    def record(self, t: int, W: torch.Tensor, log_loss: torch.Tensor, log_proxy: torch.Tensor,
               margin: torch.Tensor) -> list[dict]:
        """The curve rows of checkpoint ``t`` from ``W_t`` and the step's own evaluation of it
        (``log L``, ``log G``, margin: evaluating again would cost as much as a step)."""
        columns = checkpoint_columns(W, log_loss, log_proxy, margin, self.group.references,
                                     self.opt.norm)
        return _rows(self.row_heads, t, columns)

    def settle(self) -> list[dict]:
        """Finish the bookkeeping after the last step taken (the end of the run or Ctrl-C):
        check the recorded invariant rows; returns curve rows not handed out yet (none here)."""
        self.flush()
        return []

    def close(self) -> None:
        """Release what the stepper holds besides tensors (nothing for the torch path)."""

    def finish(self, t: int) -> list[dict]:
        """Record the final state ``W_t`` (after the last step)."""
        ev = evaluate(self.group.W, self.group.X, self.group.y, self.loss, self.workspace)
        self.push(t, (ev.log_loss, ev.log_proxy, ev.margin, self.nan, self.nan, self.nan))
        return self.record(t, self.group.W, ev.log_loss, ev.log_proxy, ev.margin)


class _NativeSteepestStepper(_Stepper):
    """:class:`_Stepper` for entrywise normalized steepest descent (SignGD, NGD, NSD-p,
    coordinate descent) on the CPU in float64 with CE or the exponential loss: whole spans of
    steps in one call of the C kernel :func:`harness.native.steepest_steps_kernel` per range
    of runs (same formulas: the log-frame evaluation of :func:`harness.losses.evaluate`,
    :func:`harness.norms.steepest_direction`, ``W <- W - eta_t D``; the matrix products sum
    in another order, so the trajectory agrees with the torch path's to rounding).

    A span ends before the next checkpoint, at the end of the step-size table and of the
    history block, and after at most :data:`SPAN_STEPS` steps (progress and Ctrl-C answer
    between spans). ``torch.get_num_threads()`` worker threads call the kernel on the whole
    batch at once (the C call releases the GIL) and claim chunks of eight runs through a
    shared counter as they go, so both cores stay on the kernel to the span's end even when
    one of them also runs the Python work below (measured at the small bench size, 2 cores,
    interleaved A/B: median 2.05-2.15M -> 2.19-2.30M run-steps/s against a static split
    into one contiguous range per thread). Runs are independent: which thread takes a chunk
    changes no result. With two threads or more the Python work of past spans (the curve
    rows of their checkpoints, the invariant checks of their rows, :data:`CHECK_STEPS` at a
    time; two history blocks alternate) waits in a queue
    and the calling thread works it off while the kernel runs, oldest first, as long as the
    span is expected to last (:meth:`work_beside_kernel`). The dense early checkpoints come
    with spans of a few steps; their rows wait for the long spans later, where they cost no
    wall time. Measured at the small bench size on 2 cores (2000 steps): 1.68-1.71M
    run-steps/s, against 1.39-1.41M when each span's rows were built during the next span,
    however short. With one thread the work stays between the spans: a single-threaded
    engine keeps one core busy. Rows come out in checkpoint order either way. Torch runs on
    one thread from the stepper's creation to :meth:`close` (the kernel's threads take the
    cores; see ``__init__``).
    """

    def __init__(self, group: _Group, loss: str, kernel):
        super().__init__(group, loss)
        self.kernel = kernel
        self.X = group.X.contiguous()
        self.XT, self.Xp = steepest_steps_data(kernel, self.X)
        k, (n, d) = group.W.shape[-2], self.X.shape[-2:]
        per_run = self.X.dim() == 3  # then run b's data is at b * (the size of one run's)
        self.strides = [data[0].numel() if per_run else 0 for data in (self.X, self.XT, self.Xp)]
        self.labels = group.y.to(torch.int64).contiguous()
        self.label_stride = n if group.y.dim() == 2 else 0
        self.shape = (len(group.run_ids), k, d, n)
        self.p = group.optimizer.norm.p
        self.threads = max(1, min(torch.get_num_threads(), len(group.run_ids)))
        self.claimed = torch.zeros(1, dtype=torch.int64)  # the kernel's chunk counter
        self.scratch = torch.empty((self.threads, kernel.steepest_steps_scratch(k, d, n)),
                                   dtype=torch.float64)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="steps")
        self.overlap = self.threads > 1  # on one thread, no second core is asked for
        self.free_blocks = [torch.empty_like(self.block)]  # a block returns once checked
        # the Python work of past spans, oldest first: (kind, item); an item returns rows
        self.pending: deque[tuple[str, Callable[[], list[dict]]]] = deque()
        self.ready: list[dict] = []  # rows built and not handed out yet
        self.item_seconds: dict[str, float] = {}  # the last item of each kind took
        self.step_seconds = 0.0  # wall time per step of the last span
        # torch on one thread until close(): the kernel's threads take every core, and each torch
        # call on more threads wakes OpenMP workers that spin for a while after it (measured:
        # 11% of the CPU samples of a small bench run in libgomp with torch at 2 threads and
        # only the Python work beside the kernel held to 1)
        self.torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)

    @staticmethod
    def eligible(group: _Group, loss: str) -> bool:
        """Whether this stepper applies to the group (see the class docstring)."""
        return (isinstance(group.optimizer, SteepestDescent)
                and group.optimizer.norm.family == "entrywise" and loss in ("ce", "exp")
                and group.W.device.type == "cpu" and group.W.dtype == torch.float64)

    def advance(self, steps: int, grid: Sequence[int]) -> list[dict]:
        t = self.t
        W_t = self.group.W.clone() if is_checkpoint(grid, t) else None
        self.step_sizes(t)  # the table holding row t
        following = bisect.bisect_right(grid, t)
        end = min(steps, t + SPAN_STEPS, self.eta_start + HISTORY_BLOCK,
                  t + HISTORY_BLOCK - self.rows_in_block,
                  grid[following] if following < len(grid) else steps)
        if self.rows_in_block == 0:
            self.block_start = t
        fields = self.block[self.rows_in_block:self.rows_in_block + end - t]
        eta = self.etas[t - self.eta_start:end - self.eta_start]
        B, k, d, n = self.shape
        g_ = self.group
        common = (g_.W.data_ptr(), self.X.data_ptr(), self.strides[0], self.XT.data_ptr(),
                  self.strides[1], self.Xp.data_ptr(), self.strides[2], self.labels.data_ptr(),
                  self.label_stride, B, k, d, n, self.loss == "ce", self.p, eta.data_ptr(),
                  end - t)
        self.claimed.zero_()  # the runs' chunks, claimed by the threads as they go
        calls = [(*common, 0, B, fields.data_ptr(), self.scratch[i].data_ptr(),
                  self.claimed.data_ptr()) for i in range(self.threads)]
        if not self.overlap:  # one thread: the Python work alone, between the spans
            self.work()
        submitted = time.perf_counter()
        futures = [self.pool.submit(self._timed_steps, args) for args in calls]
        # The span is taken whatever happens next: after a Ctrl-C, close() waits for every
        # range to finish it, so W and the counts stay consistent.
        self.rows_in_block += end - t
        self.t = end
        try:
            if self.overlap:  # past spans' rows and checks, while this span runs
                self.work_beside_kernel(futures, submitted + (end - t) * self.step_seconds)
        finally:
            wait(futures)
            if not any(future.exception() for future in futures):
                self.queue_span_work(t, W_t, fields)
        finished = [future.result() for future in futures]  # a kernel call that raised
        self.step_seconds = (max(finished) - submitted) / (end - t)
        return self.take_ready()

    def _timed_steps(self, args) -> float:
        """One range's kernel call (on a worker thread); returns when it finished."""
        self.kernel.steepest_steps(*args)
        return time.perf_counter()

    def queue_span_work(self, t: int, W_t: torch.Tensor | None, fields: torch.Tensor) -> None:
        """Queue the Python work of the span just taken: the rows of checkpoint ``t`` (its
        first row of fields holds the kernel's evaluation of ``W_t``), and the invariant
        checks of the block's rows not queued yet once there are :data:`CHECK_STEPS` of them
        or the block is full (then the other block takes the next rows). Checking in pieces
        leaves less for :meth:`settle`, after the last span, when no kernel runs beside it
        (a whole block's checks there were 4% of a small bench run)."""
        if W_t is not None:
            evaluated = fields[0, :3].clone()
            self.pending.append(("rows", lambda: self.record(t, W_t, *evaluated)))
        full = self.rows_in_block == HISTORY_BLOCK
        if not full and self.rows_in_block - self.rows_checked < CHECK_STEPS:
            return
        block, lo, hi = self.block, self.rows_checked, self.rows_in_block
        start = self.block_start + lo
        self.rows_checked = hi
        try:
            if full:
                while not self.free_blocks and self.pending:  # the other block's checks
                    self.work_item()
        finally:  # a Ctrl-C in those items still queues this piece: settle() checks it
            if full:  # (no block comes back after a Ctrl-C inside its checks: a new one)
                self.block = (self.free_blocks.pop() if self.free_blocks
                              else torch.empty_like(block))
                self.rows_in_block = self.rows_checked = 0
            self.pending.append(("checks", lambda: self.check_rows(start, block, lo, hi, full)))

    def check_rows(self, start: int, block: torch.Tensor, lo: int, hi: int,
                   last: bool) -> list[dict]:
        """The invariant checks of rows ``lo:hi`` of a history block (steps from ``start``);
        after its ``last`` piece (the items run in order) the block is free again."""
        self.invariants.consume(start, block[lo:hi])
        if last:
            self.free_blocks.append(block)
        return []

    def work_item(self) -> None:
        """Run the oldest queued item; its rows go to ``ready``. The item is dropped before it
        runs: a Ctrl-C inside it loses its rows or part of its checks, never counts a step
        twice, and the rows built before stay."""
        kind, item = self.pending.popleft()
        begun = time.perf_counter()
        self.ready.extend(item())
        self.item_seconds[kind] = time.perf_counter() - begun

    def work(self) -> None:
        """Run every queued item, oldest first."""
        while self.pending:
            self.work_item()

    def work_beside_kernel(self, futures, deadline: float) -> None:
        """Queued items while the kernel runs a span: an item starts only while some range is
        still running and the span's expected end (``deadline``, from the last span's time
        per step) leaves room for half of it (from the last item of its kind). Items that
        do not fit wait for a longer span: the dense early checkpoints come with spans of a
        few steps, and building their rows there would leave the kernel's threads idle."""
        while self.pending and not all(future.done() for future in futures):
            kind = self.pending[0][0]
            if time.perf_counter() + 0.5 * self.item_seconds.get(kind, 0.0) > deadline:
                break
            self.work_item()

    def take_ready(self) -> list[dict]:
        """The rows built so far and not handed out yet (they leave the stepper)."""
        rows, self.ready = self.ready, []
        return rows

    def settle(self) -> list[dict]:
        self.work()
        self.flush()
        return self.take_ready()

    def finish(self, t: int) -> list[dict]:
        self.work()
        return self.take_ready() + super().finish(t)

    def close(self) -> None:
        self.pool.shutdown()
        torch.set_num_threads(self.torch_threads)


def _make_stepper(group: _Group, loss: str) -> _Stepper:
    """The native span stepper where it applies and its kernel is available, else the torch
    stepper (the reference)."""
    if _NativeSteepestStepper.eligible(group, loss):
        kernel = steepest_steps_kernel()
        if kernel is not None:
            return _NativeSteepestStepper(group, loss, kernel)
    return _Stepper(group, loss)


def run_batch(specs: Sequence[RunSpec], steps: int, *, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float64, loss: str = "ce", per_decade: int = 20,
              compute_references: bool = True, progress: bool | None = None) -> BatchResult:
    """Run every spec for ``steps`` steps; returns curve rows and invariants.

    Args:
        specs: the runs (see :class:`RunSpec`).
        steps: number of steps per run (>= 1).
        device: torch device; every tensor of the batch lives there.
        dtype: working precision (float64 unless you know why not).
        loss: ``"ce"`` (default), ``"exp"`` or ``"pairlog"``.
        per_decade: checkpoints per decade of t (harness.curves.geometric_grid).
        compute_references: certify missing references with harness.margins.
        progress: show a tqdm bar (default: unless CI is set or stderr is not a TTY).

    Raises:
        HarnessInputError: unknown optimizer or hyper-parameter, bad schedule or steps,
            invalid data; NotSeparableError for data whose max margin is not positive.
    """
    steps = check_steps(steps)
    if loss not in LOSSES:
        raise HarnessInputError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if not specs:
        raise HarnessInputError("no runs given")
    device = torch.device(device)
    groups = _build_groups(specs, device, dtype, compute_references)
    grid = sorted(set(geometric_grid(steps, per_decade).tolist()))
    show = (not quiet_progress()) if progress is None else progress
    from tqdm import tqdm

    bar = tqdm(total=steps * len(groups), unit="step", disable=not show, smoothing=0.05,
               desc=f"{sum(len(g.run_ids) for g in groups)} runs")
    rows: list[dict] = []
    invariants: dict[str, dict] = {}
    final_W: dict[str, np.ndarray] = {}
    steps_done: dict[str, int] = {}
    interrupted = False
    start = time.perf_counter()
    # A step allocates only short-lived, acyclic objects; the cyclic collector would rescan
    # every curve row kept so far each time it runs (measured 5% of a paper-size step).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for group in groups:
            stepper = _make_stepper(group, loss)
            shown = 0
            try:
                with torch.no_grad():
                    while stepper.t < steps:
                        rows.extend(stepper.advance(steps, grid))
                        if stepper.t - shown >= PROGRESS_EVERY:
                            bar.update(stepper.t - shown)
                            shown = stepper.t
                    rows.extend(stepper.finish(stepper.t))
            except KeyboardInterrupt:
                interrupted = True
            finally:
                stepper.close()
                bar.update(stepper.t - shown)
                rows.extend(stepper.settle())
                for run_id, summary, W in zip(group.run_ids, stepper.invariants.summary(),
                                              group.W.detach().cpu().numpy(), strict=True):
                    summary["interrupted"] = interrupted
                    invariants[run_id], final_W[run_id] = summary, W
                    steps_done[run_id] = stepper.t
            if interrupted:
                break
        for group in groups:  # groups Ctrl-C kept from starting: listed, with 0 steps
            for run_id, W in zip(group.run_ids, group.W.detach().cpu().numpy(), strict=True):
                final_W.setdefault(run_id, W)
                steps_done.setdefault(run_id, 0)
    finally:
        if collecting:
            gc.enable()
        bar.close()
    return BatchResult(rows=rows, invariants=invariants, final_W=final_W, steps=steps,
                       steps_done=steps_done, interrupted=interrupted,
                       seconds=time.perf_counter() - start)
