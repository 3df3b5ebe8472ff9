"""harness.invariants against a plain per-step loop written from THEORY.md section 3.

The accumulator checks whole (T, 6, B) blocks with vectorized numpy; the reference below walks
one run and one step at a time, straight from the statements (UNNORM-MARGIN's sums restart
whenever L climbs back above log(2)/n, DESCENT compares consecutive losses). Blocks of every
length, including splits inside a segment, must give the reference's counts, slacks and t0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import invariants
from harness.invariants import FIELDS, ROUNDING, TrajectoryInvariants

N = 20
THRESHOLD = math.log(math.log(2.0) / N)


def _history(seed: int, T: int = 300, B: int = 5):
    """Loss curves that cross log(2)/n several times, margins near the UNNORM-MARGIN bound
    (some below it), a decaying schedule and a stalled step."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    L = THRESHOLD + 1.5 * np.sin(t / (7.0 + 5.0 * rng.random(B))) + 0.3 * rng.normal(size=(T, B))
    P = L + np.log(rng.uniform(0.5, 1.0, size=(T, B)))  # G <= L
    E = 0.2 / np.sqrt(t + 1.0) * np.ones(B)
    M = rng.normal(scale=2.0, size=(T, B)) + 0.5 * np.cumsum(E, axis=0)
    moved = np.ones((T, B))
    moved[T // 2, 0] = 0.0
    rows = np.stack([L, P, M, E, moved, np.full((T, B), np.nan)], axis=1)
    return rows


def _reference(rows, gamma, data_bound, eta0):
    """Per run, per step: UNNORM-MARGIN, DESCENT and MONO as written in THEORY.md."""
    T, _, B = rows.shape
    const = 2.0 * data_bound ** 2 * np.exp(2.0 * data_bound * eta0)
    out = []
    for b in range(B):
        L, P, M, E = (rows[:, FIELDS.index(key), b] for key in
                      ("log_loss", "log_proxy", "margin", "eta"))
        s0 = s1 = 0.0
        t0, violations, min_slack = -1, 0, math.inf
        descent, descent_min, mono = 0, math.inf, 0
        for t in range(T):
            if L[t] <= THRESHOLD:
                if t0 < 0:
                    t0, s0, s1 = t, 0.0, 0.0
                lower = gamma[b] * s0 - const[b] * s1
                slack = M[t] - lower
                tol = ROUNDING * (1.0 + abs(M[t]) + abs(gamma[b] * s0))
                violations += slack < -tol
                min_slack = min(min_slack, slack)
                s0 += E[t] * math.exp(P[t] - L[t])
                s1 += E[t] ** 2
            else:
                t0 = -1
            if t + 1 < T:
                eta = E[t]
                bound = 1.0 - eta * math.exp(P[t] - L[t]) * (
                    gamma[b] - eta * 2.0 * data_bound[b] ** 2 * math.exp(2.0 * data_bound[b] * eta))
                slack = bound - math.exp(L[t + 1] - L[t])
                tol = ROUNDING + 8 * 2.0 ** -52 * (abs(L[t + 1]) + abs(L[t]))
                descent += slack < -tol
                descent_min = min(descent_min, slack)
                if eta < gamma[b] / const[b]:
                    mono += L[t + 1] - L[t] > tol
        out.append({"unnorm": (violations, min_slack, t0 if t0 >= 0 else None),
                    "descent": (descent, descent_min), "mono": mono})
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cuts", [[], [1], [37, 38, 150], list(range(5, 300, 23))])
@pytest.mark.parametrize("chunk_values", [invariants.CHUNK_VALUES, 5, 17])
def test_block_checks_equal_the_per_step_reference(monkeypatch, seed, cuts, chunk_values):
    """Any split into blocks (the engine's) and into chunks (consume's own: 5 values is one
    row of the 5 runs, 17 is three rows) gives the reference's verdicts."""
    monkeypatch.setattr(invariants, "CHUNK_VALUES", chunk_values)
    rows = _history(seed)
    B = rows.shape[2]
    gamma = np.linspace(0.05, 0.3, B)
    data_bound = np.full(B, 1.5)
    eta0 = rows[0, FIELDS.index("eta")]
    inv = TrajectoryInvariants("nsd", eta0, gamma, data_bound, N)
    edges = [0, *cuts, rows.shape[0]]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inv.consume(lo, rows[lo:hi])
    want = _reference(rows, gamma, data_bound, eta0)
    got = inv.summary()
    assert sum(w["unnorm"][0] for w in want) > 0  # the data exercise the violation count
    for b, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g["unnorm_margin"]["violations"] == w["unnorm"][0], b
        assert g["unnorm_margin"]["min_slack"] == pytest.approx(w["unnorm"][1], rel=1e-12), b
        assert g["unnorm_margin"]["t0"] == w["unnorm"][2], b
        assert g["descent"]["violations"] == w["descent"][0], b
        assert g["descent"]["min_relative_slack"] == pytest.approx(w["descent"][1], rel=1e-12)
        assert g["mono"]["violations"] == w["mono"], b
    assert got[0]["stalled_steps"] == 1 and got[0]["first_stall"] == rows.shape[0] // 2
