"""Reports: Markdown tables and PNG plots drawn from curve rows (:mod:`harness.curves`).

Every plot reads the one curve-row table, so the scenario runner and the gate draw the same
figures from the same numbers:

* :func:`plot_gaps`: the margin gap ``gamma_N - m(W_t)/N(W_t)`` against ``t`` on log-log axes
  for one norm, one line per run, with optional overlays (a theory envelope, a fitted line);
  the rates of THEORY.md section 4 are straight lines there.
* :func:`plot_normalized_margins`: ``m(W_t)/N(W_t)`` for N in max / l2 / spectral, with the
  certified ``gamma_N`` of each data set as a dotted line (``gamma_N = nmargin_N + gap_N``).
* :func:`plot_g_over_l`: ``G/L``, which tends to 1 (THEORY.md section 3).
* :func:`plot_correlations`: ``<W_t, V_N> / (||W_t||_F ||V_N||_F)`` with each max-margin
  solution, the paper's second kind of plot.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot state, no display)
and written with :func:`harness.storage.save_figure_atomic`. Runs are coloured by a group key
(the algorithm by default), so the seeds of one algorithm share a colour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.curves import METRIC_NORMS, run_series
from harness.rates import rate_bound
from harness.storage import save_figure_atomic, write_json_atomic, write_text_atomic

#: Display names of the norms of :data:`harness.curves.METRIC_NORMS` and ``own``.
NORM_TITLES = {"max": "max-norm", "fro": "l2 (Frobenius)", "spectral": "spectral",
               "own": "own norm"}


@dataclass(frozen=True)
class Overlay:
    """A reference line drawn over the curves of a plot (theory envelope, fitted line).

    Attributes:
        t: abscissae (steps), positive.
        values: the line's values at ``t``.
        label: legend text, e.g. ``"bound (log t + n)/t^(1/2), scaled"`` or ``"fit: t^-0.52"``.
        style: a matplotlib line style (``"--"``, ``":"``, ``"-."``).
        color: a matplotlib colour.
    """

    t: np.ndarray
    values: np.ndarray
    label: str
    style: str = "--"
    color: str = "black"


def _group_colors(keys: Sequence[str]) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    unique = list(dict.fromkeys(keys))
    return {key: palette[i % len(palette)] for i, key in enumerate(unique)}


def _runs(rows: list[dict], group_by: str) -> dict[str, str]:
    """``{run_id: group}`` in first-appearance order."""
    out: dict[str, str] = {}
    for row in rows:
        out.setdefault(row["run_id"], str(row[group_by]))
    return out


def _new_figure(n_panels: int, width: float = 5.2, height: float = 3.8) -> Figure:
    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _draw_runs(ax, rows: list[dict], column: str, group_by: str, *,
               positive_only: bool) -> int:
    """One line per run of ``column`` against ``t``; returns how many points were hidden
    because they cannot be drawn on a log axis (non-positive or non-finite)."""
    groups = _runs(rows, group_by)
    colors = _group_colors(list(groups.values()))
    labelled: set[str] = set()
    hidden = 0
    for run_id, (t, v) in run_series(rows, column).items():
        keep = np.isfinite(v) & (t > 0)
        if positive_only:
            keep &= v > 0
        hidden += int(np.count_nonzero(t > 0) - np.count_nonzero(keep))
        group = groups[run_id]
        ax.plot(t[keep], v[keep], color=colors[group], lw=1.0, alpha=0.85,
                label=None if group in labelled else group)
        labelled.add(group)
    return hidden


def _finish(ax, *, title: str, ylabel: str, hidden: int, xlog: bool = True,
            ylog: bool = False) -> None:
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")
    ax.set_xlabel("t (steps)")
    ax.set_ylabel(ylabel)
    if hidden:
        title += f"\n({hidden} points <= 0 or non-finite not drawn)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


def plot_gaps(rows: list[dict], norm: str, path: str | Path, *, group_by: str = "algorithm",
              overlays: Sequence[Overlay] = (), title: str | None = None) -> Path:
    """Plot ``gap_<norm>`` against ``t`` on log-log axes, one line per run, and save a PNG.

    Args:
        rows: curve rows (:mod:`harness.curves`).
        norm: one of :data:`harness.curves.METRIC_NORMS` or ``"own"``.
        path: the PNG to write (atomically).
        group_by: the row column that picks a run's colour and legend entry.
        overlays: reference lines, e.g. the theory envelope and the fitted power law.
        title: the plot title (default: the norm's name).

    A gap at or below 0 (the iterate's normalized margin reached the certified ``gamma_N`` up
    to the certificate's precision) cannot be drawn on a log axis; such points are counted in
    the title instead of silently dropped.
    """
    fig = _new_figure(1, width=6.4, height=4.4)
    ax = fig.add_subplot()
    hidden = _draw_runs(ax, rows, f"gap_{norm}", group_by, positive_only=True)
    for line in overlays:
        t = np.asarray(line.t, dtype=np.float64)
        v = np.asarray(line.values, dtype=np.float64)
        keep = np.isfinite(v) & (v > 0) & (t > 0)
        ax.plot(t[keep], v[keep], line.style, color=line.color, lw=1.4, label=line.label)
    _finish(ax, title=title or f"margin gap in {NORM_TITLES.get(norm, norm)}",
            ylabel=f"gamma - m(W)/N(W)  [{norm}]", hidden=hidden, ylog=True)
    return save_figure_atomic(fig, path)


def _gammas(rows: list[dict], norm: str) -> list[float]:
    """The certified ``gamma_N`` of each of the rows' data sets (``nmargin + gap``; a data
    set is a (``dataset``, ``data_seed``) pair)."""
    values = {}
    for row in rows:
        gamma = float(row[f"nmargin_{norm}"]) + float(row[f"gap_{norm}"])
        if math.isfinite(gamma):
            values.setdefault((row["dataset"], row["data_seed"]), gamma)
    return sorted(values.values())


def _panel_plot(rows: list[dict], columns: Sequence[str], path: str | Path, *,
                group_by: str, ylabel: Callable[[str], str], title: Callable[[str], str],
                reference: Callable[[str], list[float]] | None = None,
                ylog: bool = False) -> Path:
    fig = _new_figure(len(columns))
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns, strict=True):
        hidden = _draw_runs(ax, rows, column, group_by, positive_only=ylog)
        for value in (reference(column) if reference else []):
            ax.axhline(value, color="black", ls=":", lw=0.9)
        _finish(ax, title=title(column), ylabel=ylabel(column), hidden=hidden, ylog=ylog)
    return save_figure_atomic(fig, path)


def plot_normalized_margins(rows: list[dict], path: str | Path, *,
                            norms: Sequence[str] = METRIC_NORMS,
                            group_by: str = "algorithm") -> Path:
    """One panel per norm: ``m(W_t)/N(W_t)`` against ``t`` (log t), with each data set's
    certified ``gamma_N`` dotted; every algorithm's curve approaches the line of its own norm."""
    return _panel_plot(
        rows, [f"nmargin_{n}" for n in norms], path, group_by=group_by,
        ylabel=lambda c: "m(W)/N(W)",
        title=lambda c: f"normalized margin, {NORM_TITLES.get(c[8:], c[8:])} (dotted: gamma)",
        reference=lambda c: _gammas(rows, c[8:]))


def plot_correlations(rows: list[dict], path: str | Path, *,
                      norms: Sequence[str] = METRIC_NORMS, group_by: str = "algorithm") -> Path:
    """One panel per norm: the correlation of ``W_t`` with that norm's max-margin solution."""
    return _panel_plot(
        rows, [f"corr_{n}" for n in norms], path, group_by=group_by,
        ylabel=lambda c: "<W, V>/(|W|_F |V|_F)",
        title=lambda c: f"correlation with V_{c[5:]} ({NORM_TITLES.get(c[5:], c[5:])})")


def plot_g_over_l(rows: list[dict], path: str | Path, *, group_by: str = "algorithm") -> Path:
    """``G/L`` against ``t`` (log t); it tends to 1 as the loss vanishes (GL-SANDWICH)."""
    return _panel_plot(rows, ["g_over_l"], path, group_by=group_by,
                       ylabel=lambda c: "G/L", title=lambda c: "G/L (tends to 1)",
                       reference=lambda c: [1.0])


def format_number(value, digits: int = 4) -> str:
    """A table cell: ``None`` -> ``-``, floats with ``digits`` significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value) + 0.0  # + 0.0 turns -0.0 into 0.0
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table; cells go through :func:`format_number`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [format_number(cell).replace("|", "\\|") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def envelope_overlay(envelope: Callable[[np.ndarray], np.ndarray], t_start: float, t_end: float,
                     anchor_gap: float, *, label: str, points: int = 50) -> Overlay:
    """The theory envelope ``f(t)`` on ``[t_start, t_end]``, scaled through
    ``(t_start, anchor_gap)``: the bounds hold up to unknown constants, so only the shape is
    compared (a curve that stays below or parallel to the line decays at least as fast)."""
    t = np.geomspace(max(t_start, 2.0), max(t_end, t_start + 1.0, 3.0), points)
    f = np.asarray(envelope(t), dtype=np.float64)
    return Overlay(t=t, values=f * (anchor_gap / f[0]), label=label, style="--")


def fit_overlay(fit: Mapping, *, color: str = "black") -> Overlay | None:
    """The fitted power law ``exp(intercept) t^slope`` over a fit's window (a
    :meth:`harness.rates.TailFit.as_dict`); None when the fit has no line."""
    if fit.get("slope") is None or fit.get("t_start") is None:
        return None
    t = np.geomspace(fit["t_start"], max(fit["t_end"], fit["t_start"] + 1), 20)
    return Overlay(t=t, values=np.exp(fit["intercept"]) * t ** fit["slope"],
                   label=f"fit {fit['run_id']}: t^{fit['slope']:.3f}", style=":", color=color)


# ----------------------------------------------------------------------------- scenarios

#: File names inside a scenario's report directory.
CURVES_FILE = "curves.json"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def _algorithm_gap_plot(rows: list[dict], algorithm: dict, doc: dict, path: Path) -> Path:
    """The judged gap of one algorithm (its expected norm), one line per seed, with its
    envelope and fits."""
    ids = {run["run_id"] for run in doc["runs"] if run["label"] == algorithm["label"]}
    mine = [r for r in rows if r["run_id"] in ids]
    overlays: list[Overlay] = []
    fits = [f for f in algorithm.get("fits", []) if f.get("slope") is not None]
    if algorithm.get("verdict") is not None and fits:
        t_start = min(f["t_start"] for f in fits)
        t_end = max(f["t_end"] for f in fits)
        at_start = [float(r[algorithm["gap_column"]]) for r in mine if r["t"] == t_start]
        at_start = [g for g in at_start if math.isfinite(g) and g > 0]
        if at_start:
            n, d = doc["data"][0]["n"], doc["data"][0]["d"]
            envelope = rate_bound(algorithm["family"], algorithm["a"], n, d)
            overlays.append(envelope_overlay(
                envelope, t_start, t_end, float(np.exp(np.mean(np.log(at_start)))),
                label=f"bound {algorithm['bound_text']} (scaled)"))
        colors = _group_colors(list(_runs(mine, "run_id").values()))
        overlays += [o for o in (fit_overlay(f, color=colors.get(f["run_id"], "dimgray"))
                                 for f in fits) if o]
    title = (f"{algorithm['label']}: gap in {algorithm['expect']} norm, "
             f"verdict {algorithm.get('verdict')}")
    return plot_gaps(mine, algorithm["gap_column"][4:], path, group_by="run_id",
                     overlays=overlays, title=title)


def write_scenario_report(out_dir: str | Path, doc: dict, rows: list[dict]) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots of a scenario run.

    Plots: ``gap_<N>.png`` for N in max / fro / spectral (every run), ``gap_<label>.png`` per
    algorithm (own norm, seeds, envelope and fits), ``margins.png``, ``correlations.png``,
    ``g_over_l.png``, runs coloured by their ``label`` column. Returns ``{kind: path}``; the
    document's ``files`` lists them by name.
    """
    out = Path(out_dir)
    files: dict[str, Path] = {}
    if rows:
        for norm in METRIC_NORMS:
            files[f"gap_{norm}"] = plot_gaps(rows, norm, out / f"gap_{norm}.png",
                                             group_by="label")
        for algorithm in doc["algorithms"]:
            key = f"gap_{algorithm['label']}"
            files[key] = _algorithm_gap_plot(rows, algorithm, doc, out / f"{key}.png")
        files["margins"] = plot_normalized_margins(rows, out / "margins.png", group_by="label")
        files["correlations"] = plot_correlations(rows, out / "correlations.png",
                                                  group_by="label")
        files["g_over_l"] = plot_g_over_l(rows, out / "g_over_l.png", group_by="label")
    doc["files"] = {key: path.name for key, path in files.items()} | {
        "curves": CURVES_FILE, "report_md": REPORT_MD}
    files["report_json"] = write_json_atomic(out / REPORT_JSON, doc)
    files["report_md"] = write_text_atomic(out / REPORT_MD, scenario_markdown(doc))
    return files


def _interval(ci) -> str:
    return "-" if not ci else f"[{format_number(ci[0], 3)}, {format_number(ci[1], 3)}]"


def _verdict_table(algorithms: list[dict]) -> str:
    rows = []
    for alg in algorithms:
        fits = alg.get("fits", [])
        t0 = ", ".join(format_number(f["t0"]) for f in fits) or "-"
        rows.append([alg["label"], alg["family"], alg["expect"], format_number(alg["a"], 3),
                     alg.get("bound_text", "-"), t0,
                     f"{format_number(alg.get('exponent'), 3)} {_interval(alg.get('exponent_ci'))}",
                     alg.get("bound_exponent"), alg.get("trend_max"),
                     alg["verdict"] or "not judged", alg["reason"]])
    return markdown_table(["algorithm", "family", "norm", "a", "bound", "t0 per seed",
                           "fitted exponent [CI]", "bound exponent", "max gap/f trend",
                           "verdict", "reason"], rows)


def _final_gap_table(runs: list[dict]) -> str:
    rows = []
    for run in runs:
        final = run["final"] or {}
        inv = run["invariants"] or {}
        rows.append([run["run_id"], run["own_norm"], run["steps_done"], final.get("log_loss"),
                     final.get("gap_max"), final.get("gap_fro"), final.get("gap_spectral"),
                     final.get("gap_own"), inv.get("separation_time"), final.get("g_over_l")])
    return markdown_table(["run", "own norm", "steps", "log L", "gap max", "gap l2",
                           "gap spectral", "gap own", "separation t", "G/L"], rows)


def _invariant_cells(inv: dict) -> list:
    def count(key, field="violations"):
        entry = inv.get(key)
        return None if not entry or not entry.get("checked", True) else entry.get(field)

    adam = inv.get("adam_ratio") or {}
    momentum = inv.get("momentum_track") or {}
    return [count("descent"), count("mono"), count("unnorm_margin"),
            None if not adam else f"{format_number(adam.get('max'))} / "
                                  f"{format_number(adam.get('bound'))}",
            count("adam_ratio"), momentum.get("slope_last_decade"),
            inv.get("stalled_steps"), inv.get("nonfinite_steps")]


def _invariant_table(runs: list[dict]) -> str:
    rows = [[run["run_id"], *_invariant_cells(run["invariants"] or {})] for run in runs]
    return markdown_table(["run", "DESCENT viol.", "MONO viol.", "UNNORM-MARGIN viol.",
                           "ADAM-RATIO max / bound", "ADAM-RATIO viol.",
                           "MOMENTUM-TRACK slope (last decade)", "stalled steps",
                           "non-finite steps"], rows)


def _data_table(data: list[dict]) -> str:
    norms = list(dict.fromkeys(n for ds in data for n in ds["references"]))
    rows = []
    for ds in data:
        cells = [ds["name"], ds["seed"], ds["n"], ds["d"], ds["k"]]
        for norm in norms:
            ref = ds["references"].get(norm)
            cells.append("-" if ref is None else
                         f"{format_number(ref['gamma'], 8)} ({ref['solver']}, {ref['status']}, "
                         f"width {format_number(ref['upper'] - ref['lower'], 2)})")
        rows.append(cells)
    return markdown_table(["data", "seed", "n", "d", "k", *(f"gamma {n}" for n in norms)], rows)


def scenario_markdown(doc: dict) -> str:
    """``report.md`` of a scenario, rendered from its ``report.json`` document: the verdict
    first, then the per-algorithm rate table, final gaps, invariants, data, plots, thresholds
    and provenance."""
    prov = doc["provenance"]
    versions = ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v)
    status = ("**INTERRUPTED**: the runs were stopped before the horizon; everything below is "
              "what was recorded" if doc["status"] == "interrupted" else "complete")
    files = doc.get("files", {})
    plots = [f"![{key}]({name})" for key, name in files.items() if name.endswith(".png")]
    parts = [
        f"# Scenario {doc['scenario']}: {doc['verdict']}",
        f"{doc['reason']}",
        doc["description"],
        f"Status: {status}. Horizon {doc['steps']} steps, device {prov['device']}, "
        f"{format_number(doc['seconds'], 3)} s of stepping. Source: `{doc['source']}`; "
        f"curves: `{files.get('curves', CURVES_FILE)}` (one row per run and checkpoint).",
        "## Rate verdicts (THEORY.md section 4, gap in each algorithm's own norm)",
        _verdict_table(doc["algorithms"]),
        "## Final margin gaps per run",
        _final_gap_table(doc["runs"]),
        "## Trajectory invariants (THEORY.md section 3)",
        _invariant_table(doc["runs"]),
        "## Data and certified max margins",
        _data_table(doc["data"]),
        "## Plots",
        "\n\n".join(plots) or "(nothing recorded)",
        "## Thresholds",
        markdown_table(["threshold", "value"], sorted(doc["thresholds"].items())),
        "## Provenance",
        f"git commit `{prov['git_commit']}`; {versions}; seeds {prov['seeds']}; "
        f"schema version {doc['schema_version']}.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"
