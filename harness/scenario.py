"""Scenarios: a TOML file describing many runs, parsed and validated into a typed spec.

A scenario is the cross product (data seeds) x (optimizers) run for ``steps`` steps from the
zero initialization through the batched engine (:mod:`harness.engine`), then judged against
THEORY.md section 4 (:mod:`harness.rates`) and reported (:mod:`harness.report`). The format::

    [scenario]
    name = "paper000"            # the report directory reports/<name>/ (letters, digits, - _ .)
    description = "..."          # optional, shown in the report
    steps = 100000               # horizon T >= 1 (``--steps`` overrides it)
    ci_steps = 2000              # optional: the short horizon CI runs (scenario tests, check)
    device = "cpu"               # "cpu", "cuda" or "cuda:N" (``--device`` overrides it)
    batch_size = 64              # optional: at most this many runs per tensor program
    per_decade = 20              # optional: checkpoints per decade of t (geometric grid)
    out = "reports/paper000"     # optional: output directory (``--out`` overrides it)

    [data]
    generator = "paper"          # a generator of harness.data.make_dataset ...
    seeds = [0, 1, 2]            # ... one data set per seed
    [data.params]                # the generator's parameters
    k = 10

    # or, instead of generator/seeds/params: path = "data.npz" (a saved harness.data.Dataset;
    # relative paths are relative to the TOML file)

    [[optimizer]]                # one table per algorithm
    name = "adam"                # registry name (harness.optimizers)
    label = "adam-eps0"          # optional unique display name (default: name)
    eta0 = 0.1                   # eta_t = eta0 (t+1)^(-a)
    a = "2/3"                    # number in [0, 1] or a fraction string; or
    # schedule = "constant"      # eta_t = eta0 (the same as a = 0)
    expect = "max"               # optional: the norm whose gap is judged (default: own norm)
    [optimizer.hyper]            # hyper-parameters passed to make_optimizer(name, **hyper)
    beta1 = 0.9

Validation is strict and happens before anything is written: an unknown key is reported with
where it was found, every value is type- and range-checked, and the optimizers' hyper-parameters
and the data are checked by building them (:func:`prepare`), so a bad file fails with one
:class:`~harness.errors.HarnessInputError` line and no half-written report directory.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from harness.curves import METRIC_NORMS, write_curves
from harness.data import Dataset, make_dataset
from harness.engine import RunSpec, run_batch
from harness.errors import HarnessInputError
from harness.margins import MarginCertificate, max_margins
from harness.norms import Norm
from harness.optimizers import Optimizer, make_optimizer
from harness.provenance import SCHEMA_VERSION, provenance
from harness.rates import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    THRESHOLDS,
    VERDICTS,
    detect_onset,
    fit_tail,
    forgetting_rate,
    judge,
    rate_bound,
)
from harness.report import CURVES_FILE, write_scenario_report

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
SCHEDULES = ("poly", "constant")


@dataclass(frozen=True)
class DataSpec:
    """Where the runs' data come from: a generator with seeds, or one saved data set.

    Attributes:
        generator: name for :func:`harness.data.make_dataset`, or None when ``path`` is given.
        params: the generator's keyword parameters.
        seeds: one data set per seed (for ``path``: the single seed stored in the file).
        path: a ``.npz`` written by :meth:`harness.data.Dataset.save`, or None.
    """

    generator: str | None
    params: dict = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    path: Path | None = None


@dataclass(frozen=True)
class OptimizerSpec:
    """One algorithm of a scenario: registry name, hyper-parameters and step-size schedule.

    The schedule is ``eta_t = eta0 (t+1)^(-a)`` (THEORY.md section 4); ``a = 0`` is the
    constant schedule. ``expect`` is the norm whose margin gap the rate verdict judges
    (canonical name; None: the optimizer's own norm).
    """

    name: str
    label: str
    eta0: float
    a: float
    hyper: dict = field(default_factory=dict)
    expect: str | None = None

    @property
    def schedule(self) -> str:
        """``"constant"`` when ``a == 0``, else ``"poly"``."""
        return "constant" if self.a == 0 else "poly"


@dataclass(frozen=True)
class ScenarioSpec:
    """A validated scenario (see the module docstring for the file format)."""

    name: str
    data: DataSpec
    optimizers: tuple[OptimizerSpec, ...]
    steps: int
    device: str = "cpu"
    batch_size: int | None = None
    per_decade: int = 20
    out: Path | None = None
    description: str = ""
    ci_steps: int | None = None
    source: Path | None = None

    @property
    def output_dir(self) -> Path:
        """``out`` if given, else ``reports/<name>`` (relative to the working directory)."""
        return self.out if self.out is not None else Path("reports") / self.name

    def with_overrides(self, *, steps: int | None = None, device: str | None = None,
                       out: str | Path | None = None) -> ScenarioSpec:
        """The spec with command-line overrides applied and validated."""
        where = "the override"
        return replace(
            self,
            steps=self.steps if steps is None else positive_int(steps, "steps", where),
            device=self.device if device is None else parse_device(device, where),
            out=self.out if out is None else Path(out),
        )


class TomlTable:
    """A TOML table being consumed: ``take`` pops keys, ``finish`` rejects the leftovers."""

    def __init__(self, value, where: str):
        if not isinstance(value, dict):
            raise HarnessInputError(f"{where} must be a table, got {type(value).__name__}")
        self.items = dict(value)
        self.where = where

    def take(self, key: str, default=...):
        """Pop ``key``; without a ``default`` a missing key is a one-line error."""
        if key in self.items:
            return self.items.pop(key)
        if default is ...:
            raise HarnessInputError(f"missing key {key!r} in {self.where}")
        return default

    def finish(self, allowed) -> None:
        """Reject any key not taken (a typo never runs silently with defaults)."""
        if self.items:
            unknown = ", ".join(repr(k) for k in sorted(self.items))
            raise HarnessInputError(
                f"unknown key {unknown} in {self.where} (allowed: {', '.join(allowed)})")


def positive_int(value, key: str, where: str) -> int:
    """``value`` as an int >= 1 (bool rejected), else a one-line error naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HarnessInputError(f"{key} must be an integer >= 1 in {where}, got {value!r}")
    return int(value)


def positive_float(value, key: str, where: str) -> float:
    """``value`` as a finite float > 0 (bool rejected), else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise HarnessInputError(f"{key} must be a finite number > 0 in {where}, got {value!r}")
    return float(value)


def _exponent(value, where: str) -> float:
    """The step exponent ``a``: a number or a fraction string like ``"2/3"``, in [0, 1]."""
    if isinstance(value, str):
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise HarnessInputError(
                f"a must be a number or a fraction like \"2/3\" in {where}, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1):
        raise HarnessInputError(f"a (step exponent) must lie in [0, 1] in {where}, got {value!r}")
    return float(value)


def parse_device(value, where: str) -> str:
    """``value`` if it names a device (``cpu``, ``cuda``, ``cuda:N``), else a one-line error."""
    if not isinstance(value, str) or not _DEVICE.match(value):
        raise HarnessInputError(f"device must be 'cpu', 'cuda' or 'cuda:N' in {where}, "
                                f"got {value!r}")
    return value


def require_string(value, key: str, where: str) -> str:
    """``value`` if it is a string, else a one-line error naming ``key`` and ``where``."""
    if not isinstance(value, str):
        raise HarnessInputError(f"{key} must be a string in {where}, got {value!r}")
    return value


def parse_data(value, base: Path | None) -> DataSpec:
    """The ``[data]`` table: a ``path`` (relative to ``base``) or a generator with seeds and
    params."""
    table = TomlTable(value, "[data]")
    path = table.take("path", None)
    if path is not None:
        path = Path(require_string(path, "path", "[data]"))
        if not path.is_absolute() and base is not None:
            path = base / path
        table.finish(("path",))
        return DataSpec(generator=None, params={}, seeds=(), path=path)
    generator = require_string(table.take("generator"), "generator", "[data]")
    seeds = table.take("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise HarnessInputError(f"seeds must be a non-empty list of integers in [data], "
                                f"got {seeds!r}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise HarnessInputError(f"seeds must be integers >= 0 in [data], got {seed!r}")
    if len(set(seeds)) != len(seeds):
        raise HarnessInputError(f"seeds repeat in [data]: {seeds}")
    params = table.take("params", {})
    if not isinstance(params, dict):
        raise HarnessInputError(f"[data.params] must be a table, got {params!r}")
    table.finish(("generator", "seeds", "params", "path"))
    return DataSpec(generator=generator, params=dict(params), seeds=tuple(seeds))


_OPTIMIZER_KEYS = ("name", "label", "eta0", "a", "schedule", "expect", "hyper")


def parse_optimizer(value, index: int) -> OptimizerSpec:
    """The ``index``-th ``[[optimizer]]`` table (name, label, eta0, a or schedule, expect,
    hyper)."""
    where = f"[[optimizer]] #{index + 1}"
    table = TomlTable(value, where)
    name = require_string(table.take("name"), "name", where)
    where = f"[[optimizer]] #{index + 1} ({name})"
    table.where = where
    label = require_string(table.take("label", name), "label", where)
    if not _NAME.match(label):
        raise HarnessInputError(f"label must use letters, digits, '-', '_', '.' in {where}, "
                                f"got {label!r}")
    eta0 = positive_float(table.take("eta0"), "eta0", where)
    schedule = table.take("schedule", None)
    a = table.take("a", None)
    if schedule is not None and schedule not in SCHEDULES:
        raise HarnessInputError(f"schedule must be one of {', '.join(SCHEDULES)} in {where}, "
                                f"got {schedule!r}")
    if schedule == "constant":
        if a is not None and _exponent(a, where) != 0:
            raise HarnessInputError(f"schedule = 'constant' contradicts a = {a!r} in {where}")
        a = 0.0
    elif a is None:
        raise HarnessInputError(f"missing key 'a' (or schedule = 'constant') in {where}")
    expect = table.take("expect", None)
    if expect is not None:
        try:
            expect = Norm.parse(require_string(expect, "expect", where)).name
        except HarnessInputError as exc:
            raise HarnessInputError(f"{exc} (expect in {where})") from None
    hyper = table.take("hyper", {})
    if not isinstance(hyper, dict):
        raise HarnessInputError(f"hyper must be a table in {where}, got {hyper!r}")
    table.finish(_OPTIMIZER_KEYS)
    return OptimizerSpec(name=name, label=label, eta0=eta0, a=_exponent(a, where),
                         hyper=dict(hyper), expect=expect)


_SCENARIO_KEYS = ("name", "description", "steps", "ci_steps", "device", "batch_size",
                  "per_decade", "out")


def parse_scenario(doc: dict, source: Path | None = None) -> ScenarioSpec:
    """Validate a parsed TOML document into a :class:`ScenarioSpec` (names and ranges only;
    :func:`prepare` then builds the optimizers and data, which checks the rest)."""
    origin = f" of {source}" if source is not None else ""
    top = TomlTable(doc, f"the top level{origin}")
    head = TomlTable(top.take("scenario"), "[scenario]")
    name = require_string(head.take("name"), "name", "[scenario]")
    if not _NAME.match(name):
        raise HarnessInputError(f"name must use letters, digits, '-', '_', '.' in [scenario], "
                                f"got {name!r}")
    description = require_string(head.take("description", ""), "description", "[scenario]")
    steps = positive_int(head.take("steps"), "steps", "[scenario]")
    ci_steps = head.take("ci_steps", None)
    if ci_steps is not None:
        ci_steps = positive_int(ci_steps, "ci_steps", "[scenario]")
    device = parse_device(head.take("device", "cpu"), "[scenario]")
    batch_size = head.take("batch_size", None)
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size", "[scenario]")
    per_decade = positive_int(head.take("per_decade", 20), "per_decade", "[scenario]")
    out = head.take("out", None)
    if out is not None:
        out = Path(require_string(out, "out", "[scenario]"))
    head.finish(_SCENARIO_KEYS)
    base = source.parent if source is not None else None
    data = parse_data(top.take("data"), base)
    entries = top.take("optimizer")
    if not isinstance(entries, list) or not entries:
        raise HarnessInputError("[[optimizer]] must be given at least once")
    optimizers = tuple(parse_optimizer(entry, i) for i, entry in enumerate(entries))
    labels = [opt.label for opt in optimizers]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise HarnessInputError(f"optimizer labels repeat: {', '.join(repeated)} "
                                f"(give each [[optimizer]] a distinct label)")
    top.finish(("scenario", "data", "optimizer"))
    return ScenarioSpec(name=name, description=description, data=data, optimizers=optimizers,
                        steps=steps, device=device, batch_size=batch_size,
                        per_decade=per_decade, out=out, ci_steps=ci_steps, source=source)


def read_toml_text(path: str | Path, what: str = "scenario file") -> tuple[dict, str]:
    """The parsed TOML document of a scenario-like file and its text; a one-line error naming
    ``what`` if it is missing, unreadable or malformed (shared by the scenario, network
    scenario and sweep loaders)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessInputError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessInputError(f"cannot read {what} {path}: {exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise HarnessInputError(f"malformed TOML in {path}: {exc}") from None


def read_toml(path: str | Path) -> dict:
    """The parsed TOML document of a scenario file (see :func:`read_toml_text`)."""
    return read_toml_text(path)[0]


def load_scenario(path: str | Path) -> ScenarioSpec:
    """Read and validate a scenario TOML file."""
    return parse_scenario(read_toml(path), source=Path(path))


# ------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class PreparedRun:
    """One run of a scenario, built and validated: the engine's spec and its context."""

    spec: OptimizerSpec
    optimizer: Optimizer
    dataset: Dataset
    references: dict[str, MarginCertificate]
    run: RunSpec

    @property
    def run_id(self) -> str:
        """The run's name in the curve rows and the report (``<label>-s<data seed>``)."""
        return str(self.run.run_id)


@dataclass
class ScenarioResult:
    """What :func:`run_scenario` produced.

    Attributes:
        spec: the spec that ran (overrides applied).
        out_dir: where the report was written.
        rows: the curve rows (harness/curves.py format).
        report: the ``report.json`` document (verdicts, final gaps, invariants, provenance).
        files: ``{kind: path}`` of every file written.
        interrupted: True when Ctrl-C stopped the runs (what was recorded is written).
    """

    spec: ScenarioSpec
    out_dir: Path
    rows: list[dict]
    report: dict
    files: dict[str, Path]
    interrupted: bool = False

    @property
    def verdict(self) -> str:
        """The overall verdict of the rate checks (:func:`overall_verdict`)."""
        return self.report["verdict"]


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessInputError(f"device {device!r} requested but torch sees no CUDA device "
                                "(use --device cpu)")


def _datasets(data: DataSpec) -> list[Dataset]:
    try:
        if data.path is not None:
            return [Dataset.load(data.path)]
        return [make_dataset(data.generator, seed, **data.params) for seed in data.seeds]
    except HarnessInputError as exc:  # NotSeparableError included, its type kept
        raise type(exc)(f"{exc} (in [data])") from None


def _run_id(label: str, dataset: Dataset) -> str:
    """``<label>-s<data seed>`` (``<label>-<data name>`` for a saved set without a seed)."""
    return f"{label}-{dataset.name}" if dataset.seed is None else f"{label}-s{dataset.seed}"


def prepare(spec: ScenarioSpec) -> list[PreparedRun]:
    """Build every optimizer, data set and certified reference of ``spec``, writing nothing.

    This is the validation that needs the library: unknown optimizer names and invalid
    hyper-parameters (:func:`harness.optimizers.make_optimizer`), generator parameters
    (:func:`harness.data.make_dataset`), a missing or corrupt data file, and data that are not
    separable (:class:`~harness.errors.NotSeparableError` from the certified max margins in
    the metric norms and every optimizer's own norm). Runs are ordered by optimizer, then seed.
    """
    _check_device(spec.device)
    optimizers = {}
    for opt in spec.optimizers:
        try:
            optimizers[opt.label] = make_optimizer(opt.name, **opt.hyper)
        except HarnessInputError as exc:
            raise HarnessInputError(f"{exc} (in [[optimizer]] {opt.label})") from None
        own = optimizers[opt.label].norm.name
        if opt.expect not in (None, own, *METRIC_NORMS):
            raise HarnessInputError(
                f"expect = {opt.expect!r} is not recorded for [[optimizer]] {opt.label} "
                f"(choose one of {', '.join(METRIC_NORMS)} or its own norm {own})")
    datasets = _datasets(spec.data)
    norms = list(dict.fromkeys([*METRIC_NORMS, *(o.norm.name for o in optimizers.values())]))
    references = [{cert.norm: cert for cert in max_margins(ds.X, ds.y, norms)}
                  for ds in datasets]
    return [
        PreparedRun(spec=opt, optimizer=optimizers[opt.label], dataset=ds, references=refs,
                    run=RunSpec(dataset=ds, optimizer=opt.name, eta0=opt.eta0, a=opt.a,
                                hyper=dict(opt.hyper), references=refs,
                                run_id=_run_id(opt.label, ds)))
        for opt in spec.optimizers for ds, refs in zip(datasets, references, strict=True)
    ]


def _gap_series(rows: list[dict], run_id: str, column: str) -> dict[str, np.ndarray]:
    """``t``, gap and ``N(W)`` in the norm ``column`` and ``log G`` of one run, where ``W != 0``.

    ``W = 0`` (the zero initialization) has no direction, so its gap is undefined (NaN); it is
    left out rather than read as a NaN produced by the algorithm.
    """
    own = sorted((r for r in rows if r["run_id"] == run_id and r["norm_own"] != 0),
                 key=lambda r: r["t"])
    return {key: np.array([float(r[col]) for r in own], dtype=np.float64)
            for key, col in (("t", "t"), ("gap", f"gap_{column}"), ("norm", f"norm_{column}"),
                             ("log_proxy", "log_proxy"))}


def judge_algorithm(runs: list[PreparedRun], rows: list[dict]) -> dict:
    """The rate verdict of one algorithm over its runs (one per data seed).

    THEORY.md section 4's envelope for the algorithm's family and ``a``
    (:func:`harness.rates.rate_bound`); per run the onset ``t0`` of the asymptotic regime from
    ``log G`` (:func:`harness.rates.detect_onset`, with the EMA's forgetting rate), a fit of
    the gap in the expected norm (default: the algorithm's own) on the tail
    (:func:`harness.rates.fit_tail`; gaps below the certificate's resolution are not fitted),
    then :func:`harness.rates.judge` over runs. Algorithms the table does not cover (Adam with
    ``eps > 0``, a step exponent without a stated rate) get ``verdict: None`` and the reason.
    """
    first = runs[0]
    opt = first.optimizer
    expect = first.spec.expect or opt.norm.name
    column = "own" if expect == opt.norm.name else expect
    info = {"label": first.spec.label, "algorithm": opt.name, "family": opt.family,
            "expect": expect, "gap_column": f"gap_{column}", "a": first.spec.a,
            "eta0": first.spec.eta0, "hyper": dict(opt.hyper),
            "seeds": [p.dataset.seed for p in runs]}
    n, d = first.dataset.X.shape
    if opt.family == "adam" and not opt.scale_invariant:
        return {**info, "verdict": None, "reason": "THEORY.md section 4 states Adam's rate for "
                "eps = 0 only (with eps > 0 Adam turns into GD once sqrt(v) < eps)"}
    try:
        envelope = rate_bound(opt.family, first.spec.a, n, d)
    except HarnessInputError as exc:
        return {**info, "verdict": None, "reason": str(exc)}
    betas = [opt.hyper[key] for key in ("beta1", "beta2") if key in opt.hyper]
    rate = forgetting_rate(opt.family, betas)
    fits = []
    for p in runs:
        series = _gap_series(rows, p.run_id, column)
        if series["t"].size == 0:
            continue
        cert = p.references[expect]
        floor = max(THRESHOLDS.gap_floor_rel * cert.gamma, cert.upper - cert.lower)
        fits.append(fit_tail(p.run_id, series["t"], series["gap"], envelope,
                             t0=detect_onset(series["t"], series["log_proxy"], rate),
                             norm=series["norm"], floor=floor))
    if not fits:
        return {**info, "verdict": None, "reason": "no checkpoints recorded (interrupted)"}
    return {**info, **judge(fits, envelope).as_dict()}


def overall_verdict(algorithms: list[dict], interrupted: bool) -> tuple[str, str]:
    """FAIL if any algorithm fails; PASS if every judged one passes (and the run finished);
    INCONCLUSIVE otherwise. Returns ``(verdict, reason)``."""
    judged = [a for a in algorithms if a["verdict"] is not None]
    counts = {v: sum(a["verdict"] == v for a in judged) for v in VERDICTS}
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    tally += f" over {len(judged)} judged algorithms ({len(algorithms) - len(judged)} not judged)"
    if counts[FAIL]:
        failed = ", ".join(a["label"] for a in judged if a["verdict"] == FAIL)
        return FAIL, f"{tally}; failed: {failed}"
    if interrupted:
        return INCONCLUSIVE, f"interrupted before the horizon; {tally}"
    if judged and counts[PASS] == len(judged):
        return PASS, tally
    return INCONCLUSIVE, tally


def _final_row(rows: list[dict], run_id: str) -> dict | None:
    own = [r for r in rows if r["run_id"] == run_id]
    return max(own, key=lambda r: r["t"]) if own else None


_FINAL_COLUMNS = ("t", "log_loss", "log_proxy", "g_over_l", "margin") + tuple(
    f"{kind}_{N}" for N in (*METRIC_NORMS, "own") for kind in ("gap", "nmargin", "corr"))


def scenario_document(spec: ScenarioSpec, prepared: list[PreparedRun], rows: list[dict],
                      invariants: dict[str, dict], steps_done: dict[str, int], prov: dict, *,
                      interrupted: bool, seconds: float) -> dict:
    """The ``report.json`` document of a scenario run (rendered to Markdown by
    :func:`harness.report.scenario_markdown`, so the two never disagree)."""
    by_label: dict[str, list[PreparedRun]] = {}
    for p in prepared:
        by_label.setdefault(p.spec.label, []).append(p)
    algorithms = [judge_algorithm(runs, rows) for runs in by_label.values()]
    verdict, reason = overall_verdict(algorithms, interrupted)
    data = {}
    for p in prepared:
        n, d = p.dataset.X.shape
        data.setdefault(p.dataset.seed, {
            "name": p.dataset.name, "seed": p.dataset.seed, "n": n, "d": d, "k": p.dataset.k,
            "params": dict(p.dataset.params),
            "references": {norm: cert.as_dict() for norm, cert in p.references.items()}})
    runs = []
    for p in prepared:
        final = _final_row(rows, p.run_id)
        runs.append({
            "run_id": p.run_id, "label": p.spec.label, "algorithm": p.optimizer.name,
            "family": p.optimizer.family, "own_norm": p.optimizer.norm.name,
            "data_seed": p.dataset.seed, "eta0": p.spec.eta0, "a": p.spec.a,
            "hyper": dict(p.optimizer.hyper), "steps_done": steps_done.get(p.run_id, 0),
            "final": None if final is None else {c: final[c] for c in _FINAL_COLUMNS},
            "invariants": invariants.get(p.run_id)})
    return {
        "schema_version": SCHEMA_VERSION, "kind": "scenario", "scenario": spec.name,
        "description": spec.description,
        "source": None if spec.source is None else str(spec.source),
        "status": "interrupted" if interrupted else "complete",
        "verdict": verdict, "reason": reason, "steps": spec.steps, "device": spec.device,
        "per_decade": spec.per_decade, "seconds": seconds, "data": list(data.values()),
        "algorithms": algorithms, "runs": runs, "thresholds": THRESHOLDS.as_dict(),
        "provenance": prov,
    }


def _chunks(items: list, size: int | None) -> list[list]:
    size = size or len(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_scenario(spec: ScenarioSpec, steps: int | None = None, device: str | None = None,
                 out: str | Path | None = None, *, progress: bool | None = None
                 ) -> ScenarioResult:
    """Run every (data set, optimizer) pair of ``spec`` and write its report.

    Args:
        spec: a validated scenario (:func:`load_scenario`).
        steps: override the horizon (e.g. ``spec.ci_steps`` for a CI-sized run).
        device: override the device.
        out: override the output directory (default ``reports/<name>``).
        progress: show the engine's progress bar (default: unless CI is set or no TTY).

    The curve rows carry one column beyond harness/curves.py's: ``label``, the
    ``[[optimizer]]`` label (two Adams differing only in eps share the ``algorithm``).
    Everything is validated (:func:`prepare`) before the output directory is created. Runs go
    to :func:`harness.engine.run_batch` in batches of at most ``spec.batch_size`` runs; the
    curves file is rewritten (atomically) after each batch, so a crash keeps what finished.
    Ctrl-C stops the runs; the report of what was recorded is then written and marked
    interrupted (``result.interrupted``).

    Raises:
        HarnessInputError: anything wrong with the spec, its optimizers or its data.
    """
    spec = spec.with_overrides(steps=steps, device=device, out=out)
    prepared = prepare(spec)
    out_dir = spec.output_dir
    prov = provenance(seeds=sorted({p.dataset.seed for p in prepared}), device=spec.device,
                      scenario=spec.name)
    labels = {p.run_id: p.spec.label for p in prepared}
    rows: list[dict] = []
    invariants: dict[str, dict] = {}
    steps_done: dict[str, int] = {}
    interrupted, seconds = False, 0.0
    for chunk in _chunks(prepared, spec.batch_size):
        try:
            batch = run_batch([p.run for p in chunk], spec.steps, device=spec.device,
                              per_decade=spec.per_decade, compute_references=False,
                              progress=progress)
        except KeyboardInterrupt:
            interrupted = True
            break
        rows.extend({**row, "label": labels[row["run_id"]]} for row in batch.rows)
        invariants.update(batch.invariants)
        steps_done.update(batch.steps_done)
        seconds += batch.seconds
        write_curves(out_dir / CURVES_FILE, rows, prov)
        if batch.interrupted:
            interrupted = True
            break
    doc = scenario_document(spec, prepared, rows, invariants, steps_done, prov,
                            interrupted=interrupted, seconds=seconds)
    files = {"curves": write_curves(out_dir / CURVES_FILE, rows, prov),
             **write_scenario_report(out_dir, doc, rows)}
    return ScenarioResult(spec=spec, out_dir=out_dir, rows=rows, report=doc, files=files,
                          interrupted=interrupted)
