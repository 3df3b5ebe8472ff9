"""Unit tests of harness.networks, harness.network_metrics and harness.network_engine."""

from __future__ import annotations

import math

import pytest
import torch

from harness.errors import HarnessInputError
from harness.losses import logit_gaps
from harness.network_engine import NetworkRun, train_networks
from harness.network_metrics import dead_samples, kkt_residual, soft_margin
from harness.networks import (
    ReluNetwork,
    evaluate,
    forward,
    gap_jacobian,
    init_parameters,
    parameter_dual_norm,
    parameter_norm,
)
from harness.norms import steepest_direction
from harness.optimizers import make_optimizer
from harness.schedules import Schedule

MODELS = [ReluNetwork(5, 4), ReluNetwork(5, 4, frozen_output=True), ReluNetwork(5, 4, outputs=3)]


def _problem(net: ReluNetwork, batch: int = 3, n: int = 7, scale: float = 0.5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    theta, frozen = init_parameters(net, range(seed, seed + batch), scale)
    X = torch.randn(batch, n, net.d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, net.classes, (batch, n), generator=gen)
    return theta, frozen, X, y


def _reference_log_sample_losses(r, loss):
    """``log ell_i`` written independently of harness.losses, with autograd-safe branches:
    exp: ``logsumexp(-r)``; CE: ``log softplus(s)``, ``s = logsumexp(-r)``, which equals ``s``
    to float64 precision once ``s < -40``."""
    s = torch.logsumexp(-r, dim=-1)
    if loss == "exp":
        return s
    c = torch.clamp(s, min=-40.0)
    safe = torch.log(torch.clamp(c, min=0.0) + torch.log1p(torch.exp(-c.abs())))
    return torch.where(s < -40.0, s, safe)


def _autograd_log_loss(net, theta, X, y, loss, frozen):
    t = theta.clone().requires_grad_()
    r = logit_gaps(forward(net, t, X, frozen).logits, y)
    log_loss = torch.logsumexp(_reference_log_sample_losses(r, loss), dim=-1)
    (grad,) = torch.autograd.grad(log_loss.sum(), t)
    return log_loss.detach(), grad


@pytest.mark.parametrize("net", MODELS, ids=lambda n: f"{n.name}-k{n.outputs}")
@pytest.mark.parametrize("loss", ["exp", "ce"])
@pytest.mark.parametrize("scale", [0.5, 60.0])
def test_gradient_matches_autograd_in_log_domain(net, loss, scale):
    """grad_tilde * exp(log_scale) / calL equals autograd's grad of log calL, also where calL
    itself underflows (scale 60: logits of order 1e4)."""
    theta, frozen, X, y = _problem(net, scale=scale)
    ev = evaluate(net, theta, X, y, loss, frozen)
    log_loss, grad_log = _autograd_log_loss(net, theta, X, y, loss, frozen)
    assert torch.allclose(ev.log_loss, log_loss, rtol=1e-12, atol=1e-12)
    ours = ev.grad_tilde * torch.exp(ev.log_scale - ev.log_loss)[:, None]
    assert torch.allclose(ours, grad_log, rtol=1e-10, atol=1e-12 * grad_log.abs().max())


def test_binary_head_is_paper_exponential_loss():
    """calL = sum_i exp(-y_i f(x_i)) with y in {-1, +1}: the binary head's loss exactly."""
    net = ReluNetwork(4, 3)
    theta, _, X, y = _problem(net, batch=2)
    f = forward(net, theta, X).logits[..., 1]
    expected = torch.log(torch.exp(-(2 * y - 1) * f).sum(dim=-1))
    assert torch.allclose(evaluate(net, theta, X, y).log_loss, expected, rtol=1e-13)


@pytest.mark.parametrize("net", MODELS, ids=lambda n: f"{n.name}-k{n.outputs}")
def test_homogeneity_and_scale_invariant_margins(net):
    theta, frozen, X, y = _problem(net)
    c = 3.7
    f1 = forward(net, theta, X, frozen).logits
    f2 = forward(net, c * theta, X, frozen).logits
    assert torch.allclose(f2, c ** net.homogeneity * f1, rtol=1e-12, atol=1e-14)
    m1 = evaluate(net, theta, X, y, "exp", frozen).margin
    m2 = evaluate(net, c * theta, X, y, "exp", frozen).margin
    for norm in ("fro", "max", "sum", "spectral"):
        g1 = m1 / parameter_norm(net, theta, norm) ** net.homogeneity
        g2 = m2 / parameter_norm(net, c * theta, norm) ** net.homogeneity
        assert torch.allclose(g1, g2, rtol=1e-12)


@pytest.mark.parametrize("net", MODELS, ids=lambda n: f"{n.name}-k{n.outputs}")
def test_soft_margin_brackets(net):
    """gamma - log(#pairs)/N^L <= gamma~ <= gamma (paper 002 Lemma A.7)."""
    theta, frozen, X, y = _problem(net, scale=3.0)
    ev = evaluate(net, theta, X, y, "exp", frozen)
    N = parameter_norm(net, theta, "fro") ** net.homogeneity
    soft, hard = soft_margin(net, theta, ev.log_loss, "fro"), ev.margin / N
    pairs = X.shape[1] * (net.classes - 1)
    assert torch.all(soft <= hard + 1e-12)
    assert torch.all(soft >= hard - math.log(pairs) / N - 1e-12)


@pytest.mark.parametrize("net", MODELS, ids=lambda n: f"{n.name}-k{n.outputs}")
def test_gap_jacobian_matches_autograd(net):
    theta, frozen, X, y = _problem(net)
    fz = None if frozen is None else frozen[0]
    gaps, J = gap_jacobian(net, theta[0], X[0], y[0], fz)
    t = theta[0].clone().requires_grad_()
    r = logit_gaps(forward(net, t, X[0], fz).logits, y[0])
    finite = r[torch.isfinite(r)]
    ref = torch.stack([torch.autograd.grad(v, t, retain_graph=True)[0] for v in finite])
    assert torch.equal(gaps, finite.detach())
    assert torch.allclose(J, ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("norm", ["fro", "max", "sum", "spectral"])
def test_dual_norm_is_attained_by_the_steepest_direction(norm):
    """<G, D> = N_dual(G) with N(D) = 1 for D the flat (entrywise) or per-layer (Schatten)
    steepest direction: the pairing the optimizers and the KKT residual rely on."""
    net = ReluNetwork(6, 4)
    G = torch.randn(2, net.n_params, dtype=torch.float64)
    if norm == "spectral":
        D = torch.cat([steepest_direction(layer, norm).flatten(1) for layer in net.layers(G)], 1)
    else:
        D = steepest_direction(G[:, None, :], norm)[:, 0]
    assert torch.allclose(parameter_norm(net, D, norm), torch.ones(2, dtype=torch.float64))
    assert torch.allclose((G * D).sum(-1), parameter_dual_norm(net, G, norm), rtol=1e-12)


def test_bad_architecture_and_loss_raise():
    with pytest.raises(HarnessInputError):
        ReluNetwork(3, 0)
    with pytest.raises(HarnessInputError):
        ReluNetwork(3, 2, outputs=2)
    net = ReluNetwork(3, 2)
    with pytest.raises(HarnessInputError):
        init_parameters(net, [0], -1.0)


# ----------------------------------------------------------------------------------------------
# KKT residual on points whose KKT status is known in closed form
# ----------------------------------------------------------------------------------------------

ONE_NEURON = ReluNetwork(2, 1)
X1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
Y1 = torch.tensor([1])


@pytest.mark.parametrize("norm", ["fro", "max"])
def test_kkt_residual_vanishes_at_a_kkt_point(norm):
    """One neuron, one point x = e1: theta = (u, a) = ((1, 0), 1) solves min N s.t. a u_1 >= 1
    for l2 and l-inf (grad q = (1, 0, 1) is parallel to a subgradient of N)."""
    res = kkt_residual(ONE_NEURON, [1.0, 0.0, 1.0], X1, Y1, norm)
    assert res.total < 1e-6
    assert abs(res.multiplier_mass - 1.0) < 1e-5


def test_kkt_residual_positive_off_kkt_and_scale_free():
    """The unbalanced ((2, 0), 1/2) is feasible but not stationary for l2; the residual does not
    depend on the scale of theta (it is measured at the normalized iterate)."""
    res = kkt_residual(ONE_NEURON, [2.0, 0.0, 0.5], X1, Y1, "fro")
    scaled = kkt_residual(ONE_NEURON, [20.0, 0.0, 5.0], X1, Y1, "fro")
    assert res.total > 0.1
    assert abs(res.total - scaled.total) < 1e-6


def test_kkt_residual_spectral_frozen_model():
    """Frozen output a = (1, 1), two neurons, x = e1: min ||U||_2 s.t. relu(U x) summed >= 1 is
    solved by U = [[1/2, 0], [1/2, 0]] (spectral norm 1/sqrt 2); a lopsided U is not KKT."""
    net = ReluNetwork(2, 2, frozen_output=True)
    frozen = torch.ones(1, 2, dtype=torch.float64)
    good = kkt_residual(net, [0.5, 0.0, 0.5, 0.0], X1, Y1, "spectral", frozen)
    bad = kkt_residual(net, [0.9, 0.0, 0.1, 0.0], X1, Y1, "spectral", frozen)
    assert good.total < 1e-5
    assert bad.total > 0.05


def test_kkt_residual_needs_separation():
    with pytest.raises(HarnessInputError):
        kkt_residual(ONE_NEURON, [-1.0, 0.0, 1.0], X1, Y1, "fro")


# ----------------------------------------------------------------------------------------------
# Engine: the batched frame loop against a plain loop
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,hyper,frozen_model", [
    ("gd", {}, False), ("signgd", {}, False), ("cd", {}, False),
    ("adam", {"eps": 1e-8}, False), ("adam", {"eps": 0.0, "beta1": 0.0}, False),
    ("shampoo", {}, True), ("shampoo", {}, False)])
def test_engine_matches_plain_loop(name, hyper, frozen_model):
    """30 steps of the batched engine equal a plain per-run loop on the true gradient
    (autograd of calL), with the optimizer's own direction applied per layer for Shampoo."""
    net = ReluNetwork(4, 3, frozen_output=frozen_model)
    theta0, frozen, X, y = _problem(net, batch=2, n=6, scale=0.3)
    runs = [NetworkRun(f"r{b}", "alg", name, Schedule(0.05, 0.5), b, b, b, hyper)
            for b in range(2)]
    result = train_networks(net, runs, X, y, theta0, steps=30, checkpoints=[0, 30],
                            frozen=frozen)
    opt = make_optimizer(name, **hyper)
    for b in range(2):
        theta = theta0[b:b + 1].clone()
        fz = None if frozen is None else frozen[b:b + 1]
        blocks = net.layers(theta) if name == "shampoo" else [theta[:, None, :]]
        states = [opt.init_state(block) for block in blocks]
        zero = torch.zeros(1, dtype=torch.float64)
        for t in range(30):
            t_ = theta.clone().requires_grad_()
            r = logit_gaps(forward(net, t_, X[b:b + 1], fz).logits, y[b:b + 1])
            (grad,) = torch.autograd.grad(torch.exp(-r).sum(), t_)
            parts = net.layers(grad) if name == "shampoo" else [grad[:, None, :]]
            D = torch.cat([opt.direction(p, s, t, zero).flatten(1)
                           for p, s in zip(parts, states, strict=True)], 1)
            theta = theta - 0.05 * (t + 1) ** -0.5 * D
        assert torch.allclose(torch.as_tensor(result.theta[b]), theta[0], rtol=1e-9,
                              atol=1e-12)


def test_engine_rows_and_snapshots():
    net = ReluNetwork(4, 3)
    theta0, _, X, y = _problem(net, batch=2, n=6)
    runs = [NetworkRun(f"r{b}", "sd", "signgd", Schedule(0.1, 0.5), b, b, b) for b in range(2)]
    result = train_networks(net, runs, X, y, theta0, steps=20, checkpoints=[0, 5, 20],
                            snapshot_times=[5])
    assert sorted({r["t"] for r in result.rows}) == [0, 5, 20]
    assert len(result.rows) == 6
    assert result.snapshots[5].shape == (2, net.n_params)
    step5 = [r for r in result.rows if r["t"] == 5]
    # sign descent moves every coordinate by eta_5: N_max(step) = eta_5 exactly
    for r in step5:
        assert math.isclose(r["rel_step"] * r["norm_own"], 0.1 / math.sqrt(6), rel_tol=1e-12)


def test_frozen_scale_rescales_only_the_frozen_output():
    """``frozen_scale`` multiplies the same draw of A; U keeps ``scale``; full model rejects it."""
    net = ReluNetwork(5, 4, frozen_output=True)
    theta, frozen = init_parameters(net, [3, 4], 0.01)
    theta_s, frozen_s = init_parameters(net, [3, 4], 0.01, frozen_scale=2.0)
    assert torch.equal(theta, theta_s)
    assert torch.allclose(frozen_s, 200.0 * frozen, rtol=1e-15)
    with pytest.raises(HarnessInputError):
        init_parameters(ReluNetwork(5, 4), [0], 0.01, frozen_scale=1.0)
    with pytest.raises(HarnessInputError):
        init_parameters(net, [0], 0.01, frozen_scale=float("nan"))


def test_per_run_init_scales_rescale_the_same_draw():
    """One scale per seed multiplies that seed's draw (U, and A unless frozen_scale is set);
    a scale list of the wrong length or with a bad entry is an input error."""
    for net in MODELS[:2]:
        theta, frozen = init_parameters(net, [3, 4], 0.01)
        theta_s, frozen_s = init_parameters(net, [3, 4], [0.01, 1.0])
        assert torch.equal(theta_s[0], theta[0])
        assert torch.allclose(theta_s[1], 100.0 * theta[1], rtol=1e-15)
        if frozen is not None:
            assert torch.allclose(frozen_s[1], 100.0 * frozen[1], rtol=1e-15)
    with pytest.raises(HarnessInputError, match="2 scales for 3 seeds"):
        init_parameters(MODELS[0], [0, 1, 2], [0.1, 0.2])
    with pytest.raises(HarnessInputError, match="init scale must be a finite number > 0"):
        init_parameters(MODELS[0], [0, 1], [0.1, -1.0])


def test_scenario_optimizer_init_scale_is_applied(tmp_path):
    """An ``[[optimizer]]`` ``init_scale`` starts that optimizer's runs at its scale: the same
    algorithm with the same seed, once at [network] init_scale 0.01 and once overridden to 1,
    starts 100 times larger (t = 0 rows), the report records each run's scale, and (b) reports
    the overridden group without judging it."""
    pytest.importorskip("harness.data")
    from harness.network_scenario import parse_network_scenario, run_network_scenario

    doc = {"scenario": {"name": "tiny", "model": "relu", "steps": 3, "per_decade": 1,
                        "snapshots_per_decade": 1},
           "data": {"generator": "teacher", "seeds": [1], "params": {"n": 10, "d": 4}},
           "network": {"width": 3, "init_scale": 0.01, "test_size": 10},
           "checks": {"compare": ["gd"], "compare_reported": ["gd-big"]},
           "optimizer": [{"name": "ngd", "label": "gd", "eta0": 0.1, "a": 0.5},
                         {"name": "ngd", "label": "gd-big", "eta0": 0.1, "a": 0.5,
                          "init_scale": 1.0}]}
    spec = parse_network_scenario(doc)
    assert spec.init_scale_of("gd") == 0.01 and spec.init_scale_of("gd-big") == 1.0
    result = run_network_scenario(spec, out=tmp_path)
    start = {r["algorithm"]: r["norm_fro"] for r in result.rows if r["t"] == 0}
    assert math.isclose(start["gd-big"], 100.0 * start["gd"], rel_tol=1e-12)
    assert {r["algorithm"]: r["init_scale"] for r in result.report["runs"]} == {
        "gd": 0.01, "gd-big": 1.0}
    (b,) = [c for c in result.report["checks"] if c["check"] == "b_own_margin_largest"]
    assert [d["verdict"] for d in b["details"] if d["algorithm"] == "gd-big"] == ["reported"]


@pytest.mark.parametrize("net", MODELS[:2], ids=["L2", "L1-frozen"])
def test_gradient_matches_central_finite_differences(net):
    """grad calL = exp(log_scale) grad_tilde against central differences of calL in every
    coordinate (independent of autograd; at a random point no ReLU kink lies within h)."""
    theta, frozen, X, y = _problem(net, batch=1, n=9, scale=0.7, seed=5)
    ev = evaluate(net, theta, X, y, "exp", frozen)
    grad = ev.grad_tilde[0] * torch.exp(ev.log_scale[0])
    h = 1e-6
    for j in range(net.n_params):
        e = torch.zeros_like(theta)
        e[0, j] = h
        up = torch.exp(evaluate(net, theta + e, X, y, "exp", frozen).log_loss)
        down = torch.exp(evaluate(net, theta - e, X, y, "exp", frozen).log_loss)
        assert math.isclose(float((up - down) / (2 * h)), float(grad[j]), rel_tol=1e-6,
                            abs_tol=1e-8)


def test_coordinate_descent_zigzags_across_a_relu_kink():
    """Why greedy coordinate descent (l1 steepest descent, one coordinate per step) stalls on
    ReLU networks from small initialization (paper 002 teacher data, seed 1, init 0.01, eta
    0.01 constant): it enters a 2-cycle theta_a <-> theta_b that moves one coordinate j, across
    which one sample's pre-activation changes sign (a kink of calL); j has the largest |partial
    derivative| on BOTH sides with opposite signs, so the rule picks j forever, while the
    element of the Clarke subdifferential with zero j-component is not zero (the l1 steepest
    FLOW would slide along the kink). The gradient is right (finite-difference test above):
    the stall is a property of the discrete greedy rule, not of the harness."""
    data = pytest.importorskip("harness.data")
    ds = data.make_dataset("teacher", 1, n=100, d=20)
    X, y = torch.as_tensor(ds.X), torch.as_tensor(ds.y)
    net = ReluNetwork(20, 20)
    theta, _ = init_parameters(net, [17], 0.01)

    def grad(th):
        ev = evaluate(net, th, X, y, "exp")
        return ev.grad_tilde[0] * torch.exp(ev.log_scale[0])

    def step(th):
        return th - 0.01 * steepest_direction(grad(th)[None, None, :], "sum")[:, 0]

    for _ in range(1000):
        theta = step(theta)
    theta_b = step(theta)
    assert torch.equal(step(theta_b), theta)  # exact 2-cycle
    moved = (theta_b != theta).nonzero()[:, 1]
    assert moved.numel() == 1
    j = int(moved)
    g_a, g_b = grad(theta), grad(theta_b)
    assert int(g_a.abs().argmax()) == j == int(g_b.abs().argmax())
    assert float(g_a[j]) * float(g_b[j]) < 0
    pre_a, pre_b = forward(net, theta, X).pre, forward(net, theta_b, X).pre
    assert ((pre_a > 0) != (pre_b > 0)).any()
    lam = float(g_b[j] / (g_b[j] - g_a[j]))
    clarke = lam * g_a + (1 - lam) * g_b
    assert abs(float(clarke[j])) < 1e-12 and float(clarke.abs().max()) > 0.1 * float(
        g_b.abs().max())


def test_net_over_path_tells_a_cycle_from_progress():
    """Over the last W steps: greedy CD in the 2-cycle above (same data, init and step) comes
    back to where it was (net/path = 0 exactly for an even W), normalized GD from the same
    start moves on (its unit steps nearly add up)."""
    data = pytest.importorskip("harness.data")
    ds = data.make_dataset("teacher", 1, n=100, d=20)
    X, y = torch.as_tensor(ds.X)[None], torch.as_tensor(ds.y)[None]
    net = ReluNetwork(20, 20)
    theta, _ = init_parameters(net, [17, 17], 0.01)
    runs = [NetworkRun(name, name, name, Schedule.constant(0.01), 1, 17, 0)
            for name in ("cd", "ngd")]
    result = train_networks(net, runs, X, y, theta, steps=1100, checkpoints=[1100])
    assert result.window == 100
    assert result.net_over_path[0] == 0.0
    assert result.net_over_path[1] > 0.9
    with pytest.raises(HarnessInputError):
        train_networks(net, runs, X, y, theta, steps=10, checkpoints=[10], window=0)


def test_dead_samples_have_no_active_unit():
    """Both hidden units read +x_1 (run 1: the second also -x_2), so x_2 = -e1 activates
    nothing (f(x_2) = 0), and in run 1 neither does x_3 = e2 (pre-activations 0 and -1)."""
    net = ReluNetwork(2, 2)
    X = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    theta = torch.tensor([[1.0, 0.0, 1.0, -1.0, 1.0, 1.0],
                          [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert dead_samples(net, theta, X).tolist() == [2, 1]
    f = forward(net, theta, X).logits[..., 1]
    assert f[0, 1] == f[0, 2] == f[1, 1] == 0.0 and f[1, 2] != 0.0
