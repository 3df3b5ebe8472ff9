"""Scenario TOML parsing and validation (harness.scenario): the format, and one-line errors
naming the key and where it was found."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.errors import HarnessInputError
from harness.network_scenario import is_network_scenario, parse_network_scenario
from harness.scenario import load_scenario, parse_scenario

VALID = """
[scenario]
name = "tiny"
description = "a test"
steps = 50
ci_steps = 10
batch_size = 4
per_decade = 5

[data]
generator = "paper"
seeds = [0, 3]
[data.params]
k = 3

[[optimizer]]
name = "signgd"
eta0 = 0.1
a = 0.5

[[optimizer]]
name = "adam"
label = "adam-eps0"
eta0 = 0.05
a = "2/3"
[optimizer.hyper]
eps = 0.0
beta1 = 0.9

[[optimizer]]
name = "gd"
eta0 = 1.0
schedule = "constant"
"""

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_valid_file_parses_into_typed_spec(tmp_path):
    spec = load_scenario(write(tmp_path, VALID))
    assert spec.name == "tiny" and spec.steps == 50 and spec.ci_steps == 10
    assert spec.batch_size == 4 and spec.per_decade == 5 and spec.device == "cpu"
    assert spec.data.generator == "paper" and spec.data.seeds == (0, 3)
    assert spec.data.params == {"k": 3}
    assert [o.label for o in spec.optimizers] == ["signgd", "adam-eps0", "gd"]
    adam = spec.optimizers[1]
    assert adam.name == "adam" and adam.hyper == {"eps": 0.0, "beta1": 0.9}
    assert math.isclose(adam.a, 2 / 3, rel_tol=0, abs_tol=1e-16)
    assert spec.optimizers[2].a == 0.0 and spec.optimizers[2].schedule == "constant"
    assert spec.optimizers[0].schedule == "poly"
    assert spec.output_dir == Path("reports") / "tiny"


def test_overrides_apply_and_are_validated(tmp_path):
    spec = load_scenario(write(tmp_path, VALID))
    new = spec.with_overrides(steps=7, device="cuda:1", out=tmp_path / "o")
    assert (new.steps, new.device, new.output_dir) == (7, "cuda:1", tmp_path / "o")
    assert spec.with_overrides().steps == 50
    for bad in ({"steps": 0}, {"steps": -3}, {"device": "tpu"}):
        with pytest.raises(HarnessInputError):
            spec.with_overrides(**bad)


def test_data_path_is_relative_to_the_file(tmp_path):
    text = VALID.replace('generator = "paper"\nseeds = [0, 3]\n[data.params]\nk = 3\n',
                         'path = "d.npz"\n')
    spec = load_scenario(write(tmp_path, text))
    assert spec.data.path == tmp_path / "d.npz" and spec.data.generator is None


@pytest.mark.parametrize(("edit", "message"), [
    (("steps = 50", "steps = 50\nstepz = 3"), "unknown key 'stepz' in [scenario]"),
    (("k = 3\n", "k = 3\n[extra]\nx = 1\n"), "unknown key 'extra' in the top level"),
    (('a = 0.5', 'a = 0.5\nbeta = 0.9'), "unknown key 'beta' in [[optimizer]] #1 (signgd)"),
    (('seeds = [0, 3]', 'seeds = [0, 3]\nseed = 1'), "unknown key 'seed' in [data]"),
    (("steps = 50", "steps = 0"), "steps must be an integer >= 1 in [scenario], got 0"),
    (("steps = 50", "steps = -5"), "steps must be an integer >= 1"),
    (("steps = 50", "steps = 1.5"), "steps must be an integer >= 1"),
    (("steps = 50\n", ""), "missing key 'steps' in [scenario]"),
    (('name = "tiny"', 'name = "../x"'), "name must use letters"),
    (("a = 0.5", "a = 1.5"), "a (step exponent) must lie in [0, 1]"),
    (("a = 0.5", 'a = "two thirds"'), "a must be a number or a fraction"),
    (("a = 0.5", ""), "missing key 'a' (or schedule = 'constant') in [[optimizer]] #1"),
    (("eta0 = 0.1", "eta0 = -0.1"), "eta0 must be a finite number > 0"),
    (('schedule = "constant"', 'schedule = "cosine"'), "schedule must be one of"),
    (('schedule = "constant"', 'schedule = "constant"\na = 0.5'), "contradicts a = 0.5"),
    (('seeds = [0, 3]', 'seeds = [0, 0]'), "seeds repeat"),
    (('seeds = [0, 3]', 'seeds = []'), "seeds must be a non-empty list"),
    (('seeds = [0, 3]', 'seeds = [-1]'), "seeds must be integers >= 0"),
    (('label = "adam-eps0"', 'label = "signgd"'), "optimizer labels repeat: signgd"),
    (('per_decade = 5', 'per_decade = 0'), "per_decade must be an integer >= 1"),
    (('[scenario]', '[scenario]\ndevice = "gpu"'), "device must be 'cpu', 'cuda' or 'cuda:N'"),
])
def test_bad_values_and_unknown_keys_name_the_problem(tmp_path, edit, message):
    old, new = edit
    assert old in VALID
    with pytest.raises(HarnessInputError) as info:
        load_scenario(write(tmp_path, VALID.replace(old, new, 1)))
    text = str(info.value)
    assert message in text and "\n" not in text


def test_malformed_toml_and_missing_file(tmp_path):
    with pytest.raises(HarnessInputError, match="malformed TOML in .*line"):
        load_scenario(write(tmp_path, "[scenario\nname = 1"))
    with pytest.raises(HarnessInputError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.toml")


def test_missing_optimizer_section():
    with pytest.raises(HarnessInputError, match="missing key 'optimizer'"):
        parse_scenario({"scenario": {"name": "x", "steps": 1}, "data": {"generator": "paper"}})


NETWORK = {"scenario": {"name": "n", "model": "relu", "steps": 5},
           "data": {"generator": "teacher", "seeds": [0]},
           "network": {"width": 3, "init_scale": 0.01},
           "checks": {"compare": ["gd", "cd"]},
           "optimizer": [{"name": "ngd", "label": "gd", "eta0": 0.1, "a": 0.5},
                         {"name": "cd", "eta0": 0.1, "a": 0.5}]}


@pytest.mark.parametrize(("init_scale", "checks", "message"), [
    (-1.0, {}, "init_scale must be a finite number > 0 in [[optimizer]] #2, got -1.0"),
    ("big", {}, "init_scale must be a finite number > 0 in [[optimizer]] #2, got 'big'"),
    (1.0, {"compare": ["gd", "cd"]}, "compare in [checks] mixes init scales (gd 0.01, cd 1)"),
    (1.0, {"compare_reported": ["gd", "cd"]}, "compare_reported in [checks] mixes init scales"),
])
def test_network_optimizer_init_scale_is_validated(init_scale, checks, message):
    """A network scenario's per-optimizer init_scale: a positive number, and the runs that
    check (b) compares start from one scale."""
    doc = {**NETWORK, "checks": checks,
           "optimizer": [NETWORK["optimizer"][0],
                         {**NETWORK["optimizer"][1], "init_scale": init_scale}]}
    with pytest.raises(HarnessInputError) as info:
        parse_network_scenario(doc)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert parse_network_scenario(NETWORK).init_overrides == {}


def test_shipped_scenarios_parse():
    files = [p for p in sorted((REPO / "scenarios").glob("*.toml"))
             if not is_network_scenario(p)]
    assert files, "no scenarios shipped"
    for path in files:
        spec = load_scenario(path)
        assert spec.ci_steps is not None and spec.ci_steps < spec.steps, path
