"""Curves: the one table format every run produces and every report reads.

A curve table is a list of rows, one per (run, checkpoint). The engine, the gate's single-run
loop and the sweep layer all emit it; rates, reports and plots all read it. Columns:

provenance of the run (constant along a run)
    ``run_id`` (str), ``algorithm`` (str, registry name), ``family`` (``gd``, ``nsd``, ``nmd``,
    ``adam``), ``own_norm`` (the algorithm's own norm, canonical name), ``dataset`` (str),
    ``data_seed`` (int), ``eta0`` (float), ``a`` (float, step exponent), ``hyper`` (dict).
the checkpoint
    ``t`` (int, number of steps taken), ``log_loss``, ``log_proxy``, ``g_over_l`` (``G/L``),
    ``margin`` (``m(W_t)``, unnormalized), and for every ``N`` in :data:`METRIC_NORMS` plus
    ``own``: ``norm_N`` (``N(W_t)``), ``nmargin_N`` (``m(W_t) / N(W_t)``), ``gap_N``
    (``gamma_N - nmargin_N``, against the certified reference), ``corr_N``
    (``<W_t, V_N> / (||W_t||_F ||V_N||_F)`` with the max-margin solution ``V_N``).

Non-finite values are stored as the strings ``"nan"``, ``"inf"``, ``"-inf"`` in JSON and read
back as floats.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from harness.provenance import SCHEMA_VERSION
from harness.storage import write_json_atomic

#: Norms in which every run's margins, gaps and correlations are recorded.
METRIC_NORMS = ("max", "fro", "spectral")

RUN_COLUMNS = ("run_id", "algorithm", "family", "own_norm", "dataset", "data_seed", "eta0", "a",
               "hyper")
CHECKPOINT_COLUMNS = ("t", "log_loss", "log_proxy", "g_over_l", "margin") + tuple(
    f"{kind}_{N}" for N in (*METRIC_NORMS, "own")
    for kind in ("norm", "nmargin", "gap", "corr")
)


def geometric_grid(steps: int, per_decade: int = 20) -> np.ndarray:
    """Checkpoints ``t`` in ``[0, steps]``: every step up to ``per_decade``, then about
    ``per_decade`` points per decade (geometric sampling, as in benchopt), always ``steps``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n_points = int(math.ceil(per_decade * math.log10(max(steps, 10)))) + 1
    grid = np.unique(np.round(np.logspace(0, math.log10(steps), n_points)).astype(np.int64))
    dense = np.arange(0, min(per_decade, steps) + 1)
    return np.unique(np.concatenate([dense, grid, [steps]]))


def _decode(value):
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def write_curves(path: str | Path, rows: list[dict], provenance: dict) -> Path:
    """Write rows plus their provenance as one JSON document, atomically."""
    return write_json_atomic(path, {"schema_version": SCHEMA_VERSION, "provenance": provenance,
                                    "rows": rows})


def read_curves(path: str | Path) -> tuple[list[dict], dict]:
    """Read a file written by :func:`write_curves`; returns ``(rows, provenance)``."""
    doc = json.loads(Path(path).read_text())
    rows = [{k: _decode(v) for k, v in row.items()} for row in doc["rows"]]
    return rows, doc.get("provenance", {})


def run_series(rows: list[dict], column: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{run_id: (t, values)}`` for one column, each sorted by ``t``."""
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row["run_id"], []).append((row["t"], float(row[column])))
    series = {}
    for run_id, pairs in out.items():
        pairs.sort()
        t, v = zip(*pairs, strict=True)
        series[run_id] = (np.asarray(t, dtype=np.int64), np.asarray(v, dtype=np.float64))
    return series
