"""Each optimizer of the engine against a plain float64 numpy loop written from the formulas.

The references below are deliberately naive: a softmax per sample, the gradient
``-(1/n) sum_i (e_{y_i} - s_i) x_i^T`` with the label entry ``sum_{c != y} s_c`` (THEORY.md
section 1), and each update rule spelled out. For 1000 steps, while every margin stays below
30 (so the naive softmax is still accurate), the engine must agree to 1e-10 relative in W.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from harness.engine import RunSpec, run_batch
from harness.errors import HarnessInputError
from harness.optimizers import OPTIMIZER_NAMES, make_optimizer
from harness.schedules import Schedule

STEPS = 1000
ETA0, A = 0.02, 0.5


def toy_dataset(seed=0, k=4, d=6, per_class=10, name="toy"):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    X = np.repeat(centres, per_class, axis=0) + 0.3 * rng.normal(size=(k * per_class, d))
    return SimpleNamespace(X=X, y=np.repeat(np.arange(k), per_class), name=name, seed=seed)


# ---------------------------------------------------------------- naive reference ----------

def naive_gradient(W, X, y):
    n = len(y)
    Z = X @ W.T
    S = np.exp(Z - Z.max(axis=1, keepdims=True))
    S /= S.sum(axis=1, keepdims=True)
    coeff = -S.copy()  # (e_y - s)_c = -s_c off the label
    off_label = S.copy()
    off_label[np.arange(n), y] = 0.0
    coeff[np.arange(n), y] = off_label.sum(axis=1)  # sum_{c != y} s_c
    return -(coeff.T @ X) / n


def naive_margin(W, X, y):
    Z = X @ W.T
    gaps = Z[np.arange(len(y)), y][:, None] - Z
    gaps[np.arange(len(y)), y] = np.inf
    return gaps.min()


def sign(G):
    return np.sign(G)


def frobenius(G):
    return G / np.linalg.norm(G)


def entrywise_p(p):
    q = p / (p - 1)

    def direction(G):
        return np.sign(G) * np.abs(G) ** (q - 1) / np.sum(np.abs(G) ** q) ** ((q - 1) / q)
    return direction


def coordinate(G):
    D = np.zeros_like(G)
    idx = np.unravel_index(np.argmax(np.abs(G)), G.shape)
    D[idx] = np.sign(G[idx])
    return D


def spectral(G):
    U, s, Vt = np.linalg.svd(G, full_matrices=False)
    keep = s > 1e-12 * s[0]
    return U[:, keep] @ Vt[keep]


def newton_schulz5(G):
    a, b, c = 3.4445, -4.7750, 2.0315
    Xm = G / np.linalg.norm(G)
    for _ in range(5):
        Am = Xm @ Xm.T
        Xm = a * Xm + (b * Am + c * Am @ Am) @ Xm
    return Xm


def naive_run(name, hyper, X, y, steps=STEPS, eta0=ETA0, a=A):
    k, d = int(y.max()) + 1, X.shape[1]
    W = np.zeros((k, d))
    M, m, v = np.zeros((k, d)), np.zeros((k, d)), np.zeros((k, d))
    beta1 = hyper.get("beta1", 0.9)
    stateless = {"gd": lambda G: G, "signgd": sign, "ngd": frobenius, "cd": coordinate,
                 "spectral_gd": spectral, "shampoo": spectral,
                 "nsd": entrywise_p(hyper.get("p", 3.0))}
    momentum = {"signum": sign, "momentum_ngd": frobenius, "muon": spectral,
                "muon_ns": newton_schulz5}
    largest_margin = -np.inf
    for t in range(steps):
        largest_margin = max(largest_margin, naive_margin(W, X, y))
        G = naive_gradient(W, X, y)
        eta = eta0 * (t + 1) ** (-a)
        if name in stateless:
            D = stateless[name](G)
        elif name in momentum:
            M = beta1 * M + (1 - beta1) * G
            D = momentum[name](M)
        else:
            b1, b2 = hyper.get("beta1", 0.9), hyper.get("beta2", 0.99)
            eps, corrected = hyper.get("eps", 0.0), hyper.get("bias_correction", True)
            m = b1 * m + (1 - b1) * G
            v = b2 * v + (1 - b2) * G * G
            m_hat = m / (1 - b1 ** (t + 1)) if corrected else m
            v_hat = v / (1 - b2 ** (t + 1)) if corrected else v
            D = m_hat / (np.sqrt(v_hat) + eps)
        W = W - eta * D
    return W, max(largest_margin, naive_margin(W, X, y))


CASES = [(name, {"p": 3.0} if name == "nsd" else {}) for name in OPTIMIZER_NAMES] + [
    ("nsd", {"p": 1.5}),
    ("adam", {"eps": 1e-8, "beta2": 0.999}),
    ("adam", {"bias_correction": False, "beta1": 0.5}),
    ("signum", {"beta1": 0.5}),
]


@pytest.fixture(scope="module")
def engine_runs():
    ds = toy_dataset()
    specs = [RunSpec(ds, name, ETA0, A, hyper=hyper, references={}, run_id=f"case{i}")
             for i, (name, hyper) in enumerate(CASES)]
    return ds, run_batch(specs, STEPS, compute_references=False, progress=False)


@pytest.mark.parametrize("case", range(len(CASES)),
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in h.items())}"
                              for n, h in CASES])
def test_engine_matches_naive_loop(engine_runs, case):
    ds, result = engine_runs
    name, hyper = CASES[case]
    W_ref, largest_margin = naive_run(name, hyper, ds.X, ds.y)
    assert largest_margin < 30, "the comparison is only meaningful below margin 30"
    W = result.final_W[f"case{case}"]
    assert np.abs(W - W_ref).max() <= 1e-10 * np.abs(W_ref).max()
    assert result.steps_done[f"case{case}"] == STEPS


def test_every_optimizer_declares_family_and_norm():
    expected = {"gd": ("gd", "fro"), "signgd": ("nsd", "max"), "ngd": ("nsd", "fro"),
                "cd": ("nsd", "sum"), "spectral_gd": ("nsd", "spectral"),
                "shampoo": ("nsd", "spectral"), "signum": ("nmd", "max"),
                "momentum_ngd": ("nmd", "fro"), "muon": ("nmd", "spectral"),
                "muon_ns": ("nmd", "spectral"), "adam": ("adam", "max")}
    for name, (family, norm) in expected.items():
        opt = make_optimizer(name)
        assert (opt.family, opt.norm.name) == (family, norm), name
    assert make_optimizer("nsd", p=3).norm.name == "l3"
    assert set(OPTIMIZER_NAMES) == set(expected) | {"nsd"}


@pytest.mark.parametrize("name, hyper, fragment", [
    ("sgd-typo", {}, "unknown optimizer"),
    ("adam", {"beta1": 1.0}, "beta1"),
    ("adam", {"beta2": -0.1}, "beta2"),
    ("adam", {"eps": -1e-8}, "eps"),
    ("adam", {"eps": math.nan}, "eps"),
    ("adam", {"bias_correction": "no"}, "bias_correction"),
    ("signum", {"beta1": 1.5}, "beta1"),
    ("muon", {"beta1": "high"}, "beta1"),
    ("muon_ns", {"ns_steps": 0}, "ns_steps"),
    ("nsd", {}, "1 < p < inf"),
    ("nsd", {"p": 1}, "1 < p < inf"),
    ("nsd", {"p": math.inf}, "1 < p < inf"),
    ("signgd", {"beta1": 0.9}, "no hyper-parameter 'beta1'"),
    ("adam", {"lr": 0.1}, "no hyper-parameter 'lr'"),
])
def test_bad_hyper_parameters_raise_one_line(name, hyper, fragment):
    with pytest.raises(HarnessInputError, match=fragment) as info:
        make_optimizer(name, **hyper)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("eta0, a, fragment", [
    (0.0, 0.5, "eta0"), (-1.0, 0.5, "eta0"), (math.inf, 0.5, "eta0"),
    (0.1, 1.5, "exponent a"), (0.1, -0.1, "exponent a"),
])
def test_bad_schedules_raise(eta0, a, fragment):
    with pytest.raises(HarnessInputError, match=fragment):
        Schedule(eta0, a)


def test_schedule_values():
    assert Schedule(0.5, 0.5).eta(3) == pytest.approx(0.25, rel=1e-15)
    assert Schedule.constant(0.3).eta(10 ** 6) == 0.3
