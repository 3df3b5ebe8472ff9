"""The gate: run an outside optimizer implementation on harness data and judge its implicit bias.

The harness owns everything but the update rule: the data (a small synthetic problem per seed,
:data:`PROFILES`), the exact gradient (:func:`harness.losses.evaluate`, float64, log domain),
the step size ``eta_t = eta0 (t+1)^(-a)`` (written into ``param_groups`` / passed as ``lr``
before every step) and the measuring (:func:`harness.metrics.checkpoint_metrics` at a
geometric grid of checkpoints). The verdict comes from :mod:`harness.rates`.

Implementations come in three forms (:func:`resolve_implementation`):

* a ``torch.optim.Optimizer`` subclass (constructed as ``cls([W], lr=eta0, **kwargs)``) or a
  factory ``f([W], **kwargs)`` returning one; the harness sets ``p.grad`` and ``lr``;
* an object (or a class, constructed with ``**kwargs``) with ``init(W) -> state`` and
  ``step(W, grad, state, t, lr) -> (W, state)``;
* ``builtin:NAME``, a registered harness optimizer (:func:`harness.optimizers.make_optimizer`).

The moving log-frame (THEORY.md section 5). For ``torch.optim`` classes whose state layout is
known (:data:`TORCH_FRAME_LAYOUTS`: Adam, AdamW, NAdam, Adamax, RMSprop, Adagrad) and for the
built-ins, the gradient is handed over as ``grad_tilde = grad / exp(phi_t)`` (order one), every
state buffer of degree ``p`` is multiplied by ``exp(p (phi_old - phi_new))`` when the frame
moves, and ``eps`` (and a coupled ``weight_decay``) become ``eps * exp(-phi_t)``. Adam's update
``m / (sqrt(v) + eps)`` is then unchanged up to rounding and runs continue far past
``exp(-745)``. Any other implementation receives the true gradient and the run stops when that
underflows; the report gives the horizon reached.

Bad implementations: an import path that does not resolve, an object of neither interface,
``--kwargs`` it does not accept, an exception raised by it, or a returned ``W`` of another
shape is an input error (exit 2) naming the cause; a NaN or inf in ``W`` ends that seed's run
and fails the gate with the step. Whatever was computed is written first.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.curves import geometric_grid, write_curves
from harness.errors import HarnessInputError
from harness.losses import Workspace, evaluate
from harness.metrics import checkpoint_metrics
from harness.norms import Norm
from harness.optimizers.base import next_log_frame
from harness.provenance import SCHEMA_VERSION, provenance
from harness.rates import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    THRESHOLDS,
    RateVerdict,
    Thresholds,
    detect_onset,
    fit_tail,
    forgetting_rate,
    judge,
    rate_bound,
)
from harness.storage import write_json_atomic, write_text_atomic

EXIT_CODES = {PASS: 0, FAIL: 1, INCONCLUSIVE: 3}

#: Norms that every gate run gets certified references for (the expected norm is added).
REFERENCE_NORMS = ("max", "fro", "spectral")

#: Default EMA factors used for onset detection when an implementation does not expose its own.
DEFAULT_BETAS = {"nmd": (0.9,), "adam": (0.9, 0.999)}


# ----------------------------------------------------------------------------------------------
# Profiles: data, step sizes and horizons where correct implementations reach the regime
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    """A gate configuration: data generator and size, seeds, and per family the default
    ``(eta0, a, steps)``.

    ``a`` is the exponent of the THEORY.md section 4 row the family is judged by. ``eta0`` and
    the horizon were chosen by measurement (on this data, 3 seeds, the built-in optimizers):
    NMD and Adam must reach the regime of paper 000's Assumption 3.4 (onset ``t0``) at least
    two decades before the horizon, and the gap must be falling over those two decades. Adam
    needs the longest horizon: its onset needs ``eta_t gamma <~ 1 - sqrt(beta2)`` and its gap
    falls only after that. NMD uses NSD's ``eta0 = 0.5``: a normalized method's trajectory
    depends on ``eta0`` and ``t`` mostly through ``sum_s eta_s ~ 2 eta0 sqrt(t)``, so at
    ``eta0 = 0.1`` its 2e4 steps are about 800 steps at ``eta0 = 0.5``. Measured (quick data,
    seed 1, 2e4 steps): momentum NGD's gap/f trend is +0.150 at ``eta0 = 0.1`` (gap still
    bending into its ``t^(-1/2)`` regime) and -0.166 at 0.5; Muon's +0.142 and -0.041.
    """

    name: str
    generator: str
    params: dict
    seeds: int
    schedules: dict
    per_decade: int = 20

    def defaults(self, family: str) -> tuple[float, float, int]:
        """``(eta0, a, steps)`` for ``family``."""
        return self.schedules[family]


_SMALL = {"k": 3, "d": 5, "n_per_class": 10, "sigma": 0.1}


def _schedules(scale: int) -> dict:
    return {"nsd": (0.5, 0.5, 10_000 * scale), "nmd": (0.5, 0.5, 20_000 * scale),
            "adam": (0.1, 2 / 3, 50_000 * scale), "gd": (4.0, 0.0, 20_000 * scale)}


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", "paper", _SMALL, seeds=3, schedules=_schedules(1)),
    "standard": Profile("standard", "paper", _SMALL, seeds=3, schedules=_schedules(10)),
    "thorough": Profile("thorough", "paper", {**_SMALL, "k": 5, "d": 10}, seeds=5,
                        schedules=_schedules(20)),
}


# ----------------------------------------------------------------------------------------------
# Adapters: one interface for torch.optim optimizers, init/step objects and built-ins
# ----------------------------------------------------------------------------------------------

class ImplementationError(HarnessInputError):
    """The implementation under test misbehaved (raised, changed the shape, ...)."""


@dataclass(frozen=True)
class FrameLayout:
    """How a ``torch.optim`` class's state moves with the frame.

    Attributes:
        buffers: ``{state key: degree in the gradient}``.
        inverse_scaled: ``param_groups`` keys that add to the gradient's scale and so become
            ``value * exp(-phi)`` in the frame (``eps``, a coupled ``weight_decay``).
    """

    buffers: dict
    inverse_scaled: tuple[str, ...]


def _coupled_decay(group: dict) -> tuple[str, ...]:
    return () if group.get("decoupled_weight_decay", False) else ("weight_decay",)


def _adam_layout(group):
    return FrameLayout({"exp_avg": 1, "exp_avg_sq": 2, "max_exp_avg_sq": 2},
                       ("eps", *_coupled_decay(group)))


def _adagrad_layout(group):
    if group.get("initial_accumulator_value", 0.0) != 0.0:
        return None  # a nonzero initial accumulator is not scale-invariant
    return FrameLayout({"sum": 2}, ("eps", "weight_decay"))


#: ``torch.optim`` classes (exact type, not subclasses) whose state the frame can move; each
#: maps a param group to its layout, or None when its options break scale invariance.
TORCH_FRAME_LAYOUTS: dict[type, Callable[[dict], FrameLayout | None]] = {
    torch.optim.Adam: _adam_layout,
    torch.optim.AdamW: lambda g: FrameLayout({"exp_avg": 1, "exp_avg_sq": 2,
                                              "max_exp_avg_sq": 2}, ("eps",)),
    torch.optim.NAdam: lambda g: FrameLayout({"exp_avg": 1, "exp_avg_sq": 2},
                                             ("eps", *_coupled_decay(g))),
    torch.optim.Adamax: lambda g: FrameLayout({"exp_avg": 1, "exp_inf": 1},
                                              ("eps", "weight_decay")),
    torch.optim.RMSprop: lambda g: FrameLayout({"square_avg": 2, "grad_avg": 1},
                                               ("eps", "weight_decay")),
    torch.optim.Adagrad: _adagrad_layout,
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Adapter:
    """A running implementation. ``uses_frame``: it takes ``grad_tilde`` in the moving frame
    (and :meth:`rescale` moves its state); otherwise it takes the true gradient."""

    uses_frame = False
    betas: tuple[float, ...] | None = None
    eps: float | None = None

    def start(self, W: torch.Tensor) -> None:
        """Initialise the state for the start point ``W``."""
        raise NotImplementedError

    def rescale(self, shift: float) -> None:
        """Move the state from frame ``phi_old`` to ``phi_new``; ``shift = phi_old - phi_new``."""

    def state_log_scale(self) -> float:
        """``max log|buffer| / degree`` in the current frame (``-inf`` without state)."""
        return -math.inf

    def step(self, W: torch.Tensor, grad: torch.Tensor, phi: float, t: int, lr: float
             ) -> torch.Tensor:
        """One step from ``W`` with gradient ``grad`` (``exp(phi) * grad`` is the true one when
        :attr:`uses_frame`); returns the new ``W``."""
        raise NotImplementedError


def _betas_from(source) -> tuple[float, ...] | None:
    """EMA factors exposed as ``betas``, ``beta1``/``beta2``, ``beta`` or ``momentum``."""
    get = source.get if isinstance(source, dict) else (lambda key: getattr(source, key, None))
    betas = get("betas")
    if betas is not None:
        return tuple(float(b) for b in betas)
    if get("beta1") is not None:
        return tuple(float(get(k)) for k in ("beta1", "beta2") if get(k) is not None)
    for key in ("beta", "momentum"):
        if get(key) is not None and float(get(key)) > 0:
            return (float(get(key)),)
    return None


class TorchAdapter(Adapter):
    """A ``torch.optim.Optimizer`` over one ``k x d`` parameter."""

    def __init__(self, build: Callable[[list], torch.optim.Optimizer], label: str):
        self._build, self.label = build, label
        self.layout: FrameLayout | None = None

    def start(self, W):
        self.param = torch.nn.Parameter(W.clone())
        try:
            self.opt = self._build([self.param])
        except TypeError as exc:
            raise ImplementationError(f"{self.label} does not accept the given --kwargs "
                                      f"({_first_line(exc)})") from None
        if not isinstance(self.opt, torch.optim.Optimizer):
            raise ImplementationError(f"{self.label} returned {type(self.opt).__name__}, not a "
                                      "torch.optim.Optimizer")
        group = self.opt.param_groups[0]
        make_layout = TORCH_FRAME_LAYOUTS.get(type(self.opt))
        self.layout = make_layout(group) if make_layout else None
        self.uses_frame = self.layout is not None
        self.betas = _betas_from(group)
        self.eps = group.get("eps")
        self._base = {key: group[key] for key in (self.layout.inverse_scaled if self.layout
                                                  else ()) if key in group}

    def _buffers(self):
        state = self.opt.state.get(self.param, {})
        for key, degree in self.layout.buffers.items():
            value = state.get(key)
            if torch.is_tensor(value) and value.shape == self.param.shape:
                yield value, degree

    def rescale(self, shift):
        for buf, degree in self._buffers():
            buf.mul_(math.exp(degree * shift))

    def state_log_scale(self):
        scales = [math.log(float(buf.abs().max())) / degree
                  for buf, degree in self._buffers() if float(buf.abs().max()) > 0]
        return max(scales, default=-math.inf)

    def step(self, W, grad, phi, t, lr):
        with torch.no_grad():
            self.param.copy_(W)
        self.param.grad = grad.clone()
        for group in self.opt.param_groups:
            group["lr"] = lr
            for key, value in self._base.items():
                group[key] = _in_frame(value, phi)
        self.opt.step()
        return self.param.detach().clone()


def _in_frame(value: float, phi: float) -> float:
    """``value * exp(-phi)`` (``inf`` past float64's range, as the true quotient is then 0)."""
    if not value:
        return value
    exponent = math.log(value) - phi
    return math.inf if exponent > 709.0 else math.exp(exponent)


class ProtocolAdapter(Adapter):
    """An object with ``init(W) -> state`` and ``step(W, grad, state, t, lr) -> (W, state)``."""

    def __init__(self, obj, label: str):
        self.obj, self.label = obj, label
        self.betas = _betas_from(obj)
        self.eps = getattr(obj, "eps", None)

    def start(self, W):
        self.state = self.obj.init(W.clone())

    def step(self, W, grad, phi, t, lr):
        result = self.obj.step(W.clone(), grad, self.state, t, lr)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ImplementationError(f"{self.label}.step must return (W, state), got "
                                      f"{type(result).__name__}")
        W_new, self.state = result
        return torch.as_tensor(W_new, dtype=torch.float64)


class BuiltinAdapter(Adapter):
    """A registered harness optimizer (batched API with a batch of one), in the frame; the
    optimizer itself handles a non-invariant update (GD) from ``phi``."""

    uses_frame = True

    def __init__(self, optimizer):
        self.opt = optimizer
        self.betas = _betas_from(optimizer.hyper)
        self.eps = optimizer.hyper.get("eps")

    def start(self, W):
        self.state = self.opt.init_state(W[None])

    def rescale(self, shift):
        self.opt.rescale(self.state, torch.tensor([shift], dtype=torch.float64))

    def state_log_scale(self):
        scale = self.opt.state_log_scale(self.state)
        return -math.inf if scale is None else float(scale[0])

    def step(self, W, grad, phi, t, lr):
        D = self.opt.direction(grad[None], self.state, t, torch.tensor([phi],
                                                                       dtype=torch.float64))
        return W - lr * D[0]


@dataclass(frozen=True)
class Implementation:
    """A resolved ``--impl``: a label, how to make a fresh adapter per seed, and the family /
    norm a built-in declares (None for outside implementations)."""

    spec: str
    kwargs: dict
    make: Callable[[float], Adapter]
    kind: str
    family: str | None = None
    norm: str | None = None


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def resolve_implementation(spec: str, kwargs: dict | None = None) -> Implementation:
    """Turn ``MODULE:ATTR`` (or ``builtin:NAME``) plus keyword arguments into an
    :class:`Implementation`; raises a one-line :class:`HarnessInputError` naming the cause."""
    kwargs = dict(kwargs or {})
    if "lr" in kwargs:
        raise HarnessInputError("--kwargs must not set lr: the gate owns the step size "
                                "(use --eta0)")
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise HarnessInputError(f"--impl must look like MODULE:ATTR or builtin:NAME, got {spec!r}")
    if module_name == "builtin":
        from harness.optimizers import make_optimizer

        probe = make_optimizer(attr, **kwargs)
        return Implementation(spec, kwargs, lambda eta0: BuiltinAdapter(
            make_optimizer(attr, **kwargs)), "builtin", probe.family, probe.norm.name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarnessInputError(f"cannot import module {module_name!r} of --impl {spec} "
                                f"({_first_line(exc)})") from None
    except Exception as exc:  # the module itself failed while importing
        raise HarnessInputError(f"importing {module_name!r} raised {_first_line(exc)}") from None
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise HarnessInputError(f"module {module_name!r} has no attribute {attr!r}") from None
    return Implementation(spec, kwargs, _adapter_factory(target, spec, kwargs), _kind(target))


def _kind(target) -> str:
    if isinstance(target, type) and issubclass(target, torch.optim.Optimizer):
        return "torch.optim class"
    if _has_protocol(target):
        return "init/step object"
    return "torch.optim factory"


def _has_protocol(target) -> bool:
    return callable(getattr(target, "init", None)) and callable(getattr(target, "step", None))


def _adapter_factory(target, spec: str, kwargs: dict) -> Callable[[float], Adapter]:
    if isinstance(target, type) and issubclass(target, torch.optim.Optimizer):
        def build_class(params, eta0):
            lr = {"lr": eta0} if _accepts(target.__init__, "lr") else {}
            return target(params, **lr, **kwargs)
        return lambda eta0: TorchAdapter(lambda params: build_class(params, eta0), spec)
    if _has_protocol(target) and isinstance(target, type):
        def build_object(eta0):
            try:
                obj = target(**kwargs)
            except TypeError as exc:
                raise ImplementationError(f"{spec} does not accept the given --kwargs "
                                          f"({_first_line(exc)})") from None
            return ProtocolAdapter(obj, spec)
        return build_object
    if _has_protocol(target):
        if kwargs:
            raise HarnessInputError(f"{spec} is an instance: --kwargs cannot be applied to it")
        return lambda eta0: ProtocolAdapter(target, spec)
    if callable(target) and not isinstance(target, type):
        return lambda eta0: TorchAdapter(lambda params: target(params, **kwargs), spec)
    raise HarnessInputError(
        f"{spec} is neither a torch.optim.Optimizer subclass, a factory returning one, nor an "
        "object with init(W) -> state and step(W, grad, state, t, lr) -> (W, state)")


# ----------------------------------------------------------------------------------------------
# The single-run loop
# ----------------------------------------------------------------------------------------------

@dataclass
class SeedRun:
    """One seed's run: curve rows at the checkpoints plus ``log G`` at every step.

    ``stop`` says why the run ended before ``steps`` (None when it did not): the true gradient
    underflowed (outside implementations without a frame), or NaN/inf (``nan_step``).
    """

    run_id: str
    seed: int
    rows: list = field(default_factory=list)
    log_proxy: list = field(default_factory=list)
    horizon: int = 0
    stop: str | None = None
    nan_step: int | None = None
    uses_frame: bool = False
    betas: tuple | None = None
    eps: float | None = None


def _progress(total: int, desc: str):
    from tqdm import tqdm

    quiet = bool(os.environ.get("CI")) or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=quiet, leave=False, mininterval=0.5)


def run_seed(adapter: Adapter, dataset, references: dict, *, expect: str, eta0: float, a: float,
             steps: int, run_columns: dict, per_decade: int = 20) -> SeedRun:
    """Run one implementation from ``W = 0`` for ``steps`` steps on ``dataset``.

    Raises:
        ImplementationError: the implementation raised or changed the shape of ``W``; the
            partially filled run is attached as ``exc.partial``.
    """
    X = torch.as_tensor(dataset.X, dtype=torch.float64)
    y = torch.as_tensor(dataset.y, dtype=torch.int64)
    W = torch.zeros(int(dataset.k), X.shape[1], dtype=torch.float64)
    run = SeedRun(run_id=run_columns["run_id"], seed=int(dataset.seed))
    checkpoints = set(int(c) for c in geometric_grid(steps, per_decade))

    def record(t, W):
        row = dict(run_columns)
        row["t"] = t
        row.update(checkpoint_metrics(W, X, y, references, expect))
        run.rows.append(row)

    def fail(message):
        exc = ImplementationError(message)
        exc.partial = run
        return exc

    def guarded(when: str, method, *args):
        """``method(*args)``; whatever the implementation raises becomes an
        ImplementationError that carries the partial run (its own keep their message)."""
        try:
            return method(*args)
        except ImplementationError as exc:
            exc.partial = run
            raise
        except Exception as exc:
            raise fail(f"{adapter_label(adapter)} raised {_first_line(exc)} {when}") from None

    guarded("while initialising", adapter.start, W)
    run.uses_frame, run.betas, run.eps = adapter.uses_frame, adapter.betas, adapter.eps
    phi = None
    workspace = Workspace(W, X, y)  # evaluate's buffers, reused every step
    with _progress(steps, f"{run.run_id}") as bar:
        for t in range(steps + 1):
            ev = evaluate(W, X, y, workspace=workspace)
            run.log_proxy.append(float(ev.log_proxy))
            run.horizon = t
            if t in checkpoints:
                record(t, W)
            if t == steps:
                break
            log_scale = float(ev.log_scale)
            if adapter.uses_frame:
                new_phi = next_log_frame(log_scale, phi,
                                         None if phi is None else adapter.state_log_scale())
                if phi is not None and new_phi != phi:
                    adapter.rescale(phi - new_phi)
                phi = new_phi
                grad = ev.grad_tilde * math.exp(log_scale - phi)
            else:
                grad = ev.gradient
                if not float(grad.abs().max()) >= np.finfo(np.float64).tiny:
                    run.stop = (f"the true gradient underflowed at t={t} "
                                f"(log G = {float(ev.log_proxy):.1f})")
                    if t not in checkpoints:
                        record(t, W)
                    break
                phi = 0.0
            lr = eta0 * (t + 1.0) ** (-a)
            W_new = guarded(f"at step {t}", adapter.step, W, grad, phi, t, lr)
            if not torch.is_tensor(W_new) or tuple(W_new.shape) != tuple(W.shape):
                shape = tuple(W_new.shape) if hasattr(W_new, "shape") else type(W_new).__name__
                raise fail(f"{adapter_label(adapter)} changed the shape of W at step {t}: "
                           f"{tuple(W.shape)} -> {shape}")
            W = W_new.detach().to(torch.float64)
            if not bool(torch.isfinite(W).all()):
                run.nan_step = t + 1
                run.horizon = t + 1
                run.stop = f"NaN or inf in W after step {t + 1}"
                break
            bar.update(1)
    return run


def adapter_label(adapter: Adapter) -> str:
    """A short name of the implementation for messages."""
    return getattr(adapter, "label", None) or type(getattr(adapter, "opt", adapter)).__name__


# ----------------------------------------------------------------------------------------------
# Configuration, analysis, verdict, reports and baselines
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GateConfig:
    """A validated gate invocation (see :func:`configure`)."""

    impl: str
    kwargs: dict
    expect: str
    family: str
    a: float
    eta0: float
    steps: int
    seeds: int
    profile: Profile
    out: Path
    baseline: Path | None = None
    save_baseline: Path | None = None


def default_out(impl: str, expect: str) -> Path:
    """``reports/gate/<impl>-<norm>`` with the implementation path made file-name safe."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in impl)
    return Path("reports") / "gate" / f"{safe}-{expect}"


def configure(impl: str, expect: str, family: str, *, kwargs: dict | None = None,
              a: float | None = None, eta0: float | None = None, steps: int | None = None,
              seeds: int | None = None, profile: str = "quick", out: str | Path | None = None,
              baseline: str | Path | None = None, save_baseline: str | Path | None = None
              ) -> GateConfig:
    """Validate the gate's arguments; profile defaults fill what is not given."""
    from harness.schedules import check_eta0, check_exponent, check_steps

    if profile not in PROFILES:
        raise HarnessInputError(f"unknown profile {profile!r}; choose one of "
                                f"{', '.join(PROFILES)}")
    prof = PROFILES[profile]
    if family not in prof.schedules:
        raise HarnessInputError(f"unknown family {family!r}; choose one of "
                                f"{', '.join(prof.schedules)}")
    expect = Norm.parse(expect).name
    default_eta0, default_a, default_steps = prof.defaults(family)
    a = check_exponent(default_a if a is None else a)
    eta0 = check_eta0(default_eta0 if eta0 is None else eta0)
    steps = check_steps(default_steps if steps is None else steps)
    seeds = prof.seeds if seeds is None else seeds
    if isinstance(seeds, bool) or int(seeds) != seeds or not 1 <= int(seeds) <= 100:
        raise HarnessInputError(f"--seeds must be an integer in 1..100, got {seeds!r}")
    if baseline is not None and not Path(baseline).is_file():
        raise HarnessInputError(f"baseline file {baseline} does not exist")
    rate_bound(family, a, 1, 1)  # a rate must be stated for (family, a)
    return GateConfig(impl=impl, kwargs=dict(kwargs or {}), expect=expect, family=family, a=a,
                      eta0=eta0, steps=steps, seeds=int(seeds), profile=prof,
                      out=Path(out) if out is not None else default_out(impl, expect),
                      baseline=Path(baseline) if baseline else None,
                      save_baseline=Path(save_baseline) if save_baseline else None)


def parse_kwargs(text: str | None) -> dict:
    """``--kwargs``: a JSON object, or an input error naming the problem."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessInputError(f"--kwargs is not valid JSON ({exc.msg} at column "
                                f"{exc.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise HarnessInputError(f"--kwargs must be a JSON object like '{{\"eps\": 0}}', got "
                                f"{type(value).__name__}")
    return value


def prepare_data(config: GateConfig) -> list[tuple[object, dict]]:
    """One data set per seed (the profile's generator) with certified references in
    max / l2 / spectral and the expected norm."""
    from harness.data import make_dataset
    from harness.engine import certify_references

    norms = list(dict.fromkeys((*REFERENCE_NORMS, config.expect)))
    out = []
    for seed in range(config.seeds):
        dataset = make_dataset(config.profile.generator, seed, **config.profile.params)
        out.append((dataset, certify_references(dataset.X, dataset.y, norms)))
    return out


@dataclass
class GateResult:
    """Everything a gate run produced (written to ``config.out`` by :func:`write_reports`)."""

    config: GateConfig
    verdict: str
    reason: str
    runs: list
    rate: RateVerdict | None = None
    onsets: dict = field(default_factory=dict)
    departures: dict = field(default_factory=dict)
    baseline: dict | None = None
    seconds: float = 0.0
    kind: str = ""
    data: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail, 3 inconclusive (2, input errors, never gets here)."""
        return EXIT_CODES[self.verdict]


def _fit_run(run: SeedRun, config: GateConfig, dataset, references: dict,
             thresholds: Thresholds) -> tuple:
    """``(TailFit, onset info)`` for one seed's run."""
    betas = run.betas or DEFAULT_BETAS.get(config.family)
    rate = forgetting_rate(config.family, betas)
    t0 = detect_onset(np.arange(len(run.log_proxy)), run.log_proxy, rate,
                      thresholds.onset_factor)
    rows = [r for r in run.rows if r["t"] > 0 and r["norm_own"] > 0]
    t = [r["t"] for r in rows]
    cert = references[config.expect]
    floor = max(float(cert.upper - cert.lower), thresholds.gap_floor_rel * float(cert.gamma))
    envelope = rate_bound(config.family, config.a, len(dataset.y), dataset.X.shape[1])
    if not rows:
        fit = fit_tail(run.run_id, [run.horizon], [math.nan], envelope, t0=t0,
                       nan_step=run.nan_step or run.horizon) if run.nan_step else fit_tail(
            run.run_id, [0.0], [1.0], envelope, t0=None)
    else:
        fit = fit_tail(run.run_id, t, [r["gap_own"] for r in rows], envelope, t0=t0,
                       norm=[r["norm_own"] for r in rows], floor=floor,
                       nan_step=run.nan_step, thresholds=thresholds)
    onset = {"t0": t0, "betas": list(betas) if betas else None,
             "betas_from": "implementation" if run.betas else "family default",
             "forgetting_rate": rate}
    return fit, onset


def departure(run: SeedRun, thresholds: Thresholds = THRESHOLDS) -> dict | None:
    """Where a run leaves the path of its claimed norm (THEORY.md section 4: Adam with
    ``eps > 0`` turns into gradient descent once ``sqrt(v)`` falls below ``eps`` and drifts to
    the l2 max-margin direction).

    The gap in the expected norm has its minimum over the run at ``t_min``; when the gap at the
    horizon exceeds ``thresholds.departure_rise`` times that minimum, the run left the path
    about there. Reported with the loss scale at ``t_min`` (``log L``, ``log G``, and
    ``log G - log eps`` when the implementation has an ``eps``) and the l2 gap at ``t_min``
    and at the horizon (falling, for a drift toward the l2 direction). With an ``eps``,
    ``t_eps_crossing`` is the first step with ``log G < log eps``, the loss scale at which
    THEORY.md section 4 places the crossover. None when there is neither a rise nor an ``eps``.
    Descriptive: the verdict comes from the tail fit alone.
    """
    rows = [r for r in run.rows if r["t"] > 0 and math.isfinite(r["gap_own"])]
    if len(rows) < 3:
        return None
    best = min(rows, key=lambda r: r["gap_own"])
    final = rows[-1]
    out = {}
    if best is not final and final["gap_own"] > thresholds.departure_rise * best["gap_own"]:
        out = {"t_min": best["t"], "gap_min": best["gap_own"], "t_final": final["t"],
               "final_gap": final["gap_own"], "log_loss_at_min": best["log_loss"],
               "log_proxy_at_min": best["log_proxy"], "l2_gap_at_min": best["gap_fro"],
               "l2_gap_final": final["gap_fro"]}
    if run.eps:
        log_eps = math.log(run.eps)
        below = np.flatnonzero(np.asarray(run.log_proxy) < log_eps)
        out.update(eps=run.eps, log_eps=log_eps,
                   t_eps_crossing=int(below[0]) if below.size else None)
        if "t_min" in out:
            out["log_proxy_minus_log_eps_at_min"] = best["log_proxy"] - log_eps
    return out or None


def _compare_baseline(config: GateConfig, rate: RateVerdict, thresholds: Thresholds) -> dict:
    stored = json.loads(config.baseline.read_text())
    for key in ("expect", "family", "a", "eta0", "steps", "seeds"):
        mine = getattr(config, key)
        if stored.get(key) != mine and not (isinstance(mine, float)
                                            and math.isclose(stored.get(key, math.nan), mine)):
            raise HarnessInputError(f"baseline {config.baseline} was recorded with {key}="
                                    f"{stored.get(key)!r}, this run has {key}={mine!r}")
    tolerance = thresholds.baseline_tolerance
    out = {"file": str(config.baseline), "stored_exponent": stored.get("exponent"),
           "exponent": rate.exponent, "tolerance": tolerance}
    if rate.exponent is None or stored.get("exponent") is None:
        out.update(ok=None, note="no fitted exponent to compare")
    else:
        out["ok"] = rate.exponent <= stored["exponent"] + tolerance
    return out


def baseline_record(result: GateResult) -> dict:
    """The JSON stored by ``--save-baseline``: the fitted exponents and the configuration."""
    c, rate = result.config, result.rate
    return {"schema_version": SCHEMA_VERSION, "kind": "gate-baseline", "impl": c.impl,
            "kwargs": c.kwargs, "expect": c.expect, "family": c.family, "a": c.a,
            "eta0": c.eta0, "steps": c.steps, "seeds": c.seeds, "profile": c.profile.name,
            "exponent": rate.exponent if rate else None,
            "exponents": {f.run_id: f.slope for f in rate.fits} if rate else {},
            "tolerance": rate.thresholds.baseline_tolerance if rate else None,
            "verdict": result.verdict}


def data_summary(config: GateConfig, data: list[tuple[object, dict]]) -> dict:
    """The report's ``data`` block: generator, sizes and ``gamma`` in the expected norm."""
    dataset = data[0][0]
    return {"generator": config.profile.generator, "params": config.profile.params,
            "n": len(dataset.y), "d": int(dataset.X.shape[1]), "k": int(dataset.k),
            "gamma": {f"seed{d.seed}": float(refs[config.expect].gamma) for d, refs in data}}


def analyse(result: GateResult, data: list[tuple[object, dict]],
            thresholds: Thresholds = THRESHOLDS) -> None:
    """Fit, judge and locate departures for the finished runs of ``result`` (in place);
    ``data`` is :func:`prepare_data`'s list, one entry per run."""
    config = result.config
    fits = []
    for run, (dataset, references) in zip(result.runs, data, strict=True):
        fit, onset = _fit_run(run, config, dataset, references, thresholds)
        fits.append(fit)
        result.onsets[run.run_id] = onset
        result.departures[run.run_id] = departure(run, thresholds)
    envelope = rate_bound(config.family, config.a, result.data["n"], result.data["d"])
    result.rate = judge(fits, envelope, thresholds)
    result.verdict, result.reason = result.rate.verdict, result.rate.reason


def run_gate(config: GateConfig, thresholds: Thresholds = THRESHOLDS) -> GateResult:
    """Run every seed, judge, compare with the baseline and write the reports.

    Raises:
        HarnessInputError: bad implementation or arguments; a partial report is written first
            when runs had started.
    """
    start = time.perf_counter()
    impl = resolve_implementation(config.impl, config.kwargs)
    data = prepare_data(config)
    result = GateResult(config=config, verdict=INCONCLUSIVE, reason="", runs=[], kind=impl.kind,
                        data=data_summary(config, data))
    for dataset, references in data:
        run_columns = {"run_id": f"seed{dataset.seed}", "algorithm": config.impl,
                       "family": config.family, "own_norm": config.expect,
                       "dataset": getattr(dataset, "name", "data"),
                       "data_seed": int(dataset.seed), "eta0": config.eta0, "a": config.a,
                       "hyper": config.kwargs}
        try:
            run = run_seed(impl.make(config.eta0), dataset, references, expect=config.expect,
                           eta0=config.eta0, a=config.a, steps=config.steps,
                           run_columns=run_columns, per_decade=config.profile.per_decade)
        except ImplementationError as exc:
            partial = getattr(exc, "partial", None)
            if partial is not None:
                result.runs.append(partial)
            result.verdict, result.reason = "ERROR", str(exc)
            result.seconds = time.perf_counter() - start
            write_reports(result)
            raise
        result.runs.append(run)
    analyse(result, data, thresholds)
    if config.baseline is not None:
        result.baseline = _compare_baseline(config, result.rate, thresholds)
        if result.baseline["ok"] is False:
            result.verdict = FAIL
            result.reason = (f"baseline: fitted exponent {result.rate.exponent:.3f} is worse than "
                             f"the stored {result.baseline['stored_exponent']:.3f} by more than "
                             f"{result.baseline['tolerance']} ({result.rate.reason})")
    result.seconds = time.perf_counter() - start
    write_reports(result)
    if config.save_baseline is not None:
        write_json_atomic(config.save_baseline, baseline_record(result))
    return result


def report_json(result: GateResult) -> dict:
    """The ``report.json`` document."""
    c, rate = result.config, result.rate
    fits = {f.run_id: f for f in rate.fits} if rate else {}
    runs = {}
    for run in result.runs:
        fit = fits.get(run.run_id)
        runs[run.run_id] = {
            "seed": run.seed, "horizon": run.horizon, "stop": run.stop,
            "nan_step": run.nan_step, "log_frame": run.uses_frame,
            "final_gap": fit.final_gap if fit else (run.rows[-1]["gap_own"] if run.rows
                                                     else None),
            "fit": fit.as_dict() if fit else None, "onset": result.onsets.get(run.run_id),
            "departure": result.departures.get(run.run_id)}
    thresholds = rate.thresholds if rate else THRESHOLDS
    return {
        "schema_version": SCHEMA_VERSION, "kind": "gate", "verdict": result.verdict,
        "reason": result.reason, "exit_code": EXIT_CODES.get(result.verdict, 2),
        "impl": c.impl, "impl_kind": result.kind, "kwargs": c.kwargs, "expect": c.expect,
        "family": c.family, "a": c.a, "eta0": c.eta0, "steps": c.steps, "seeds": c.seeds,
        "profile": c.profile.name, "data": result.data,
        "exponent": rate.exponent if rate else None,
        "exponent_ci": list(rate.exponent_ci) if rate and rate.exponent_ci else None,
        "bound_exponent": rate.bound_exponent if rate else None,
        "bound": rate.bound_text if rate else None,
        "envelope_trend": rate.trend_max if rate else None,
        "final_gap": {rid: r["final_gap"] for rid, r in runs.items()},
        "horizon": {rid: r["horizon"] for rid, r in runs.items()},
        "runs": runs, "baseline": result.baseline, "thresholds": thresholds.as_dict(),
        "seconds": result.seconds,
        "provenance": provenance(seeds=list(range(c.seeds)), device="cpu"),
    }


def _fmt(value, spec=".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec) if math.isfinite(value) else str(value)
    return str(value)


def _departure_lines(rid: str, dep: dict | None, expect: str) -> list[str]:
    """Report lines for :func:`departure`'s record of one run."""
    lines = []
    if dep and "t_min" in dep:
        scale = (f", log G - log eps = {dep['log_proxy_minus_log_eps_at_min']:.2f}"
                 if "log_proxy_minus_log_eps_at_min" in dep else "")
        lines.append(f"- {rid}: **left the {expect} path at t={dep['t_min']}**: gap in {expect} "
                     f"minimal there ({_fmt(dep['gap_min'])}), {_fmt(dep['final_gap'])} at "
                     f"t={dep['t_final']}; loss scale there log L = "
                     f"{_fmt(dep['log_loss_at_min'])}, log G = {_fmt(dep['log_proxy_at_min'])}"
                     f"{scale}; l2 gap {_fmt(dep['l2_gap_at_min'])} -> "
                     f"{_fmt(dep['l2_gap_final'])}")
    if dep and dep.get("eps"):
        when = (f"at t={dep['t_eps_crossing']}" if dep.get("t_eps_crossing") is not None
                else "never within the run")
        lines.append(f"- {rid}: eps = {dep['eps']:g}: log G below log(eps) = "
                     f"{dep['log_eps']:.2f} {when}")
    return lines


def report_markdown(doc: dict) -> str:
    """``report.md``: the verdict first, then the per-seed table, the fit and the settings."""
    from harness.report import markdown_table

    ci = doc["exponent_ci"]
    lines = [f"# Gate: {doc['impl']} claimed {doc['family']} / {doc['expect']}-norm", "",
             f"**Verdict: {doc['verdict']}** (exit {doc['exit_code']}): {doc['reason']}", "",
             markdown_table(
                 ["run", "t0 (onset)", "window", "points", "gap exponent", "gap/f trend",
                  "last decade", "final gap", "horizon", "verdict", "stopped"],
                 [[rid, (r["fit"] or {}).get("t0"),
                   f"{(r['fit'] or {}).get('t_start')}..{(r['fit'] or {}).get('t_end')}",
                   (r["fit"] or {}).get("points"), (r["fit"] or {}).get("slope"),
                   (r["fit"] or {}).get("trend"), (r["fit"] or {}).get("late_trend"),
                   r["final_gap"], r["horizon"], (r["fit"] or {}).get("verdict"),
                   r["stop"] or "-"] for rid, r in doc["runs"].items()]), "",
             f"- fitted exponent (mean over seeds): {_fmt(doc['exponent'])}"
             + (f", {100 * doc['thresholds']['confidence']:g}% CI [{_fmt(ci[0])}, "
                f"{_fmt(ci[1])}]" if ci else ""),
             f"- bound: `{doc['bound']}`, exponent {_fmt(doc['bound_exponent'])} "
             f"(THEORY.md section 4); largest gap/f trend {_fmt(doc['envelope_trend'])}",
             f"- setup: profile {doc['profile']}, eta_t = {doc['eta0']:g} (t+1)^(-{doc['a']:.4g}),"
             f" {doc['steps']} steps, {doc['seeds']} seeds, data {doc['data'].get('generator')} "
             f"{doc['data'].get('params')} (n={doc['data'].get('n')}, d={doc['data'].get('d')}),"
             f" kwargs `{json.dumps(doc['kwargs'])}`, {doc['impl_kind']}"]
    for rid, r in doc["runs"].items():
        onset = r["onset"] or {}
        if onset.get("forgetting_rate") is not None:
            lines.append(f"- {rid}: onset t0={onset.get('t0')} from betas {onset.get('betas')} "
                         f"({onset.get('betas_from')}), forgetting rate "
                         f"{_fmt(onset.get('forgetting_rate'))}")
        lines.extend(_departure_lines(rid, r["departure"], doc["expect"]))
    if doc["baseline"]:
        b = doc["baseline"]
        lines.append(f"- baseline {b['file']}: stored exponent {_fmt(b['stored_exponent'])}, "
                     f"measured {_fmt(b['exponent'])}, tolerance {b['tolerance']}: "
                     f"{'ok' if b['ok'] else 'WORSE' if b['ok'] is False else 'not compared'}")
    prov = doc["provenance"]
    lines += ["", "## Thresholds (harness.rates.Thresholds)", "",
              markdown_table(["name", "value"], sorted(doc["thresholds"].items())), "",
              "## Provenance", "",
              f"git {prov.get('git_commit')}, device {prov.get('device')}, versions "
              f"{json.dumps(prov.get('versions'))}, {doc['seconds']:.1f} s", "",
              "Plots: [gap.png](gap.png) (gap in the expected norm per seed, with the bound and "
              "the fits), [margins.png](margins.png) (normalized margins in max / l2 / "
              "spectral)" + (", [departure.png](departure.png) (where a run left the "
                             f"{doc['expect']} path)" if any(
                                 (r["departure"] or {}).get("t_min") for r in doc["runs"].values())
                             else "") + ".", ""]
    return "\n".join(lines)


def _plots(result: GateResult, out: Path) -> None:
    from harness.report import Overlay, plot_gaps, plot_normalized_margins

    rows = [r for run in result.runs for r in run.rows]
    if not rows:
        return
    overlays = []
    rate = result.rate
    if rate is not None:
        envelope = rate_bound(result.config.family, result.config.a, result.data["n"],
                              result.data["d"])
        for i, fit in enumerate(f for f in rate.fits if f.slope is not None):
            t = np.geomspace(fit.t_start, fit.t_end, 50)
            overlays.append(Overlay(t, np.exp(fit.intercept) * t ** fit.slope,
                                    f"fit {fit.run_id}: t^{fit.slope:.2f}", ":", f"C{i}"))
            if i == 0:
                scale = fit.final_gap / float(envelope(fit.t_end))
                t_env = np.geomspace(max(fit.t_start, 2), fit.t_end, 50)
                overlays.append(Overlay(t_env, scale * envelope(t_env),
                                        f"bound {envelope.text} (scaled)", "--", "black"))
    plot_gaps(rows, "own", out / "gap.png", group_by="run_id", overlays=overlays,
              title=f"{result.config.impl}: gap in {result.config.expect} norm")
    plot_normalized_margins(rows, out / "margins.png", group_by="run_id")
    _departure_plot(result, rows, out)


def _departure_plot(result: GateResult, rows: list[dict], out: Path) -> None:
    """``departure.png`` when a run left its norm's path (:func:`departure`): the gap in the
    expected norm (solid) and in l2 (dotted) per seed, with the step where it left (dashed)
    and where ``log G`` passed ``log eps`` (dash-dot)."""
    from harness.report import Overlay, plot_gaps

    left = {rid: dep for rid, dep in result.departures.items() if dep and "t_min" in dep}
    if not left:
        return
    gaps = [r["gap_own"] for r in rows if r["gap_own"] > 0] + [
        r["gap_fro"] for r in rows if r["gap_fro"] > 0]
    span = [min(gaps), max(gaps)]
    overlays = []
    for i, run in enumerate(result.runs):
        color = f"C{i}"
        series = [(r["t"], r["gap_fro"]) for r in run.rows if r["t"] > 0]
        if series:
            t, gap = np.array(series).T
            overlays.append(Overlay(t, gap, f"{run.run_id}: l2 gap", ":", color))
        dep = result.departures.get(run.run_id) or {}
        if "t_min" in dep:
            overlays.append(Overlay([dep["t_min"]] * 2, span,
                                    f"{run.run_id} leaves, t={dep['t_min']}", "--", color))
        if dep.get("t_eps_crossing"):
            overlays.append(Overlay([dep["t_eps_crossing"]] * 2, span,
                                    f"{run.run_id}: log G < log eps, t={dep['t_eps_crossing']}",
                                    "-.", color))
    plot_gaps(rows, "own", out / "departure.png", group_by="run_id", overlays=overlays,
              title=f"{result.config.impl}: gap in {result.config.expect} (solid) and l2 "
                    "(dotted)")


def write_reports(result: GateResult) -> Path:
    """Write ``report.json``, ``report.md``, ``curves.json`` and the PNGs into ``config.out``."""
    out = result.config.out
    doc = report_json(result)
    rows = [r for run in result.runs for r in run.rows]
    write_curves(out / "curves.json", rows, doc["provenance"])
    write_json_atomic(out / "report.json", doc)
    write_text_atomic(out / "report.md", report_markdown(doc))
    _plots(result, out)
    return out


def gate(impl: str, expect: str, family: str, **options) -> GateResult:
    """Library entry point: :func:`configure` then :func:`run_gate`."""
    return run_gate(configure(impl, expect, family, **options))


def summarize(results: Sequence[tuple[str, GateResult]]) -> dict[str, int]:
    """Counts of verdicts over named gate results."""
    counts = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0}
    for _, result in results:
        counts[result.verdict] = counts.get(result.verdict, 0) + 1
    return counts
