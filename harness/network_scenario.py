"""Homogeneous-network scenarios (paper 002 section 4.1): TOML spec, run, checks, report.

A scenario file with ``model = "relu"`` in its ``[scenario]`` table is run by
``python -m harness run FILE`` through this module (the linear scenarios of
:mod:`harness.scenario` are untouched). The format::

    [scenario]
    name = "teacher_student"     # report directory reports/<name>/
    model = "relu"               # selects this module
    description = "..."
    steps = 100000               # horizon T (--steps overrides, --ci takes ci_steps)
    ci_steps = 2000
    device = "cpu"
    per_decade = 10              # checkpoints per decade of t
    snapshots_per_decade = 2     # parameter snapshots per decade (KKT residuals over time)

    [data]                       # as in harness.scenario: generator, seeds, params
    generator = "teacher"
    seeds = [0, 1, 2]
    [data.params]
    n = 100                      # training points per data set

    [network]
    width = 20                   # student width m
    init_scale = 0.01            # every initial weight ~ N(0, init_scale^2)
    frozen_scale = 1.0           # frozen-output model: its fixed A ~ N(0, frozen_scale^2)
                                 # (default init_scale)
    loss = "exp"                 # paper 002's exponential loss (or "ce")
    test_size = 20000            # fresh points from the same teacher for the test accuracy

    [checks]                     # which runs the checks compare (labels of [[optimizer]])
    compare = ["gd", "sd", "cd"]             # (b) on the full model
    compare_frozen = ["gd-frozen", "shampoo"] # (b) on the frozen-output model
    compare_reported = ["gd-init1", "cd-init1"] # (b)'s numbers on the full model, not judged
    adam_default = ["adam", "adam-nomom"]     # (d): Adam with the default eps
    adam_reported = ["adam-eps1e-4"]          # (d): analysed and timed, not judged
    sd = "sd"
    gd = "gd"

    [[optimizer]]                # as in harness.scenario (name, label, eta0, a, hyper)
    name = "ngd"
    label = "gd"
    eta0 = 0.1
    a = "1/2"

    [[optimizer]]
    name = "cd"
    label = "cd-init1"
    eta0 = 0.5
    a = "1/2"
    init_scale = 1.0             # optional: this algorithm's runs start at this scale instead
                                 # of [network] init_scale (the same draw, rescaled)

    [[frozen_optimizer]]         # the same, trained on the frozen-output (1-homogeneous) model
    name = "shampoo"
    eta0 = 0.1
    a = "1/2"

Every (data seed, optimizer) pair is one run; the runs of a model are ONE batch of
:func:`harness.network_engine.train_networks`; run ``(seed s, optimizer j)`` initializes from
seed ``1000 s + 17`` (the same initialization for every algorithm on a data set, as in the paper;
an optimizer's ``init_scale`` rescales that draw, so its runs start from the same direction at
another scale).

Check (b) compares margins among runs from the same initialization scale only (a group that
mixes scales is an input error): paper 002 Figure 1 compares GD, SD and CD trained from one
small initialization, whose size sets how soon the implicit bias "kicks in" (the paper's
section 4.1), so a run from a larger init sits at another point of its way to the limit and
an ordering across scales would measure that, not the bias. ``compare_reported`` gives the same
numbers for a group (e.g. runs from a larger init, outside the small-init regime the figure is
about), reported and not judged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.curves import geometric_grid, write_curves
from harness.errors import HarnessInputError
from harness.homogeneous import (
    check_adam_switch,
    check_kkt_shrinks,
    check_own_margin_largest,
    check_soft_margin,
    combine,
    in_late_phase,
)
from harness.network_engine import NetworkRun, train_networks
from harness.network_metrics import dead_samples, kkt_residual, margin_norms, test_accuracy
from harness.networks import ReluNetwork, check_loss, init_parameters
from harness.provenance import SCHEMA_VERSION, provenance
from harness.report import format_number, markdown_table
from harness.scenario import (
    DataSpec,
    OptimizerSpec,
    TomlTable,
    parse_data,
    parse_device,
    parse_optimizer,
    positive_float,
    positive_int,
    read_toml,
    require_string,
)
from harness.schedules import Schedule
from harness.storage import save_figure_atomic, write_json_atomic, write_text_atomic

MODEL_KEY = "relu"


@dataclass(frozen=True)
class NetworkScenario:
    """A validated homogeneous-network scenario (see the module docstring)."""

    name: str
    data: DataSpec
    optimizers: tuple[OptimizerSpec, ...]
    frozen_optimizers: tuple[OptimizerSpec, ...]
    steps: int
    width: int
    init_scale: float
    test_size: int
    frozen_scale: float | None = None
    loss: str = "exp"
    ci_steps: int | None = None
    device: str = "cpu"
    per_decade: int = 10
    snapshots_per_decade: int = 2
    description: str = ""
    checks: dict = field(default_factory=dict)
    source: Path | None = None
    init_overrides: dict = field(default_factory=dict)

    def init_scale_of(self, label: str) -> float:
        """The init scale of the runs of optimizer ``label`` (its override, else
        ``init_scale``)."""
        return self.init_overrides.get(label, self.init_scale)


def is_network_scenario(path: str | Path) -> bool:
    """Whether the TOML file at ``path`` declares ``model = "relu"`` (False if unreadable:
    the linear loader then reports the problem)."""
    try:
        doc = read_toml(path)
    except HarnessInputError:
        return False
    head = doc.get("scenario")
    return isinstance(head, dict) and head.get("model") == MODEL_KEY


def _labels(value, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HarnessInputError(f"{key} must be a list of optimizer labels in [checks]")
    return tuple(value)


def _parse_optimizers(entries, key: str) -> tuple[tuple[OptimizerSpec, ...], dict[str, float]]:
    """The ``[[key]]`` tables: :func:`harness.scenario.parse_optimizer` for each, after taking
    out its optional ``init_scale`` (validated like ``[network] init_scale``); returns the specs
    and ``{label: init_scale}`` for the tables that give one."""
    specs, overrides = [], {}
    for i, entry in enumerate(entries):
        scale = None
        if isinstance(entry, dict) and "init_scale" in entry:
            entry = dict(entry)
            scale = positive_float(entry.pop("init_scale"), "init_scale", f"[[{key}]] #{i + 1}")
        spec = parse_optimizer(entry, i)
        specs.append(spec)
        if scale is not None:
            overrides[spec.label] = scale
    return tuple(specs), overrides


def _same_init(spec: NetworkScenario, key: str) -> None:
    """One-line error when the runs that ``[checks] key`` compares start from different init
    scales (see the module docstring: (b) compares runs from one initialization)."""
    scales = {label: spec.init_scale_of(label) for label in spec.checks[key]}
    if len(set(scales.values())) > 1:
        raise HarnessInputError(f"{key} in [checks] mixes init scales ("
                                + ", ".join(f"{k} {v:g}" for k, v in scales.items())
                                + "): compare runs from one initialization")


def parse_network_scenario(doc: dict, source: Path | None = None) -> NetworkScenario:
    """Validate a parsed TOML document into a :class:`NetworkScenario`."""
    top = TomlTable(doc, "the top level")
    head = TomlTable(top.take("scenario"), "[scenario]")
    name = require_string(head.take("name"), "name", "[scenario]")
    if head.take("model") != MODEL_KEY:
        raise HarnessInputError(f"model must be {MODEL_KEY!r} in [scenario]")
    description = require_string(head.take("description", ""), "description", "[scenario]")
    steps = positive_int(head.take("steps"), "steps", "[scenario]")
    ci_steps = head.take("ci_steps", None)
    ci_steps = None if ci_steps is None else positive_int(ci_steps, "ci_steps", "[scenario]")
    device = parse_device(head.take("device", "cpu"), "[scenario]")
    per_decade = positive_int(head.take("per_decade", 10), "per_decade", "[scenario]")
    snaps = positive_int(head.take("snapshots_per_decade", 2), "snapshots_per_decade",
                          "[scenario]")
    head.finish(("name", "model", "description", "steps", "ci_steps", "device", "per_decade",
                 "snapshots_per_decade"))
    data = parse_data(top.take("data"), source.parent if source else None)
    if data.generator is None:
        raise HarnessInputError("[data] of a network scenario needs a generator (fresh test "
                                "points are drawn from it)")
    net = TomlTable(top.take("network"), "[network]")
    width = positive_int(net.take("width"), "width", "[network]")
    init_scale = positive_float(net.take("init_scale"), "init_scale", "[network]")
    frozen_scale = net.take("frozen_scale", None)
    if frozen_scale is not None:
        frozen_scale = positive_float(frozen_scale, "frozen_scale", "[network]")
    loss = check_loss(net.take("loss", "exp"))
    test_size = positive_int(net.take("test_size", 20000), "test_size", "[network]")
    net.finish(("width", "init_scale", "frozen_scale", "loss", "test_size"))
    full, overrides = _parse_optimizers(top.take("optimizer", []), "optimizer")
    frozen, frozen_overrides = _parse_optimizers(top.take("frozen_optimizer", []),
                                                 "frozen_optimizer")
    labels = [o.label for o in full + frozen]
    if not labels:
        raise HarnessInputError("give at least one [[optimizer]] or [[frozen_optimizer]]")
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise HarnessInputError(f"optimizer labels repeat: {', '.join(repeated)}")
    table = TomlTable(top.take("checks", {}), "[checks]")
    checks = {"compare": _labels(table.take("compare", []), "compare"),
              "compare_frozen": _labels(table.take("compare_frozen", []), "compare_frozen"),
              "compare_reported": _labels(table.take("compare_reported", []),
                                          "compare_reported"),
              "adam_default": _labels(table.take("adam_default", []), "adam_default"),
              "adam_reported": _labels(table.take("adam_reported", []), "adam_reported"),
              "sd": table.take("sd", None), "gd": table.take("gd", None)}
    table.finish(("compare", "compare_frozen", "compare_reported", "adam_default",
                  "adam_reported", "sd", "gd"))
    named = [*checks["compare"], *checks["compare_frozen"], *checks["compare_reported"],
             *checks["adam_default"],
             *checks["adam_reported"],
             *(x for x in (checks["sd"], checks["gd"]) if x is not None)]
    unknown = sorted(set(named) - set(labels))
    if unknown:
        raise HarnessInputError(f"[checks] names unknown optimizer labels: {', '.join(unknown)}")
    top.finish(("scenario", "data", "network", "checks", "optimizer", "frozen_optimizer"))
    spec = NetworkScenario(name=name, data=data, optimizers=full, frozen_optimizers=frozen,
                           steps=steps, width=width, init_scale=init_scale, test_size=test_size,
                           frozen_scale=frozen_scale,
                           loss=loss, ci_steps=ci_steps, device=device, per_decade=per_decade,
                           snapshots_per_decade=snaps, description=description, checks=checks,
                           source=source, init_overrides={**overrides, **frozen_overrides})
    for key in ("compare", "compare_frozen", "compare_reported"):
        _same_init(spec, key)
    return spec


def load_network_scenario(path: str | Path) -> NetworkScenario:
    """Read and validate a network scenario file."""
    return parse_network_scenario(read_toml(path), source=Path(path))


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------

def _datasets(spec: NetworkScenario):
    """``(X, y, X_test, y_test)`` stacked over the data seeds; train and test are one draw of
    the generator split in two, so the test points are fresh samples of the same teacher."""
    from harness.data import make_dataset

    params = dict(spec.data.params)
    n_train = int(params.get("n", 0))
    if n_train < 2:
        raise HarnessInputError("[data.params] needs n >= 2 (training points per data set)")
    params["n"] = n_train + spec.test_size
    tensors = []
    for seed in spec.data.seeds:
        ds = make_dataset(spec.data.generator, seed, **params)
        if ds.k != 2:
            raise HarnessInputError(f"the network scenario needs binary labels, generator "
                                    f"{spec.data.generator!r} gave k={ds.k}")
        X = torch.as_tensor(ds.X, dtype=torch.float64)
        y = torch.as_tensor(ds.y, dtype=torch.int64)
        tensors.append((X[:n_train], y[:n_train], X[n_train:], y[n_train:]))
    return [torch.stack(parts).to(spec.device) for parts in zip(*tensors, strict=True)]


def _runs(specs, seeds) -> list[NetworkRun]:
    return [NetworkRun(run_id=f"{opt.label}-s{seed}", label=opt.label, optimizer=opt.name,
                       schedule=Schedule(opt.eta0, opt.a), data_seed=seed,
                       init_seed=1000 * seed + 17, data_index=i, hyper=dict(opt.hyper))
            for opt in specs for i, seed in enumerate(seeds)]


@dataclass
class NetworkScenarioResult:
    """What :func:`run_network_scenario` produced."""

    report: dict
    rows: list[dict]
    files: dict[str, Path]
    out_dir: Path


def run_network_scenario(spec: NetworkScenario, *, steps: int | None = None,
                         out: str | Path | None = None, device: str | None = None
                         ) -> NetworkScenarioResult:
    """Train every run, compute KKT residuals and test accuracies, judge (a)-(d), write the
    report into ``out`` (default ``reports/<name>``)."""
    steps = spec.steps if steps is None else positive_int(steps, "steps", "the override")
    device = spec.device if device is None else parse_device(device, "the override")
    spec = NetworkScenario(**{**spec.__dict__, "device": device})
    out_dir = Path(out) if out is not None else Path("reports") / spec.name
    X, y, X_test, y_test = _datasets(spec)
    d = X.shape[-1]
    checkpoints = geometric_grid(steps, spec.per_decade)
    coarse = geometric_grid(steps, spec.snapshots_per_decade)
    snaps = np.unique(checkpoints[np.abs(checkpoints[None, :] - coarse[:, None]).argmin(1)])
    rows, kkt, runs_doc, seconds = [], {}, [], 0.0
    prov = provenance(seeds=list(spec.data.seeds), device=device, scenario=spec.name)
    for frozen_model, specs in ((False, spec.optimizers), (True, spec.frozen_optimizers)):
        if not specs:
            continue
        net = ReluNetwork(d, spec.width, frozen_output=frozen_model)
        runs = _runs(specs, spec.data.seeds)
        scales = [spec.init_scale_of(r.label) for r in runs]
        theta0, frozen = init_parameters(
            net, [r.init_seed for r in runs], scales, device=device,
            frozen_scale=spec.frozen_scale if frozen_model else None)
        start = time.perf_counter()
        result = train_networks(net, runs, X, y, theta0, steps=steps, checkpoints=checkpoints,
                                snapshot_times=snaps, frozen=frozen, loss=spec.loss,
                                description=net.name)
        seconds += time.perf_counter() - start
        rows.extend(result.rows)
        write_curves(out_dir / "curves.json", rows, prov)
        index = torch.as_tensor([r.data_index for r in runs])
        theta = torch.as_tensor(result.theta)
        acc = test_accuracy(net, theta, X_test[index].cpu(), y_test[index].cpu(),
                            None if frozen is None else frozen.cpu())
        dead = dead_samples(net, theta, X[index].cpu())
        for b, run in enumerate(runs):
            kkt[run.run_id] = _kkt_series(net, result, b, X[run.data_index].cpu(),
                                          y[run.data_index].cpu(), rows)
            runs_doc.append({"run_id": run.run_id, "algorithm": run.label, "model": net.name,
                             "optimizer": run.optimizer, "family": result.families[b],
                             "own_norm": result.own_norms[b],
                             "data_seed": run.data_seed, "init_seed": run.init_seed,
                             "init_scale": scales[b],
                             "eta0": run.schedule.eta0, "a": run.schedule.a,
                             "hyper": run.hyper, "test_accuracy": float(acc[b]),
                             "dead_samples": int(dead[b]),
                             "net_over_path": float(result.net_over_path[b])})
        window = result.window
    doc = _document(spec, steps, rows, kkt, runs_doc, prov, seconds, window)
    files = {"curves": out_dir / "curves.json", **_write_report(out_dir, doc, rows, kkt)}
    return NetworkScenarioResult(report=doc, rows=rows, files=files, out_dir=out_dir)


def _kkt_series(net, result, b, X, y, rows) -> list[dict]:
    """KKT residuals of run ``b`` at its snapshots with 100% train accuracy (time order)."""
    run = result.runs[b]
    fitted = {r["t"] for r in rows if r["run_id"] == run.run_id and r["train_acc"] == 1.0}
    frozen = None if result.frozen is None else result.frozen[b]
    out = []
    for t in sorted(result.snapshots):
        if t in fitted:
            res = kkt_residual(net, result.snapshots[t][b], X, y, result.own_norms[b], frozen)
            out.append({"t": t, **res.as_dict()})
    return out


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def _document(spec, steps, rows, kkt, runs_doc, prov, seconds, window) -> dict:
    meta = {r["run_id"]: r for r in runs_doc}
    checks = spec.checks
    compared = {}
    if checks["compare"]:
        compared["relu-L2"] = checks["compare"]
    if checks["compare_frozen"]:
        compared["relu-L1-frozen"] = checks["compare_frozen"]
    reported = {"relu-L2": checks["compare_reported"]} if checks["compare_reported"] else {}
    verdicts = [check_soft_margin(rows), check_own_margin_largest(rows, compared, reported),
                check_kkt_shrinks(kkt, meta),
                check_adam_switch(rows, checks["adam_default"], checks["sd"], checks["gd"],
                                  checks["adam_reported"])]
    finals = {row["run_id"]: row for row in rows if row["t"] == steps}
    decade = max(t for t in {row["t"] for row in rows} if t <= steps / 10)
    earlier = {row["run_id"]: row for row in rows if row["t"] == decade}
    return {"schema_version": SCHEMA_VERSION, "scenario": spec.name, "model": MODEL_KEY,
            "description": spec.description, "steps": steps, "seconds": seconds,
            "window": window, "decade_before": decade,
            "source": str(spec.source) if spec.source else None,
            "network": {"width": spec.width, "init_scale": spec.init_scale,
                        "init_overrides": spec.init_overrides,
                        "frozen_scale": spec.frozen_scale, "loss": spec.loss,
                        "test_size": spec.test_size},
            "data": {"generator": spec.data.generator, "params": spec.data.params,
                     "seeds": list(spec.data.seeds)},
            "verdict": combine([v.verdict for v in verdicts]),
            "checks": [v.as_dict() for v in verdicts],
            "summary": _summary(runs_doc, finals, earlier, kkt),
            "runs": [{**r, "final": finals.get(r["run_id"]), "kkt": kkt.get(r["run_id"], [])}
                     for r in runs_doc],
            "provenance": prov}


def _summary(runs_doc, finals, earlier, kkt) -> list[dict]:
    """Per algorithm: medians over seeds of the final margins, test accuracy, KKT residuals,
    and why runs are outside the late phase at the horizon (dead samples, loss a decade of t
    earlier (``earlier``: the rows at the last checkpoint <= T/10) and now, net/path)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs_doc:
        groups.setdefault((run["algorithm"], run["model"], run["own_norm"],
                           run["init_scale"]), []).append(run)

    def median(values):
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.median(values)) if values else None

    out = []
    for (label, model, own, init), runs in groups.items():
        final = [finals[r["run_id"]] for r in runs if r["run_id"] in finals]
        fitted = [f for f in final if f["train_acc"] == 1.0]
        entry = {"algorithm": label, "model": model, "own_norm": own, "init_scale": init,
                 "runs": len(runs),
                 "fitted": len(fitted),
                 "test_accuracy": median([r["test_accuracy"] for r in runs]),
                 "log_loss": median([f["log_loss"] for f in final]),
                 "soft_margin_own": median([f["soft_margin_own"] for f in fitted])}
        for key in ("fro", "max", "sum", "spectral"):
            entry[f"margin_{key}"] = median([f.get(f"nmargin_{key}") for f in fitted])
        late = [r for r in runs if in_late_phase(finals[r["run_id"]])]
        outside = [r for r in runs if not in_late_phase(finals[r["run_id"]])]
        entry.update(
            late_phase=len(late), outside_dead=sum(r["dead_samples"] > 0 for r in outside),
            outside_log_loss_before=median([earlier[r["run_id"]]["log_loss"] for r in outside]),
            outside_log_loss=median([finals[r["run_id"]]["log_loss"] for r in outside]),
            outside_margin=median([finals[r["run_id"]]["margin"] for r in outside]),
            outside_net_over_path=median([r["net_over_path"] for r in outside]),
            late_net_over_path=median([r["net_over_path"] for r in late]))
        series = [kkt[r["run_id"]] for r in runs if kkt.get(r["run_id"])]
        for part in ("total", "stationarity", "complementary_slackness", "subgradient_gap"):
            entry[f"kkt_first_{part}"] = median([s[0][part] for s in series])
            entry[f"kkt_final_{part}"] = median([s[-1][part] for s in series])
        out.append(entry)
    return out


def _margin_plot(rows: list[dict], model: str, path: Path) -> Path:
    """Paper 002 Figure 1 left: each geometric margin against t on log-log axes, one panel
    per norm, one line per run coloured by algorithm (positive values only)."""
    mine = [r for r in rows if r["model"] == model]
    norms = margin_norms(ReluNetwork(1, 1, frozen_output=model.endswith("frozen")))
    fig = Figure(figsize=(4.6 * len(norms), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(norms), squeeze=False)[0]
    labels = list(dict.fromkeys(r["algorithm"] for r in mine))
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    series: dict[str, list[dict]] = {}
    for r in mine:
        series.setdefault(r["run_id"], []).append(r)
    for ax, norm in zip(axes, norms, strict=True):
        shown, drawn = set(), 0
        for points in series.values():
            points.sort(key=lambda r: r["t"])
            t = np.array([p["t"] for p in points], dtype=float)
            v = np.array([p[f"nmargin_{norm}"] for p in points], dtype=float)
            keep = (t > 0) & (v > 0) & np.isfinite(v)
            drawn += int(keep.sum())
            label = points[0]["algorithm"]
            ax.plot(t[keep], v[keep], color=colors[label], lw=0.8, alpha=0.6,
                    label=None if label in shown else label)
            shown.add(label)
        _log_axes(ax, drawn, xlabel="t (steps)",
                  ylabel=f"min_i y_i f(x_i) / N(theta)^L  [{norm}]",
                  title=f"{model}: {norm} margin (positive part)")
    return save_figure_atomic(fig, path)


def _log_axes(ax, drawn: int, *, xlabel: str, ylabel: str, title: str) -> None:
    """Log-log axes with labels; with nothing positive to draw, say so instead."""
    if drawn:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        title += "\n(no positive values to draw)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)


def _kkt_plot(doc: dict, path: Path) -> Path:
    """KKT residual (total) at the snapshots after 100% train accuracy, per run."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = list(dict.fromkeys(r["algorithm"] for r in doc["runs"]))
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    shown = set()
    for run in doc["runs"]:
        if run["kkt"]:
            t = [p["t"] for p in run["kkt"]]
            v = [max(p["total"], 1e-16) for p in run["kkt"]]
            ax.plot(t, v, "-o", ms=2, color=colors[run["algorithm"]], lw=0.8, alpha=0.7,
                    label=None if run["algorithm"] in shown else run["algorithm"])
            shown.add(run["algorithm"])
    _log_axes(ax, len(shown), xlabel="t (steps)", ylabel="KKT residual of the own problem",
              title="KKT residual after 100% train accuracy")
    return save_figure_atomic(fig, path)


def _write_report(out_dir: Path, doc: dict, rows: list[dict], kkt) -> dict[str, Path]:
    files = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        files[f"margins_{model}"] = _margin_plot(rows, model, out_dir / f"margins_{model}.png")
    files["kkt"] = _kkt_plot(doc, out_dir / "kkt.png")
    doc["files"] = {k: p.name for k, p in files.items()}
    files["report_json"] = write_json_atomic(out_dir / "report.json", doc)
    files["report_md"] = write_text_atomic(out_dir / "report.md", network_markdown(doc))
    return files


def network_markdown(doc: dict) -> str:
    """``report.md`` rendered from the report document."""
    prov = doc["provenance"]
    summary = doc["summary"]
    margin_rows = [[s["algorithm"], s["model"], s["own_norm"], s["init_scale"],
                    f"{s['fitted']}/{s['runs']}",
                    s["log_loss"], s["margin_fro"], s["margin_max"], s["margin_sum"],
                    s["margin_spectral"], s["soft_margin_own"], s["test_accuracy"]]
                   for s in summary]
    kkt_rows = [[s["algorithm"], s["model"], s["own_norm"], s["kkt_first_total"],
                 s["kkt_final_total"], s["kkt_final_stationarity"],
                 s["kkt_final_complementary_slackness"], s["kkt_final_subgradient_gap"]]
                for s in summary]
    outside_rows = [[s["algorithm"], s["model"], f"{s['late_phase']}/{s['runs']}",
                     f"{s['outside_dead']}/{s['runs'] - s['late_phase']}",
                     s["outside_log_loss_before"], s["outside_log_loss"], s["outside_margin"],
                     s["outside_net_over_path"], s["late_net_over_path"]] for s in summary]
    check_rows = [[c["check"], c["verdict"], c["reason"]] for c in doc["checks"]]
    plots = "\n\n".join(f"![{k}]({v})" for k, v in doc.get("files", {}).items())
    versions = ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v)
    parts = [
        f"# Scenario {doc['scenario']} (homogeneous networks): {doc['verdict']}",
        doc["description"],
        f"Horizon {doc['steps']} steps; {format_number(doc['seconds'], 3)} s of training on "
        f"{prov['device']}; network {doc['network']}; data {doc['data']}.",
        "## Verdicts (paper 002: Theorem 3.1, Figure 1 left, Theorem 3.4, section 4.2)",
        markdown_table(["check", "verdict", "numbers"], check_rows),
        "## Final margins (medians over seeds, runs at 100% train accuracy)",
        "Geometric margin `min_i y_i f(x_i) / N(theta)^L` in each norm; soft margin "
        "`log(1/calL) / N_own(theta)^L`; test accuracy on fresh teacher points.",
        markdown_table(["algorithm", "model", "own norm", "init", "fitted/runs", "log calL", "l2",
                        "l-inf", "l1", "spectral", "soft (own)", "test acc"], margin_rows),
        "## Runs outside the late phase at the horizon",
        "Claims (a)-(c) are about the late phase (100% train accuracy and calL < 1); a run "
        "outside it at the horizon supports no verdict. Why: a dead sample (no active hidden "
        "unit on x_i, so f(x_i) = 0 and calL >= 1 until other samples' updates revive it), a "
        "sample held near f(x_i) = 0 on the wrong side (min_i y_i f(x_i) slightly negative: its "
        "active units sit at their ReLU kinks while the other samples' margins grow), or "
        f"a stall: the loss flat over the last decade of t (t = {doc['decade_before']} to "
        f"{doc['steps']}) and net/path = N(theta_T - theta_(T-W)) / (sum of the W = "
        f"{doc['window']} last step lengths), own norm, near 0 (the steps cancel: a cycle, "
        "e.g. greedy coordinate descent zigzagging across a ReLU kink, pinned in "
        "tests/test_networks.py) rather than near 1 (the steps add up). Medians over runs.",
        markdown_table(["algorithm", "model", "late phase/runs", "outside: dead sample",
                        f"outside: log calL at t={doc['decade_before']}",
                        f"outside: log calL at t={doc['steps']}",
                        "outside: min_i y_i f(x_i)", "outside: net/path",
                        "late phase: net/path"], outside_rows),
        "## KKT residuals of each algorithm's own problem (medians over seeds)",
        "`min N(theta) s.t. y_i f(x_i) >= 1` at the normalized iterate; total = stationarity "
        "(dual-norm distance to the cone of active-constraint gradients) + complementary "
        "slackness + subgradient gap, each dimensionless; 1 = no progress, 0 = KKT point.",
        markdown_table(["algorithm", "model", "own norm", "first after fit", "final",
                        "final stationarity", "final compl. slackness",
                        "final subgradient gap"], kkt_rows),
        "## Plots", plots,
        "## Provenance",
        f"git commit `{prov['git_commit']}`; {versions}; seeds {prov['seeds']}.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def run_network_command(args) -> int:
    """``python -m harness run FILE`` for a ``model = "relu"`` file (same options as the
    linear scenarios: --steps, --ci, --device, --out). Exit 0 when written; the verdicts
    are in the report."""
    from harness.cli import EXIT_OK

    spec = load_network_scenario(args.scenario)
    steps = spec.ci_steps or spec.steps if args.ci else args.steps
    result = run_network_scenario(spec, steps=steps, out=args.out, device=args.device)
    for check in result.report["checks"]:
        print(f"{check['check']:>28}: {check['verdict']}: {check['reason']}")
    print(f"{spec.name}: verdict {result.report['verdict']}; report: "
          f"{result.files['report_md']}")
    return EXIT_OK
