"""Batched training of homogeneous ReLU networks with the harness's optimizers (paper 002).

Many runs (data seeds x algorithms) train as ONE tensor program: one forward/backward pass for
the whole batch per step (:func:`harness.networks.evaluate`), then each algorithm's direction
for its slice of the batch. The optimizers are those of the linear engine
(:func:`harness.optimizers.make_optimizer`), used unchanged:

* an entrywise algorithm (GD, SignGD = sign descent, coordinate descent, NGD, Adam) acts on
  all parameters jointly, so it runs on the flat parameter vector viewed as a ``(b, 1, P)``
  matrix;
* a Schatten algorithm (``shampoo`` = spectral steepest descent) acts layer by layer: its
  direction is taken for each layer's matrix with its own state, which is Shampoo without
  accumulation, i.e. steepest descent in the modular norm ``max_l ||W_l||_2``.

The update is ``theta_{t+1} = theta_t - eta_t D_t`` with ``eta_t = eta0 (t+1)^(-a)``
(:mod:`harness.schedules`). The gradient reaches the optimizers in the moving log-frame of
THEORY.md section 5 (:mod:`harness.optimizers.base`): ``grad calL = exp(phi_t) g_t`` with the
frame ``phi_t`` at least the gradient's own scale and at least the buffers' scale, buffers
moved by ``exp(p (phi_old - phi_new))``; so the runs stay exact while ``calL`` is far below
``exp(-745)``.

At every checkpoint the metrics of :func:`harness.network_metrics.checkpoint_columns` are
recorded as one row per (run, checkpoint), the curve-row layout of :mod:`harness.curves`
with network columns; the parameters are kept at the snapshot times (for KKT residuals).

Over the last ``window`` steps each run's path is measured in its own norm N: the net
displacement over the path length, ``N(theta_T - theta_{T-W}) / sum_s N(theta_{s+1} -
theta_s)`` (``net_over_path``). It tells a run that is still moving (about 1: its steps add
up) from one that is stuck in a cycle (about 0: its steps cancel, e.g. greedy coordinate
descent zigzagging across a ReLU kink), which the loss curve alone does not.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from harness.errors import HarnessInputError
from harness.network_metrics import checkpoint_columns
from harness.networks import ReluNetwork, acts_per_layer, evaluate, parameter_norm
from harness.optimizers import Optimizer, make_optimizer
from harness.schedules import Schedule, step_sizes


@dataclass(frozen=True)
class NetworkRun:
    """One run: an algorithm with its schedule, on one data set, from one initialization.

    Attributes:
        run_id: unique name of the run.
        label: the algorithm's display name (runs with the same label share one optimizer).
        optimizer: registry name for :func:`harness.optimizers.make_optimizer`.
        hyper: its hyper-parameters.
        schedule: ``eta_t = eta0 (t+1)^(-a)``.
        data_seed: seed of the run's data set (row ``data_index`` of the batch's data).
        init_seed: seed of the run's initialization.
        data_index: which data set of the batch (first axis of ``X``) the run trains on.
    """

    run_id: str
    label: str
    optimizer: str
    schedule: Schedule
    data_seed: int
    init_seed: int
    data_index: int
    hyper: dict = field(default_factory=dict)


@dataclass
class NetworkBatchResult:
    """What a batch produced.

    Attributes:
        rows: one dict per (run, checkpoint) (see the module docstring).
        snapshots: ``{t: theta_t}`` as ``(B, P)`` arrays at the snapshot times.
        theta: final parameters ``(B, P)``.
        frozen: the frozen output weights ``(B, k_out, m)`` or None.
        runs: the runs, in batch order.
        own_norms: each run's own norm (canonical name), in batch order.
        families: each run's optimizer family (``gd``, ``nsd``, ``nmd``, ``adam``).
        window: W, the number of final steps ``net_over_path`` covers.
        net_over_path: ``N(theta_T - theta_{T-W}) / sum_s N(theta_{s+1} - theta_s)`` over
            the last W steps in each run's own norm, ``(B,)`` (NaN for a run that did not move).
    """

    rows: list[dict]
    snapshots: dict[int, np.ndarray]
    theta: np.ndarray
    frozen: np.ndarray | None
    runs: list[NetworkRun]
    own_norms: list[str]
    families: list[str]
    window: int
    net_over_path: np.ndarray


class _Group:
    """The runs of one algorithm: its optimizer, their batch indices, its buffers and frame."""

    def __init__(self, optimizer: Optimizer, index: torch.Tensor, net: ReluNetwork,
                 theta: torch.Tensor):
        self.opt, self.index, self.net = optimizer, index, net
        self.per_layer = acts_per_layer(optimizer.norm)
        self.states = [optimizer.init_state(block) for block in self._blocks(theta[index])]
        self.phi: torch.Tensor | None = None

    def _blocks(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return self.net.layers(flat) if self.per_layer else [flat[:, None, :]]

    def move_frame(self, log_scale: torch.Tensor) -> torch.Tensor:
        """The new frame ``phi`` (gradient scale, raised to the buffers' scale) with the
        buffers moved into it; returns it."""
        phi = log_scale.clone()
        if self.phi is not None:
            for state in self.states:
                held = self.opt.state_log_scale(state)
                if held is not None:
                    phi = torch.maximum(phi, self.phi + held)
            for state in self.states:
                self.opt.rescale(state, self.phi - phi)
        self.phi = phi
        return phi

    def direction(self, g: torch.Tensor, t: int) -> torch.Tensor:
        """``D_t`` for the group's runs, flat ``(b, P)``."""
        parts = [self.opt.direction(block, state, t, self.phi).flatten(start_dim=1)
                 for block, state in zip(self._blocks(g), self.states, strict=True)]
        return torch.cat(parts, dim=1)


def _quiet() -> bool:
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def train_networks(net: ReluNetwork, runs: list[NetworkRun], X: torch.Tensor, y: torch.Tensor,
                   theta0: torch.Tensor, *, steps: int, checkpoints, snapshot_times=(),
                   frozen: torch.Tensor | None = None, loss: str = "exp",
                   description: str = "train", threads: int | None = 1,
                   window: int = 100) -> NetworkBatchResult:
    """Train every run for ``steps`` steps as one batch.

    Args:
        net: the architecture.
        runs: the runs; their ``data_index`` picks their data set.
        X: data ``(S, n, d)``; y: labels ``(S, n)`` (S data sets).
        theta0: initial parameters ``(B, P)``, one row per run (:func:`init_parameters`).
        steps: horizon T.
        checkpoints: the ``t`` in ``[0, T]`` at which rows are recorded.
        snapshot_times: the ``t`` at which the parameters are kept.
        frozen: frozen output weights ``(B, k_out, m)`` of the frozen model.
        loss: ``"exp"`` or ``"ce"``.
        description: progress-bar label.
        threads: torch intra-op threads while training (restored afterwards; None leaves the
            setting alone). The tensors are small, so one thread is fastest: measured on the
            2-core development machine under load, 3.7 ms/step with 1 thread against 171 ms/step
            with 2 (18 runs, n = 100, d = m = 20).
        window: W for ``net_over_path`` (the last ``min(W, steps)`` steps).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise HarnessInputError(f"window must be an integer >= 1, got {window!r}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(net, runs, X, y, theta0, steps, checkpoints, snapshot_times, frozen, loss,
                      description, min(window, steps))
    finally:
        torch.set_num_threads(previous)


def _train(net, runs, X, y, theta0, steps, checkpoints, snapshot_times, frozen, loss,
           description, window) -> NetworkBatchResult:
    device, dtype = theta0.device, theta0.dtype
    index = torch.as_tensor([run.data_index for run in runs], device=device)
    Xb, yb = X[index], y[index]
    theta = theta0.clone()
    optimizers: dict[str, Optimizer] = {}
    members: dict[str, list[int]] = {}
    for b, run in enumerate(runs):
        optimizers.setdefault(run.label, make_optimizer(run.optimizer, **run.hyper))
        members.setdefault(run.label, []).append(b)
    groups = [_Group(optimizers[label], torch.as_tensor(idx, device=device), net, theta)
              for label, idx in members.items()]
    own = [optimizers[run.label].norm.name for run in runs]
    families = [optimizers[run.label].family for run in runs]
    eta0 = torch.as_tensor([run.schedule.eta0 for run in runs], dtype=dtype, device=device)
    expo = torch.as_tensor([run.schedule.a for run in runs], dtype=dtype, device=device)
    wanted = {int(t) for t in checkpoints} | {steps}
    keep = {int(t) for t in snapshot_times}
    rows: list[dict] = []
    snapshots: dict[int, np.ndarray] = {}
    for t in tqdm(range(steps + 1), desc=description, disable=_quiet(), mininterval=1.0):
        ev = evaluate(net, theta, Xb, yb, loss, frozen)
        if t in wanted:
            rows.extend(_rows(net, runs, own, families, theta, ev, loss, t,
                              step_sizes(eta0, expo, t)))
        if t in keep:
            snapshots[t] = theta.cpu().numpy().copy()
        if t == steps:
            break
        if t == steps - window:
            anchor, path = theta.clone(), torch.zeros(len(runs), dtype=dtype, device=device)
        in_window = t >= steps - window
        before = theta.clone() if t in wanted or in_window else None
        eta = step_sizes(eta0, expo, t)
        for group in groups:
            i = group.index
            phi = group.move_frame(ev.log_scale[i])
            g = ev.grad_tilde[i] * torch.exp(ev.log_scale[i] - phi)[:, None]
            theta[i] -= eta[i, None] * group.direction(g, t)
        if before is not None:
            length = _own_norm(net, own, theta - before)
            if in_window:
                path += length
            if t in wanted:
                rel = length / _own_norm(net, own, before)
                for row, value in zip(rows[-len(runs):], rel.tolist(), strict=True):
                    row["rel_step"] = value
    net_over_path = _own_norm(net, own, theta - anchor) / path
    return NetworkBatchResult(rows=rows, snapshots=snapshots, theta=theta.cpu().numpy(),
                              frozen=None if frozen is None else frozen.cpu().numpy(),
                              runs=list(runs), own_norms=own, families=families,
                              window=window, net_over_path=net_over_path.cpu().numpy())


def _own_norm(net: ReluNetwork, own: list[str], v: torch.Tensor) -> torch.Tensor:
    """``N_b(v_b)`` for every run b in its own norm, ``(B,)``."""
    out = torch.empty(v.shape[0], dtype=v.dtype, device=v.device)
    for norm in dict.fromkeys(own):
        mine = torch.as_tensor([o == norm for o in own], device=v.device)
        out[mine] = parameter_norm(net, v[mine], norm)
    return out


def _rows(net, runs, own, families, theta, ev, loss, t, eta) -> list[dict]:
    out = []
    per_norm: dict[str, dict[str, torch.Tensor]] = {}
    for norm in dict.fromkeys(own):
        per_norm[norm] = checkpoint_columns(net, theta, ev, norm, loss)
    log_grad = ev.log_scale + torch.log(ev.grad_tilde.abs().amax(dim=-1))
    for b, run in enumerate(runs):
        cols = per_norm[own[b]]
        row = {"run_id": run.run_id, "algorithm": run.label, "optimizer": run.optimizer,
               "family": families[b],
               "own_norm": own[b], "model": net.name, "homogeneity": net.homogeneity,
               "data_seed": run.data_seed,
               "init_seed": run.init_seed, "eta0": run.schedule.eta0, "a": run.schedule.a,
               "hyper": dict(run.hyper), "t": t, "eta": float(eta[b]),
               "log_grad_max": float(log_grad[b]), "rel_step": float("nan")}
        row.update({key: float(value[b]) for key, value in cols.items()})
        out.append(row)
    return out
