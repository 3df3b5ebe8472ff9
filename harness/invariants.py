"""Trajectory invariants of THEORY.md section 3, checked along batched runs.

:class:`TrajectoryInvariants` is fed every step of a batch by the engine (all work is on
``(B,)`` tensors, so the checks cost little next to a step) and summarises, per run:

* ``separation_time``: the first ``t`` with ``m(W_t) > 0`` (None if never);
* ``descent`` (NSD family): DESCENT at every step,
  ``L(W_{t+1}) <= L(W_t) - eta_t G(W_t) (gamma_N - 2 eta_t B^2 exp(2 B eta_t))``, checked in
  relative form (divided by ``L(W_t)``, so it holds far below ``exp(-745)``); violations
  counted, smallest relative slack kept;
* ``mono`` (NSD): the loss does not increase at steps with ``eta_t < 1/alpha``,
  ``alpha = 2 B^2 exp(2 B eta_0) / gamma_N``;
* ``unnorm_margin`` (NSD): UNNORM-MARGIN, ``m(W_t) >= gamma_N sum_{s=t0}^{t-1} eta_s G_s/L_s
  - 2 B^2 exp(2 B eta_0) sum_{s=t0}^{t-1} eta_s^2`` from the last ``t0`` after which
  ``L <= log(2)/n``; violations and the smallest slack;
* ``adam_ratio`` (Adam with ``eps = 0``, ``beta1^2 < beta2``): ``max_t max_entries
  |m^_t| / sqrt(v^_t)`` (the direction itself) against
  ``alpha = (1 - beta1) / sqrt((1 - beta2)(1 - beta1^2/beta2))``;
* ``momentum_track`` (NMD): at checkpoints,
  ``max_cj |M_t - (1 - beta1^{t+1}) grad L(W_t)|_cj / (eta_t (G_c + Q_c))``, and the slope of
  its log against ``log t`` over the last decade (bounded means a slope <= 0 asymptotically);
* ``g_over_l_final`` (G/L -> 1), ``stalled_steps`` and ``first_stall`` (steps where ``W`` did
  not change at all: a scale-invariant method must never stall), ``nonfinite_steps``.

``gamma_N`` is the certified lower bound of the run's own-norm reference (conservative: a
solver's last digits can never create a violation); without a reference those checks report
``checked: false``. Comparisons allow float64 rounding only (``ROUNDING``): the relative
DESCENT slack is measured on ``exp(log L_{t+1} - log L_t)``, whose rounding error grows with
``|log L|``, hence the term proportional to it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Relative rounding allowance of the per-step comparisons (a few float64 ulps, times terms).
ROUNDING = 1e-12
_ULP = 2.0 ** -52


#: Values per field checked at a time (about 1 MB of float64: the temporaries stay in cache).
CHUNK_VALUES = 1 << 17

#: Per-step fields the engine records (rows of a history block, in this order).
FIELDS = ("log_loss", "log_proxy", "margin", "eta", "moved", "adam_ratio")


class TrajectoryInvariants:
    """Accumulator for one batch of runs sharing an optimizer.

    The engine records one row of :data:`FIELDS` per step into a ``(T, 6, B)`` block on the
    device (two tensor ops per step) and hands full blocks to :meth:`consume`, which checks
    them in numpy, vectorized over steps and runs; the state carried between blocks makes the
    result independent of the block length. ``eta`` and ``moved`` are NaN on the final row
    (no step is taken from it), ``adam_ratio`` is NaN unless the ADAM-RATIO check applies.

    Args:
        family: the optimizer's family (selects which checks apply).
        eta0: ``(B,)`` initial step sizes.
        gamma: ``(B,)`` certified lower bounds of the own-norm max margin (NaN: unknown).
        data_bound: ``(B,)`` ``B = max_i ||x_i||_1`` of each run's data.
        n: number of samples (shared by the batch).
        adam_bound: ADAM-RATIO's ``alpha`` for Adam runs with ``eps = 0`` (else None).
    """

    def __init__(self, family: str, eta0, gamma, data_bound, n: int,
                 adam_bound: float | None = None):
        as_np = lambda v: np.asarray(torch.as_tensor(v).detach().cpu(),  # noqa: E731
                                     dtype=np.float64)
        eta0, self.gamma, self.data_bound = as_np(eta0), as_np(gamma), as_np(data_bound)
        self.family, self.nsd, self.adam_bound = family, family == "nsd", adam_bound
        self.growth = 2.0 * self.data_bound ** 2  # 2 B^2 (times exp(2 B eta) per use)
        self.unnorm_const = self.growth * np.exp(2.0 * self.data_bound * eta0)
        self.mono_eta = self.gamma / self.unnorm_const  # eta_t < 1/alpha
        self.log_threshold = math.log(math.log(2.0) / n)
        B = eta0.shape[0]
        self.count = {key: np.zeros(B, dtype=np.int64) for key in
                      ("descent", "mono", "mono_eligible", "unnorm", "adam", "stalled",
                       "nonfinite")}
        self.separation = np.full(B, -1, dtype=np.int64)
        self.first_stall = np.full(B, -1, dtype=np.int64)
        self.descent_min = np.full(B, np.inf)
        self.unnorm_min = np.full(B, np.inf)
        self.adam_max = np.zeros(B)
        self.carry: np.ndarray | None = None  # last row of the previous block
        self.unnorm_t0 = np.full(B, -1, dtype=np.int64)  # -1: L above log(2)/n
        self.unnorm_sums = np.zeros((2, B))  # sum eta G/L, sum eta^2 since t0
        self.momentum_series: list[tuple[int, torch.Tensor]] = []
        self.steps = -1

    def consume(self, t_start: int, block) -> None:
        """Check a block of rows for ``t = t_start, t_start + 1, ...`` (shape ``(T, 6, B)``),
        :data:`CHUNK_VALUES` values per field at a time: the checks' temporaries then stay in
        cache (at 1024 x 1024 a whole block at once took 3.3x as long), and the carried state
        makes the result the same."""
        rows = np.asarray(torch.as_tensor(block).detach().cpu(), dtype=np.float64)
        step = max(1, CHUNK_VALUES // max(1, rows.shape[-1]))
        for start in range(0, rows.shape[0], step):
            self._consume_rows(t_start + start, rows[start:start + step])

    def _consume_rows(self, t_start: int, rows: np.ndarray) -> None:
        if rows.shape[0] == 0:
            return
        L, P, M, E, moved, ratio = (rows[:, i] for i in range(len(FIELDS)))
        T = rows.shape[0]
        ts = t_start + np.arange(T)
        with np.errstate(invalid="ignore", over="ignore"):
            self.count["nonfinite"] += (~np.isfinite(L)).sum(axis=0)
            self._first(self.separation, M > 0, ts)
            stalled = moved == 0
            self.count["stalled"] += stalled.sum(axis=0)
            self._first(self.first_stall, stalled, ts)
            if self.adam_bound is not None:
                self.adam_max = np.fmax(self.adam_max, np.fmax.reduce(ratio, axis=0))
                self.count["adam"] += (ratio > self.adam_bound * (1.0 + ROUNDING)).sum(axis=0)
            G_over_L = np.exp(P - L)
            if self.nsd:
                self._descent(L, G_over_L, E)
                self._unnorm(ts, L, M, np.nan_to_num(E * G_over_L), np.nan_to_num(E * E))
        self.carry = np.stack([L[-1], G_over_L[-1], E[-1]])
        self.steps = int(ts[-1])

    @staticmethod
    def _first(target: np.ndarray, hit: np.ndarray, ts: np.ndarray) -> None:
        new = (target < 0) & hit.any(axis=0)
        target[new] = ts[hit.argmax(axis=0)][new]

    def _descent(self, L, G_over_L, E):
        if self.carry is not None:
            L = np.concatenate([self.carry[:1], L])
            G_over_L = np.concatenate([self.carry[1:2], G_over_L])
            E = np.concatenate([self.carry[2:], E])
        eta, prev_L, prev_gl, next_L = E[:-1], L[:-1], G_over_L[:-1], L[1:]
        valid = np.isfinite(eta)
        bound = 1.0 - eta * prev_gl * (self.gamma - eta * self.growth *
                                       np.exp(2.0 * self.data_bound * eta))
        slack = np.where(valid, bound - np.exp(next_L - prev_L), np.inf)
        tol = ROUNDING + 8 * _ULP * (np.abs(next_L) + np.abs(prev_L))
        self.descent_min = np.fmin(self.descent_min, slack.min(axis=0, initial=np.inf))
        self.count["descent"] += (slack < -tol).sum(axis=0)
        eligible = valid & (eta < self.mono_eta)
        self.count["mono_eligible"] += eligible.sum(axis=0)
        self.count["mono"] += (eligible & (next_L - prev_L > tol)).sum(axis=0)

    def _unnorm(self, ts, L, M, inc_ratio, inc_eta_sq):
        """UNNORM-MARGIN over a block: running sums restart where ``L <= log(2)/n`` starts."""
        below = L <= self.log_threshold
        was_below = np.concatenate([(self.unnorm_t0 >= 0)[None], below[:-1]])
        start = below & ~was_below
        exclusive = [_exclusive_cumsum(inc) for inc in (inc_ratio, inc_eta_sq)]
        if start.any():  # some segment starts inside the block: sums from its first row
            index = np.arange(below.shape[0])[:, None]
            seg = _running_max(np.where(start, index, -1))  # -1: from before the block
            origin = [np.take_along_axis(ex, np.maximum(seg, 0), axis=0) for ex in exclusive]
            sums = [np.where(seg >= 0, ex[:-1] - at, carry + ex[:-1])
                    for ex, at, carry in zip(exclusive, origin, self.unnorm_sums, strict=True)]
            ends = [np.where(seg[-1] >= 0, ex[-1] - at[-1], carry + ex[-1])
                    for ex, at, carry in zip(exclusive, origin, self.unnorm_sums, strict=True)]
            t0 = np.where(seg[-1] >= 0, ts[np.maximum(seg[-1], 0)], self.unnorm_t0)
        else:  # every segment of the block began before it (the usual case)
            sums = [carry + ex[:-1] for ex, carry in zip(exclusive, self.unnorm_sums, strict=True)]
            ends = [carry + ex[-1] for ex, carry in zip(exclusive, self.unnorm_sums, strict=True)]
            t0 = self.unnorm_t0
        for carry, end in zip(self.unnorm_sums, ends, strict=True):
            carry[:] = np.where(below[-1], end, 0.0)
        lower = self.gamma * sums[0] - self.unnorm_const * sums[1]
        slack = np.where(below, M - lower, np.inf)
        tol = ROUNDING * (1.0 + np.abs(M) + np.abs(self.gamma * sums[0]))
        self.unnorm_min = np.fmin(self.unnorm_min, slack.min(axis=0))
        self.count["unnorm"] += (below & (slack < -tol)).sum(axis=0)
        self.unnorm_t0 = np.where(below[-1], t0, -1)

    def observe_momentum(self, t: int, ratio: torch.Tensor) -> None:
        """Feed the MOMENTUM-TRACK ratio at a checkpoint."""
        self.momentum_series.append((t, ratio))

    def summary(self) -> list[dict]:
        """One dict per run (plain Python values, ready for JSON)."""
        last = self.carry if self.carry is not None else np.full((3, len(self.gamma)), np.nan)
        ts = [t for t, _ in self.momentum_series]
        ratios = (torch.stack([r for _, r in self.momentum_series], dim=-1).tolist()
                  if self.momentum_series else [[] for _ in self.gamma])
        as_opt = lambda v: int(v) if v >= 0 else None  # noqa: E731
        out = []
        for i, gamma in enumerate(self.gamma):
            ok, count = bool(np.isfinite(gamma)), {k: int(v[i]) for k, v in self.count.items()}
            run = {"steps": self.steps, "separation_time": as_opt(self.separation[i]),
                   "final_log_loss": float(last[0, i]), "g_over_l_final": float(last[1, i]),
                   "stalled_steps": count["stalled"], "first_stall": as_opt(self.first_stall[i]),
                   "nonfinite_steps": count["nonfinite"]}
            if self.nsd:
                run["descent"] = {"checked": ok, "violations": count["descent"],
                                  "min_relative_slack": float(self.descent_min[i])}
                run["mono"] = {"checked": ok, "eligible_steps": count["mono_eligible"],
                               "violations": count["mono"]}
                run["unnorm_margin"] = {"checked": ok, "violations": count["unnorm"],
                                        "min_slack": float(self.unnorm_min[i]),
                                        "t0": as_opt(self.unnorm_t0[i])}
            if self.adam_bound is not None:
                run["adam_ratio"] = {"checked": True, "max": float(self.adam_max[i]),
                                     "bound": self.adam_bound, "violations": count["adam"]}
            if self.family == "nmd":
                run["momentum_track"] = {"series": [[t, r] for t, r in zip(ts, ratios[i],
                                                                             strict=True)],
                                         "slope_last_decade": _last_decade_slope(ts, ratios[i])}
            out.append(run)
        return out


def _exclusive_cumsum(inc: np.ndarray) -> np.ndarray:
    """``out[t] = sum_{s < t} inc[s]`` along axis 0, ``T + 1`` rows. Row by row: numpy's
    cumsum along axis 0 of a C-ordered (T, B) array walks it column by column (11 ms at
    1024 x 1024 against 1.5 ms for 1024 row additions), and the sums come out the same."""
    out = np.empty((inc.shape[0] + 1, *inc.shape[1:]))
    out[0] = 0.0
    for t in range(inc.shape[0]):
        np.add(out[t], inc[t], out=out[t + 1])
    return out


def _running_max(values: np.ndarray) -> np.ndarray:
    """``np.maximum.accumulate(values, axis=0)`` row by row (the same 7x, same reason)."""
    out = values.copy()
    for t in range(1, out.shape[0]):
        np.maximum(out[t - 1], out[t], out=out[t])
    return out


def _last_decade_slope(ts: list[int], values: list[float]) -> float | None:
    """Least-squares slope of ``log value`` against ``log t`` over ``t >= t_max / 10``."""
    if not ts:
        return None
    t_arr, v_arr = np.asarray(ts, dtype=float), np.asarray(values, dtype=float)
    keep = (t_arr >= max(t_arr[-1] / 10.0, 1.0)) & np.isfinite(v_arr) & (v_arr > 0)
    if keep.sum() < 3:
        return None
    return float(np.polyfit(np.log(t_arr[keep]), np.log(v_arr[keep]), 1)[0])


def momentum_track_ratio(M: torch.Tensor, g: torch.Tensor, beta1: float, t: int,
                         eta: torch.Tensor, log_class_sums: torch.Tensor,
                         log_frame: torch.Tensor) -> torch.Tensor:
    """MOMENTUM-TRACK's ratio ``max_cj |M_t - (1 - beta1^{t+1}) grad|_cj / (eta_t (G_c + Q_c))``.

    ``M`` and ``g`` are in the frame ``phi`` (``grad = exp(phi) g``); ``log_class_sums`` is
    ``log(G_c + Q_c)`` (true scale, :func:`harness.metrics.log_class_proxy_sums`), so the
    quotient is formed in the frame and never underflows. Shape ``(B,)``.
    """
    deviation = (M - (1.0 - beta1 ** (t + 1)) * g).abs()
    denominator = eta[:, None] * torch.exp(log_class_sums - log_frame[:, None])
    return (deviation / denominator[:, :, None]).amax(dim=(-2, -1))
