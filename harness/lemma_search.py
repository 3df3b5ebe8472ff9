"""Search and judge: the one runner behind ``properties/`` and ``python -m harness lemmas``.

For a catalogue entry (:mod:`harness.lemmas`) hypothesis draws cases from its strategy, the
float64 sides give a ratio ``lhs / rhs`` per part that ``target()`` climbs, and EVERY example is
then judged in mpmath at ``dps`` >= 50 digits (precision restored after each example):

* a part holds when ``lhs <= rhs + |rhs| 10^(10 - dps)``: the allowance is the mpmath rounding
  of the two sides, 40 digits below the last one a 1%-teeth run needs;
* a part that fails while using the upper end of a certified ``gamma_N`` bracket is re-judged
  with the lower end: gamma enters every right-hand side (DUAL-LB, DESCENT, OTHER-LOSS) so that
  a larger gamma makes the claim stronger. A pass with the upper end is therefore a pass for the
  true gamma; a failure is a violation only if it also fails with the lower end (sound), else
  it is counted as ``undecided`` (the bracket, not the lemma, is too wide) and reported;
* a case outside the statement's premise in float64 is rejected (``assume``); one that meets it
  in float64 but not in mpmath is counted as ``vacuous``.

A verdict search stops at the first violation (no shrinking: the first violating example is
reported as is and pinned). A teeth search replaces one sharp constant by its 1%-tighter value
and succeeds when it finds a violation.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import mpmath
import numpy as np
from hypothesis import Phase, assume, example, given, settings, target

from harness import precise
from harness.errors import HarnessInputError
from harness.lemma_arith import FLOAT64, Precise
from harness.lemmas import Lemma, get, logit_scale
from harness.profiles import PROFILES

#: Digits at which every example is judged.
DEFAULT_DPS = 50

_PHASES = (Phase.explicit, Phase.generate, Phase.target)


def _holds(lhs, rhs, dps: int) -> bool:
    return bool(lhs <= rhs + abs(rhs) * mpmath.mpf(10) ** (10 - dps))


def _ratio(lhs, rhs) -> float:
    if rhs > 0:
        return float(lhs / rhs)
    return 0.0 if lhs <= rhs else math.inf


def _slack(lhs, rhs) -> float:
    """``(rhs - lhs) / rhs`` computed at the working precision: ``1 - ratio`` without the
    float64 rounding that turns a ratio of ``1 - 1e-300`` into ``1.0``."""
    return float((rhs - lhs) / rhs) if rhs > 0 else math.nan


@dataclass(frozen=True)
class Verdict:
    """The mpmath judgement of one case: ratio and slack per part, violated / undecided parts."""

    ratios: dict[str, float]
    slacks: dict[str, float] = field(default_factory=dict)
    violated: tuple[str, ...] = ()
    undecided: tuple[str, ...] = ()
    vacuous: bool = False


def judge(lemma: Lemma, case: dict, constants: dict[str, float],
          dps: int = DEFAULT_DPS) -> Verdict:
    """Judge ``case`` in mpmath at ``dps`` digits plus ``log10`` of its logit scale
    (:func:`harness.lemmas.logit_scale`; see the module docstring)."""
    if dps < DEFAULT_DPS:
        raise HarnessInputError(f"lemma verdicts need at least {DEFAULT_DPS} digits, got {dps}")
    dps += math.ceil(math.log10(max(1.0, logit_scale(case))))
    with precise.precision(dps):
        parts = lemma.sides(Precise("upper"), case, constants)
        if parts is None:
            return Verdict({}, vacuous=True)
        ratios = {name: _ratio(*pair) for name, pair in parts.items()}
        slacks = {name: _slack(*pair) for name, pair in parts.items()}
        failing = [name for name, pair in parts.items() if not _holds(*pair, dps)]
        if not failing:
            return Verdict(ratios, slacks)
        lower = lemma.sides(Precise("lower"), case, constants) or {}
        violated = tuple(name for name in failing
                         if name in lower and not _holds(*lower[name], dps))
        undecided = tuple(name for name in failing if name not in violated)
        return Verdict(ratios, slacks, violated, undecided)


def float_ratios(lemma: Lemma, case: dict, constants: dict[str, float]
                 ) -> dict[str, float] | None:
    """The float64 ratio per part (None: the premise fails in float64). Non-finite ratios
    (float64 underflow or overflow) are dropped: they only steer the search."""
    with np.errstate(all="ignore"):
        try:
            parts = lemma.sides(FLOAT64, case, constants)
        except (ArithmeticError, ValueError):
            return {}
    if parts is None:
        return None
    ratios = {name: _ratio(*pair) for name, pair in parts.items()}
    return {name: r for name, r in ratios.items() if math.isfinite(r)}


def case_to_json(case: dict) -> dict:
    """A case as JSON-ready lists (floats round-trip exactly), e.g. for an ``@example`` pin."""
    return {key: (value.tolist() if isinstance(value, np.ndarray) else
                  value.item() if isinstance(value, np.generic) else value)
            for key, value in case.items()}


@dataclass
class SearchOutcome:
    """What one search saw: examples judged, the worst ratio, the first violation."""

    examples: int = 0
    vacuous: int = 0
    undecided: int = 0
    worst_ratio: float = -math.inf
    worst_slack: float = math.nan
    worst_part: str | None = None
    worst_case: dict | None = None
    violation: dict | None = None
    error: str | None = None
    seconds: float = 0.0

    def record(self, case: dict, verdict: Verdict) -> None:
        self.examples += 1
        self.vacuous += verdict.vacuous
        self.undecided += bool(verdict.undecided)
        for part, ratio in verdict.ratios.items():
            if part in verdict.undecided:
                continue
            slack = verdict.slacks.get(part, math.nan)
            if ratio > self.worst_ratio or (ratio == self.worst_ratio and slack < self.worst_slack):
                self.worst_ratio, self.worst_slack, self.worst_part = ratio, slack, part
                self.worst_case = case_to_json(case)
        if verdict.violated and self.violation is None:
            part = verdict.violated[0]
            self.violation = {"part": part, "ratio": verdict.ratios[part],
                              "case": case_to_json(case)}


class _Violation(AssertionError):
    pass


def search(lemma: Lemma, base: settings, constants: dict[str, float] | None = None,
           dps: int = DEFAULT_DPS) -> SearchOutcome:
    """Run the hypothesis search of ``lemma`` under ``base`` settings (a profile).

    Returns after ``base.max_examples`` examples or at the first violation.
    """
    constants = lemma.default_constants if constants is None else constants
    outcome = SearchOutcome()

    def probe(case):
        steer = float_ratios(lemma, case, constants)
        assume(steer is not None)
        for part, ratio in steer.items():
            target(ratio, label=part)
        verdict = judge(lemma, case, constants, dps)
        outcome.record(case, verdict)
        if verdict.violated:
            raise _Violation(f"{lemma.id} violated: part {verdict.violated[0]}")

    test = given(case=lemma.strategy())(probe)
    for pinned in lemma.examples:
        test = example(case=pinned)(test)
    test = settings(base, phases=_PHASES, database=None)(test)
    start = time.perf_counter()
    try:
        test()
    except _Violation:
        pass
    except Exception as exc:  # a bug, not a verdict: reported as a failure with its message
        outcome.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    outcome.seconds = time.perf_counter() - start
    return outcome


def profile_settings(profile: str) -> settings:
    """The registered hypothesis profile ``profile`` (dev / ci / thorough)."""
    if profile not in PROFILES:
        raise HarnessInputError(
            f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return settings.get_profile(profile)


# ----------------------------------------------------------------------------------------------
# one lemma: verdict + teeth
# ----------------------------------------------------------------------------------------------

@dataclass
class LemmaResult:
    """One row of the lemma report."""

    id: str
    statement: str
    tag: str
    tightness: str
    status: str
    examples: int
    vacuous: int
    undecided: int
    worst_ratio: float
    worst_slack: float
    worst_part: str | None
    sharp_constant: float | dict | None
    teeth: str | None
    teeth_detail: dict = field(default_factory=dict)
    counterexample: dict | None = None
    xfail: str | None = None
    error: str | None = None
    time: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def _status(lemma: Lemma, outcome: SearchOutcome) -> str:
    if outcome.error:
        return "fail"
    if lemma.xfail:
        return "xfail" if outcome.violation else "fail"
    return "fail" if outcome.violation else "pass"


def teeth_summary(details: dict) -> str | None:
    """``falsified`` when every sharp constant was falsified, ``not-falsified`` otherwise,
    None for a lemma without sharp constants."""
    if not details:
        return None
    return "falsified" if all(d["falsified"] for d in details.values()) else "not-falsified"


def _unit(lemma_id: str, profile: str, constant: str | None, dps: int) -> tuple:
    """One unit of work (a verdict search, or the teeth search of one constant)."""
    import torch

    torch.set_num_threads(1)
    lemma = get(lemma_id)
    constants = None if constant is None else lemma.tightened(constant)
    return lemma_id, constant, search(lemma, profile_settings(profile), constants, dps)


def _teeth_detail(lemma: Lemma, name: str, outcome: SearchOutcome) -> dict:
    return {"constant": next(c.value for c in lemma.constants if c.name == name),
            "tightened": lemma.tightened(name)[name], "falsified": outcome.violation is not None,
            "examples": outcome.examples, "worst_ratio": outcome.worst_ratio,
            "seconds": outcome.seconds}


def assemble(lemma: Lemma, verdict: SearchOutcome, teeth: dict[str, SearchOutcome]
             ) -> LemmaResult:
    """The report row of ``lemma`` from its verdict search and its teeth searches."""
    details = {name: _teeth_detail(lemma, name, out) for name, out in teeth.items()}
    return LemmaResult(
        id=lemma.id, statement=lemma.statement, tag=lemma.tag, tightness=lemma.tightness,
        status=_status(lemma, verdict), examples=verdict.examples, vacuous=verdict.vacuous,
        undecided=verdict.undecided, worst_ratio=verdict.worst_ratio,
        worst_slack=verdict.worst_slack, worst_part=verdict.worst_part,
        sharp_constant=lemma.sharp_constant,
        teeth=teeth_summary(details), teeth_detail=details, counterexample=verdict.violation,
        xfail=lemma.xfail, error=verdict.error,
        time=verdict.seconds + sum(out.seconds for out in teeth.values()))


def run_catalogue(ids: Iterable[str], profile: str, jobs: int = 1, dps: int = DEFAULT_DPS,
                  on_result: Callable[[LemmaResult], None] | None = None) -> list[LemmaResult]:
    """Verdict and teeth searches of every lemma in ``ids``, on ``jobs`` processes.

    Each search is one unit of work (a lemma's teeth searches run beside its verdict search);
    ``on_result`` is called as soon as all units of a lemma are done.
    """
    lemmas = [get(i) for i in ids]
    profile_settings(profile)
    units = [(lemma.id, None) for lemma in lemmas] + [
        (lemma.id, c.name) for lemma in lemmas for c in lemma.sharp_constants]
    pending = {lemma.id: 1 + len(lemma.sharp_constants) for lemma in lemmas}
    verdicts: dict[str, SearchOutcome] = {}
    teeth: dict[str, dict[str, SearchOutcome]] = {lemma.id: {} for lemma in lemmas}
    results: dict[str, LemmaResult] = {}

    def collect(lemma_id, constant, outcome):
        if constant is None:
            verdicts[lemma_id] = outcome
        else:
            teeth[lemma_id][constant] = outcome
        pending[lemma_id] -= 1
        if pending[lemma_id] == 0:
            lemma = get(lemma_id)
            results[lemma_id] = assemble(lemma, verdicts[lemma_id], {
                c.name: teeth[lemma_id][c.name] for c in lemma.sharp_constants})
            if on_result is not None:
                on_result(results[lemma_id])

    if jobs <= 1:
        for lemma_id, constant in units:
            collect(*_unit(lemma_id, profile, constant, dps))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = [pool.submit(_unit, lemma_id, profile, constant, dps)
                       for lemma_id, constant in units]
            for future in concurrent.futures.as_completed(futures):
                collect(*future.result())
    return [results[lemma.id] for lemma in lemmas]


def default_jobs() -> int:
    """Worker processes: every available core, at most 2 (the CI machine has 2)."""
    return max(1, min(2, len(os.sched_getaffinity(0))))
