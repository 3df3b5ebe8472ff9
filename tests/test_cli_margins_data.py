"""The `data` and `margins` commands, including bad input (one line on stderr, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harness.cli import main
from harness.data import Dataset, make_dataset


@pytest.fixture(scope="module")
def paper_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "paper.npz"
    assert main(["data", "paper", "--seed", "4", "--out", str(path), "--k", "3", "--d", "5",
                 "--n-per-class", "8"]) == 0
    return path


def test_data_command_writes_the_generator_output(paper_file, capsys):
    ds = Dataset.load(paper_file)
    expected = make_dataset("paper", 4, k=3, d=5, n_per_class=8)
    assert np.array_equal(ds.X, expected.X) and ds.params == expected.params


@pytest.mark.parametrize("generator, extra", [("binary", ["--d", "3"]),
                                              ("teacher", ["--n", "20", "--teacher-width", "3"])])
def test_data_command_other_generators(tmp_path, generator, extra, capsys):
    out = tmp_path / f"{generator}.npz"
    assert main(["data", generator, "--seed", "1", "--out", str(out), *extra]) == 0
    assert Dataset.load(out).name == generator and str(out) in capsys.readouterr().out


def test_margins_json_is_one_object(paper_file, capsys):
    assert main(["margins", str(paper_file), "--norm", "max,l2,spectral", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["margins"]
    assert [m["norm"] for m in out["margins"]] == ["max", "fro", "spectral"]
    for record in out["margins"]:
        assert set(record) == {"norm", "gamma", "lower", "upper", "solver", "status"}
        assert record["lower"] <= record["gamma"] <= record["upper"]
        assert record["status"] == "certified"


def test_margins_text_table(paper_file, capsys):
    assert main(["margins", str(paper_file), "--norm", "sum"]) == 0
    out = capsys.readouterr().out
    assert "sum" in out and "HIGHS" in out and "certified" in out


def test_margins_inaccurate_exit_1(paper_file, capsys):
    assert main(["margins", str(paper_file), "--norm", "fro", "--rtol", "1e-300"]) == 1
    assert "inaccurate" in capsys.readouterr().out


def _bad_files(tmp):
    files = {}
    for name, X, y in [
        ("nan", np.array([[np.nan, 1.0], [1.0, 0.0]]), np.array([0, 1])),
        ("inf", np.array([[np.inf, 1.0], [1.0, 0.0]]), np.array([0, 1])),
        ("shape", np.ones(4), np.array([0, 1, 0, 1])),
        ("xor", np.array([[1.0, 1], [-1, -1], [1, -1], [-1, 1]]), np.array([0, 0, 1, 1])),
    ]:
        np.savez(tmp / f"{name}.npz", X=X, y=y)
        files[name] = tmp / f"{name}.npz"
    np.savez(tmp / "labels.npz", X=np.eye(3), y=np.array([0, 1, 7]), k=np.int64(3))
    files["labels"] = tmp / "labels.npz"
    np.savez(tmp / "good.npz", X=np.eye(2), y=np.array([0, 1]))
    files["good"] = tmp / "good.npz"
    np.savez(tmp / "empty.npz", X=np.eye(2), y=np.array([0, 1]), k=np.int64(3))
    files["empty"] = tmp / "empty.npz"
    (tmp / "corrupt.npz").write_bytes(b"\x00garbage")
    files["corrupt"] = tmp / "corrupt.npz"
    files["missing"] = tmp / "nope.npz"
    return files


@pytest.mark.parametrize("case, norm, fragment", [
    ("nan", "max", "NaN"), ("inf", "max", "infinite"), ("shape", "max", "2-dimensional"),
    ("labels", "max", "out of range"), ("empty", "max", "class 2 has no samples"),
    ("xor", "max", "not linearly separable"), ("corrupt", "max", "not a readable"),
    ("missing", "max", "not found"), ("good", "hinge", "unknown norm"),
])
def test_margins_bad_input_exit_2_one_line(tmp_path, capsys, case, norm, fragment):
    path = _bad_files(tmp_path)[case]
    assert main(["margins", str(path), "--norm", norm]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error:") and fragment in err and err.count("\n") == 1


def test_data_bad_parameter_exit_2(tmp_path, capsys):
    assert main(["data", "teacher", "--seed", "0", "--out", str(tmp_path / "t.npz"),
                 "--active", "50"]) == 2
    assert "must be <= d" in capsys.readouterr().err and not (tmp_path / "t.npz").exists()


def test_fresh_process_no_traceback(tmp_path):
    bad = tmp_path / "xor.npz"
    np.savez(bad, X=np.array([[1.0, 1], [-1, -1], [1, -1], [-1, 1]]), y=np.array([0, 0, 1, 1]))
    proc = subprocess.run([sys.executable, "-m", "harness", "margins", str(bad), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stdout == "" and "margin found" in proc.stderr


def test_fresh_process_prints_only_the_json_document(paper_file):
    """A new process's first HiGHS object prints a banner from C (highspy >= 1.16); neither
    stdout (the --json document) nor stderr (the one-line error contract) may carry it."""
    proc = subprocess.run([sys.executable, "-m", "harness", "margins", str(paper_file),
                           "--norm", "max", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["margins"][0]["solver"] == "HIGHS"
