"""``python -m harness run``: output files, reproducibility, Ctrl-C, and bad input (one line,
exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import harness.engine
from harness.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from harness.curves import geometric_grid, read_curves
from harness.data import Dataset, make_dataset
from harness.rates import VERDICTS

TINY = """
[scenario]
name = "tiny"
steps = 40
ci_steps = 20
per_decade = 10

[data]
generator = "paper"
seeds = [0, 1]
[data.params]
k = 3
d = 4
n_per_class = 5
sigma = 0.1

[[optimizer]]
name = "signgd"
eta0 = 0.1
a = 0.5

[[optimizer]]
name = "adam"
eta0 = 0.05
a = "2/3"
[optimizer.hyper]
eps = 0.0
"""

PLOTS = ("gap_max.png", "gap_fro.png", "gap_spectral.png", "gap_signgd.png", "gap_adam.png",
         "margins.png", "correlations.png", "g_over_l.png")


@pytest.fixture(autouse=True)
def _one_thread():
    """Small problems on a shared 2-core machine: one intra-op thread is much faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def scenario_file(tmp_path: Path, text: str = TINY) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def run_cli(*args) -> int:
    return main(["run", *map(str, args)])


def test_run_writes_curves_report_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(scenario_file(tmp_path), "--out", out) == EXIT_OK
    assert "tiny: done" in capsys.readouterr().out
    rows, prov = read_curves(out / "curves.json")
    grid = geometric_grid(40, 10)
    assert len(rows) == 4 * grid.size
    assert sorted({r["run_id"] for r in rows}) == ["adam-s0", "adam-s1", "signgd-s0",
                                                    "signgd-s1"]
    assert sorted({r["t"] for r in rows}) == grid.tolist()
    assert prov["seeds"] == [0, 1] and "git_commit" in prov and prov["versions"]["torch"]
    assert len(prov["source_digest"]) == 16 and prov["evaluate_backend"] in ("native", "torch")
    doc = json.loads((out / "report.json").read_text())
    assert doc["status"] == "complete" and doc["verdict"] in VERDICTS
    assert [a["label"] for a in doc["algorithms"]] == ["signgd", "adam"]
    for run in doc["runs"]:
        assert run["steps_done"] == 40 and run["final"]["t"] == 40
        assert all(np.isfinite(run["final"][f"gap_{n}"]) for n in ("max", "fro", "spectral"))
        assert run["invariants"]["nonfinite_steps"] == 0
    assert {d["seed"] for d in doc["data"]} == {0, 1}
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    md = (out / "report.md").read_text()
    assert md.startswith(f"# Scenario tiny: {doc['verdict']}")
    for name in PLOTS:
        assert f"]({name})" in md


def test_steps_and_ci_overrides(tmp_path):
    path = scenario_file(tmp_path)
    assert run_cli(path, "--steps", 7, "--out", tmp_path / "a") == EXIT_OK
    assert max(r["t"] for r in read_curves(tmp_path / "a" / "curves.json")[0]) == 7
    assert run_cli(path, "--ci", "--out", tmp_path / "b") == EXIT_OK
    assert max(r["t"] for r in read_curves(tmp_path / "b" / "curves.json")[0]) == 20


def test_same_seed_and_config_give_the_same_numbers(tmp_path):
    path = scenario_file(tmp_path)
    for name in ("a", "b"):
        assert run_cli(path, "--steps", 15, "--out", tmp_path / name) == EXIT_OK
    rows_a, _ = read_curves(tmp_path / "a" / "curves.json")
    rows_b, _ = read_curves(tmp_path / "b" / "curves.json")
    assert len(rows_a) == len(rows_b) > 0
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra:
            same = ra[key] == rb[key] or (isinstance(ra[key], float) and np.isnan(ra[key])
                                         and np.isnan(rb[key]))
            assert same, (key, ra[key], rb[key])


def test_ctrl_c_keeps_what_was_recorded(tmp_path, monkeypatch, capsys):
    real_make = harness.engine._make_stepper

    def make(group, loss):  # Ctrl-C once a stepper (torch or native) has taken 12 steps
        stepper = real_make(group, loss)
        real_advance = stepper.advance

        def advance(*args):
            if stepper.t >= 12:
                raise KeyboardInterrupt
            return real_advance(*args)

        stepper.advance = advance
        return stepper

    monkeypatch.setattr(harness.engine, "_make_stepper", make)
    out = tmp_path / "out"
    assert run_cli(scenario_file(tmp_path), "--out", out) == EXIT_INTERRUPTED
    assert "INTERRUPTED" in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    assert doc["status"] == "interrupted" and doc["verdict"] != "PASS"
    rows, _ = read_curves(out / "curves.json")
    assert rows and max(r["t"] for r in rows) < 40
    assert "**INTERRUPTED**" in (out / "report.md").read_text()


def _non_separable_file(tmp_path: Path) -> Path:
    base = make_dataset("paper", 0, k=3, d=4, n_per_class=5)
    X = np.concatenate([base.X, base.X[:1]])
    y = np.concatenate([base.y, [(base.y[0] + 1) % 3]])  # the same point in two classes
    path = tmp_path / "bad.npz"
    Dataset(X=X, y=y, k=3, name="duplicated", params={}, seed=0).save(path)
    return path


DATA_TABLE = 'generator = "paper"\nseeds = [0, 1]\n[data.params]\nk = 3\nd = 4\n' \
             'n_per_class = 5\nsigma = 0.1\n'


@pytest.mark.parametrize(("edit", "extra", "message"), [
    (("[scenario]", "[scenario\n"), (), "malformed TOML"),
    (("steps = 40", "steps = 40\nhorizon = 3"), (), "unknown key 'horizon' in [scenario]"),
    (('name = "signgd"', 'name = "sgnd"'), (), "unknown optimizer 'sgnd'"),
    (("eps = 0.0", "eps = 0.0\nbeta1 = 1.5"), (), "beta1 must lie in [0, 1)"),
    (("eps = 0.0", "eps = -1.0"), (), "eps must be a finite number >= 0"),
    (("eps = 0.0", "eps = 0.0\nbeta3 = 0.5"), (), "has no hyper-parameter 'beta3'"),
    (("a = 0.5", 'a = 0.5\nexpect = "l0.5x"'), (), "unknown norm 'l0.5x'"),
    (("a = 0.5", 'a = 0.5\nexpect = "nuclear"'), (), "expect = 'nuclear' is not recorded"),
    (('name = "signgd"\neta0 = 0.1\na = 0.5',
      'name = "nsd"\neta0 = 0.1\na = 0.5\n[optimizer.hyper]\np = 1.0'), (),
     "nsd needs an entrywise exponent p with 1 < p < inf"),
    (("a = 0.5", "a = 2"), (), "a (step exponent) must lie in [0, 1]"),
    (("steps = 40", "steps = 0"), (), "steps must be an integer >= 1"),
    (None, ("--steps", "0"), "steps must be an integer >= 1"),
    (None, ("--steps", "-4"), "steps must be an integer >= 1"),
    (("sigma = 0.1", "sigma = 0.1\nwidth = 3"), (), "(in [data])"),
    ((DATA_TABLE, 'path = "missing.npz"\n'), (), "missing.npz"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, edit, extra,
                                                           message):
    text = TINY
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    out = tmp_path / "out"
    assert run_cli(scenario_file(tmp_path, text), "--out", out, *extra) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error:") and "\n" not in err and message in err, err
    assert not out.exists()


def test_non_separable_data_is_rejected_before_writing(tmp_path, capsys):
    path = _non_separable_file(tmp_path)
    text = TINY.replace(DATA_TABLE, f'path = "{path.name}"\n')
    out = tmp_path / "out"
    assert run_cli(scenario_file(tmp_path, text), "--out", out) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "not linearly separable" in err and "\n" not in err
    assert not out.exists()


def test_missing_scenario_file(tmp_path, capsys):
    assert run_cli(tmp_path / "nope.toml") == EXIT_USAGE
    assert "scenario file not found" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_a_device_is_an_input_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(scenario_file(tmp_path), "--device", "cuda", "--out", out) == EXIT_USAGE
    assert "no CUDA device" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.gpu
def test_runs_on_cuda(tmp_path):
    out = tmp_path / "out"
    assert run_cli(scenario_file(tmp_path), "--device", "cuda", "--steps", 10,
                   "--out", out) == EXIT_OK
    assert json.loads((out / "report.json").read_text())["device"] == "cuda"


def test_expect_judges_the_gap_in_another_norm(tmp_path):
    text = TINY.replace("a = 0.5", 'a = 0.5\nexpect = "l2"', 1)
    out = tmp_path / "out"
    assert run_cli(scenario_file(tmp_path, text), "--out", out) == EXIT_OK
    doc = json.loads((out / "report.json").read_text())
    signgd = doc["algorithms"][0]
    assert (signgd["expect"], signgd["gap_column"]) == ("fro", "gap_fro")
    finals = {run["run_id"]: run["final"]["gap_fro"] for run in doc["runs"]}
    assert len(signgd["fits"]) == 2
    for fit in signgd["fits"]:
        assert fit["final_gap"] == finals[fit["run_id"]]
    assert doc["algorithms"][1]["gap_column"] == "gap_own"
