"""Sweep specs: grid expansion, content hashes, batching and bad input (no engine runs here)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from harness.errors import HarnessInputError
from harness.sweep import load_sweep, parse_sweep

CI_SPEC = Path(__file__).resolve().parents[1] / "scenarios" / "sweeps" / "ci.toml"

BASE = {
    "sweep": {"name": "t", "steps": [100, 1000], "per_decade": 5},
    "data": {"generator": "paper", "seeds": [0, 1], "params": {"k": 3, "d": 4}},
    "optimizer": [
        {"name": "signgd", "eta0": [0.1, 0.2], "a": ["1/2", 0.75]},
        {"name": "adam", "label": "adam-eps0", "eta0": 0.05, "a": "2/3",
         "hyper": {"eps": 0.0}},
    ],
}


def _doc(**changes):
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        table, key = path.split("__")
        doc[table][key] = value
    return doc


def test_grid_expands_to_every_combination():
    spec = parse_sweep(_doc())
    # 2 horizons x 2 seeds x (2 eta0 x 2 a + 1) algorithm settings
    assert len(spec.runs) == 2 * 2 * 5
    signgd = {(r.eta0, r.a) for r in spec.runs if r.label == "signgd"}
    assert signgd == {(0.1, 0.5), (0.1, 0.75), (0.2, 0.5), (0.2, 0.75)}
    assert {r.steps for r in spec.runs} == {100, 1000}
    assert {r.data.seed for r in spec.runs} == {0, 1}
    assert {r.label for r in spec.runs} == {"signgd", "adam-eps0"}


def test_hash_covers_results_not_labels():
    runs = parse_sweep(_doc()).runs
    assert len({r.config_hash for r in runs}) == len(runs)
    relabelled = _doc()
    relabelled["optimizer"][1]["label"] = "renamed"
    again = parse_sweep(relabelled).runs
    assert [r.config_hash for r in runs] == [r.config_hash for r in again]
    changed = _doc()
    changed["optimizer"][1]["hyper"] = {"eps": 1e-8}
    moved = parse_sweep(changed).runs
    adam = [i for i, r in enumerate(runs) if r.algorithm == "adam"]
    assert all(runs[i].config_hash != moved[i].config_hash for i in adam)


def test_batches_group_by_algorithm_and_horizon_and_respect_size():
    spec = parse_sweep(_doc(sweep__batch_size=3))
    batches = spec.batches()
    assert sorted(r.config_hash for b in batches for r in b.runs) == sorted(
        r.config_hash for r in spec.runs)
    for batch in batches:
        assert len(batch.runs) <= 3
        assert len({(r.label, r.steps, r.data.source) for r in batch.runs}) == 1
    # signgd: 8 runs per horizon -> 3 + 3 + 2; adam: 2 per horizon -> 2
    assert sorted(len(b.runs) for b in batches) == [2, 2, 2, 2, 3, 3, 3, 3]


def test_exclude_drops_finished_runs_and_keeps_other_batches_identical():
    spec = parse_sweep(_doc(sweep__batch_size=3))
    batches = spec.batches()
    done = {r.config_hash for r in batches[0].runs}
    remaining = spec.batches(exclude=done)
    assert [b.batch_hash for b in remaining] == [b.batch_hash for b in batches[1:]]


def test_ci_spec_is_the_acceptance_grid():
    spec = load_sweep(CI_SPEC)
    assert len({r.label for r in spec.runs}) >= 3
    assert len({r.a for r in spec.runs}) >= 4
    assert len({r.data.seed for r in spec.runs}) >= 3
    assert spec.source_text == CI_SPEC.read_text()


@pytest.mark.parametrize("changes, message", [
    ({"sweep__colour": "red"}, "unknown key 'colour' in [sweep]"),
    ({"sweep__batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"sweep__steps": [100, 100]}, "distinct horizons"),
    ({"sweep__steps": [0]}, "steps must be an integer >= 1"),
    ({"data__seeds": [0, 0]}, "seeds repeat"),
])
def test_bad_sweep_tables_fail_with_one_line(changes, message):
    with pytest.raises(HarnessInputError, match=message.replace("[", r"\[")) as info:
        parse_sweep(_doc(**changes))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("optimizer, message", [
    ({"name": "nosuch", "eta0": 0.1, "a": 0.5}, "unknown optimizer 'nosuch'"),
    ({"name": "adam", "eta0": 0.1, "a": 0.5, "hyper": {"gamma": 1}}, "no hyper-parameter"),
    ({"name": "signgd", "eta0": [], "a": 0.5}, "must not be empty"),
    ({"name": "signgd", "eta0": 0.1, "a": [0.5, 2]}, "a (step exponent) must lie in [0, 1]"),
    ({"name": "signgd", "eta0": [0.1, 0.1], "a": 0.5}, "the same run twice"),
])
def test_bad_optimizer_tables_fail_with_one_line(optimizer, message):
    doc = _doc()
    doc["optimizer"] = [optimizer]
    with pytest.raises(HarnessInputError, match=message.replace("[", r"\[").replace(
            "(", r"\(").replace(")", r"\)")):
        parse_sweep(doc)


def test_repeated_labels_are_rejected():
    doc = _doc()
    doc["optimizer"][1]["label"] = "signgd"
    with pytest.raises(HarnessInputError, match="label 'signgd' repeats"):
        parse_sweep(doc)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(HarnessInputError, match="sweep file not found"):
        load_sweep(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\n")
    with pytest.raises(HarnessInputError, match="malformed TOML"):
        load_sweep(bad)


def test_several_data_tables_are_separate_sources():
    doc = _doc()
    doc["data"] = [doc["data"], {"generator": "paper", "seeds": [0], "params": {"k": 4}}]
    spec = parse_sweep(doc)
    assert len(spec.runs) == 2 * 3 * 5  # horizons x (2 + 1 seeds) x settings
    for batch in spec.batches():
        assert len({run.data.source for run in batch.runs}) == 1
    assert len({run.data.source for run in spec.runs}) == 2


def test_cache_key_names_the_code(monkeypatch):
    """A change to the harness source changes every run's content address."""
    import harness.sweep as sweep

    config = sweep.RunConfig(data=sweep.DatasetRef(generator="paper", seed=0, params=()),
                             algorithm="signgd", label="signgd", hyper=(), eta0=0.1, a=0.5,
                             steps=10, per_decade=5, device="cpu")
    before = config.config_hash
    monkeypatch.setattr(sweep, "source_digest", lambda: "0" * 16)
    assert config.config_hash != before
