"""Sweeps on the real engine: local processes vs a Dask LocalCluster, a worker killed mid-batch,
the whole sweep killed and resumed, and the report (issue 7's acceptance tests).

All of them run scenarios/sweeps/ci.toml (3 algorithms x 4 step exponents x 3 data seeds, 300
steps, 6 batches of 6 runs). The local run is done once per module and is the reference the
others are compared with.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest

from harness.cli import main
from harness.curves import geometric_grid
from harness.executors import open_executor
from harness.rates import rate_bound
from harness.results_store import ResultsStore, result_differences
from harness.sweep import execute_batch, load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
CI_SPEC = ROOT / "scenarios" / "sweeps" / "ci.toml"

# The announcing batch function below must reach Dask workers by value (they cannot import
# this test module).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def spec():
    return load_sweep(CI_SPEC)


@pytest.fixture(scope="module")
def local_sweep(spec, tmp_path_factory):
    """The CI sweep on two local processes: (directory, stored table)."""
    out = tmp_path_factory.mktemp("local")
    with open_executor("local", workers=2) as executor:
        outcome = run_sweep(spec, out, executor, progress=False)
    assert (outcome.cached, len(outcome.computed), outcome.failed) == (0, 6, [])
    return out, ResultsStore(out).read_table()


def _assert_complete(spec, table):
    """Every run of the spec, every checkpoint, exactly once (read_table rejects repeats)."""
    per_run = len(geometric_grid(spec.runs[0].steps, spec.per_decade))
    assert table.num_rows == len(spec.runs) * per_run
    assert set(table["config_hash"].to_pylist()) == {run.config_hash for run in spec.runs}


def test_local_sweep_stores_every_row_once_with_provenance(spec, local_sweep):
    out, table = local_sweep
    _assert_complete(spec, table)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["harness_version"] and row["versions"] and row["device"].startswith("cpu")
    assert {r["label"] for r in table.select(["label"]).to_pylist()} == {"signgd", "ngd", "adam"}
    assert (out / "sweep.toml").read_text() == CI_SPEC.read_text()


def test_dask_local_cluster_gives_identical_results(spec, local_sweep, tmp_path):
    with open_executor("dask", workers=2) as executor:
        outcome = run_sweep(spec, tmp_path, executor, progress=False)
    assert (outcome.cached, len(outcome.computed)) == (0, 6)
    table = ResultsStore(tmp_path).read_table()
    _assert_complete(spec, table)
    assert not result_differences(table, local_sweep[1], ignore=())  # provenance columns too


def announced_batch(batch, flags: str, pause: float):
    """``execute_batch`` that first leaves a file ``<batch hash>.<pid>`` and waits ``pause``
    seconds, so the test knows which worker process is inside which batch."""
    Path(flags, f"{batch.batch_hash}.{os.getpid()}").touch()
    time.sleep(pause)
    return execute_batch(batch)


def test_killed_dask_worker_is_retried_without_loss_or_duplicates(spec, local_sweep, tmp_path):
    from distributed import LocalCluster

    flags = tmp_path / "flags"
    flags.mkdir()
    killed: list[str] = []

    def kill_first_started_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            started = sorted(flags.iterdir())
            if started:
                batch_hash, pid = started[0].name.split(".")
                os.kill(int(pid), signal.SIGKILL)
                killed.append(batch_hash)
            time.sleep(0.02)

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        with open_executor("dask", scheduler=cluster.scheduler_address) as executor:
            killer = threading.Thread(target=kill_first_started_worker)
            killer.start()
            outcome = run_sweep(spec, tmp_path / "out", executor, progress=False,
                                batch_fn=lambda b: announced_batch(b, str(flags), 1.0))
            killer.join()
    assert len(killed) == 1
    attempts = [p.name for p in flags.iterdir() if p.name.startswith(killed[0])]
    assert len(attempts) == 2  # the killed attempt and Dask's retry on another process
    assert (outcome.failed, len(outcome.computed)) == ([], 6)
    table = ResultsStore(tmp_path / "out").read_table()
    _assert_complete(spec, table)
    assert not result_differences(table, local_sweep[1])


def test_killed_sweep_resumes_computing_only_the_missing_batches(spec, local_sweep, tmp_path,
                                                                 capsys):
    out = tmp_path / "sweep"
    store = ResultsStore(out)
    command = [sys.executable, "-m", "harness", "sweep", str(CI_SPEC), "--out", str(out),
               "--workers", "2"]
    env = {**os.environ, "CI": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not store.batch_files() and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the sweep and its worker processes
        process.wait()
        process.stderr.close()
    before = len(store.batch_files())
    assert 1 <= before < 6, f"kill landed after {before} of 6 batches"
    assert store.read_table().num_rows == before * 6 * len(geometric_grid(300, 10))
    assert main(["sweep", str(CI_SPEC), "--out", str(out), "--workers", "2"]) == 0
    assert f"{before} cached, {6 - before} computed, 0 failed" in capsys.readouterr().out
    table = store.read_table()
    _assert_complete(spec, table)
    assert not result_differences(table, local_sweep[1])


def test_report_gives_rate_table_and_plot(spec, local_sweep, capsys):
    out, _ = local_sweep
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    text = (out / "report" / "rates.md").read_text()
    groups = {(run.label, run.a) for run in spec.runs}
    table_lines = [line for line in text.splitlines()
                   if line.startswith("| ") and not line.startswith("| algorithm")]
    assert len(table_lines) == len(groups) == 12
    for run in spec.runs:
        family = {"signgd": "nsd", "ngd": "nsd", "adam": "adam"}[run.label]
        bound = rate_bound(family, run.a, 15, 5)
        assert any(line.startswith(f"| {run.label} | {family} |") and bound.text in line
                   for line in table_lines)
    assert "36 of 36 runs stored" in text
    assert (out / "report" / "exponent_vs_a.png").stat().st_size > 0
    assert (out / "report" / "rates.json").is_file()
    assert printed.count("\n") >= 13


def test_report_and_sweep_reject_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err
    assert main(["sweep", str(CI_SPEC), "--executor", "local", "--scheduler",
                 "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler is for the dask executor" in capsys.readouterr().err
