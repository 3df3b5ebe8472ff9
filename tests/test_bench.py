"""``python -m harness bench``: output schema, ratios consistent with the figures, bad input."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.commands.bench import CASES, naive_steps_per_second, synthetic_data


def test_bench_json_has_every_field_and_consistent_ratios(capsys):
    assert main(["bench", "--json", "--cases", "paper", "--steps", "3",
                 "--naive-steps", "3"]) == 0
    document = json.loads(capsys.readouterr().out)
    (row,) = document["cases"]
    assert set(row) == {"name", "k", "d", "n", "batch", "backend", "engine",
                        "engine_torch_path", "naive", "gemm_limit", "speedup",
                        "fraction_of_limit", "gemm_limit_native", "fraction_of_native_limit"}
    assert row["backend"] in ("native", "torch") and row["engine_torch_path"] > 0
    paper = CASES[0]
    assert (row["name"], row["k"], row["d"], row["n"], row["batch"]) == (
        paper.name, paper.k, paper.d, paper.n, paper.batch)
    assert row["speedup"] == pytest.approx(row["engine"] / row["naive"])
    assert row["fraction_of_limit"] == pytest.approx(row["engine"] / row["gemm_limit"])
    assert all(row[key] > 0 for key in ("engine", "naive", "gemm_limit"))
    if row["backend"] == "native":
        assert row["gemm_limit_native"] > 0 and row["fraction_of_native_limit"] == \
            pytest.approx(row["engine"] / row["gemm_limit_native"])
    assert document["provenance"]["versions"]["torch"]


def test_bench_table_names_the_targets(capsys):
    assert main(["bench", "--cases", "small", "--steps", "2", "--naive-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "small" in out and ">= 30x naive" in out


def test_naive_loop_counts_steps():
    data = synthetic_data(3, 4, 30)
    assert naive_steps_per_second(data.X, data.y, 5) > 0


@pytest.mark.parametrize("argv, fragment", [
    (["bench", "--device", "tpu"], "unknown device"),
    (["bench", "--cases", "huge"], "unknown bench case"),
    (["bench", "--steps", "0"], "--steps"),
    (["bench", "--threads", "0"], "--threads"),
])
def test_bench_bad_input_exits_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


@pytest.mark.gpu
def test_bench_runs_on_cuda(capsys):
    assert main(["bench", "--json", "--device", "cuda", "--steps", "3",
                 "--naive-steps", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["cases"]) == len(CASES)
