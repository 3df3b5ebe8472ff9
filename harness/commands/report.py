"""Rate table of a sweep: the fitted margin-gap exponent with its confidence interval for every
(algorithm, a) of the grid, next to THEORY.md section 4's bound, with verdicts, and a plot of
fitted exponent against a per family with the bound's exponent as the theory curve.

Reads SWEEP_DIR/sweep.toml (written by python -m harness sweep) and the runs of that spec from
SWEEP_DIR/batches/*.parquet; writes SWEEP_DIR/report/{rates.md, rates.json,
exponent_vs_a.png, gaps_<label>.png}. Fits and verdicts are harness.rates' (onset detection,
tail fit of the gap in the algorithm's own norm, across-seed confidence interval); see its
docstring for the thresholds, which are printed in the report.

Exit codes: 0 report written, 2 bad input (no sweep there, or no stored runs).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.cli import EXIT_OK
from harness.errors import HarnessInputError

HELP = "rate table and exponent-vs-a plot of a sweep directory (python -m harness sweep)"

#: Points of the theory curve per unit of a.
_CURVE_POINTS = 400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The report command's options."""
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR",
                        help="a directory written by python -m harness sweep")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where to write the report (default: SWEEP_DIR/report)")


@dataclass(frozen=True)
class GroupKey:
    """The runs that share a rate-table line: same algorithm settings, a, eta0, horizon and
    problem size; they differ by data seed."""

    label: str
    family: str
    a: float
    eta0: float
    horizon: int
    n: int
    d: int


@dataclass(frozen=True)
class RateLine:
    """One line of the rate table: the group, its judged verdict (None: no bound stated for
    this family and a) and how many of the spec's runs were stored."""

    key: GroupKey
    verdict: object | None
    bound_text: str
    stored: int
    expected: int


def _betas(hyper: dict) -> tuple[float, ...]:
    return tuple(float(hyper[name]) for name in ("beta1", "beta2") if name in hyper)


def _nan_step(t: np.ndarray, *columns: np.ndarray) -> int | None:
    bad = np.zeros(t.shape, dtype=bool)
    for column in columns:
        bad |= ~np.isfinite(column)
    return int(t[np.flatnonzero(bad)[0]]) if bad.any() else None


def judge_group(rows: list[dict], key: GroupKey):
    """Fit every run of one group on its tail and combine the fits (harness.rates).

    The gap is measured in the algorithm's own norm (``gap_own``) from ``t = 1`` on: at
    ``t = 0`` the iterate is ``W = 0`` and has no direction. The onset ``t0`` comes from
    ``log G`` and the EMA's forgetting rate; gaps below ``gap_floor_rel * gamma`` are at the
    reference's resolution. Returns the :class:`harness.rates.RateVerdict`, or None when
    THEORY.md states no bound for this family and ``a``.
    """
    from harness.curves import run_series
    from harness.rates import THRESHOLDS, detect_onset, fit_tail, forgetting_rate, judge, rate_bound

    try:
        envelope = rate_bound(key.family, key.a, key.n, key.d)
    except HarnessInputError:
        return None
    rate = forgetting_rate(key.family, _betas(rows[0]["hyper"]))
    columns = {name: run_series(rows, name) for name in
               ("gap_own", "norm_own", "nmargin_own", "log_proxy", "log_loss")}
    fits = []
    for run_id in sorted(columns["gap_own"]):
        t, gap = columns["gap_own"][run_id]
        keep = t >= 1
        series = {name: columns[name][run_id][1][keep] for name in columns}
        t = t[keep]
        gamma = float(np.nanmedian(series["gap_own"] + series["nmargin_own"]))
        t0 = detect_onset(t, series["log_proxy"], rate)
        fits.append(fit_tail(
            run_id, t, series["gap_own"], envelope, t0=t0, norm=series["norm_own"],
            floor=THRESHOLDS.gap_floor_rel * abs(gamma) if math.isfinite(gamma) else 0.0,
            nan_step=_nan_step(t, series["log_loss"], series["norm_own"])))
    return judge(fits, envelope)


def rate_lines(spec, rows: list[dict]) -> list[RateLine]:
    """Group the stored rows of the spec's runs and judge each group (table order: the spec's
    algorithms in file order, then a, eta0, horizon)."""
    expected: dict[tuple, int] = {}
    for run in spec.runs:
        part = (run.label, run.a, run.eta0, run.steps)
        expected[part] = expected.get(part, 0) + 1
    labels = list(dict.fromkeys(run.label for run in spec.runs))
    groups: dict[GroupKey, list[dict]] = {}
    for row in rows:
        key = GroupKey(row["label"], row["family"], float(row["a"]), float(row["eta0"]),
                       int(row["horizon"]), int(row["n"]), int(row["d"]))
        groups.setdefault(key, []).append(row)
    lines = []
    for key in sorted(groups, key=lambda k: (labels.index(k.label), k.a, k.eta0, k.horizon)):
        members = groups[key]
        verdict = judge_group(members, key)
        stored = len({row["config_hash"] for row in members})
        lines.append(RateLine(key, verdict, verdict.bound_text if verdict else "no bound stated",
                              stored, expected[(key.label, key.a, key.eta0, key.horizon)]))
    return lines


def _fraction(a: float) -> str:
    from fractions import Fraction

    frac = Fraction(a).limit_denominator(12)
    return str(frac) if abs(float(frac) - a) < 1e-12 else f"{a:g}"


def markdown(spec, lines: Sequence[RateLine], stored_runs: int, provenance: dict) -> str:
    """The report text: the rate table, the thresholds and the provenance."""
    from harness.rates import THRESHOLDS
    from harness.report import markdown_table

    table = []
    for line in lines:
        v, k = line.verdict, line.key
        ci = v.exponent_ci if v is not None else None
        table.append([k.label, k.family, _fraction(k.a), k.eta0, k.horizon,
                      f"{line.stored}/{line.expected}",
                      v.exponent if v is not None else None,
                      f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else None,
                      v.bound_exponent if v is not None else None, line.bound_text,
                      v.verdict if v is not None else "-"])
    reasons = [f"- {line.key.label}, a = {_fraction(line.key.a)}, eta0 = {line.key.eta0:g}, "
               f"T = {line.key.horizon}: {line.verdict.reason}"
               for line in lines if line.verdict is not None]
    thresholds = ", ".join(f"{k} = {v}" for k, v in THRESHOLDS.as_dict().items())
    return "\n".join([
        f"# Sweep {spec.name}: margin-gap rates across the grid", "",
        spec.description, "",
        f"{stored_runs} of {len(spec.runs)} runs stored. Gap in each algorithm's own norm; "
        "exponent = slope of log gap vs log t on the tail (mean over seeds, "
        f"{THRESHOLDS.confidence:.0%} CI); bound = THEORY.md section 4 (an upper bound: a "
        "more negative fitted exponent passes).", "",
        markdown_table(["algorithm", "family", "a", "eta0", "T", "runs", "fitted exponent",
                        "CI", "bound exponent", "bound", "verdict"], table), "",
        "![fitted exponent vs a](exponent_vs_a.png)", "",
        "## Verdict reasons", "", *reasons, "",
        f"Thresholds: {thresholds}.", "",
        f"Provenance: harness {provenance['versions'].get('harness')}, git "
        f"{provenance['git_commit']}, torch {provenance['versions'].get('torch')}, "
        f"numpy {provenance['versions'].get('numpy')}; report made on "
        f"{provenance['device']}. Per-row provenance (versions, commit, device of the "
        "worker) is in the Parquet columns.", ""])


def plot_exponents(lines: Sequence[RateLine], path: Path) -> Path:
    """Fitted exponent (mean and CI over seeds) against a, one panel per family, each
    algorithm a colour, with the bound's exponent over a as the theory curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from harness.rates import rate_bound
    from harness.storage import save_figure_atomic

    families = list(dict.fromkeys(line.key.family for line in lines))
    fig = Figure(figsize=(5.4 * len(families), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(families), squeeze=False)[0]
    for ax, family in zip(axes, families, strict=True):
        members = [line for line in lines if line.key.family == family]
        grid = np.linspace(0.0, 1.0, _CURVE_POINTS + 1)
        curve = []
        for a in grid:
            try:
                curve.append(rate_bound(family, float(a), 1, 1).exponent)
            except HarnessInputError:
                curve.append(math.nan)
        ax.plot(grid, curve, "k-", lw=1.2, label="bound exponent (THEORY.md 4)")
        labels = list(dict.fromkeys(line.key.label for line in members))
        for i, label in enumerate(labels):
            pts = [(line.key.a, line.verdict.exponent, line.verdict.exponent_ci)
                   for line in members if line.key.label == label and line.verdict is not None
                   and line.verdict.exponent is not None]
            if not pts:
                continue
            a, mean, ci = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]),
                           np.array([p[2] for p in pts]))
            ax.errorbar(a, mean, yerr=np.abs(ci.T - mean), fmt="o-", color=f"C{i}",
                        capsize=3, lw=1, label=f"{label} (fitted)")
        ax.set_xlabel("step exponent a  (eta_t = eta0 (t+1)^-a)")
        ax.set_ylabel("margin-gap exponent")
        ax.set_title(f"{family}: fitted exponent vs a", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return save_figure_atomic(fig, path)


def run(args: argparse.Namespace) -> int:
    """Read the sweep, judge every group, write Markdown, JSON and plots."""
    from harness.provenance import provenance
    from harness.report import plot_gaps
    from harness.results_store import ResultsStore
    from harness.storage import write_json_atomic, write_text_atomic
    from harness.sweep import load_sweep

    source = args.sweep_dir / "sweep.toml"
    if not source.is_file():
        raise HarnessInputError(f"{args.sweep_dir} is not a sweep directory (no sweep.toml; "
                                "run python -m harness sweep SPEC.toml --out DIR first)")
    spec = load_sweep(source)
    labels = {run.config_hash: run.label for run in spec.runs}
    rows = ResultsStore(args.sweep_dir).read_rows(labels)
    for row in rows:  # labels are not part of the content hash: the spec's current ones count
        row["label"] = labels[row["config_hash"]]
    if not rows:
        raise HarnessInputError(f"no stored runs of sweep {spec.name} in {args.sweep_dir}")
    out = args.out if args.out is not None else args.sweep_dir / "report"
    lines = rate_lines(spec, rows)
    stored_runs = len({row["config_hash"] for row in rows})
    block = provenance(seeds=sorted({int(row["data_seed"]) for row in rows}))
    write_text_atomic(out / "rates.md", markdown(spec, lines, stored_runs, block))
    write_json_atomic(out / "rates.json", {
        "schema_version": block["schema_version"], "provenance": block, "sweep": spec.name,
        "runs": len(spec.runs), "stored_runs": stored_runs,
        "lines": [{**vars(line.key), "stored": line.stored, "expected": line.expected,
                   "bound": line.bound_text,
                   "rate": line.verdict.as_dict() if line.verdict is not None else None}
                  for line in lines]})
    plot_exponents(lines, out / "exponent_vs_a.png")
    for label in dict.fromkeys(row["label"] for row in rows):
        plot_gaps([row for row in rows if row["label"] == label], "own",
                  out / f"gaps_{label}.png", group_by="a",
                  title=f"{label}: margin gap in its own norm (colour: a)")
    print(f"{'algorithm':<14} {'a':>5} {'T':>8} {'exponent':>9} {'CI':>19} {'bound':>7}  verdict")
    for line in lines:
        v, k = line.verdict, line.key
        ci = f"[{v.exponent_ci[0]:.3f}, {v.exponent_ci[1]:.3f}]" if v and v.exponent_ci else "-"
        exponent = f"{v.exponent:.3f}" if v and v.exponent is not None else "-"
        bound = f"{v.bound_exponent:.3f}" if v else "-"
        print(f"{k.label:<14} {_fraction(k.a):>5} {k.horizon:>8} {exponent:>9} {ci:>19} "
              f"{bound:>7}  {v.verdict if v else 'no bound'}")
    print(f"report: {out / 'rates.md'}")
    return EXIT_OK
