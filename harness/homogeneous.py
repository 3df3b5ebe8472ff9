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
    (INCONCLUSIVE when it is the one judged, left out when it is a rival).
(c) ``kkt_shrinks``: the KKT residual of each steepest-descent run's own problem at the
    snapshots after 100% train accuracy decreases from the first such snapshot to the last
    (Theorem 3.4; Adam's residuals in the max norm are reported, not judged).
(d) ``adam_switch``: Adam with the default eps first follows SD (its peak l-inf margin
    before its gradient entries fall below eps, ``log max|grad| < log eps``, is closer in log
    scale to SD's final l-inf margin than to GD's on the same data: it maximizes the l-inf
    margin rather than the l2 one; the schedules differ, so values reached are compared, not
    values at equal t), then after that time the l-inf margin falls from that peak and the l2
    margin rises above its value at that time (each by more than 1%). Judged only for runs
    whose gradient entries fell below eps before the horizon (PASS: both phases seen; FAIL: a
    phase missing); INCONCLUSIVE otherwise, and also when the run ended before twice the time
    at which it reached eps (the eps phase must last at least as long as the phase before it,
    ``T >= 2 t_eps``, before a missing switch counts: on one run the default-eps gradients first
    fell below eps at the horizon itself, with no steps left to switch in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"

#: Optimizer families that are steepest descent (Theorem 3.1 covers them; Adam is not one).
STEEPEST_FAMILIES = ("gd", "nsd")
#: A margin change smaller than this relative amount is "no change" in check (d).
SWITCH_REL_CHANGE = 0.01
#: Check (d) judges a run only if its horizon is at least this multiple of the time at which
#: its gradient entries fell below eps (time for the second phase to show).
EPS_PHASE_FACTOR = 2.0


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

def check_own_margin_largest(rows: Sequence[dict], compared: dict[str, Sequence[str]]
                             ) -> CheckVerdict:
    """Check (b). ``compared`` maps a model name to the algorithm labels compared on it."""
    finals = {run_id: series[-1] for run_id, series in _by_run(rows).items()}
    details, verdicts = [], []
    for model, labels in compared.items():
        final = [r for r in finals.values() if r["model"] == model and r["algorithm"] in labels]
        own = {r["algorithm"]: r["own_norm"] for r in final}
        for label in labels:
            if label not in own:
                continue
            norm = own[label]
            medians, fitted = {}, {}
            for other in labels:
                runs = [r for r in final if r["algorithm"] == other]
                ok = [r[f"nmargin_{norm}"] for r in runs if _late_phase(r)]
                fitted[other] = f"{len(ok)}/{len(runs)}"
                medians[other] = float(np.median(ok)) if 2 * len(ok) >= len(runs) else None
            mine = medians[label]
            rivals = {k: v for k, v in medians.items() if k != label and v is not None}
            if mine is None or not rivals:
                verdict = INCONCLUSIVE
            else:
                verdict = PASS if all(mine > v for v in rivals.values()) else FAIL
            wins = _seed_wins(final, label, norm)
            verdicts.append(verdict)
            details.append({"model": model, "algorithm": label, "norm": norm,
                            "verdict": verdict, "median_final_margin": medians,
                            "runs_at_100pct_train": fitted, "seed_win_fraction": wins})
    reason = "; ".join(f"{d['algorithm']} ({d['model']}, {d['norm']}): {d['verdict']}"
                       for d in details) or "no compared algorithms"
    return CheckVerdict("b_own_margin_largest", combine(verdicts), reason, details)


def _late_phase(row: dict) -> bool:
    """A run is in the late phase the claims are about: 100% train accuracy and calL < 1."""
    return row["train_acc"] == 1.0 and row["log_loss"] < 0


def _seed_wins(final: Sequence[dict], label: str, norm: str) -> float | None:
    """Fraction of data seeds where ``label`` has the strictly largest ``norm`` margin among
    the runs at 100% train accuracy on that seed (seeds where it did not fit are skipped)."""
    seeds: dict[int, dict[str, float]] = {}
    for r in final:
        if _late_phase(r):
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
        if len(ratios) < 3:
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

def adam_switch(series: Sequence[dict], sd: Sequence[dict] | None, gd: Sequence[dict] | None,
                eps: float) -> dict:
    """Phase analysis of one Adam run against the SD and GD runs on the same data seed."""
    info = {"t_peak_max_margin": None, "follows_sd": None, "switched": None,
            "log_loss_at_peak": None, "log_grad_at_peak": None, "log_eps": math.log(eps),
            "grad_below_eps_at": None, "log_loss_at_eps": None, "max_margin_drop": None,
            "l2_margin_rise": None}
    below = next((r for r in series if r["log_grad_max"] < math.log(eps)), None)
    t_eps = series[-1]["t"] if below is None else below["t"]
    if below is not None:
        info.update(grad_below_eps_at=below["t"], log_loss_at_eps=below["log_loss"])
    phase1 = [r for r in series if r["train_acc"] == 1.0 and r["t"] <= t_eps]
    if not phase1:
        return info
    peak = max(phase1, key=lambda r: r["nmargin_max"])
    last = series[-1]
    info.update(t_peak_max_margin=peak["t"], log_loss_at_peak=peak["log_loss"],
                log_grad_at_peak=peak["log_grad_max"],
                max_margin_drop=(peak["nmargin_max"] - last["nmargin_max"]) / abs(
                    peak["nmargin_max"]))
    if below is not None:
        info["l2_margin_rise"] = (last["nmargin_fro"] - below["nmargin_fro"]) / abs(
            below["nmargin_fro"])
    if sd and gd and sd[-1]["nmargin_max"] > 0 and gd[-1]["nmargin_max"] > 0 and peak[
            "nmargin_max"] > 0:
        own = math.log(peak["nmargin_max"])
        info["sd_final_max_margin"] = sd[-1]["nmargin_max"]
        info["gd_final_max_margin"] = gd[-1]["nmargin_max"]
        info["follows_sd"] = bool(abs(own - math.log(sd[-1]["nmargin_max"]))
                                  < abs(own - math.log(gd[-1]["nmargin_max"])))
    if below is not None:
        info["switched"] = bool(info["max_margin_drop"] > SWITCH_REL_CHANGE
                                and info["l2_margin_rise"] > SWITCH_REL_CHANGE)
    return info


def check_adam_switch(rows: Sequence[dict], adam_labels: Sequence[str], sd_label: str | None,
                      gd_label: str | None, reported_labels: Sequence[str] = ()
                      ) -> CheckVerdict:
    """Check (d) for the Adam runs with the given labels (the default-eps ones). The runs of
    ``reported_labels`` (e.g. a larger eps) get the same phase analysis, reported and not
    judged. The reason states WHEN per label: the median step at which the largest gradient
    entry fell below eps and the median ``log calL`` then, against ``log eps``."""
    runs = _by_run(rows)
    by_seed = {(s[0]["algorithm"], s[0]["data_seed"], s[0]["model"]): s for s in runs.values()}
    details, verdicts = [], []
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
        elif info["t_peak_max_margin"] is None or info["follows_sd"] is None or not reached_eps:
            verdict = INCONCLUSIVE
        else:
            verdict = PASS if info["follows_sd"] and info["switched"] else FAIL
        if judged:
            verdicts.append(verdict)
        details.append({"run_id": head["run_id"], "algorithm": head["algorithm"],
                        "verdict": verdict, **info})
    mine = [d for d in details if d["verdict"] != "reported"]
    counts = {v: sum(d["verdict"] == v for d in mine) for v in (PASS, FAIL, INCONCLUSIVE)}
    reason = (f"{counts[PASS]} runs followed SD then switched toward l2, {counts[FAIL]} did "
              f"not, {counts[INCONCLUSIVE]} inconclusive (no fit, no SD/GD reference, or the "
              f"gradient did not fall below eps before half the horizon)")
    timing = [_switch_timing(label, [d for d in details if d["algorithm"] == label])
              for label in dict.fromkeys(d["algorithm"] for d in details)]
    if timing:
        reason += ". When: " + "; ".join(timing)
    return CheckVerdict("d_adam_switch", combine(verdicts), reason, details)


def _switch_timing(label: str, details: Sequence[dict]) -> str:
    """One label's eps-regime timing over its runs that fitted (100% train accuracy before
    the eps regime; a run with dead-ReLU samples, f(x_i) = 0, also loses its gradient without
    fitting): how many reached it, median step and ``log calL`` when the largest gradient
    entry first fell below eps, and how many of those switched."""
    fitted = [d for d in details if d["t_peak_max_margin"] is not None]
    reached = [d for d in fitted if d["grad_below_eps_at"] is not None]
    text = f"{label}: {len(reached)}/{len(fitted)} fitted runs reached max|grad| < eps"
    if reached:
        t = float(np.median([d["grad_below_eps_at"] for d in reached]))
        loss = float(np.median([d["log_loss_at_eps"] for d in reached]))
        switched = sum(bool(d["switched"]) for d in reached)
        text += (f" (median t {t:.4g}, median log calL then {loss:.3g} vs log eps "
                 f"{reached[0]['log_eps']:.3g}; {switched} switched toward l2)")
    return text
