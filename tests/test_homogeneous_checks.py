"""Unit tests of the verdict logic of harness.homogeneous on hand-made curve rows."""

from __future__ import annotations

import math

from harness.homogeneous import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    check_adam_switch,
    check_kkt_shrinks,
    check_own_margin_largest,
    check_soft_margin,
    soft_margin_drop,
)


def _row(run, alg, t, **cols):
    base = {"run_id": run, "algorithm": alg, "model": "relu-L2", "own_norm": "fro", "t": t,
            "data_seed": 0, "train_acc": 1.0, "log_loss": -1.0, "rel_step": 0.01, "family": "nsd",
            "hyper": {}, "log_grad_max": -1.0}
    return base | cols


def test_soft_margin_drop_within_and_beyond_tolerance():
    rising = [_row("r", "gd", t, soft_margin_own=1.0 + 0.1 * t) for t in range(5)]
    assert soft_margin_drop(rising)["violations"] == 0
    small_dip = rising[:3] + [_row("r", "gd", 3, soft_margin_own=1.2 - 0.5 * 0.01 * 1.2)]
    assert soft_margin_drop(small_dip)["violations"] == 0
    big_dip = rising[:3] + [_row("r", "gd", 3, soft_margin_own=1.2 - 2 * 0.01 * 1.2)]
    info = soft_margin_drop(big_dip)
    assert info["violations"] == 1 and math.isclose(info["worst_ratio"], 2.0)
    assert check_soft_margin(big_dip).verdict == FAIL
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
    switch = [_adam(1, 2.0, 0.1, -5), _adam(3, 4.0, 0.1, -10), _adam(5, 3.9, 0.1, log_eps - 1),
              _adam(9, 3.0, 0.2, log_eps - 2)]
    assert check_adam_switch(switch + sd + gd, ["adam"], "sd", "gd").verdict == PASS
    no_switch = [_adam(1, 2.0, 0.1, -5), _adam(5, 4.0, 0.1, log_eps - 1),
                 _adam(9, 4.0, 0.1, log_eps - 2)]
    assert check_adam_switch(no_switch + sd + gd, ["adam"], "sd", "gd").verdict == FAIL
    early = [_adam(1, 2.0, 0.1, -5), _adam(9, 4.0, 0.1, -10)]
    assert check_adam_switch(early + sd + gd, ["adam"], "sd", "gd").verdict == INCONCLUSIVE
