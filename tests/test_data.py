"""Dataset generators and storage (harness.data)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from harness.data import GENERATOR_DEFAULTS, Dataset, make_dataset
from harness.errors import HarnessInputError, NotSeparableError
from harness.margins import max_margin


@pytest.mark.parametrize("generator", list(GENERATOR_DEFAULTS))
def test_deterministic_by_seed(generator):
    a, b, c = (make_dataset(generator, seed) for seed in (5, 5, 6))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    assert a.X.dtype == np.float64 and a.y.dtype == np.int64


def test_paper_defaults_and_distribution():
    ds = make_dataset("paper", 0)
    assert (ds.n, ds.d, ds.k) == (500, 25, 10)
    assert ds.params == {"k": 10, "d": 25, "n_per_class": 50, "sigma": 0.1}
    assert np.array_equal(np.bincount(ds.y), np.full(10, 50))
    means = np.stack([ds.X[ds.y == c].mean(0) for c in range(10)])
    within = ds.X - means[ds.y]
    assert within.std() == pytest.approx(0.1, rel=0.05)  # sigma
    assert means.std() == pytest.approx(1.0, rel=0.2)  # centres ~ N(0, I)


@pytest.mark.parametrize("generator", ["paper", "binary"])
def test_linear_generators_are_certified_separable(generator):
    extra = {"k": 3} if generator == "paper" else {}
    ds = make_dataset(generator, 2, d=4, n_per_class=20, sigma=0.5, **extra)
    record = ds.info["separability"]
    assert record["status"] == "certified" and record["lower"] > 0
    again = max_margin(ds.X, ds.y, "max")
    assert again.lower <= record["upper"] and record["lower"] <= again.upper
    assert ds.k == (2 if generator == "binary" else 3)


def test_teacher_labels_come_from_the_sparse_relu_teacher():
    ds = make_dataset("teacher", 3, n=400, d=12, teacher_width=6, active=3, teacher_margin=0.05)
    hidden, output = ds.extras["teacher_hidden"], ds.extras["teacher_output"]
    assert hidden.shape == (6, 12) and np.all((hidden != 0).sum(axis=1) == 3)
    assert sorted(output) == [-1.0] * 3 + [1.0] * 3
    f = np.maximum(ds.X @ hidden.T, 0) @ output
    assert np.array_equal(ds.y, (f > 0).astype(np.int64))
    assert np.abs(f).min() > 0.05 and ds.info["teacher_min_abs_output"] == np.abs(f).min()
    assert set(np.unique(ds.y)) == {0, 1} and "separability" not in ds.info


def test_a_non_separable_draw_is_redrawn_and_logged(caplog):
    caplog.set_level(logging.WARNING, logger="harness.data")
    params = {"k": 3, "d": 2, "n_per_class": 6, "sigma": 0.2}
    redrawn = None
    for seed in range(60):
        ds = make_dataset("paper", seed, **params)
        if ds.info["attempts"] > 1:
            redrawn = ds
            break
    assert redrawn is not None, "no seed needed a second draw"
    assert len(redrawn.info["discarded"]) == redrawn.info["attempts"] - 1
    assert "not linearly separable" in redrawn.info["discarded"][0]
    assert "discarded" in caplog.text and redrawn.info["separability"]["lower"] > 0


def test_gives_up_after_max_attempts():
    with pytest.raises(NotSeparableError, match="no acceptable dataset in 2 draws"):
        make_dataset("paper", 0, k=3, d=2, n_per_class=40, sigma=5.0, max_attempts=2)


def test_save_load_round_trip(tmp_path):
    ds = make_dataset("teacher", 1, n=30)
    path = ds.save(tmp_path / "sub" / "t.npz")
    back = Dataset.load(path)
    assert np.array_equal(back.X, ds.X) and np.array_equal(back.y, ds.y)
    assert (back.k, back.name, back.params, back.seed) == (ds.k, ds.name, ds.params, ds.seed)
    assert np.array_equal(back.extras["teacher_hidden"], ds.extras["teacher_hidden"])
    with np.load(path) as npz:
        meta = json.loads(str(npz["meta"]))
    assert meta["provenance"]["seeds"] == [1] and "versions" in meta["provenance"]
    again = make_dataset(back.name, back.seed, **back.params)
    assert np.array_equal(again.X, ds.X)


def test_load_plain_npz(tmp_path):
    np.savez(tmp_path / "plain.npz", X=np.eye(3), y=np.array([0, 1, 2]))
    ds = Dataset.load(tmp_path / "plain.npz")
    assert (ds.name, ds.k, ds.seed) == ("file", 3, None)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing.npz", "not found"),
    (lambda p: (p / "bad.npz").write_bytes(b"not a zip file") and p / "bad.npz", "not a readable"),
    (lambda p: _write(p / "noy.npz", X=np.eye(2)), "no array 'y'"),
    (lambda p: _write(p / "nan.npz", X=np.array([[np.nan, 1.0], [0, 1]]), y=np.array([0, 1])),
     "NaN"),
    (lambda p: _write(p / "shape.npz", X=np.ones(3), y=np.array([0, 1, 1])), "2-dimensional"),
    (lambda p: _write(p / "range.npz", X=np.eye(2), y=np.array([0, 5]), k=np.int64(2)),
     "out of range"),
    (lambda p: _write(p / "empty.npz", X=np.eye(2), y=np.array([0, 1]), k=np.int64(3)),
     "class 2 has no samples"),
    (lambda p: _write(p / "meta.npz", X=np.eye(2), y=np.array([0, 1]), meta=np.array("{oops")),
     "corrupt metadata"),
], ids=["missing", "not-zip", "no-y", "nan", "shape", "label-range", "empty-class", "meta"])
def test_load_bad_files_one_line_error(tmp_path, make, fragment):
    with pytest.raises(HarnessInputError) as info:
        Dataset.load(make(tmp_path))
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("generator, seed, params, fragment", [
    ("gauss", 0, {}, "unknown generator"),
    ("paper", 0, {"n": 5}, "no parameter 'n'"),
    ("paper", 0, {"k": 1}, "k must be >= 2"),
    ("paper", 0, {"d": 2.5}, "positive integer"),
    ("paper", 0, {"sigma": -1.0}, ">= 0"),
    ("teacher", 0, {"active": 9, "d": 4}, "must be <= d"),
    ("paper", -1, {}, "seed"),
])
def test_bad_generator_arguments(generator, seed, params, fragment):
    with pytest.raises(HarnessInputError, match=fragment):
        make_dataset(generator, seed, **params)
