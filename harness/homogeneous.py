"""Checks (a)-(d) of issue 6 on homogeneous-network runs, each a PASS / FAIL / INCONCLUSIVE
verdict with its numbers (paper 002; THEORY.md sections 3 SOFT-MARGIN and 6).

They read the curve rows of :mod:`harness.network_engine` and the KKT residuals of
:func:`harness.network_metrics.kkt_residual`:

(a) ``soft_margin``: each steepest-descent run's (GD, SD, CD, Shampoo; not Adam, which is
    not steepest descent in a fixed norm: its drops are recorded, not judged) soft margin in its
    own norm, ``log(1/calL)/N^L``, is
    non-decreasing from the first checkpoint with ``calL < 1`` on (Theorem 3.1, exact for the
    flow). A discrete run may dip by O(eta): a fall below the running maximum ``M`` counts as a
    violation only when ``M - gamma~_t > tol_t = |M| (1 - (1 + h)^(-L))`` (about ``L h``), with
    ``h`` the largest relative step ``N(theta_{s+1} - theta_s) / N(theta_s)`` in the own norm
    over the checkpoints since the running maximum was set. Derivation (one step of normalized
    steepest descent, ``theta' = theta - eta D`` with ``N(D) = 1``, so ``h = eta / N(theta)``):
    the triangle inequality gives ``N(theta') <= N(theta) (1 + h)``, so whenever the step does
    not raise the loss (``log(1/calL') >= log(1/calL) > 0``: a descent step),
    ``gamma~' = log(1/calL') / N(theta')^L >= gamma~ (1 + h)^(-L)``: one step can take away at
    most the fraction ``1 - (1 + h)^(-L) <= L h`` of the soft margin, even when it gains nothing
    in the loss. The flow gains at least as much as it loses (paper 002: ``<theta, grad q> >= L
    q`` for ``q = log(1/calL)``, so ``d log q >= L d log N``); the discrete gain is that first-
    order term minus an O(h^2) remainder, so a fall by more than one step's worth is a real
    departure from Theorem 3.1 (or a loss increase, e.g. at a ReLU kink), not step-size noise.
(b) ``own_margin_largest``: at the horizon, each algorithm's geometric margin in its own norm
    is the largest among the compared algorithms (paper 002 Figure 1 left: GD in l2, SD in
    l-inf, CD in l1; Shampoo in spectral on the frozen-output model). Per model: median over
    the data seeds of the final own-norm margin over the runs in the late phase (100% train
    accuracy and calL < 1); an algorithm with fewer than half its runs there has no median
    (INCONCLUSIVE when it is the one judged, left out when it is a rival). The compared runs
    start from one initialization scale, as in the figure (the scenario rejects a group that
    mixes scales): the scale sets how soon the bias takes over, so across scales the ordering
    would compare stages of the way to the limit. A group outside the figure's small-init
    regime (paper 002 section 4.1: smaller inits enter the "rich" regime faster; e.g. coordinate
    descent from init 1, the smallest scale tried from which it fits the teacher data) gets the
    same numbers, reported and not judged.
(c) ``kkt_shrinks``: the KKT residual of each steepest-descent run's own problem at the
    snapshots after 100% train accuracy decreases from the first such snapshot to the last
    (Theorem 3.4; Adam's residuals in the max norm are reported, not judged).
(d) ``adam_switch``: paper 002 section 4.2 (with and without momentum): "Adam with the default
    hyperparameters (eps and non-zero momentum), initially, behaves similar to SD, increasing
    the l-inf margin, before it starts decreasing it, in order to slowly start increasing the l2
    margin", which needs the loss "smaller than" about eps. Per Adam run (default eps), on the
    same data seed as its SD and GD references:

    * phase 1 (100% train accuracy, before the largest gradient entry falls below eps,
      ``log max|grad| < log eps``, at ``t_eps``): the peak l-inf margin ``m_A``, reached at
      ``log calL = l``. It *follows SD* when ``log m_A`` is closer to ``log m_SD(l)`` than to
      ``log m_GD(l)``, the references' l-inf margins when THEIR loss passed the same ``l``
      (linear in ``log calL`` between checkpoints). The loss level is the common clock: the
      schedules differ (Adam constant, SD and GD decaying), so equal t means nothing, and the
      margins keep growing as the loss falls (Theorem 3.1), so comparing ``m_A`` (reached
      between ``log calL = 1`` and ``-21`` on the teacher data) with the references' values at
      their horizon (``log calL`` -400 to -1700), as this check first did, asks Adam's early
      phase to match SD's late one: stricter than the claim, which is about Adam tracking SD,
      not about reaching SD's limit. A reference that
      never passed ``l`` while at 100% train accuracy gives no comparison.
    * phase 2 (``t > t_eps``): the l-inf margin at the horizon is below ``m_A`` and the l2
      margin rises above its value at ``t_eps``, each by more than ``SWITCH_REL_CHANGE``
      (relative). The paper's order is: l-inf up, then down, then l2 "slowly" up once the loss
      is below about eps; so the l-inf fall counts from the peak, the l2 rise from ``t_eps``.
      How much of each change came before ``t_eps`` is reported too: on the teacher data the
      median run's l-inf margin starts to fall, and its l2 margin to rise, long before
      ``t_eps``, and in some runs the l-inf margin rises again after it.

    A run passes with both phases, fails with either missing; it is INCONCLUSIVE without a fit,
    without a reference at ``l``, or when it ended before ``EPS_PHASE_FACTOR * t_eps`` (the eps
    phase must last at least as long as the phase before it before a missing switch counts:
    on one run the default-eps gradients first fell below eps at the horizon itself, with no
    steps left to switch in). The claim is an observation about plotted runs (paper 002
    Figure 2), not a theorem about every run, so a label is judged like (c): PASS when more
    than half of its judged runs pass, else FAIL; INCONCLUSIVE with fewer than
    ``MIN_JUDGED_RUNS`` judged runs. The reason says WHEN (step and ``log calL`` at ``t_eps``
    against ``log eps``) and gives the medians that decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise

import numpy as np

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"

#: Optimizer families that are steepest descent (Theorem 3.1 covers them; Adam is not one).
STEEPEST_FAMILIES = ("gd", "nsd")
#: A margin change smaller than this relative amount is "no change" in check (d).
SWITCH_REL_CHANGE = 0.01
#: Check (d) judges a run only if its horizon is at least this multiple of the time at which
#: its gradient entries fell below eps (time for the second phase to show).
EPS_PHASE_FACTOR = 2.0
#: Checks (c) and (d) judge a label (an empirical claim about typical runs) on a majority of
#: at least this many runs.
MIN_JUDGED_RUNS = 3


@dataclass(frozen=True)
class CheckVerdict:
    """One check's verdict over all its subjects, with the per-subject details."""

    check: str
    verdict: str
    reason: str
    details: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain dict for JSON reports."""
        return asdict(self)


def combine(verdicts: Sequence[str]) -> str:
    """PASS when all pass, FAIL when any fails, else INCONCLUSIVE (also when empty)."""
    if not verdicts:
        return INCONCLUSIVE
    if FAIL in verdicts:
        return FAIL
    return PASS if all(v == PASS for v in verdicts) else INCONCLUSIVE


def _by_run(rows: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["run_id"], []).append(row)
    for series in out.values():
        series.sort(key=lambda r: r["t"])
    return out


# ----------------------------------------------------------------------------------------------
# (a) the soft margin is non-decreasing once calL < 1
# ----------------------------------------------------------------------------------------------

def soft_margin_drop(series: Sequence[dict]) -> dict:
    """The worst fall of the own soft margin below its running maximum after ``calL < 1``.

    Returns a dict with ``t_fit`` (first checkpoint with ``log calL < 0``; None if never),
    ``worst_drop`` (largest ``M - gamma~_t``), ``worst_ratio`` (largest drop / tolerance;
    <= 1 means within tolerance), ``worst_relative_drop`` (largest drop / (|M| h): the drop in
    units of the relative step), ``t_worst``, ``violations`` (checkpoints beyond the
    tolerance) and ``points`` (checkpoints judged). Each row carries ``homogeneity`` (L).
    """
    start = next((i for i, r in enumerate(series) if r["log_loss"] < 0), None)
    out = {"t_fit": None, "worst_drop": 0.0, "worst_ratio": 0.0, "worst_relative_drop": 0.0,
           "t_worst": None, "violations": 0, "points": 0}
    if start is None:
        return out
    out["t_fit"] = series[start]["t"]
    best = series[start]["soft_margin_own"]
    steps_since = [series[start]["rel_step"]]
    for row in series[start + 1:]:
        value = row["soft_margin_own"]
        out["points"] += 1
        drop = best - value
        h = max(steps_since)
        tol = soft_margin_tolerance(best, h, row["homogeneity"])
        ratio = _ratio(drop, tol)
        if drop > out["worst_drop"]:
            out["worst_drop"], out["t_worst"] = drop, row["t"]
        out["worst_ratio"] = max(out["worst_ratio"], ratio)
        out["worst_relative_drop"] = max(out["worst_relative_drop"], _ratio(drop, abs(best) * h))
        out["violations"] += int(ratio > 1.0)
        if value >= best:
            best, steps_since = value, []
        steps_since.append(row["rel_step"])
    return out


def soft_margin_tolerance(running_max: float, h: float, homogeneity: int) -> float:
    """``|M| (1 - (1 + h)^(-L))``: the most one descent step of relative size ``h`` can take
    away from a soft margin ``M`` of an L-homogeneous model (see the module docstring)."""
    return abs(running_max) * -math.expm1(-homogeneity * math.log1p(h))


def _ratio(drop: float, tol: float) -> float:
    return drop / tol if tol > 0 else (math.inf if drop > 0 else 0.0)


def check_soft_margin(rows: Sequence[dict]) -> CheckVerdict:
    """Check (a) (see the module docstring). Per algorithm: FAIL if any run violates the
    tolerance, PASS if every run that reached ``calL < 1`` stays within it, INCONCLUSIVE if
    none did."""
    details, per_algorithm = [], {}
    for run_id, series in _by_run(rows).items():
        info = soft_margin_drop(series)
        if series[0]["family"] not in STEEPEST_FAMILIES:
            details.append({"run_id": run_id, "algorithm": series[0]["algorithm"],
                            "model": series[0]["model"], "verdict": "not claimed", **info})
            continue
        if info["t_fit"] is None or info["points"] < 2:
            verdict = INCONCLUSIVE
        else:
            verdict = PASS if info["violations"] == 0 else FAIL
        label = (series[0]["algorithm"], series[0]["model"])
        per_algorithm.setdefault(label, []).append(verdict)
        details.append({"run_id": run_id, "algorithm": label[0], "model": label[1],
                        "verdict": verdict, **info})
    summary, verdicts = [], []
    for (label, model), runs in per_algorithm.items():
        judged = [v for v in runs if v != INCONCLUSIVE]
        verdict = combine(judged)
        verdicts.append(verdict)
        mine = [d for d in details if d["algorithm"] == label and d["model"] == model]
        worst = max((d["worst_ratio"] for d in mine), default=0.0)
        relative = max((d["worst_relative_drop"] for d in mine), default=0.0)
        summary.append(f"{label}: {verdict} ({runs.count(PASS)} within, {runs.count(FAIL)} "
                       f"beyond, {runs.count(INCONCLUSIVE)} never reached calL < 1; worst "
                       f"drop/tol {worst:.3g}, worst drop/(|M| h) {relative:.3g})")
    others = sorted({d["algorithm"] for d in details if d["verdict"] == "not claimed"})
    if others:
        summary.append(f"not claimed (not steepest descent), drops recorded only: "
                       f"{', '.join(others)}")
    reason = "; ".join(summary) + (". Tolerance: |running max M| (1 - (1 + h)^-L), h the largest "
                                   "relative step N(dtheta)/N(theta) since M was set: the most "
                                   "one step can take away without raising the loss")
    return CheckVerdict("a_soft_margin_nondecreasing", combine(verdicts), reason, details)


# ----------------------------------------------------------------------------------------------
# (b) each algorithm reaches the largest margin in its own norm
# ----------------------------------------------------------------------------------------------

def check_own_margin_largest(rows: Sequence[dict], compared: dict[str, Sequence[str]],
                             reported: dict[str, Sequence[str]] | None = None) -> CheckVerdict:
    """Check (b). ``compared`` maps a model name to the algorithm labels compared on it;
    ``reported`` likewise to a group whose numbers are given with the verdict "reported"
    (not judged, left out of the combined verdict)."""
    finals = {run_id: series[-1] for run_id, series in _by_run(rows).items()}
    details, verdicts = [], []
    groups = [(model, labels, True) for model, labels in compared.items()]
    groups += [(model, labels, False) for model, labels in (reported or {}).items()]
    for model, labels, judged in groups:
        final = [r for r in finals.values() if r["model"] == model and r["algorithm"] in labels]
        own = {r["algorithm"]: r["own_norm"] for r in final}
        for label in labels:
            if label not in own:
                continue
            norm = own[label]
            medians, fitted = {}, {}
            for other in labels:
                runs = [r for r in final if r["algorithm"] == other]
                ok = [r[f"nmargin_{norm}"] for r in runs if in_late_phase(r)]
                fitted[other] = f"{len(ok)}/{len(runs)}"
                medians[other] = float(np.median(ok)) if 2 * len(ok) >= len(runs) else None
            mine = medians[label]
            rivals = {k: v for k, v in medians.items() if k != label and v is not None}
            if not judged:
                verdict = "reported"
            elif mine is None or not rivals:
                verdict = INCONCLUSIVE
            else:
                verdict = PASS if all(mine > v for v in rivals.values()) else FAIL
            wins = _seed_wins(final, label, norm)
            if judged:
                verdicts.append(verdict)
            details.append({"model": model, "algorithm": label, "norm": norm,
                            "verdict": verdict, "median_final_margin": medians,
                            "runs_in_late_phase": fitted, "seed_win_fraction": wins})
    reason = "; ".join(_own_margin_line(d) for d in details) or "no compared algorithms"
    return CheckVerdict("b_own_margin_largest", combine(verdicts), reason + (
        ". Medians over the runs in the late phase (100% train accuracy and calL < 1) at the "
        "horizon, '-' with fewer than half the runs there; each group from one init scale; "
        "'reported' groups (outside the small-init regime) are not judged"), details)


def _own_margin_line(detail: dict) -> str:
    """``label (model, norm): VERDICT: median margins label m > rival m', ... (late-phase runs
    k/n each); strictly largest on x% of the seeds``."""
    medians = detail["median_final_margin"]
    values = ", ".join(f"{k} {'-' if v is None else f'{v:.4g}'} ({detail['runs_in_late_phase'][k]})"
                       for k, v in medians.items())
    wins = detail["seed_win_fraction"]
    return (f"{detail['algorithm']} ({detail['model']}, {detail['norm']}): {detail['verdict']}: "
            f"median {detail['norm']} margins {values}; largest on "
            f"{'-' if wins is None else f'{wins:.0%}'} of the seeds")


def in_late_phase(row: dict) -> bool:
    """Whether a checkpoint row is in the late phase the claims are about: 100% train accuracy
    and calL < 1."""
    return row["train_acc"] == 1.0 and row["log_loss"] < 0


def _seed_wins(final: Sequence[dict], label: str, norm: str) -> float | None:
    """Fraction of data seeds where ``label`` has the strictly largest ``norm`` margin among
    the runs at 100% train accuracy on that seed (seeds where it did not fit are skipped)."""
    seeds: dict[int, dict[str, float]] = {}
    for r in final:
        if in_late_phase(r):
            seeds.setdefault(r["data_seed"], {})[r["algorithm"]] = r[f"nmargin_{norm}"]
    judged = [s for s in seeds.values() if label in s and len(s) > 1]
    if not judged:
        return None
    return sum(all(s[label] > v for k, v in s.items() if k != label) for s in judged) / len(
        judged)


# ----------------------------------------------------------------------------------------------
# (c) the KKT residual shrinks
# ----------------------------------------------------------------------------------------------

def check_kkt_shrinks(kkt: dict[str, list[dict]], meta: dict[str, dict]) -> CheckVerdict:
    """Check (c). ``kkt[run_id]`` lists ``{"t", "total", ...}`` at the snapshots after 100%
    train accuracy, in time order; ``meta[run_id]`` gives ``algorithm`` and ``model``."""
    groups: dict[tuple[str, str], list[float]] = {}
    for run_id, points in kkt.items():
        if meta[run_id]["family"] not in STEEPEST_FAMILIES:
            continue
        if len(points) >= 2:
            key = (meta[run_id]["algorithm"], meta[run_id]["model"])
            groups.setdefault(key, []).append(points[-1]["total"] / max(points[0]["total"],
                                                                         1e-300))
    details, verdicts = [], []
    for (label, model), ratios in sorted(groups.items()):
        median = float(np.median(ratios))
        shrank = sum(r < 1.0 for r in ratios)
        if len(ratios) < MIN_JUDGED_RUNS:
            verdict = INCONCLUSIVE
        else:
            verdict = PASS if median < 1.0 and shrank > len(ratios) / 2 else FAIL
        verdicts.append(verdict)
        details.append({"algorithm": label, "model": model, "verdict": verdict,
                        "runs": len(ratios), "runs_shrunk": shrank,
                        "median_last_over_first": median})
    judged = {meta[r]["algorithm"] for r in kkt if meta[r]["family"] in STEEPEST_FAMILIES}
    missing = sorted(judged - {d["algorithm"] for d in details})
    reason = "; ".join(f"{d['algorithm']}: median last/first {d['median_last_over_first']:.3g}"
                       f" ({d['runs_shrunk']}/{d['runs']} shrank)" for d in details)
    if missing:
        reason += f"; fewer than 2 snapshots after 100% train accuracy: {', '.join(missing)}"
    return CheckVerdict("c_kkt_residual_shrinks", combine(verdicts), reason or "no runs",
                        details)


# ----------------------------------------------------------------------------------------------
# (d) Adam with the default eps: first SD-like, then the switch toward l2
# ----------------------------------------------------------------------------------------------

def margin_at_loss(series: Sequence[dict], level: float, key: str = "nmargin_max"
                   ) -> float | None:
    """A run's ``key`` margin when its ``log calL`` first passed ``level`` at 100% train
    accuracy: geometric interpolation between the two checkpoints around the crossing
    (``log margin`` linear in ``log calL``). None if the run never got there while fitted, or
    was already below ``level`` at its first fitted checkpoint (no value at that loss)."""
    fitted = [r for r in series if r["train_acc"] == 1.0 and r[key] > 0]
    for before, after in pairwise(fitted):
        if before["log_loss"] > level >= after["log_loss"]:
            w = (before["log_loss"] - level) / (before["log_loss"] - after["log_loss"])
            return math.exp((1 - w) * math.log(before[key]) + w * math.log(after[key]))
    return None


def adam_switch(series: Sequence[dict], sd: Sequence[dict] | None, gd: Sequence[dict] | None,
                eps: float) -> dict:
    """Phase analysis of one Adam run against the SD and GD runs on the same data seed
    (see the module docstring, check (d))."""
    info = {"t_peak_max_margin": None, "follows_sd": None, "switched": None,
            "peak_max_margin": None, "log_loss_at_peak": None, "log_grad_at_peak": None,
            "sd_max_margin_at_peak_loss": None, "gd_max_margin_at_peak_loss": None,
            "log_eps": math.log(eps), "grad_below_eps_at": None, "log_loss_at_eps": None,
            "max_margin_drop": None, "l2_margin_rise": None, "max_margin_drop_by_eps": None,
            "l2_margin_rise_before_eps": None}
    below = next((r for r in series if r["log_grad_max"] < math.log(eps)), None)
    t_eps = series[-1]["t"] if below is None else below["t"]
    if below is not None:
        info.update(grad_below_eps_at=below["t"], log_loss_at_eps=below["log_loss"])
    phase1 = [r for r in series if r["train_acc"] == 1.0 and r["t"] <= t_eps]
    if not phase1:
        return info
    peak = max(phase1, key=lambda r: r["nmargin_max"])
    last = series[-1]
    info.update(t_peak_max_margin=peak["t"], peak_max_margin=peak["nmargin_max"],
                log_loss_at_peak=peak["log_loss"], log_grad_at_peak=peak["log_grad_max"],
                max_margin_drop=(peak["nmargin_max"] - last["nmargin_max"]) / abs(
                    peak["nmargin_max"]))
    if below is not None:
        info["l2_margin_rise"] = (last["nmargin_fro"] - below["nmargin_fro"]) / abs(
            below["nmargin_fro"])
        info["max_margin_drop_by_eps"] = (peak["nmargin_max"] - below["nmargin_max"]) / abs(
            peak["nmargin_max"])
        info["l2_margin_rise_before_eps"] = (below["nmargin_fro"] - peak["nmargin_fro"]) / abs(
            peak["nmargin_fro"])
        info["switched"] = bool(info["max_margin_drop"] > SWITCH_REL_CHANGE
                                and info["l2_margin_rise"] > SWITCH_REL_CHANGE)
    if sd and gd and peak["nmargin_max"] > 0:
        m_sd = margin_at_loss(sd, peak["log_loss"])
        m_gd = margin_at_loss(gd, peak["log_loss"])
        info.update(sd_max_margin_at_peak_loss=m_sd, gd_max_margin_at_peak_loss=m_gd)
        if m_sd is not None and m_gd is not None:
            own = math.log(peak["nmargin_max"])
            info["follows_sd"] = bool(abs(own - math.log(m_sd)) < abs(own - math.log(m_gd)))
    return info


def check_adam_switch(rows: Sequence[dict], adam_labels: Sequence[str], sd_label: str | None,
                      gd_label: str | None, reported_labels: Sequence[str] = ()
                      ) -> CheckVerdict:
    """Check (d) for the Adam runs with the given labels (the default-eps ones). The runs of
    ``reported_labels`` (e.g. a larger eps) get the same phase analysis, reported and not
    judged. Per label the reason gives the run counts and the medians that decide: when the
    largest gradient entry fell below eps (step, ``log calL`` then against ``log eps``), the
    phase-1 peak l-inf margin against SD's and GD's at the same loss, and the phase-2 l-inf
    drop and l2 rise."""
    runs = _by_run(rows)
    by_seed = {(s[0]["algorithm"], s[0]["data_seed"], s[0]["model"]): s for s in runs.values()}
    details = []
    for series in runs.values():
        head = series[0]
        judged = head["algorithm"] in adam_labels
        if not judged and head["algorithm"] not in reported_labels:
            continue
        key = (head["data_seed"], head["model"])
        info = adam_switch(series, by_seed.get((sd_label, *key)), by_seed.get((gd_label, *key)),
                           float(head["hyper"].get("eps", 0.0)) or 1e-300)
        reached_eps = info["grad_below_eps_at"] is not None and (
            series[-1]["t"] >= EPS_PHASE_FACTOR * info["grad_below_eps_at"])
        if not judged:
            verdict = "reported"
        elif info["follows_sd"] is None or not reached_eps:
            verdict = INCONCLUSIVE
        else:
            verdict = PASS if info["follows_sd"] and info["switched"] else FAIL
        details.append({"run_id": head["run_id"], "algorithm": head["algorithm"],
                        "verdict": verdict, **info})
    verdicts, parts = [], []
    for label in dict.fromkeys(d["algorithm"] for d in details):
        mine = [d for d in details if d["algorithm"] == label]
        text = _switch_numbers(label, mine)
        if label in adam_labels:
            passed = sum(d["verdict"] == PASS for d in mine)
            judged = passed + sum(d["verdict"] == FAIL for d in mine)
            if judged < MIN_JUDGED_RUNS:
                verdict = INCONCLUSIVE
            else:
                verdict = PASS if passed > judged / 2 else FAIL
            verdicts.append(verdict)
            text = (f"{label}: {verdict} ({passed}/{judged} judged runs show both phases, "
                    f"{len(mine) - judged} inconclusive){text}")
        else:
            text = f"{label} (reported, not judged){text}"
        parts.append(text)
    missing = [label for label in adam_labels if label not in {d["algorithm"] for d in details}]
    parts += [f"{label}: no runs" for label in missing]
    verdicts += [INCONCLUSIVE] * len(missing)
    reason = ("; ".join(parts) or "no Adam runs") + (
        ". Rule: phase 1 follows SD if the peak l-inf margin before max|grad| < eps is closer "
        "(log scale) to SD's than to GD's l-inf margin at the same log calL; phase 2: after "
        f"that, l-inf falls and l2 rises by > {SWITCH_REL_CHANGE:.0%}; a run is judged if it "
        f"fitted, both references passed that loss, and T >= {EPS_PHASE_FACTOR:g} t_eps; a "
        "label passes on a majority of its judged runs")
    return CheckVerdict("d_adam_switch", combine(verdicts), reason, details)


def _median(details: Sequence[dict], key: str) -> float | None:
    values = [d[key] for d in details if d[key] is not None]
    return float(np.median(values)) if values else None


def _switch_numbers(label: str, details: Sequence[dict]) -> str:
    """One label's phase numbers over its runs (medians): when the eps regime came (runs that
    fitted before it; a run with a dead-ReLU sample, ``f(x_i) = 0``, also loses its gradient
    without fitting), phase 1 against the references at the same loss, phase 2."""
    fitted = [d for d in details if d["t_peak_max_margin"] is not None]
    reached = [d for d in fitted if d["grad_below_eps_at"] is not None]
    text = f": {len(reached)}/{len(fitted)} fitted runs reached max|grad| < eps"
    if reached:
        text += (f" at median t {_median(reached, 'grad_below_eps_at'):.4g}, log calL then "
                 f"{_median(reached, 'log_loss_at_eps'):.3g} vs log eps "
                 f"{reached[0]['log_eps']:.3g}")
    compared = [d for d in fitted if d["follows_sd"] is not None]
    if compared:
        text += (f"; phase 1: peak l-inf margin {_median(compared, 'peak_max_margin'):.3g} at "
                 f"log calL {_median(compared, 'log_loss_at_peak'):.3g}, SD "
                 f"{_median(compared, 'sd_max_margin_at_peak_loss'):.3g} and GD "
                 f"{_median(compared, 'gd_max_margin_at_peak_loss'):.3g} at that loss, closer "
                 f"to SD in {sum(d['follows_sd'] for d in compared)}/{len(compared)}")
    if reached:
        text += (f"; phase 2: l-inf margin fell {_median(reached, 'max_margin_drop'):.1%} from "
                 f"the peak to T ({_median(reached, 'max_margin_drop_by_eps'):.1%} already by "
                 f"t_eps), l2 margin rose {_median(reached, 'l2_margin_rise'):.1%} after t_eps "
                 f"({_median(reached, 'l2_margin_rise_before_eps'):.1%} from the peak to "
                 f"t_eps), both > {SWITCH_REL_CHANGE:.0%} in "
                 f"{sum(bool(d['switched']) for d in reached)}/{len(reached)}")
    return text
