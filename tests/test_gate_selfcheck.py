"""Self-check and teeth of the gate (quick profile, 3 seeds; slow: about a minute per case).

Every built-in optimizer must PASS with its own family and norm (a known finding,
harness.mutants.KNOWN_FINDINGS, must not: strict xfail); every mutant must not PASS;
torch.optim.Adam with eps = 0 must PASS, and with eps = 1e-8 the report must locate where its
loss scale passes log(eps) (THEORY.md section 4).
"""

from __future__ import annotations

import pytest

from harness.gate import configure, run_gate
from harness.mutants import MUTANT_CASES, TORCH_ADAM_CASES, builtin_cases
from harness.rates import PASS

pytestmark = pytest.mark.slow


def _gate(case, tmp_path):
    return run_gate(configure(case.impl, case.expect, case.family, kwargs=case.kwargs,
                              profile="quick", out=tmp_path / case.name))


def _expected_pass(case):
    """A built-in case; a known finding is a strict expected failure carrying its numbers."""
    marks = [pytest.mark.xfail(strict=True, reason=case.known_finding)] if case.known_finding \
        else []
    return pytest.param(case, marks=marks, id=case.name)


@pytest.mark.parametrize("case", [_expected_pass(c) for c in builtin_cases()])
def test_builtin_optimizer_passes_its_own_gate(case, tmp_path):
    result = _gate(case, tmp_path)
    assert result.verdict == PASS, result.reason


@pytest.mark.parametrize("case", MUTANT_CASES, ids=lambda c: c.name)
def test_mutant_never_passes(case, tmp_path):
    result = _gate(case, tmp_path)
    assert result.verdict != PASS, result.reason


def test_torch_adam_eps0_passes(tmp_path):
    result = _gate(TORCH_ADAM_CASES[0], tmp_path)
    assert result.verdict == PASS, result.reason
    assert all(run.uses_frame for run in result.runs)


def test_torch_adam_eps_1e8_reports_its_crossover(tmp_path):
    """At the quick horizon (5e4 steps) log G stays above log(1e-8); run long enough to pass it."""
    case = TORCH_ADAM_CASES[1]
    result = run_gate(configure(case.impl, case.expect, case.family, kwargs=case.kwargs,
                                profile="quick", steps=400_000, seeds=1,
                                out=tmp_path / case.name))
    for departure in result.departures.values():
        assert departure is not None and departure["predicted_t"] is not None
