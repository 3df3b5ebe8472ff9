"""Unit tests of the verdict logic of harness.homogeneous on hand-made curve rows."""

from __future__ import annotations

import math

import pytest

from harness.homogeneous import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    check_adam_switch,
    check_kkt_shrinks,
    check_own_margin_largest,
    check_soft_margin,
    soft_margin_drop,
    soft_margin_tolerance,
)


def _row(run, alg, t, **cols):
    base = {"run_id": run, "algorithm": alg, "model": "relu-L2", "own_norm": "fro", "t": t,
            "data_seed": 0, "train_acc": 1.0, "log_loss": -1.0, "rel_step": 0.01, "family": "nsd",
            "homogeneity": 2,
            "hyper": {}, "log_grad_max": -1.0}
    return base | cols


@pytest.mark.parametrize("homogeneity", [1, 2])
def test_soft_margin_drop_within_and_beyond_tolerance(homogeneity):
    rising = [_row("r", "gd", t, soft_margin_own=1.0 + 0.1 * t, homogeneity=homogeneity)
              for t in range(5)]
    assert soft_margin_drop(rising)["violations"] == 0
    tol = 1.2 * (1.0 - 1.01 ** -homogeneity)  # |M| (1 - (1 + h)^-L), M = 1.2, h = 0.01
    assert math.isclose(soft_margin_tolerance(1.2, 0.01, homogeneity), tol)

    def dipped(factor):
        return rising[:3] + [_row("r", "gd", 3, soft_margin_own=1.2 - factor * tol,
                                  homogeneity=homogeneity)]

    assert soft_margin_drop(dipped(0.99))["violations"] == 0
    info = soft_margin_drop(dipped(1.01))
    assert info["violations"] == 1 and math.isclose(info["worst_ratio"], 1.01)
    assert math.isclose(info["worst_relative_drop"], 1.01 * tol / (1.2 * 0.01))
    assert check_soft_margin(dipped(1.01)).verdict == FAIL
    assert check_soft_margin(rising).verdict == PASS


def test_soft_margin_before_fit_is_inconclusive():
    rows = [_row("r", "gd", t, soft_margin_own=-1.0 + 0.1 * t, log_loss=1.0) for t in range(5)]
    assert check_soft_margin(rows).verdict == INCONCLUSIVE


def _final(alg, own, seed, **margins):
    return _row(f"{alg}-{seed}", alg, 10, own_norm=own, data_seed=seed,
                **{f"nmargin_{k}": v for k, v in margins.items()})


def test_own_margin_largest():
    rows = [_final("gd", "fro", s, fro=2.0, max=1.0) for s in range(3)]
    rows += [_final("sd", "max", s, fro=1.0, max=3.0) for s in range(3)]
    verdict = check_own_margin_largest(rows, {"relu-L2": ["gd", "sd"]})
    assert verdict.verdict == PASS
    rows += [_final("sd2", "max", s, fro=0.5, max=4.0) for s in range(3)]
    assert check_own_margin_largest(rows, {"relu-L2": ["gd", "sd", "sd2"]}).verdict == FAIL


def test_kkt_shrinks():
    meta = {f"r{i}": {"algorithm": "gd", "model": "relu-L2", "family": "nsd"} for i in range(3)}
    shrinking = {f"r{i}": [{"t": 1, "total": 0.5}, {"t": 9, "total": 0.1}] for i in range(3)}
    growing = {f"r{i}": [{"t": 1, "total": 0.1}, {"t": 9, "total": 0.5}] for i in range(3)}
    assert check_kkt_shrinks(shrinking, meta).verdict == PASS
    assert check_kkt_shrinks(growing, meta).verdict == FAIL
    assert check_kkt_shrinks({"r0": shrinking["r0"]}, meta).verdict == INCONCLUSIVE


def _adam(t, max_margin, fro_margin, log_grad):
    return _row("adam-0", "adam", t, nmargin_max=max_margin, nmargin_fro=fro_margin,
                log_grad_max=log_grad, hyper={"eps": 1e-8})


def test_adam_switch():
    sd = [_row("sd-0", "sd", 9, nmargin_max=5.0)]
    gd = [_row("gd-0", "gd", 9, nmargin_max=1.0)]
    log_eps = math.log(1e-8)
    switch = [_adam(1, 2.0, 0.1, -5), _adam(3, 4.0, 0.1, -10), _adam(4, 3.9, 0.1, log_eps - 1),
              _adam(9, 3.0, 0.2, log_eps - 2)]
    assert check_adam_switch(switch + sd + gd, ["adam"], "sd", "gd").verdict == PASS
    no_switch = [_adam(1, 2.0, 0.1, -5), _adam(4, 4.0, 0.1, log_eps - 1),
                 _adam(9, 4.0, 0.1, log_eps - 2)]
    assert check_adam_switch(no_switch + sd + gd, ["adam"], "sd", "gd").verdict == FAIL
    early = [_adam(1, 2.0, 0.1, -5), _adam(9, 4.0, 0.1, -10)]
    assert check_adam_switch(early + sd + gd, ["adam"], "sd", "gd").verdict == INCONCLUSIVE


def test_adam_switch_needs_an_eps_phase_as_long_as_the_first():
    """Below eps only after half the horizon: no time to switch, so no FAIL (T >= 2 t_eps)."""
    sd = [_row("sd-0", "sd", 9, nmargin_max=5.0)]
    gd = [_row("gd-0", "gd", 9, nmargin_max=1.0)]
    log_eps = math.log(1e-8)
    for t_eps, verdict in ((4, FAIL), (5, INCONCLUSIVE), (9, INCONCLUSIVE)):
        late = [_adam(1, 2.0, 0.1, -5), _adam(t_eps, 4.0, 0.1, log_eps - 1)]
        if t_eps < 9:
            late.append(_adam(9, 4.0, 0.1, log_eps - 2))
        assert check_adam_switch(late + sd + gd, ["adam"], "sd", "gd").verdict == verdict


def test_adam_reported_labels_are_timed_not_judged():
    sd = [_row("sd-0", "sd", 9, nmargin_max=5.0)]
    gd = [_row("gd-0", "gd", 9, nmargin_max=1.0)]
    log_eps = math.log(1e-4)
    rows = [_row("big-0", "adam-big", t, nmargin_max=m, nmargin_fro=f, log_grad_max=g,
                 log_loss=loss, hyper={"eps": 1e-4})
            for t, m, f, g, loss in ((1, 2.0, 0.1, -5, -1.0), (3, 4.0, 0.1, log_eps - 1, -9.5),
                                     (9, 3.0, 0.2, log_eps - 2, -12.0))]
    check = check_adam_switch(rows + sd + gd, [], "sd", "gd", ["adam-big"])
    assert check.verdict == INCONCLUSIVE  # nothing judged
    (detail,) = check.details
    assert detail["verdict"] == "reported" and detail["switched"] is True
    assert detail["grad_below_eps_at"] == 3 and detail["log_loss_at_eps"] == -9.5
    assert "adam-big: 1/1 fitted runs reached max|grad| < eps (median t 3" in check.reason
    assert "log calL then -9.5 vs log eps -9.21; 1 switched" in check.reason


@pytest.mark.parametrize("frozen_model", [False, True], ids=["L2", "L1-frozen"])
@pytest.mark.parametrize("norm", ["fro", "max", "sum", "spectral"])
def test_one_step_loses_at_most_the_tolerance(norm, frozen_model):
    """The derivation of check (a)'s tolerance on real networks: for one step
    theta' = theta - eta D with N(D) = 1 (h = eta / N(theta)) that does not raise calL < 1,
    gamma~(theta') >= gamma~(theta) (1 + h)^-L, i.e. the drop is at most
    soft_margin_tolerance(gamma~, h, L). The derivation uses only N(D) = 1 and the loss not
    rising, so D is the steepest direction or a random unit direction (these come within a
    factor 2 of the bound: the bound is not vacuous). Labels are the network's own signs, so
    calL < 1 after scaling theta up."""
    import torch

    from harness.network_metrics import soft_margin
    from harness.networks import (
        ReluNetwork,
        acts_per_layer,
        evaluate,
        init_parameters,
        parameter_norm,
        sample_gaps,
    )
    from harness.norms import steepest_direction

    net = ReluNetwork(5, 6, frozen_output=frozen_model)
    gen = torch.Generator().manual_seed(11)
    checked, worst = 0, 0.0
    for trial in range(40):
        theta, frozen = init_parameters(net, [trial], 1.0)
        X = torch.randn(1, 12, 5, generator=gen, dtype=torch.float64)
        zeros = torch.zeros(1, 12, dtype=torch.int64)
        y = (sample_gaps(net, theta, X, zeros, frozen) < 0).to(torch.int64)  # own signs
        theta = theta * 30.0
        ev = evaluate(net, theta, X, y, "exp", frozen)
        if not float(ev.log_loss) < 0:
            continue
        g = ev.grad_tilde
        if acts_per_layer(norm):
            steepest = torch.cat([steepest_direction(m, norm).flatten(1)
                                  for m in net.layers(g)], 1)
        else:
            steepest = steepest_direction(g[:, None, :], norm)[:, 0]
        randoms = [torch.randn(theta.shape, generator=gen, dtype=torch.float64)
                   for _ in range(10)]
        size = float(parameter_norm(net, theta, norm))
        before = float(soft_margin(net, theta, ev.log_loss, norm))
        for D in [steepest] + [r / parameter_norm(net, r, norm)[:, None] for r in randoms]:
            for h in (1e-3, 1e-2, 1e-1):
                after = theta - h * size * D
                ev_after = evaluate(net, after, X, y, "exp", frozen)
                if float(ev_after.log_loss) > float(ev.log_loss):
                    continue
                drop = before - float(soft_margin(net, after, ev_after.log_loss, norm))
                ratio = drop / soft_margin_tolerance(before, h, net.homogeneity)
                assert ratio <= 1 + 1e-12
                worst, checked = max(worst, ratio), checked + 1
    assert checked >= 50 and worst > 0.3
