"""The shipped scenarios at their CI horizon (``ci_steps``): the tox env ``scenarios``.

Each scenario runs once (module fixture) through :func:`harness.scenario.run_scenario` and the
checks read its curves and report: every run reaches the horizon with finite numbers and keeps
moving; the trajectory statements of THEORY.md section 3 hold (G <= L at every checkpoint,
DESCENT / MONO / UNNORM-MARGIN / ADAM-RATIO without violations); the loss falls; the margin gap
of every NSD, NMD and GD run falls over the last decade; no rate verdict is FAIL (a CI horizon
may leave verdicts INCONCLUSIVE, never wrong). Adam's gap is not required to fall at this
horizon: THEORY.md section 4 describes its stop-and-go phase before the onset t0.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.curves import read_curves, run_series
from harness.network_scenario import is_network_scenario
from harness.rates import FAIL
from harness.scenario import load_scenario, run_scenario

HERE = Path(__file__).resolve().parent
#: The linear scenarios (``model = "relu"`` files are harness.network_scenario's).
SCENARIOS = [p for p in sorted(HERE.glob("*.toml")) if not is_network_scenario(p)]


@pytest.fixture(scope="module", params=SCENARIOS, ids=lambda p: p.stem)
def result(request, tmp_path_factory):
    """One CI-sized run of a shipped scenario (one torch thread: tiny tensors, shared cores)."""
    spec = load_scenario(request.param)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_scenario(spec, steps=spec.ci_steps,
                            out=tmp_path_factory.mktemp(spec.name), progress=False)
    finally:
        torch.set_num_threads(threads)


def _at(series, t_wanted: int) -> float:
    """The value at the last checkpoint ``t <= t_wanted`` (checkpoints are geometric)."""
    t, v = series
    return float(v[np.searchsorted(t, t_wanted, side="right") - 1])


def test_every_run_reaches_the_horizon_finite_and_moving(result):
    steps = result.spec.steps
    assert not result.interrupted and result.report["status"] == "complete"
    for run in result.report["runs"]:
        inv = run["invariants"]
        assert run["steps_done"] == steps, run["run_id"]
        assert inv["nonfinite_steps"] == 0 and inv["stalled_steps"] == 0, (run["run_id"], inv)
        assert all(math.isfinite(v) for k, v in run["final"].items() if k.startswith("gap_"))


def test_g_at_most_l_at_every_checkpoint(result):
    worst = max(float(r["g_over_l"]) for r in result.rows)
    assert worst <= 1.0 + 1e-12, worst


def test_trajectory_invariants_have_no_violations(result):
    for run in result.report["runs"]:
        for key in ("descent", "mono", "unnorm_margin", "adam_ratio"):
            entry = run["invariants"].get(key)
            if entry is not None and entry.get("checked", True):
                assert entry["violations"] == 0, (run["run_id"], key, entry)


def test_loss_falls_over_the_last_decade(result):
    T = result.spec.steps
    for run_id, series in run_series(result.rows, "log_loss").items():
        assert _at(series, T) < _at(series, T // 10), run_id


def test_gap_falls_over_the_last_decade_for_nsd_nmd_gd(result):
    T = result.spec.steps
    families = {run["run_id"]: run["family"] for run in result.report["runs"]}
    checked = 0
    for run_id, series in run_series(result.rows, "gap_own").items():
        if families[run_id] in ("nsd", "nmd", "gd"):
            assert _at(series, T) < _at(series, T // 10), run_id
            checked += 1
    assert checked > 0


def test_no_rate_verdict_fails(result):
    assert result.verdict != FAIL, result.report["reason"]
    for algorithm in result.report["algorithms"]:
        assert algorithm["verdict"] != FAIL, (algorithm["label"], algorithm["reason"])


def test_report_files_are_written(result):
    rows, prov = read_curves(result.files["curves"])
    assert len(rows) == len(result.rows) and prov["seeds"] == sorted(result.spec.data.seeds)
    for key, path in result.files.items():
        assert path.exists() and path.stat().st_size > 0, key
    text = result.files["report_md"].read_text()
    for algorithm in result.report["algorithms"]:
        assert f"| {algorithm['label']} |" in text


def test_paper000_is_the_papers_experiment():
    """THEORY.md section 6: the paper's data, seeds, algorithms, step sizes and Adam's eps."""
    spec = load_scenario(HERE / "paper000.toml")
    assert spec.data.generator == "paper" and len(spec.data.seeds) == 3
    assert spec.data.params == {"k": 10, "d": 25, "n_per_class": 50, "sigma": 0.1}
    table = {(o.name, o.hyper.get("eps")): (o.eta0, Fraction(o.a).limit_denominator(10))
             for o in spec.optimizers}
    assert table == {
        ("signgd", None): (0.1, Fraction(1, 2)), ("ngd", None): (0.1, Fraction(1, 2)),
        ("signum", None): (0.1, Fraction(1, 2)), ("spectral_gd", None): (0.05, Fraction(1, 2)),
        ("muon", None): (0.05, Fraction(1, 2)),
        ("adam", 0.0): (0.1, Fraction(2, 3)), ("adam", 1e-8): (0.1, Fraction(2, 3)),
    }
    for opt in spec.optimizers:
        if opt.name == "adam":
            assert (opt.hyper["beta1"], opt.hyper["beta2"]) == (0.9, 0.99)
