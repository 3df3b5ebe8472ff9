"""The rate table of THEORY.md section 4 as data, tail fits, and PASS / FAIL / INCONCLUSIVE.

Every bound on the margin gap ``gamma_N - m(W_t)/N(W_t)`` in THEORY.md section 4 is an
*envelope* ``f(t) = sum_j c_j (log t)^(q_j) t^(-p_j)`` whose coefficients ``c_j`` are ``1``,
``n``, ``d`` or ``n d`` (unknown constants dropped: the bounds are stated up to constants).
:data:`RATE_TABLE` holds one row per (family, range of the step exponent ``a``); each term's
power is affine in ``a`` (``p = p0 + p1 a``), so the general-``a`` rows are data as well.

Judging a gap curve against its envelope (:func:`fit_tail`, :func:`judge`):

* **Regime.** NMD and Adam are analysed under the assumption (paper 000, Assumption 3.4) that
  the loss scale changes by a bounded factor within the EMA's memory. :func:`detect_onset`
  finds ``t0``: the first step from which the per-step change of ``log G`` stays below
  ``onset_factor`` times the EMA's forgetting rate ``-log(beta)`` for good. NSD and GD need no
  onset (``t0 = 0``). A run that never reaches ``t0``, or reaches it too late to leave
  ``tail_decades`` decades of ``t`` before its horizon, supports no verdict: INCONCLUSIVE.
* **Fit.** On the tail ``[max(t0, T / 10^tail_decades), T]`` the slope of ``log gap`` against
  ``log t`` (the fitted exponent) and the slope of ``log(gap / f)`` against ``log t`` (the
  envelope trend). An upper bound is met when ``gap / f`` does not trend upward; the log
  factors of ``f`` are accounted for exactly, which a bare comparison of exponents would not.
* **Verdict.** Per run: PASS when the envelope trend is at most ``trend_pass`` over the
  window *and* over its last decade (a gap that keeps pace with the bound over two decades but
  turns up at the end, like a run leaving its norm's path, has not shown the bound's decay
  where it matters, at the horizon); FAIL when it exceeds ``trend_fail`` over the window *and*
  over its last decade (a sustained plateau, growth or slower decay; a pre-asymptotic hump
  that is already receding is not) or the run produced NaN;
  INCONCLUSIVE in between, when the horizon is too short, the run stalled (its norm stopped
  growing), or too few points are left. Over runs: PASS only when every run passes; FAIL on any
  NaN or when runs fail and none passes; otherwise INCONCLUSIVE (mixed evidence).

All thresholds live in :class:`Thresholds`; every report prints them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from harness.errors import HarnessInputError

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)

#: Algorithm families with a rate bound (``gd``: plain gradient descent, constant step).
FAMILIES = ("gd", "nsd", "nmd", "adam")


@dataclass(frozen=True)
class Thresholds:
    """Every number a verdict depends on, in one place (printed in every report).

    Attributes:
        tail_decades: the fit window spans the last this-many decades of ``t`` (after ``t0``).
        min_tail_points: fewer checkpoints than this in the window: INCONCLUSIVE.
        onset_factor: the regime starts once ``|d log G / dt| <= onset_factor * rate`` holds at
            every later step, ``rate = -log(beta)`` the EMA's forgetting rate.
        trend_pass: PASS needs the slope of ``log(gap/f)`` vs ``log t`` at most this, over the
            window and over its last decade.
        trend_fail: FAIL when that slope exceeds this (clearly slower than the bound).
        plateau_slope: a fitted gap exponent within this of 0 is called a plateau.
        stall_growth: relative growth of ``N(W)`` over the window below this: the run stalled.
        gap_floor_rel: gaps below ``gap_floor_rel * gamma`` (or the certificate's own
            ``upper - lower``, if larger) are at the reference's resolution and not fitted.
        confidence: level of the across-seed confidence interval of the fitted exponent.
        baseline_tolerance: a fitted exponent larger (worse) than the baseline's by more than
            this fails the baseline comparison.
        departure_rise: a gap ending more than this factor above its minimum over the run is
            reported as the run leaving its norm's path (descriptive, not part of a verdict).
    """

    tail_decades: float = 2.0
    min_tail_points: int = 8
    onset_factor: float = 1.0
    trend_pass: float = 0.1
    trend_fail: float = 0.2
    plateau_slope: float = 0.05
    stall_growth: float = 1e-3
    gap_floor_rel: float = 1e-9
    confidence: float = 0.95
    baseline_tolerance: float = 0.05
    departure_rise: float = 1.25

    def as_dict(self) -> dict:
        """The thresholds as a plain dict (for report JSON)."""
        return asdict(self)


THRESHOLDS = Thresholds()

_COEFFICIENTS = ("1", "n", "d", "nd")


@dataclass(frozen=True)
class Term:
    """One envelope term ``c (log t)^log_power t^(-(p0 + p1 a))`` with ``c`` in 1, n, d, nd."""

    coefficient: str
    p0: float
    p1: float = 0.0
    log_power: int = 0

    def power(self, a: float) -> float:
        """The decay exponent ``p`` of this term at step exponent ``a``."""
        return self.p0 + self.p1 * a


@dataclass(frozen=True)
class RateRow:
    """A row of THEORY.md section 4: the bound for ``family`` when ``a`` lies in the range."""

    family: str
    a_low: float
    a_high: float
    closed_low: bool
    closed_high: bool
    terms: tuple[Term, ...]
    text: str
    tag: str

    def covers(self, a: float) -> bool:
        """Whether ``a`` lies in this row's range (up to 1e-12)."""
        lo = a > self.a_low - 1e-12 if self.closed_low else a > self.a_low + 1e-12
        hi = a < self.a_high + 1e-12 if self.closed_high else a < self.a_high - 1e-12
        return lo and hi


def _point(family, a, terms, text, tag):
    return RateRow(family, a, a, True, True, tuple(terms), text, tag)


#: THEORY.md section 4 as data. Exact rows ([P]) come before the general ranges ([S]).
RATE_TABLE: tuple[RateRow, ...] = (
    _point("nsd", 0.5, [Term("1", 0.5, log_power=1), Term("n", 0.5)],
           "(log t + n) / t^(1/2)", "P"),
    _point("nmd", 0.5, [Term("d", 0.5, log_power=1), Term("nd", 0.5)],
           "(d log t + d n) / t^(1/2)", "P"),
    _point("adam", 2 / 3, [Term("d", 1 / 3, log_power=1), Term("nd", 1 / 3)],
           "(d log t + n d) / t^(1/3)", "P"),
    RateRow("nsd", 0.0, 0.5, False, False, (Term("1", 0.0, 1.0), Term("n", 1.0, -1.0)),
            "t^(-a) + n t^(-(1-a))", "S"),
    RateRow("nsd", 0.5, 1.0, False, False, (Term("n", 1.0, -1.0),), "n t^(-(1-a))", "S"),
    _point("nsd", 1.0, [Term("n", 0.0, log_power=-1)], "n / log t", "S"),
    RateRow("adam", 0.0, 2 / 3, False, False, (Term("d", 0.0, 0.5), Term("nd", 1.0, -1.0)),
            "d t^(-a/2) + n d t^(-(1-a))", "S"),
    RateRow("adam", 2 / 3, 1.0, False, False, (Term("nd", 1.0, -1.0),), "n d t^(-(1-a))", "S"),
    _point("adam", 1.0, [Term("nd", 0.0, log_power=-1)], "n d / log t", "S"),
    _point("gd", 0.0, [Term("1", 0.0, log_power=-1)], "1 / log t (l2 gap, constant step)", "S"),
)


@dataclass(frozen=True)
class Envelope:
    """The bound ``f(t)`` for one family, step exponent and problem size."""

    family: str
    a: float
    n: int
    d: int
    row: RateRow

    def __call__(self, t) -> np.ndarray:
        """``f(t)`` for ``t >= 2`` (natural logarithm)."""
        t = np.asarray(t, dtype=np.float64)
        sizes = {"1": 1.0, "n": float(self.n), "d": float(self.d), "nd": float(self.n * self.d)}
        total = np.zeros_like(t)
        for term in self.row.terms:
            total = total + sizes[term.coefficient] * np.log(t) ** term.log_power * t ** (
                -term.power(self.a))
        return total

    @property
    def exponent(self) -> float:
        """The bound's exponent: ``-p`` of its slowest-decaying term (log factors aside)."""
        return -min(term.power(self.a) for term in self.row.terms)

    @property
    def text(self) -> str:
        """The bound as written in THEORY.md."""
        return self.row.text


def rate_bound(family: str, a: float, n: int, d: int) -> Envelope:
    """The envelope of THEORY.md section 4 for ``family`` at step exponent ``a``.

    Raises:
        HarnessInputError: unknown family, or no bound stated for this ``a``.
    """
    if family not in FAMILIES:
        raise HarnessInputError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    if n < 1 or d < 1:
        raise HarnessInputError(f"need n >= 1 and d >= 1, got n={n}, d={d}")
    for row in RATE_TABLE:
        if row.family == family and row.covers(a):
            return Envelope(family, float(a), int(n), int(d), row)
    stated = ", ".join(
        f"a={row.a_low:g}" if row.a_low == row.a_high else
        f"a in {'[' if row.closed_low else '('}{row.a_low:g},{row.a_high:g}"
        f"{']' if row.closed_high else ')'}"
        for row in RATE_TABLE if row.family == family)
    raise HarnessInputError(f"THEORY.md states no rate for family {family} at a={a:g} "
                            f"(stated: {stated})")


def forgetting_rate(family: str, betas: Sequence[float] | None) -> float | None:
    """The EMA's forgetting rate per step, or None for families without memory (GD, NSD).

    NMD's momentum forgets at ``-log(beta1)``; Adam's state forgets at its slower memory:
    ``min(-log(beta1), -log(sqrt(beta2)))`` (``sqrt(v)`` decays at most by ``sqrt(beta2)``
    per step, which is what makes ``m / sqrt(v)`` collapse in the stop-and-go phase).
    """
    if family in ("gd", "nsd"):
        return None
    if not betas:
        raise HarnessInputError(f"family {family} needs its EMA factor(s) to detect the onset")
    beta1 = float(betas[0])
    rates = [-math.log(beta1)] if 0.0 < beta1 < 1.0 else []
    if family == "adam" and len(betas) > 1 and 0.0 < float(betas[1]) < 1.0:
        rates.append(-0.5 * math.log(float(betas[1])))
    if not rates:
        return math.inf  # no memory at all: every step is in the regime
    return min(rates)


def detect_onset(t, log_proxy, rate: float | None, factor: float = THRESHOLDS.onset_factor
                 ) -> int | None:
    """``t0``: the first ``t`` from which ``|d log G / dt| <= factor * rate`` at every later step.

    Args:
        t: increasing steps (dense or geometric; changes are per step between samples).
        log_proxy: ``log G`` at those steps.
        rate: the forgetting rate (:func:`forgetting_rate`); None means no onset needed.
        factor: the fraction of the rate allowed.

    Returns:
        ``t0`` (``0`` when ``rate`` is None), or None when the condition fails at the last
        sample (the regime is not reached within the run).
    """
    t = np.asarray(t, dtype=np.float64)
    log_proxy = np.asarray(log_proxy, dtype=np.float64)
    if rate is None:
        return 0
    if t.size < 2:
        return None
    change = np.abs(np.diff(log_proxy)) / np.diff(t)
    bad = ~(change <= factor * rate)  # NaN counts as a violation
    if not bad.any():
        return int(t[0])
    last = int(np.flatnonzero(bad)[-1])
    if last + 1 >= t.size - 1:
        return None
    return int(t[last + 1])


@dataclass(frozen=True)
class TailFit:
    """The fit of one run's gap curve on its tail, and that run's verdict.

    ``slope`` is the fitted exponent of gap vs t; ``trend`` the slope of ``log(gap / f)``.
    Fields are None where they could not be computed (see ``reason``).
    """

    run_id: str
    verdict: str
    reason: str
    t0: int | None
    t_start: int | None
    t_end: int
    points: int
    slope: float | None = None
    slope_stderr: float | None = None
    trend: float | None = None
    late_trend: float | None = None
    intercept: float | None = None
    final_gap: float | None = None
    nan_step: int | None = None

    def as_dict(self) -> dict:
        """Plain dict for report JSON."""
        return asdict(self)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and the slope's standard error of the least-squares line."""
    res = stats.linregress(x, y)
    return float(res.slope), float(res.intercept), float(res.stderr)


def fit_tail(run_id: str, t, gap, envelope: Envelope, *, t0: int | None, norm=None,
             floor: float = 0.0, nan_step: int | None = None,
             thresholds: Thresholds = THRESHOLDS) -> TailFit:
    """Fit one run's gap curve on its tail and give that run's verdict (module docstring).

    Args:
        run_id: the run's name (seed) for the report.
        t: checkpoint steps, increasing; the last one is the horizon reached.
        gap: the margin gap in the expected norm at those steps.
        envelope: the bound (:func:`rate_bound`).
        t0: the regime's onset (:func:`detect_onset`); None: not reached.
        norm: ``N(W_t)`` at the same steps, for the stall test (optional).
        floor: gaps at or below this are at the reference's resolution.
        nan_step: the step at which the run produced NaN, if it did.
        thresholds: the thresholds.
    """
    t = np.asarray(t, dtype=np.float64)
    gap = np.asarray(gap, dtype=np.float64)
    t_end = int(t[-1]) if t.size else 0
    common = {"run_id": run_id, "t0": t0, "t_end": t_end}
    finite = np.isfinite(gap)
    if nan_step is not None or not finite.all():
        step = nan_step if nan_step is not None else int(t[np.flatnonzero(~finite)[0]])
        return TailFit(verdict=FAIL, reason=f"NaN or inf at step {step}", t_start=None,
                       points=0, nan_step=step, **common)
    final_gap = float(gap[-1]) if gap.size else None
    if t0 is None:
        return TailFit(verdict=INCONCLUSIVE, reason=f"regime not reached by t={t_end} "
                       f"(log G still changes faster than {thresholds.onset_factor:g} x the "
                       "EMA's forgetting rate)", t_start=None, points=0, final_gap=final_gap,
                       **common)
    window_start = t_end / 10.0 ** thresholds.tail_decades
    if max(t0, 1) > window_start:
        return TailFit(verdict=INCONCLUSIVE, reason=f"horizon too short: regime from t0={t0}, "
                       f"need t >= {10 ** thresholds.tail_decades:g} * max(t0, 1) but reached "
                       f"t={t_end}", t_start=None, points=0, final_gap=final_gap, **common)
    in_tail = (t >= max(window_start, 2.0)) & (t >= t0)
    t_start = int(t[in_tail][0])
    resolved = in_tail & (gap > floor)
    if final_gap is not None and final_gap <= floor and resolved.sum() < thresholds.min_tail_points:
        return TailFit(verdict=PASS, reason=f"gap fell to the reference's resolution ({floor:.1e})"
                       " inside the window: faster than any bound", t_start=t_start,
                       points=int(resolved.sum()), final_gap=final_gap, **common)
    points = int(resolved.sum())
    if points < thresholds.min_tail_points:
        return TailFit(verdict=INCONCLUSIVE, reason=f"only {points} checkpoints with a resolved "
                       f"gap in the window (need {thresholds.min_tail_points})", t_start=t_start,
                       points=points, final_gap=final_gap, **common)
    log_t = np.log(t[resolved])
    slope, intercept, stderr = _ols(log_t, np.log(gap[resolved]))
    log_ratio = np.log(gap[resolved]) - np.log(envelope(t[resolved]))
    trend, _, _ = _ols(log_t, log_ratio)
    late = log_t >= log_t[-1] - math.log(10.0)
    late_trend = _ols(log_t[late], log_ratio[late])[0] if late.sum() >= 3 else trend
    numbers = {"slope": slope, "slope_stderr": stderr, "trend": trend, "late_trend": late_trend,
               "intercept": intercept, "t_start": t_start, "points": points,
               "final_gap": final_gap}
    if norm is not None:
        norm = np.asarray(norm, dtype=np.float64)[in_tail]
        growth = (norm[-1] - norm[0]) / max(abs(norm[0]), 1e-300)
        if not growth > thresholds.stall_growth:
            return TailFit(verdict=INCONCLUSIVE, reason=f"run stalled: N(W) grew by {growth:.1e} "
                           f"over t in [{t_start}, {t_end}]", **numbers, **common)
    kind = ("growth" if slope > thresholds.plateau_slope else
            "plateau" if slope >= -thresholds.plateau_slope else "slower decay than the bound")
    summary = (f"gap ~ t^{slope:.3f} on t in [{t_start}, {t_end}], gap/f trend {trend:+.3f} "
               f"(last decade {late_trend:+.3f}; bound t^{envelope.exponent:.3f}: "
               f"{envelope.text})")
    if trend <= thresholds.trend_pass and late_trend <= thresholds.trend_pass:
        verdict, reason = PASS, f"decays at least as fast as the bound: {summary}"
    elif trend > thresholds.trend_fail and late_trend > thresholds.trend_fail:
        verdict, reason = FAIL, f"{kind}: {summary}"
    elif trend > thresholds.trend_fail:
        verdict, reason = INCONCLUSIVE, ("slower than the bound but not in the last decade: "
                                         f"{summary}")
    elif trend <= thresholds.trend_pass:
        verdict, reason = INCONCLUSIVE, ("keeps pace with the bound over the window but not in "
                                         f"its last decade (trend above {thresholds.trend_pass}):"
                                         f" {summary}")
    else:
        verdict, reason = INCONCLUSIVE, (f"gap/f trend between {thresholds.trend_pass} and "
                                         f"{thresholds.trend_fail}: {summary}")
    return TailFit(verdict=verdict, reason=reason, **numbers, **common)


@dataclass(frozen=True)
class RateVerdict:
    """The verdict over all runs, with the fitted exponent's confidence interval."""

    verdict: str
    reason: str
    bound_exponent: float
    bound_text: str
    exponent: float | None
    exponent_ci: tuple[float, float] | None
    trend_max: float | None
    fits: tuple[TailFit, ...] = field(default_factory=tuple)
    thresholds: Thresholds = THRESHOLDS

    def as_dict(self) -> dict:
        """Plain dict for report JSON (thresholds included)."""
        out = asdict(self)
        out["fits"] = [f.as_dict() for f in self.fits]
        out["thresholds"] = self.thresholds.as_dict()
        return out


def exponent_interval(fits: Sequence[TailFit], confidence: float = THRESHOLDS.confidence
                      ) -> tuple[float | None, tuple[float, float] | None]:
    """Mean fitted exponent over runs and its Student-t confidence interval.

    With one run the interval is that run's regression interval (slope +- z * stderr).
    """
    slopes = np.array([f.slope for f in fits if f.slope is not None], dtype=np.float64)
    if slopes.size == 0:
        return None, None
    mean = float(slopes.mean())
    if slopes.size == 1:
        stderr = next(f.slope_stderr for f in fits if f.slope is not None)
        half = float(stats.norm.ppf(0.5 + confidence / 2) * stderr)
    else:
        half = float(stats.t.ppf(0.5 + confidence / 2, slopes.size - 1)
                     * slopes.std(ddof=1) / math.sqrt(slopes.size))
    return mean, (mean - half, mean + half)


def judge(fits: Sequence[TailFit], envelope: Envelope,
          thresholds: Thresholds = THRESHOLDS) -> RateVerdict:
    """Combine per-run fits into one verdict (module docstring)."""
    if not fits:
        raise HarnessInputError("no runs to judge")
    counts = {v: sum(f.verdict == v for f in fits) for v in VERDICTS}
    nan_runs = [f for f in fits if f.nan_step is not None]
    exponent, ci = exponent_interval(fits, thresholds.confidence)
    trends = [f.trend for f in fits if f.trend is not None]
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    if nan_runs:
        first = min(nan_runs, key=lambda f: f.nan_step)
        verdict, reason = FAIL, f"run {first.run_id}: NaN or inf at step {first.nan_step}"
    elif counts[FAIL] and not counts[PASS]:
        first = next(f for f in fits if f.verdict == FAIL)
        verdict, reason = FAIL, f"{tally}; run {first.run_id}: {first.reason}"
    elif counts[PASS] == len(fits):
        verdict, reason = PASS, f"every run decays at least as fast as the bound ({tally})"
    else:
        first = next(f for f in fits if f.verdict != PASS)
        kind = "mixed evidence" if counts[FAIL] else "not enough evidence"
        verdict, reason = INCONCLUSIVE, f"{kind} ({tally}); run {first.run_id}: {first.reason}"
    return RateVerdict(verdict=verdict, reason=reason, bound_exponent=envelope.exponent,
                       bound_text=envelope.text, exponent=exponent, exponent_ci=ci,
                       trend_max=max(trends) if trends else None, fits=tuple(fits),
                       thresholds=thresholds)
