"""Rate table, onset detection, tail fits and verdicts on synthetic gap curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.curves import geometric_grid
from harness.errors import HarnessInputError
from harness.rates import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    RATE_TABLE,
    THRESHOLDS,
    detect_onset,
    exponent_interval,
    fit_tail,
    forgetting_rate,
    judge,
    rate_bound,
)

N, D = 50, 10


def _grid(steps=10_000):
    return geometric_grid(steps)[1:].astype(np.float64)


@pytest.mark.parametrize(("family", "a", "exponent", "log_power"), [
    ("nsd", 0.5, -0.5, 1), ("nmd", 0.5, -0.5, 1), ("adam", 2 / 3, -1 / 3, 1),
    ("nsd", 0.25, -0.25, 0), ("nsd", 0.75, -0.25, 0), ("nsd", 1.0, 0.0, -1),
    ("adam", 0.5, -0.25, 0), ("adam", 0.8, -0.2, 0), ("adam", 1.0, 0.0, -1),
    ("gd", 0.0, 0.0, -1),
])
def test_rate_table_rows(family, a, exponent, log_power):
    env = rate_bound(family, a, N, D)
    assert env.exponent == pytest.approx(exponent)
    slowest = min(env.row.terms, key=lambda term: term.power(a))
    assert slowest.log_power == log_power


def test_envelope_values_match_theory_formulas():
    t = np.array([10.0, 1e3, 1e5])
    assert np.allclose(rate_bound("nsd", 0.5, N, D)(t), (np.log(t) + N) / t ** 0.5)
    assert np.allclose(rate_bound("nmd", 0.5, N, D)(t), (D * np.log(t) + D * N) / t ** 0.5)
    assert np.allclose(rate_bound("adam", 2 / 3, N, D)(t), (D * np.log(t) + N * D) / t ** (1 / 3))
    assert np.allclose(rate_bound("nsd", 0.3, N, D)(t), t ** -0.3 + N * t ** -0.7)
    assert np.allclose(rate_bound("adam", 0.4, N, D)(t), D * t ** -0.2 + N * D * t ** -0.6)
    assert np.allclose(rate_bound("gd", 0.0, N, D)(t), 1 / np.log(t))


def test_every_family_has_a_row():
    assert {row.family for row in RATE_TABLE} == {"gd", "nsd", "nmd", "adam"}


@pytest.mark.parametrize(("family", "a"), [("nmd", 0.3), ("gd", 0.5), ("nsd", 1.5),
                                           ("sgd", 0.5)])
def test_no_bound_is_an_input_error(family, a):
    with pytest.raises(HarnessInputError):
        rate_bound(family, a, N, D)


def test_forgetting_rates():
    assert forgetting_rate("nsd", None) is None
    assert forgetting_rate("nmd", (0.9,)) == pytest.approx(-math.log(0.9))
    assert forgetting_rate("adam", (0.9, 0.99)) == pytest.approx(-0.5 * math.log(0.99))
    assert forgetting_rate("adam", (0.5, 0.999999)) == pytest.approx(-0.5 * math.log(0.999999))


def test_onset_is_where_the_loss_scale_slows_below_the_rate():
    t = np.arange(0, 2000, dtype=np.float64)
    # log G drops by 1 per step until t = 300, then by 1e-3 per step.
    log_g = np.where(t < 300, -t, -300 - 1e-3 * (t - 300))
    assert detect_onset(t, log_g, rate=0.01, factor=0.5) == 300
    assert detect_onset(t, log_g, rate=None) == 0
    assert detect_onset(t, -t, rate=0.01) is None  # never slows down


def test_onset_ignores_quiet_stretches_before_a_late_burst():
    t = np.arange(0, 1000, dtype=np.float64)
    log_g = -1e-4 * t
    log_g[700:] -= 5.0  # one burst at t = 700
    assert detect_onset(t, log_g, rate=0.01) == 700


def _fit(gap, family="nsd", a=0.5, t=None, **kw):
    t = _grid() if t is None else t
    env = rate_bound(family, a, N, D)
    return fit_tail("s0", t, gap(t) if callable(gap) else gap, env, t0=kw.pop("t0", 0), **kw)


def test_gap_on_the_envelope_passes():
    fit = _fit(lambda t: 0.01 * (np.log(t) + N) / np.sqrt(t))
    assert fit.verdict == PASS, fit.reason
    assert abs(fit.trend) < 1e-9
    assert fit.slope == pytest.approx(-0.5, abs=0.05)


def test_faster_decay_passes_slower_fails_plateau_fails():
    assert _fit(lambda t: t ** -0.6).verdict == PASS
    slower = _fit(lambda t: t ** -0.2)
    assert slower.verdict == FAIL and "slower decay" in slower.reason
    plateau = _fit(lambda t: 0.3 + 0 * t)
    assert plateau.verdict == FAIL and "plateau" in plateau.reason
    growth = _fit(lambda t: t ** 0.2)
    assert growth.verdict == FAIL and "growth" in growth.reason


def test_trend_between_thresholds_is_inconclusive():
    # slope -0.33 against the bound's local slope ~ -0.48: trend ~ +0.15.
    fit = _fit(lambda t: t ** -0.33)
    assert THRESHOLDS.trend_pass < fit.trend <= THRESHOLDS.trend_fail
    assert fit.verdict == INCONCLUSIVE


def test_gap_turning_up_in_the_last_decade_does_not_pass():
    # On the envelope until t = 3000, then rising like t^0.3 (a run leaving its norm's path):
    # over the two-decade window the trend stays below trend_pass, over the last decade not.
    t = _grid()
    env = rate_bound("nsd", 0.5, N, D)
    gap = env(t) * np.where(t < 3000, 1.0, (t / 3000) ** 0.3)
    fit = _fit(gap, t=t)
    assert fit.trend <= THRESHOLDS.trend_pass < fit.late_trend <= THRESHOLDS.trend_fail
    assert fit.verdict == INCONCLUSIVE and "last decade" in fit.reason


def test_nan_fails_with_its_step():
    t = _grid()
    gap = t ** -0.5
    gap[-5] = np.nan
    fit = _fit(gap, t=t)
    assert fit.verdict == FAIL and fit.nan_step == int(t[-5])
    assert _fit(t ** -0.5, t=t, nan_step=77).nan_step == 77


def test_short_horizon_and_late_onset_are_inconclusive():
    assert _fit(lambda t: t ** -0.5, t=_grid(50)).verdict == INCONCLUSIVE
    late = _fit(lambda t: t ** -0.5, t0=500)
    assert late.verdict == INCONCLUSIVE and "horizon too short" in late.reason
    assert _fit(lambda t: t ** -0.5, t0=None).verdict == INCONCLUSIVE


def test_stalled_run_is_inconclusive():
    t = _grid()
    fit = _fit(0.5 + 0 * t, t=t, norm=np.full_like(t, 3.0))
    assert fit.verdict == INCONCLUSIVE and "stalled" in fit.reason


def test_gap_at_resolution_passes():
    t = _grid()
    gap = np.where(t < 500, t ** -0.5, 1e-12)
    assert _fit(gap, t=t, floor=1e-9).verdict == PASS


def test_judge_combines_runs():
    env = rate_bound("nsd", 0.5, N, D)
    t = _grid()
    good = [fit_tail(f"s{i}", t, (1 + 0.1 * i) * t ** -0.55, env, t0=0) for i in range(3)]
    bad = fit_tail("bad", t, 0.2 + 0 * t, env, t0=0)
    short = fit_tail("short", t, t ** -0.5, env, t0=None)
    assert judge(good, env).verdict == PASS
    assert judge([bad, bad], env).verdict == FAIL
    assert judge([bad, short], env).verdict == FAIL
    assert judge([*good, bad], env).verdict == INCONCLUSIVE
    assert judge([*good, short], env).verdict == INCONCLUSIVE
    nan = fit_tail("nan", t, t ** -0.5, env, t0=0, nan_step=3)
    assert judge([*good, nan], env).verdict == FAIL


def test_exponent_interval_covers_the_seed_slopes():
    env = rate_bound("nsd", 0.5, N, D)
    t = _grid()
    fits = [fit_tail(f"s{i}", t, t ** p, env, t0=0) for i, p in enumerate((-0.5, -0.6, -0.7))]
    mean, (lo, hi) = exponent_interval(fits)
    assert mean == pytest.approx(-0.6, abs=1e-6)
    assert lo < -0.7 and hi > -0.5
    single_mean, (slo, shi) = exponent_interval(fits[:1])
    assert slo <= single_mean <= shi
