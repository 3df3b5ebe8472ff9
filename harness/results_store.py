"""The sweep results store: curve rows in Parquet, one file per finished batch, content-addressed.

A sweep directory holds ``batches/<batch_hash>.parquet``. Each file is one finished batch of
runs: one row per (run, checkpoint) in the curve-row format of :mod:`harness.curves`, plus the
sweep's own columns (:data:`SWEEP_COLUMNS`) and provenance columns (:data:`PROVENANCE_COLUMNS`):

``config_hash``
    the run's content address: a hash of everything that determines its numbers (data set,
    algorithm and hyper-parameters, ``eta0``, ``a``, horizon, checkpoint grid, device); see
    :func:`content_hash`. Two runs with the same hash have the same rows.
``batch_hash``
    the hash of the batch the run was computed in (the file's name).
``harness_version``, ``versions``, ``git_commit``, ``device``
    which code and libraries produced the rows, and on what (``versions`` is a JSON object).

Why files per batch and not one growing file: a batch is written in one atomic step (temp file
in the same directory, then ``os.replace``, :func:`harness.storage.write_bytes_atomic`), so a
sweep killed at any moment leaves only complete files; the set of runs already on disk is the
union of the files' ``config_hash`` values (:meth:`ResultsStore.completed_runs`), which is what
makes resume and the cache work: a run whose hash is on disk is never recomputed. The
directory is a Parquet dataset, so any Parquet reader (pyarrow, pandas, DuckDB, Spark) reads it
as one table.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.curves import CHECKPOINT_COLUMNS, RUN_COLUMNS
from harness.errors import HarnessInputError
from harness.storage import write_bytes_atomic

#: Columns the sweep adds to the curve-row format (constant along a run).
SWEEP_COLUMNS = ("config_hash", "batch_hash", "label", "horizon", "k", "n", "d")
#: Provenance columns (constant along a batch).
PROVENANCE_COLUMNS = ("harness_version", "versions", "git_commit", "device")

_STRING = {"run_id", "algorithm", "family", "own_norm", "dataset", "hyper", "config_hash",
           "batch_hash", "label", "harness_version", "versions", "git_commit", "device"}
_INTEGER = {"data_seed", "t", "horizon", "k", "n", "d"}

#: The Parquet schema of every batch file, in column order.
SCHEMA = pa.schema([
    (name, pa.string() if name in _STRING else pa.int64() if name in _INTEGER else pa.float64())
    for name in (*SWEEP_COLUMNS, *RUN_COLUMNS, *CHECKPOINT_COLUMNS, *PROVENANCE_COLUMNS)
])

#: Columns that describe where and with what the numbers were computed, not the numbers.
#: Two stores holding the same results agree on every other column.
ENVIRONMENT_COLUMNS = ("batch_hash", *PROVENANCE_COLUMNS)

_BATCH_META_KEY = b"harness.sweep.batch"
_SUFFIX = ".parquet"


def canonical_json(obj) -> str:
    """JSON with sorted keys, no whitespace and exact float ``repr``: equal inputs give equal
    text on every machine, so its hash can address content."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(obj) -> str:
    """The 16-hex-digit SHA-256 prefix of :func:`canonical_json` of ``obj`` (64 bits: a
    collision among a sweep's runs has probability below ``runs^2 / 2^65``)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:16]


def _cell(name: str, value):
    """A row value as its Parquet cell: dicts as canonical JSON, numbers as their type."""
    if name in ("hyper", "versions"):
        return value if isinstance(value, str) else canonical_json(value)
    if name in _INTEGER:
        return int(value)
    if name in _STRING:
        return None if value is None else str(value)
    return float(value)


def rows_to_table(rows: Sequence[dict], metadata: dict | None = None) -> pa.Table:
    """Curve rows (with the sweep and provenance columns filled in) as a table of
    :data:`SCHEMA`; ``metadata`` is stored as JSON in the file's key-value metadata.

    Raises:
        HarnessInputError: a row misses a column of the schema.
    """
    columns = {}
    for name in SCHEMA.names:
        try:
            columns[name] = [_cell(name, row[name]) for row in rows]
        except KeyError:
            raise HarnessInputError(f"curve row without column {name!r}") from None
    table = pa.table(columns, schema=SCHEMA)
    if metadata is not None:
        table = table.replace_schema_metadata({_BATCH_META_KEY: canonical_json(metadata)})
    return table


def table_to_rows(table: pa.Table) -> list[dict]:
    """Rows of a store table as curve-row dicts (``hyper`` and ``versions`` parsed back)."""
    rows = table.to_pylist()
    for row in rows:
        for name in ("hyper", "versions"):
            if name in row and isinstance(row[name], str):
                row[name] = json.loads(row[name])
    return rows


class DuplicateRowsError(HarnessInputError):
    """The store holds a (run, checkpoint) twice: two batch files claim the same run."""


class ResultsStore:
    """The batch files of one sweep directory (see the module docstring).

    Args:
        root: the sweep directory; batch files go to ``root/batches``.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.batch_dir = self.root / "batches"

    def batch_path(self, batch_hash: str) -> Path:
        """Where the batch with this hash is (or will be) stored."""
        return self.batch_dir / f"{batch_hash}{_SUFFIX}"

    def batch_files(self) -> list[Path]:
        """The finished batch files, sorted by name (temporary files are not listed)."""
        if not self.batch_dir.is_dir():
            return []
        return sorted(p for p in self.batch_dir.glob(f"*{_SUFFIX}") if not p.name.startswith("."))

    def has_batch(self, batch_hash: str) -> bool:
        """Whether the batch with this hash has been written."""
        return self.batch_path(batch_hash).is_file()

    def remove_temporaries(self) -> list[Path]:
        """Delete temporary files left by a writer that was killed mid-write (a kill -9 skips
        the clean-up of :func:`harness.storage.write_bytes_atomic`); returns them. Call only
        while no other sweep writes to this directory."""
        if not self.batch_dir.is_dir():
            return []
        stale = sorted(self.batch_dir.glob(".*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def write_batch(self, batch_hash: str, rows: Sequence[dict], metadata: dict) -> Path:
        """Write one finished batch atomically; rewriting the same batch replaces it whole."""
        table = rows_to_table(rows, metadata)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return write_bytes_atomic(self.batch_path(batch_hash), buffer.getvalue())

    def batch_metadata(self, path: Path) -> dict:
        """The metadata stored with one batch file (timings, run hashes, provenance)."""
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[_BATCH_META_KEY]) if _BATCH_META_KEY in meta else {}

    def completed_runs(self) -> set[str]:
        """``config_hash`` of every run stored (each batch holds its runs completely)."""
        done: set[str] = set()
        for path in self.batch_files():
            column = pq.read_table(path, columns=["config_hash"]).column("config_hash")
            done.update(column.unique().to_pylist())
        return done

    def read_table(self, config_hashes: Iterable[str] | None = None) -> pa.Table:
        """Every stored row (or those of the given runs), sorted by ``(config_hash, t)``.

        Raises:
            DuplicateRowsError: some ``(config_hash, t)`` occurs more than once.
        """
        files = self.batch_files()
        if not files:
            return SCHEMA.empty_table()
        table = pa.concat_tables(pq.read_table(p, schema=SCHEMA) for p in files)
        table = table.replace_schema_metadata(None)
        if config_hashes is not None:
            wanted = pa.array(sorted(set(config_hashes)), type=pa.string())
            table = table.filter(pc.is_in(table["config_hash"], value_set=wanted))
        table = table.sort_by([("config_hash", "ascending"), ("t", "ascending")])
        keys = table.group_by(["config_hash", "t"]).aggregate([([], "count_all")])
        repeated = keys.filter(pc.greater(keys["count_all"], 1))
        if repeated.num_rows:
            first = repeated.slice(0, 1).to_pylist()[0]
            raise DuplicateRowsError(
                f"{repeated.num_rows} (run, checkpoint) rows stored more than once in "
                f"{self.batch_dir}, e.g. run {first['config_hash']} at t={first['t']}")
        return table

    def read_rows(self, config_hashes: Iterable[str] | None = None) -> list[dict]:
        """:meth:`read_table` as curve-row dicts (:func:`table_to_rows`)."""
        return table_to_rows(self.read_table(config_hashes))



def result_differences(left: pa.Table, right: pa.Table,
                       ignore: Sequence[str] = ENVIRONMENT_COLUMNS) -> list[str]:
    """How two store tables differ; empty when they hold the same results.

    Same results: the same columns and, after sorting by ``(config_hash, t)``, bit-identical
    values (NaN equal to NaN) in every column except ``ignore`` (by default where and with what
    the rows were computed). Each difference is one line naming a column and how many rows
    differ there.
    """
    if left.schema.names != right.schema.names:
        return [f"columns differ: {left.schema.names} vs {right.schema.names}"]
    if left.num_rows != right.num_rows:
        return [f"row counts differ: {left.num_rows} vs {right.num_rows}"]
    order = [("config_hash", "ascending"), ("t", "ascending")]
    left, right = left.sort_by(order), right.sort_by(order)
    out = []
    for name in left.schema.names:
        if name in ignore:
            continue
        a, b = left[name].to_numpy(zero_copy_only=False), right[name].to_numpy(
            zero_copy_only=False)
        if a.dtype.kind == "f":
            same = (a == b) | (np.isnan(a) & np.isnan(b))
        else:
            same = a == b
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            out.append(f"{name}: {int((~same).sum())} rows differ, e.g. {a[first]!r} vs "
                       f"{b[first]!r}")
    return out
