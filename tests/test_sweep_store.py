"""The Parquet results store and the sweep driver, with a stand-in batch function.

The engine is replaced by a cheap deterministic function of each run's config so that the
store's guarantees (round trip, atomic files, duplicates detected, cache, resume after a
failure) are tested in milliseconds; tests/test_sweep_run.py runs the real engine.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import zlib

import pytest

from harness.curves import CHECKPOINT_COLUMNS, geometric_grid
from harness.errors import HarnessInputError
from harness.results_store import (
    SCHEMA,
    DuplicateRowsError,
    ResultsStore,
    content_hash,
    result_differences,
)
from harness.sweep import BatchResult, SweepFailed, parse_sweep, run_sweep

DOC = {
    "sweep": {"name": "fake", "steps": 50, "per_decade": 5, "batch_size": 2},
    "data": {"generator": "paper", "seeds": [0, 1, 2], "params": {"k": 3}},
    "optimizer": [{"name": "signgd", "eta0": 0.1, "a": [0.25, 0.5]},
                  {"name": "adam", "eta0": 0.1, "a": [0.5, 0.75], "hyper": {"eps": 0.0}}],
}


def fake_rows(batch) -> list[dict]:
    """Rows in the store's schema whose numbers depend only on the run's content hash."""
    rows = []
    for run in batch.runs:
        base = zlib.crc32(run.config_hash.encode()) / 2**32
        for t in geometric_grid(run.steps, run.per_decade).tolist():
            row = {"run_id": run.config_hash, "algorithm": run.algorithm, "family": "nsd",
                   "own_norm": "max", "dataset": "paper", "data_seed": run.data.seed,
                   "eta0": run.eta0, "a": run.a, "hyper": dict(run.hyper), "t": t,
                   "config_hash": run.config_hash, "batch_hash": batch.batch_hash,
                   "label": run.label, "horizon": run.steps, "k": 3, "n": 30, "d": 25,
                   "harness_version": "test", "versions": {"harness": "test"},
                   "git_commit": None, "device": "cpu (test)"}
            row.update({name: base + t for name in CHECKPOINT_COLUMNS if name != "t"})
            rows.append(row)
    return rows


def fake_batch(batch) -> BatchResult:
    return BatchResult(rows=fake_rows(batch), provenance={"device": "test"}, seconds=0.0)


@pytest.fixture
def spec():
    return parse_sweep(DOC)


def _run(spec, out, batch_fn=fake_batch, **kwargs):
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        return run_sweep(spec, out, pool, batch_fn=batch_fn, progress=False, **kwargs)


def test_store_round_trip(tmp_path, spec):
    store = ResultsStore(tmp_path)
    batch = spec.batches()[0]
    rows = fake_rows(batch)
    store.write_batch(batch.batch_hash, rows, {"note": "x"})
    back = store.read_rows()
    assert len(back) == len(rows)
    key = lambda r: (r["config_hash"], r["t"])  # noqa: E731
    for got, want in zip(sorted(back, key=key), sorted(rows, key=key), strict=True):
        assert got == want
    assert store.read_table().schema.names == SCHEMA.names
    assert store.batch_metadata(store.batch_path(batch.batch_hash)) == {"note": "x"}
    assert store.completed_runs() == {r.config_hash for r in batch.runs}


def test_rows_missing_a_column_are_rejected(tmp_path, spec):
    batch = spec.batches()[0]
    rows = fake_rows(batch)
    del rows[3]["gap_max"]
    with pytest.raises(HarnessInputError, match="without column 'gap_max'"):
        ResultsStore(tmp_path).write_batch(batch.batch_hash, rows, {})
    assert ResultsStore(tmp_path).batch_files() == []


def test_interrupted_write_leaves_no_file(tmp_path, spec, monkeypatch):
    store = ResultsStore(tmp_path)
    batch = spec.batches()[0]

    def crash(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_batch(batch.batch_hash, fake_rows(batch), {})
    monkeypatch.undo()
    assert store.batch_files() == [] and list(store.batch_dir.iterdir()) == []
    assert store.completed_runs() == set()


def test_stale_temporaries_are_ignored_then_removed(tmp_path, spec):
    store = ResultsStore(tmp_path)
    store.batch_dir.mkdir(parents=True)
    stale = store.batch_dir / ".abc.parquet.x1.tmp"
    stale.write_bytes(b"half a file")
    assert store.batch_files() == [] and store.completed_runs() == set()
    assert store.remove_temporaries() == [stale] and not stale.exists()


def test_duplicate_rows_are_detected(tmp_path, spec):
    store = ResultsStore(tmp_path)
    batch = spec.batches()[0]
    store.write_batch(batch.batch_hash, fake_rows(batch), {})
    store.write_batch(content_hash("another name"), fake_rows(batch), {})
    with pytest.raises(DuplicateRowsError, match="stored more than once"):
        store.read_table()


def test_sweep_stores_every_row_once_and_caches(tmp_path, spec):
    first = _run(spec, tmp_path)
    assert (first.batches, first.cached, len(first.computed)) == (6, 0, 6)
    table = ResultsStore(tmp_path).read_table()
    per_run = len(geometric_grid(50, 5))
    assert table.num_rows == len(spec.runs) * per_run
    assert set(table["config_hash"].to_pylist()) == {r.config_hash for r in spec.runs}
    calls = []
    second = _run(spec, tmp_path, batch_fn=lambda b: calls.append(b) or fake_batch(b))
    assert (second.cached, second.computed, calls) == (6, [], [])
    assert ResultsStore(tmp_path).read_table().equals(table)
    assert (tmp_path / "sweep.json").is_file()
    assert run_sweep(spec, tmp_path, None, progress=False).cached == 6  # nothing to run
    with pytest.raises(HarnessInputError, match="6 batches of sweep fake are not stored"):
        run_sweep(spec, tmp_path / "empty", None, progress=False)


def test_failed_batches_are_reported_and_rerun_computes_only_them(tmp_path, spec):
    doomed = spec.batches()[1].batch_hash

    def flaky(batch):
        if batch.batch_hash == doomed:
            raise RuntimeError("worker lost")
        return fake_batch(batch)

    with pytest.raises(SweepFailed, match=f"1 of 6 batches failed.*{doomed}.*worker lost"):
        _run(spec, tmp_path, batch_fn=flaky)
    assert len(ResultsStore(tmp_path).batch_files()) == 5
    again = _run(spec, tmp_path)
    assert (again.cached, again.computed) == (5, [doomed])
    reference = tmp_path / "reference"
    _run(spec, reference)
    assert not result_differences(ResultsStore(tmp_path).read_table(),
                                  ResultsStore(reference).read_table())


def test_same_results_treats_nan_as_equal_and_sees_any_difference(tmp_path, spec):
    batch = spec.batches()[0]
    rows = fake_rows(batch)
    for row in rows[:3]:
        row["gap_max"] = math.nan
    left, right = ResultsStore(tmp_path / "l"), ResultsStore(tmp_path / "r")
    left.write_batch(batch.batch_hash, rows, {})
    moved = [dict(row, device="elsewhere") for row in reversed(rows)]
    right.write_batch(batch.batch_hash, moved, {})
    assert not result_differences(left.read_table(), right.read_table())
    assert result_differences(left.read_table(), right.read_table(), ignore=())
    moved[5]["margin"] = math.nextafter(moved[5]["margin"], math.inf)
    right.write_batch(batch.batch_hash, moved, {})
    assert result_differences(left.read_table(), right.read_table())


def test_submitit_executor_runs_a_sweep(tmp_path, spec):
    pytest.importorskip("submitit")
    from harness.executors import slurm_executor

    with slurm_executor(tmp_path / "jobs", cluster="debug") as executor:
        outcome = run_sweep(spec, tmp_path / "out", executor, batch_fn=fake_batch,
                            progress=False)
    assert (outcome.cached, len(outcome.computed), outcome.failed) == (0, 6, [])
    reference = tmp_path / "reference"
    _run(spec, reference)
    assert not result_differences(ResultsStore(tmp_path / "out").read_table(),
                        ResultsStore(reference).read_table())
