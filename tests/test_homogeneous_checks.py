"""Unit tests of the verdict logic of harness.homogeneous on hand-made curve rows, and one slow
test that pins a finding of check (a) on a real run of scenarios/teacher_student.toml."""

from __future__ import annotations

import dataclasses
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
    margin_at_loss,
    soft_margin_drop,
    soft_margin_tolerance,
)
from harness.network_scenario import load_network_scenario, run_network_scenario


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


def test_own_margin_reported_group_is_given_not_judged():
    """A reported group (runs from another init) gets its medians and the verdict "reported";
    it neither fails nor passes (b), which the judged group alone decides."""
    rows = [_final("gd", "fro", s, fro=2.0, sum=1.0) for s in range(3)]
    rows += [_final("cd", "sum", s, fro=1.0, sum=3.0) for s in range(3)]
    rows += [_final("gd-init1", "fro", s, fro=2.0, sum=5.0) for s in range(3)]
    rows += [_final("cd-init1", "sum", s, fro=1.0, sum=0.5) for s in range(3)]
    verdict = check_own_margin_largest(rows, {"relu-L2": ["gd", "cd"]},
                                       {"relu-L2": ["gd-init1", "cd-init1"]})
    assert verdict.verdict == PASS
    cd1 = next(d for d in verdict.details if d["algorithm"] == "cd-init1")
    assert cd1["verdict"] == "reported"
    assert cd1["median_final_margin"] == {"gd-init1": 5.0, "cd-init1": 0.5}
    assert cd1["seed_win_fraction"] == 0.0
    assert "cd-init1 (relu-L2, sum): reported" in verdict.reason
    judged = check_own_margin_largest(rows, {"relu-L2": ["gd-init1", "cd-init1"]})
    assert judged.verdict == FAIL


def test_kkt_shrinks():
    meta = {f"r{i}": {"algorithm": "gd", "model": "relu-L2", "family": "nsd"} for i in range(3)}
    shrinking = {f"r{i}": [{"t": 1, "total": 0.5}, {"t": 9, "total": 0.1}] for i in range(3)}
    growing = {f"r{i}": [{"t": 1, "total": 0.1}, {"t": 9, "total": 0.5}] for i in range(3)}
    assert check_kkt_shrinks(shrinking, meta).verdict == PASS
    assert check_kkt_shrinks(growing, meta).verdict == FAIL
    assert check_kkt_shrinks({"r0": shrinking["r0"]}, meta).verdict == INCONCLUSIVE


LOG_EPS = math.log(1e-8)


def _references(seed=0):
    """SD and GD on one seed: l-inf margins 2 -> 8 and 0.5 -> 2 while log calL falls -1 -> -41,
    so at log calL = -21 (halfway) they are 4 and 1 (geometric interpolation)."""
    return [_row(f"{alg}-{seed}", alg, t, data_seed=seed, log_loss=loss, nmargin_max=m)
            for alg, points in (("sd", ((1, -1.0, 2.0), (9, -41.0, 8.0))),
                                ("gd", ((1, -1.0, 0.5), (9, -41.0, 2.0))))
            for t, loss, m in points]


def _adam(t, max_margin, fro_margin, log_grad, seed=0, log_loss=-21.0):
    return _row(f"adam-{seed}", "adam", t, data_seed=seed, nmargin_max=max_margin,
                nmargin_fro=fro_margin, log_grad_max=log_grad, log_loss=log_loss,
                hyper={"eps": 1e-8})


def _switching(seed=0, peak=4.0):
    """Peak l-inf margin ``peak`` at log calL -21 before eps, then l-inf down, l2 up."""
    return [_adam(1, 0.5 * peak, 0.1, -5, seed, -5.0), _adam(3, peak, 0.1, -10, seed),
            _adam(4, 0.99 * peak, 0.1, LOG_EPS - 1, seed, -25.0),
            _adam(9, 0.75 * peak, 0.2, LOG_EPS - 2, seed, -40.0)]


def test_margin_at_loss_interpolates_at_the_crossing():
    sd = [r for r in _references() if r["algorithm"] == "sd"]
    assert math.isclose(margin_at_loss(sd, -21.0), 4.0)
    assert math.isclose(margin_at_loss(sd, -41.0), 8.0)
    assert margin_at_loss(sd, -50.0) is None  # never got that low
    assert margin_at_loss(sd, 0.0) is None  # already below it when first fitted
    unfitted = [r | {"train_acc": 0.99} for r in sd]
    assert margin_at_loss(unfitted, -21.0) is None


def test_adam_switch():
    refs = _references()
    assert check_adam_switch(_switching() + refs, ["adam"], "sd", "gd").verdict == INCONCLUSIVE
    runs = [r for s in range(3) for r in _switching(s) + _references(s)]
    check = check_adam_switch(runs, ["adam"], "sd", "gd")
    assert check.verdict == PASS
    assert "adam: PASS (3/3 judged runs show both phases" in check.reason
    assert "peak l-inf margin 4 at log calL -21, SD 4 and GD 1 at that loss" in check.reason
    no_switch = [_adam(1, 2.0, 0.1, -5, s, -5.0) for s in range(3)]
    no_switch += [_adam(t, 4.0, 0.1, LOG_EPS - k, s) for s in range(3) for t, k in ((4, 1), (9, 2))]
    refs3 = [r for s in range(3) for r in _references(s)]
    assert check_adam_switch(no_switch + refs3, ["adam"], "sd", "gd").verdict == FAIL
    early = [_adam(t, m, 0.1, -10 + 5 * (t == 1), s) for s in range(3) for t, m in ((1, 2), (9, 4))]
    assert check_adam_switch(early + refs3, ["adam"], "sd", "gd").verdict == INCONCLUSIVE


def test_adam_follows_sd_at_the_same_loss_not_at_its_horizon():
    """Peak 3.5 at log calL -21: SD's and GD's final l-inf margins (8 and 2) would call it
    GD-like, but at that loss SD had 4 and GD 1, so it follows SD; a peak of 1.2 does not."""
    refs = [r for s in range(3) for r in _references(s)]
    sd_like = [r for s in range(3) for r in _switching(s, peak=3.5)]
    check = check_adam_switch(sd_like + refs, ["adam"], "sd", "gd")
    assert check.verdict == PASS and all(d["follows_sd"] for d in check.details)
    gd_like = [r for s in range(3) for r in _switching(s, peak=1.2)]
    check = check_adam_switch(gd_like + refs, ["adam"], "sd", "gd")
    assert check.verdict == FAIL and not any(d["follows_sd"] for d in check.details)
    assert all(d["switched"] for d in check.details)  # phase 2 alone does not pass


def test_adam_switch_label_passes_on_a_majority_of_judged_runs():
    refs = [r for s in range(4) for r in _references(s)]
    gd_like = _switching(3, peak=1.2)
    two_of_three = [r for s in range(2) for r in _switching(s)] + gd_like
    assert check_adam_switch(two_of_three + refs, ["adam"], "sd", "gd").verdict == PASS
    one_of_three = _switching(0) + [r for s in (1, 2) for r in _switching(s, peak=1.2)]
    assert check_adam_switch(one_of_three + refs, ["adam"], "sd", "gd").verdict == FAIL
    two_of_four = [r for s in range(2) for r in _switching(s)] + [
        r for s in (2, 3) for r in _switching(s, peak=1.2)]
    assert check_adam_switch(two_of_four + refs, ["adam"], "sd", "gd").verdict == FAIL


def test_adam_switch_needs_an_eps_phase_as_long_as_the_first():
    """Below eps only after half the horizon: no time to switch, so no FAIL (T >= 2 t_eps)."""
    refs = [r for s in range(3) for r in _references(s)]
    for t_eps, verdict in ((4, FAIL), (5, INCONCLUSIVE), (9, INCONCLUSIVE)):
        late = []
        for s in range(3):
            late += [_adam(1, 2.0, 0.1, -5, s, -5.0), _adam(t_eps, 4.0, 0.1, LOG_EPS - 1, s)]
            if t_eps < 9:
                late.append(_adam(9, 4.0, 0.1, LOG_EPS - 2, s))
        assert check_adam_switch(late + refs, ["adam"], "sd", "gd").verdict == verdict


def test_adam_reported_labels_are_timed_not_judged():
    log_eps = math.log(1e-4)
    rows = [_row("big-0", "adam-big", t, nmargin_max=m, nmargin_fro=f, log_grad_max=g,
                 log_loss=loss, hyper={"eps": 1e-4})
            for t, m, f, g, loss in ((1, 2.0, 0.1, -5, -1.0), (3, 4.0, 0.1, log_eps - 1, -9.5),
                                     (9, 3.0, 0.2, log_eps - 2, -12.0))]
    check = check_adam_switch(rows + _references(), [], "sd", "gd", ["adam-big"])
    assert check.verdict == INCONCLUSIVE  # nothing judged
    (detail,) = check.details
    assert detail["verdict"] == "reported" and detail["switched"] is True
    assert detail["grad_below_eps_at"] == 3 and detail["log_loss_at_eps"] == -9.5
    assert "adam-big (reported, not judged): 1/1 fitted runs reached max|grad| < eps at " \
           "median t 3, log calL then -9.5 vs log eps -9.21" in check.reason
    assert "l-inf margin fell 25.0% from the peak to T (0.0% already by t_eps), l2 margin " \
           "rose 100.0% after t_eps (0.0% from the peak to t_eps), both > 1% in 1/1" in check.reason


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


#: The earliest horizon at which check (a) fails for cd-init1 on data seed 2 by several
#: tolerances (a full scan of T = 2000..30000: first failure at T = 11836, drop/tol 1.45;
#: 6.62 at T = 11840, the cycle's phase at the last checkpoints decides, see below).
CD_KINK_HORIZON = 11840


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "finding: cd-init1 (greedy coordinate descent from init 1) on data seed 2 reaches calL < 1 "
    "at t = 1899, then ends in a 2-cycle at a ReLU kink where every other step RAISES the loss "
    "(log calL alternates -17.5220 / -17.5189 near t = 11840, net/path near 0), so the soft "
    "margin falls 6.62 tolerances below its running max at t = 11840 (full report, 30000 "
    "steps: 8.54 at t = 23858); the tolerance only covers steps that do not raise the loss"))
def test_cd_init1_soft_margin_at_a_relu_kink(tmp_path):
    """Check (a) on the shipped cd-init1 setting, data seed 2, to ``CD_KINK_HORIZON`` steps.

    Theorem 3.1's monotonicity, and the tolerance ``|M| (1 - (1 + h)^-L)`` of check (a), assume
    descent steps: ``log(1/calL') >= log(1/calL)``. Greedy coordinate descent stalls at a ReLU
    kink (the same coordinate has the largest one-sided partial derivative on both sides, with
    opposite signs; tests/test_networks.py), and in that 2-cycle the step across the kink in one
    direction raises ``calL``: ``log calL`` alternates between two levels 3.1e-3 apart (at
    -17.52), so every other step the soft margin falls by 2.0e-4 of itself (1.8e-4 from
    ``log(1/calL)``) against about ``L h = 3e-5`` allowed (h = 1.3e-5 to 1.4e-5). A checkpoint
    on the high-loss phase after a running maximum set on the low-loss phase is then a
    violation; whether the geometric checkpoint grid of a horizon meets that pattern depends on
    the parity of its last checkpoints (26% of the horizons T in [12000, 14000) do, 83% in
    [28000, 30000); the other failing seeds, 0 and 15, alternate the same way). The xfail is
    strict and only an AssertionError counts: a PASS (the finding gone) or an error fails the
    test, and so does a run that no longer reaches ``calL < 1`` (INCONCLUSIVE: the finding is
    not reproduced, not contradicted)."""
    spec = load_network_scenario("scenarios/teacher_student.toml")
    spec = dataclasses.replace(
        spec, optimizers=tuple(o for o in spec.optimizers if o.label == "cd-init1"),
        frozen_optimizers=(), data=dataclasses.replace(spec.data, seeds=(2,)),
        checks={**spec.checks, "compare_reported": ()})  # (b)'s init-1 group: runs left out
    report = run_network_scenario(spec, steps=CD_KINK_HORIZON, out=tmp_path).report
    check = next(c for c in report["checks"] if c["check"] == "a_soft_margin_nondecreasing")
    (run,) = check["details"]
    if run["verdict"] == INCONCLUSIVE:
        pytest.fail(f"cd-init1-s2 never reached calL < 1 in {CD_KINK_HORIZON} steps")
    assert run["verdict"] == PASS, (
        f"{run['run_id']}: {run['verdict']}, calL < 1 from t = {run['t_fit']}, worst drop/tol "
        f"{run['worst_ratio']:.3g} at t = {run['t_worst']} ({run['violations']} of "
        f"{run['points']} checkpoints beyond), net/path {report['runs'][0]['net_over_path']:.2g}")
