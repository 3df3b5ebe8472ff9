"""Report helpers (harness.report) on synthetic curve rows: plots, overlays, Markdown cells."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.curves import CHECKPOINT_COLUMNS, METRIC_NORMS, geometric_grid
from harness.rates import rate_bound
from harness.report import (
    _gammas,
    envelope_overlay,
    fit_overlay,
    format_number,
    markdown_table,
    plot_correlations,
    plot_g_over_l,
    plot_gaps,
    plot_normalized_margins,
)

PNG = b"\x89PNG\r\n\x1a\n"


def synthetic_rows(slopes=(("signgd", 0.5), ("adam", 0.3)), seeds=(0, 1), steps=1000):
    """Rows whose gaps decay exactly like ``(seed + 1) t^-slope`` (and are <= 0 at t = 3)."""
    rows = []
    for algorithm, slope in slopes:
        for seed in seeds:
            for t in geometric_grid(steps, 10).tolist():
                row = {"run_id": f"{algorithm}-s{seed}", "algorithm": algorithm,
                       "family": "nsd", "own_norm": "max", "dataset": "paper",
                       "data_seed": seed, "eta0": 0.1, "a": 0.5, "hyper": {}}
                row.update({c: 0.0 for c in CHECKPOINT_COLUMNS})
                row["t"], row["g_over_l"] = t, 1.0 - 1.0 / (t + 2)
                for N in (*METRIC_NORMS, "own"):
                    gap = math.nan if t == 0 else (seed + 1) * (t + 0.0) ** -slope
                    gap = -1e-3 if t == 3 else gap
                    row[f"gap_{N}"], row[f"nmargin_{N}"] = gap, 2.0 + seed - gap
                    row[f"corr_{N}"] = 1.0 - abs(gap)
                rows.append(row)
    return rows


def test_plots_write_png_files(tmp_path):
    rows = synthetic_rows()
    paths = [
        plot_gaps(rows, "max", tmp_path / "gap.png",
                  overlays=[envelope_overlay(rate_bound("nsd", 0.5, 50, 10), 10, 1000, 0.3,
                                             label="bound")]),
        plot_gaps(rows, "own", tmp_path / "own.png", group_by="run_id",
                  overlays=[fit_overlay({"run_id": "x", "slope": -0.5, "intercept": 0.0,
                                         "t_start": 10, "t_end": 1000})]),
        plot_normalized_margins(rows, tmp_path / "m.png"),
        plot_correlations(rows, tmp_path / "c.png"),
        plot_g_over_l(rows, tmp_path / "gl.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_envelope_overlay_is_the_bound_scaled_through_the_anchor():
    envelope = rate_bound("nsd", 0.5, 50, 10)
    line = envelope_overlay(envelope, 10, 1e4, 0.25, label="bound")
    assert line.t[0] == 10 and line.t[-1] == pytest.approx(1e4)
    assert line.values[0] == pytest.approx(0.25, rel=1e-14)
    ratio = line.values / envelope(line.t)
    assert np.allclose(ratio, ratio[0], rtol=1e-13)


def test_fit_overlay_draws_the_power_law_or_nothing():
    fit = {"run_id": "r", "slope": -0.6, "intercept": 1.5, "t_start": 100, "t_end": 10000}
    line = fit_overlay(fit)
    assert line.t[0] == 100 and line.t[-1] == pytest.approx(10000)
    assert np.allclose(line.values, math.exp(1.5) * line.t ** -0.6, rtol=1e-14)
    assert "t^-0.600" in line.label
    assert fit_overlay({**fit, "slope": None}) is None


def test_markdown_table_and_number_format():
    table = markdown_table(["a", "b"], [[1, 0.123456789], [None, "x|y"], [-0.0, math.inf]])
    lines = table.splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "|---|---|"
    assert lines[2] == "| 1 | 0.1235 |"
    assert lines[3] == "| - | x\\|y |"
    assert lines[4] == "| 0 | inf |"
    assert format_number(np.float64(2.5e-12)) == "2.5e-12"
    assert format_number(True) == "True"


def test_reference_lines_are_one_per_data_set():
    """Data sets of one generator share the ``dataset`` name; the seed tells them apart."""
    rows = synthetic_rows(seeds=(0, 1, 2))
    for norm in METRIC_NORMS:
        assert _gammas(rows, norm) == pytest.approx([2.0, 3.0, 4.0], rel=1e-12)
