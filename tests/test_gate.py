"""The gate: adapters, the single-run loop, the log-frame, bad input, baselines, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.engine import certify_references
from harness.errors import HarnessInputError
from harness.gate import (
    ImplementationError,
    TorchAdapter,
    parse_kwargs,
    resolve_implementation,
    run_seed,
)
from harness.losses import evaluate
from harness.mutants import builtin_cases

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def problem():
    """Three well-separated Gaussian classes in 4 dimensions, with certified references."""
    rng = np.random.default_rng(0)
    centres = 3.0 * rng.standard_normal((3, 4))
    y = np.repeat(np.arange(3), 6)
    X = centres[y] + 0.1 * rng.standard_normal((18, 4))
    data = SimpleNamespace(X=X, y=y, k=3, seed=0, name="toy")
    return data, certify_references(X, y, ["max", "fro", "spectral"])


def _run(impl, problem, steps=60, kwargs=None, eta0=0.1, a=0.5):
    data, refs = problem
    adapter = resolve_implementation(impl, kwargs or {}).make(eta0)
    return run_seed(adapter, data, refs, expect="max", eta0=eta0, a=a, steps=steps,
                    run_columns={"run_id": "seed0"})


class Raises:
    """init/step object that raises at step 3."""

    def init(self, W):
        return None

    def step(self, W, grad, state, t, lr):
        if t == 3:
            raise RuntimeError("boom\nsecond line")
        return W - lr * torch.sign(grad), state


class Reshapes:
    def init(self, W):
        return None

    def step(self, W, grad, state, t, lr):
        return (W.flatten() if t == 2 else W - lr * torch.sign(grad)), state


class MakesNaN:
    def init(self, W):
        return None

    def step(self, W, grad, state, t, lr):
        W = W - lr * torch.sign(grad)
        return (W * np.nan if t == 4 else W), state


def test_implementation_that_raises_is_an_input_error_with_the_step(problem):
    with pytest.raises(ImplementationError, match=r"RuntimeError: boom at step 3") as info:
        _run("tests.test_gate:Raises", problem)
    assert "second line" not in str(info.value)
    assert len(info.value.partial.rows) > 0  # the checkpoints before the error are kept


def test_shape_change_is_an_input_error(problem):
    with pytest.raises(ImplementationError, match=r"changed the shape of W at step 2"):
        _run("tests.test_gate:Reshapes", problem)


def test_nan_ends_the_run_with_its_step(problem):
    run = _run("tests.test_gate:MakesNaN", problem)
    assert run.nan_step == 5 and "NaN" in run.stop


def test_kwargs_not_accepted(problem):
    with pytest.raises(ImplementationError, match="does not accept the given --kwargs"):
        _run("torch.optim:Adam", problem, kwargs={"bogus": 1})


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module_xyz:Opt", "cannot import module"),
    ("harness.mutants:NoSuchThing", "has no attribute"),
    ("harness.mutants:MUTANT_CASES", "neither a torch.optim.Optimizer"),
    ("justaname", "MODULE:ATTR"),
    ("builtin:nosuch", "unknown optimizer"),
])
def test_unresolvable_implementations(spec, message):
    with pytest.raises(HarnessInputError, match=message):
        resolve_implementation(spec)


@pytest.mark.parametrize(("text", "message"), [("{bad", "not valid JSON"),
                                               ("[1, 2]", "must be a JSON object")])
def test_kwargs_must_be_a_json_object(text, message):
    with pytest.raises(HarnessInputError, match=message):
        parse_kwargs(text)


def test_lr_in_kwargs_is_refused():
    with pytest.raises(HarnessInputError, match="owns the step size"):
        resolve_implementation("torch.optim:Adam", {"lr": 0.1})


@pytest.mark.parametrize("argv", [
    ["--impl", "no_such_module_xyz:Opt"],
    ["--impl", "torch.optim:Adam", "--kwargs", "{bad"],
    ["--impl", "harness.mutants:MUTANT_CASES"],
])
def test_cli_bad_input_exits_2_with_one_line(argv, capsys, tmp_path):
    code = main(["gate", *argv, "--expect", "max", "--family", "adam", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("harness: error:")


def _naive_adam(data, steps, eta0, a, eps):
    """torch.optim.Adam on the true float64 gradient, no frame."""
    X, y = torch.as_tensor(data.X), torch.as_tensor(data.y)
    p = torch.nn.Parameter(torch.zeros(data.k, X.shape[1], dtype=torch.float64))
    opt = torch.optim.Adam([p], lr=eta0, betas=(0.9, 0.99), eps=eps)
    for t in range(steps):
        p.grad = evaluate(p.detach(), X, y).gradient
        opt.param_groups[0]["lr"] = eta0 * (t + 1.0) ** (-a)
        opt.step()
    return p.detach()


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_log_frame_matches_naive_torch_adam(problem, eps):
    """The frame rescaling of a known torch.optim layout is exact while nothing underflows."""
    data, _ = problem
    run = _run("torch.optim:Adam", problem, steps=150, kwargs={"betas": [0.9, 0.99], "eps": eps},
               eta0=0.1, a=2 / 3)
    assert run.uses_frame
    final = [r for r in run.rows if r["t"] == 150][0]
    W_naive = _naive_adam(data, 150, 0.1, 2 / 3, eps)
    X, y = torch.as_tensor(data.X), torch.as_tensor(data.y)
    assert final["log_loss"] == pytest.approx(float(evaluate(W_naive, X, y).log_loss),
                                              rel=1e-9)
    assert final["norm_max"] == pytest.approx(float(W_naive.abs().max()), rel=1e-9)


def test_unknown_torch_optimizer_gets_the_true_gradient(problem):
    adapter = resolve_implementation("harness.mutants:SignAscent").make(0.1)
    assert isinstance(adapter, TorchAdapter)
    run = _run("harness.mutants:SignAscent", problem, steps=5)
    assert run.uses_frame is False and run.horizon == 5


def _write_outside_optimizer(directory: Path) -> None:
    (directory / "outside_signgd.py").write_text(textwrap.dedent("""
        import torch

        class MySignGD(torch.optim.Optimizer):
            def __init__(self, params, lr=0.1):
                super().__init__(params, {"lr": lr})

            @torch.no_grad()
            def step(self, closure=None):
                for group in self.param_groups:
                    for p in group["params"]:
                        p.add_(torch.sign(p.grad), alpha=-group["lr"])
    """))


def _gate_cli(args, env_path, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(env_path), str(REPO)]), CI="1")
    return subprocess.run([sys.executable, "-m", "harness", "gate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_gates_an_optimizer_outside_the_repository(tmp_path):
    _write_outside_optimizer(tmp_path)
    out = tmp_path / "report"
    base = tmp_path / "baseline.json"
    proc = _gate_cli(["--impl", "outside_signgd:MySignGD", "--expect", "max", "--family",
                      "nsd", "--seeds", "1", "--steps", "3000", "--out", str(out),
                      "--save-baseline", str(base)], tmp_path, tmp_path)
    doc = json.loads((out / "report.json").read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["verdict"] == "PASS" and doc["provenance"]["git_commit"]
    for name in ("report.md", "gap.png", "margins.png", "curves.json"):
        assert (out / name).is_file()
    assert (out / "report.md").read_text().startswith("# Gate")
    stored = json.loads(base.read_text())
    assert stored["exponent"] == pytest.approx(doc["exponent"])
    # A baseline claiming a much faster decay makes the same run fail (exit 1).
    stored["exponent"] = doc["exponent"] - 1.0
    base.write_text(json.dumps(stored))
    proc = _gate_cli(["--impl", "outside_signgd:MySignGD", "--expect", "max", "--family",
                      "nsd", "--seeds", "1", "--steps", "3000", "--out", str(out),
                      "--baseline", str(base)], tmp_path, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "baseline" in json.loads((out / "report.json").read_text())["reason"]


@pytest.mark.slow
def test_cli_nan_is_a_failure_with_the_step_and_keeps_the_report(tmp_path):
    out = tmp_path / "nan"
    proc = _gate_cli(["--impl", "tests.test_gate:MakesNaN", "--expect", "max", "--family",
                      "nsd", "--seeds", "1", "--steps", "200", "--out", str(out)],
                     tmp_path, REPO)
    doc = json.loads((out / "report.json").read_text())
    assert proc.returncode == 1
    assert doc["verdict"] == "FAIL" and "step 5" in doc["reason"]


@pytest.mark.slow
def test_cli_raising_implementation_exits_2_and_keeps_partial_report(tmp_path):
    out = tmp_path / "raises"
    proc = _gate_cli(["--impl", "tests.test_gate:Raises", "--expect", "max", "--family",
                      "nsd", "--seeds", "1", "--steps", "200", "--out", str(out)],
                     tmp_path, REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "boom at step 3" in proc.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["verdict"] == "ERROR" and doc["runs"]["seed0"]["horizon"] == 3


@pytest.mark.parametrize(("known", "must_pass", "verdict", "ok"), [
    ("", True, "PASS", True), ("", True, "INCONCLUSIVE", False),
    ("", False, "FAIL", True), ("", False, "INCONCLUSIVE", True), ("", False, "PASS", False),
    ("finding: numbers", True, "INCONCLUSIVE", True), ("finding: numbers", True, "FAIL", True),
    ("finding: numbers", True, "PASS", False),
])
def test_check_judges_builtins_mutants_and_known_findings(monkeypatch, tmp_path, known,
                                                           must_pass, verdict, ok):
    from harness.commands.check import _gate_entry, write_index
    from harness.mutants import GateCase

    departures = {"seed0": None, "seed1": {"t_min": 5, "eps": 1e-8}}
    monkeypatch.setattr("harness.gate.run_gate", lambda config: SimpleNamespace(
        verdict=verdict, reason="why", departures=departures))
    case = GateCase("case", "builtin:signgd", "max", "nsd", known_finding=known)
    entry = _gate_entry(case, "quick", tmp_path, must_pass=must_pass)
    assert entry["ok"] is ok and entry["status"].startswith(verdict)
    named = "seed1 left the max path at t=5" in entry["detail"]
    assert named is (not must_pass and not known)
    index = write_index(tmp_path, [entry], 1.0).read_text()
    assert ("ALL OK" in index) is ok
    listed = "## Known findings" in index and "finding: numbers" in index
    assert listed is (bool(known) and verdict != "PASS")


BASELINES = REPO / "reports" / "baselines"


@pytest.mark.parametrize("case", builtin_cases(), ids=lambda c: c.name)
def test_every_builtin_has_a_baseline_of_the_quick_profile(case):
    from harness.gate import configure

    stored = json.loads((BASELINES / f"{case.name}.json").read_text())
    config = configure(case.impl, case.expect, case.family, kwargs=case.kwargs, profile="quick")
    assert stored["kind"] == "gate-baseline" and stored["profile"] == "quick"
    for key in ("impl", "kwargs", "expect", "family", "a", "eta0", "steps", "seeds"):
        assert stored[key] == pytest.approx(getattr(config, key)), key
    assert len(stored["exponents"]) == config.seeds


@pytest.mark.slow
def test_committed_baseline_passes_and_a_worse_exponent_fails(tmp_path):
    from harness.gate import _compare_baseline, configure, run_gate
    from harness.rates import THRESHOLDS

    committed = BASELINES / "builtin-cd.json"
    config = configure("builtin:cd", "sum", "nsd", out=tmp_path / "cd", baseline=committed)
    result = run_gate(config)
    assert result.verdict == "PASS" and result.baseline["ok"] is True, result.reason
    worse = json.loads(committed.read_text())
    worse["exponent"] = result.rate.exponent - 2 * THRESHOLDS.baseline_tolerance
    path = tmp_path / "faster.json"
    path.write_text(json.dumps(worse))
    assert _compare_baseline(replace(config, baseline=path), result.rate, THRESHOLDS)["ok"] is False
