"""The gate's teeth: broken optimizers that must never PASS, and the self-check cases.

Each mutant is a small ``torch.optim.Optimizer`` with one deliberate defect, importable for the
CLI (``--impl harness.mutants:SignGDWeightDecay``), plus gate cases that misuse correct
optimizers (a claim about the wrong norm, a large ``eps``). :data:`MUTANT_CASES` lists them with
the claim each is gated under; :func:`builtin_cases` lists every registered optimizer with its
own family and norm (the self-check, which must PASS unless it is a known finding,
:data:`KNOWN_FINDINGS`); :data:`TORCH_ADAM_CASES` gates
``torch.optim.Adam`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class _SignBase(torch.optim.Optimizer):
    """Shared constructor: one ``lr`` per group, the harness writes it before every step."""

    def __init__(self, params, lr: float = 0.1, **defaults):
        super().__init__(params, {"lr": lr, **defaults})


class SignGDWeightDecay(_SignBase):
    """SignGD with decoupled weight decay: ``W <- (1 - lr wd) W - lr sign(g)``. The decay caps
    ``||W||_max`` at ``1/wd``, so the iterate cannot grow along the max-margin direction."""

    def __init__(self, params, lr: float = 0.1, weight_decay: float = 0.1):
        super().__init__(params, lr, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.mul_(1.0 - group["lr"] * group["weight_decay"]).add_(
                    torch.sign(p.grad), alpha=-group["lr"])


class L1ScaledSign(_SignBase):
    """A "sign" step scaled by ``||g||_1``: ``W <- W - lr ||g||_1 sign(g)``. Not normalized,
    so its steps shrink with the loss like GD's and the max-norm gap decays like ``1/log t``."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(torch.sign(p.grad) * p.grad.abs().sum(), alpha=-group["lr"])


class SignAscent(_SignBase):
    """Sign *ascent*: ``W <- W + lr sign(g)``, the sign error of a flipped update."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(torch.sign(p.grad), alpha=group["lr"])


class AdamMOverV(_SignBase):
    """Adam dividing by ``v`` instead of ``sqrt(v)``: ``W <- W - lr m^ / (v^ + eps)``. The
    step scales like ``1/|g|`` and explodes as the loss vanishes."""

    def __init__(self, params, lr: float = 0.01, betas=(0.9, 0.99), eps: float = 0.0):
        super().__init__(params, lr, betas=tuple(betas), eps=eps)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                state["m"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                m_hat = state["m"] / (1 - beta1 ** state["t"])
                v_hat = state["v"] / (1 - beta2 ** state["t"])
                p.sub_(group["lr"] * m_hat / (v_hat + group["eps"]))


@dataclass(frozen=True)
class GateCase:
    """One gate invocation: the implementation, its kwargs and the claim it is judged by."""

    name: str
    impl: str
    expect: str
    family: str
    kwargs: dict = field(default_factory=dict)
    why: str = ""
    known_finding: str = ""


#: Gate cases that must never PASS.
MUTANT_CASES: tuple[GateCase, ...] = (
    GateCase("ngd-as-max", "builtin:ngd", "max", "nsd",
             why="NGD's bias is the l2 max-margin direction: its max-norm gap plateaus"),
    GateCase("gd-as-max", "builtin:gd", "max", "nsd",
             why="GD converges to the l2 direction, and only like 1/log t"),
    GateCase("adam-eps-1e-2", "torch.optim:Adam", "max", "adam",
             {"betas": [0.9, 0.99], "eps": 1e-2},
             why="with a large eps Adam turns into GD early and leaves the l-inf path"),
    GateCase("adam-m-over-v", "harness.mutants:AdamMOverV", "max", "adam",
             why="m/v instead of m/sqrt(v): steps blow up as the gradient vanishes"),
    GateCase("signgd-weight-decay", "harness.mutants:SignGDWeightDecay", "max", "nsd",
             why="decoupled weight decay 0.1 caps ||W||_max at 10"),
    GateCase("sign-times-l1", "harness.mutants:L1ScaledSign", "max", "nsd",
             why="a sign step scaled by ||g||_1 is not normalized"),
    GateCase("sign-ascent", "harness.mutants:SignAscent", "max", "nsd",
             why="ascent: the margin becomes negative"),
)

#: ``torch.optim.Adam`` itself, with ``eps = 0`` (paper 000's algorithm) and its default 1e-8.
TORCH_ADAM_CASES: tuple[GateCase, ...] = (
    GateCase("torch-adam-eps0", "torch.optim:Adam", "max", "adam",
             {"betas": [0.9, 0.99], "eps": 0.0}, why="paper 000's Adam"),
    GateCase("torch-adam-eps1e-8", "torch.optim:Adam", "max", "adam",
             {"betas": [0.9, 0.99], "eps": 1e-8},
             why="leaves the l-inf path once sqrt(v) falls below eps (THEORY.md section 4)"),
)

#: Hyper-parameters a registered optimizer needs to be built (the rest use defaults).
_BUILTIN_KWARGS = {"nsd": {"p": 3}}

#: Built-in optimizers that do not show their claimed bias: findings, with the numbers. Their
#: self-check must *not* PASS (a strict expected failure); ``python -m harness check`` lists
#: them as known findings, and a PASS there means the finding no longer reproduces.
KNOWN_FINDINGS = {
    "muon_ns": (
        "Newton-Schulz Muon (quintic (3.4445, -4.7750, 2.0315), 5 iterations) does not converge "
        "to the spectral max-margin direction on quick-profile seed 1 (eta0=0.5, a=1/2): its "
        "output's singular values settle at (1.04, 0.72) instead of U V^T's (1, 1), and the "
        "spectral gap rises from 0.0118 at t=8201 to 0.156 at t=2e5 while exact Muon's falls "
        "to 0.0017 (seeds 0 and 2 converge: gaps 0.0014 and 0.0061 at t=2e5). At the quick "
        "horizon seed 1's gap/f trend is +0.16 over the last decade: INCONCLUSIVE, not PASS."),
}


def builtin_cases() -> tuple[GateCase, ...]:
    """Every registered optimizer gated with its own family and norm (must PASS, except the
    :data:`KNOWN_FINDINGS`, which must not)."""
    from harness.optimizers import OPTIMIZER_NAMES, make_optimizer

    cases = []
    for name in OPTIMIZER_NAMES:
        kwargs = _BUILTIN_KWARGS.get(name, {})
        opt = make_optimizer(name, **kwargs)
        cases.append(GateCase(f"builtin-{name}", f"builtin:{name}", opt.norm.name, opt.family,
                              kwargs, why="own family and norm",
                              known_finding=KNOWN_FINDINGS.get(name, "")))
    return tuple(cases)
