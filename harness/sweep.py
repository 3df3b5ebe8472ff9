"""Sweeps: a TOML grid of runs, expanded into batches, run on any executor, stored and resumed.

A rate check across step exponents needs many runs: data sets x seeds x algorithms x ``a`` x
``eta0`` x horizons. A sweep file describes that grid::

    [sweep]
    name = "signgd-adam-1e5"     # letters, digits, - _ .
    description = "..."          # optional
    steps = 100000               # the horizon, or a list of horizons: [1000, 100000]
    per_decade = 20              # checkpoints per decade of t (harness.curves.geometric_grid)
    device = "cpu"               # where each batch runs ("cpu", "cuda", "cuda:N")
    batch_size = 12              # optional: at most this many runs per batch (see below)

    [[data]]                     # one or more tables, each exactly a scenario's [data]
    generator = "paper"
    seeds = [0, 1, 2]
    [data.params]
    k = 5

    [[optimizer]]                # one table per algorithm, as in a scenario, except that
    name = "signgd"              # eta0 and a may be lists: every combination is a run
    eta0 = 0.1
    a = ["1/4", "1/2", "3/4", 1]
    [optimizer.hyper]

Each (data table, horizon) is validated with :func:`harness.scenario.parse_scenario`, so a sweep
accepts exactly the values a scenario accepts and reports errors the same way; the optimizers
are built once at expansion, so an unknown name or hyper-parameter fails before anything runs.

Runs, batches and the cache. Every run is a :class:`RunConfig` whose ``config_hash``
(:func:`harness.results_store.content_hash`) covers everything that determines its numbers.
Runs of one algorithm (same label, so same hyper-parameters) on one data source (all its seeds)
and one horizon are grouped, in file order, into batches of at most ``batch_size`` runs
(default: the whole group); a batch is one call of :func:`harness.engine.run_batch`, which
steps all its runs as one ``(B, k, d)`` tensor program (the engine runs different optimizers
one after the other, so mixing algorithms in a batch would buy nothing), and one Parquet file
named by the hash of its runs. :func:`run_sweep` submits only the batches whose runs are not on
disk yet, so a rerun after a crash computes only what is missing, and a finished batch is never
recomputed.
Batch files are written by the submitting process as results arrive, atomically, so a failed or
killed worker leaves nothing behind and its retry (Dask reschedules it) cannot duplicate a row.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, HarnessInputError
from harness.provenance import source_digest
from harness.results_store import ResultsStore, content_hash
from harness.scenario import DataSpec, parse_scenario, read_toml_text
from harness.storage import write_json_atomic, write_text_atomic

#: Bumped when the rows a config produces change meaning, so old cache entries are not reused
#: (the key also carries :func:`harness.provenance.source_digest`: any code change misses).
CACHE_VERSION = 1

_SWEEP_KEYS = ("name", "description", "steps", "per_decade", "device", "batch_size")


@dataclass(frozen=True)
class DatasetRef:
    """How a worker rebuilds one data set: a generator with a seed, or a saved ``.npz`` file.

    Attributes:
        generator: name for :func:`harness.data.make_dataset`, or None for ``path``.
        params: the generator's keyword parameters, as ``(key, value)`` pairs sorted by key.
        seed: the data seed (the only randomness of a run: every run starts from ``W = 0``).
        path: a file written by :meth:`harness.data.Dataset.save`, or None.
        file_hash: SHA-256 of that file's bytes (so the cache notices a changed file).
    """

    generator: str | None
    params: tuple = ()
    seed: int = 0
    path: str | None = None
    file_hash: str | None = None

    def key(self) -> dict:
        """What identifies the data (part of every run's content hash)."""
        if self.path is not None:
            return {"file_sha256": self.file_hash}
        return {"generator": self.generator, "params": dict(self.params), "seed": self.seed}

    @property
    def source(self) -> tuple:
        """The data set without its seed: data sets from one source share their shape."""
        return (self.generator, self.params, self.path)

    def load(self):
        """The :class:`harness.data.Dataset`."""
        from harness.data import Dataset, make_dataset

        if self.path is not None:
            return Dataset.load(self.path)
        return make_dataset(self.generator, self.seed, **dict(self.params))


@dataclass(frozen=True)
class RunConfig:
    """One run of a sweep: data set, algorithm, schedule ``eta0 (t+1)^(-a)`` and horizon.

    ``label`` is the algorithm's display name in the sweep file; it is not part of the content
    hash (renaming an algorithm does not recompute it), ``config_hash`` is.
    """

    data: DatasetRef
    algorithm: str
    label: str
    hyper: tuple
    eta0: float
    a: float
    steps: int
    per_decade: int
    device: str

    def key(self) -> dict:
        """Everything that determines this run's rows."""
        return {"cache_version": CACHE_VERSION, "code": source_digest(),
                "data": self.data.key(),
                "algorithm": self.algorithm, "hyper": dict(self.hyper), "eta0": self.eta0,
                "a": self.a, "steps": self.steps, "per_decade": self.per_decade,
                "device": self.device}

    @property
    def config_hash(self) -> str:
        """The run's content address (:func:`harness.results_store.content_hash`)."""
        return content_hash(self.key())


@dataclass(frozen=True)
class Batch:
    """Runs on one data set and horizon, executed as one engine call and stored as one file."""

    runs: tuple[RunConfig, ...]

    @property
    def batch_hash(self) -> str:
        """Hash of the runs' content hashes (order-independent)."""
        return content_hash(sorted(run.config_hash for run in self.runs))

    @property
    def data(self) -> DatasetRef:
        """The data set every run of the batch uses."""
        return self.runs[0].data


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file (see the module docstring)."""

    name: str
    runs: tuple[RunConfig, ...]
    horizons: tuple[int, ...]
    per_decade: int
    device: str
    batch_size: int | None = None
    description: str = ""
    source_text: str = ""

    def batches(self, exclude: set[str] | frozenset = frozenset()) -> list[Batch]:
        """The runs not in ``exclude`` (content hashes), grouped into batches.

        Groups are (data source, horizon, algorithm label) in file order; each group is cut
        into consecutive chunks of at most ``batch_size`` runs. The split depends only on the
        spec and ``exclude``, and since batches are stored whole, the batches of a resumed
        sweep are exactly the unfinished batches of the original one.
        """
        groups: dict[tuple, list[RunConfig]] = {}
        for run in self.runs:
            if run.config_hash not in exclude:
                groups.setdefault((run.data.source, run.steps, run.label), []).append(run)
        batches = []
        for runs in groups.values():
            size = self.batch_size or len(runs)
            batches.extend(Batch(tuple(runs[i:i + size])) for i in range(0, len(runs), size))
        return batches


def _as_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise HarnessInputError(f"cannot read data file {path}: {exc}") from None


def _expand_optimizers(tables: list) -> tuple[list[dict], list[str]]:
    """One scenario ``[[optimizer]]`` table per (algorithm, eta0, a), and each one's label.

    The expanded tables get internal labels ``<label>.<i>`` (distinct, as the scenario parser
    requires); the second list holds the sweep label each one came from.
    """
    expanded, origins = [], []
    seen: set[str] = set()
    for index, table in enumerate(tables):
        if not isinstance(table, dict):
            raise HarnessInputError(f"[[optimizer]] #{index + 1} must be a table")
        label = table.get("label", table.get("name"))
        if not isinstance(label, str):
            raise HarnessInputError(f"[[optimizer]] #{index + 1} needs a string name (and "
                                    f"optionally a string label), got {label!r}")
        if label in seen:
            raise HarnessInputError(f"optimizer label {label!r} repeats: give each "
                                    "[[optimizer]] a distinct label")
        seen.add(label)
        combos = [(eta0, a) for eta0 in _as_list(table.get("eta0"))
                  for a in _as_list(table.get("a"))]
        if not combos:
            raise HarnessInputError(f"eta0 and a must not be empty lists in [[optimizer]] "
                                    f"#{index + 1} ({label})")
        for i, (eta0, a) in enumerate(combos):
            entry = {key: value for key, value in table.items() if key not in ("eta0", "a")}
            entry.update(label=f"{label}.{i}", eta0=eta0)
            if a is not None:
                entry["a"] = a
            expanded.append(entry)
            origins.append(label)
    return expanded, origins


def _dataset_refs(data: DataSpec) -> list[DatasetRef]:
    if data.path is not None:
        path = Path(data.path)
        return [DatasetRef(generator=None, path=str(path.resolve()),
                           file_hash=_file_sha256(path))]
    # Lists become tuples so the reference stays hashable (the JSON of the key is the same).
    params = tuple(sorted((key, tuple(value) if isinstance(value, list) else value)
                          for key, value in data.params.items()))
    return [DatasetRef(generator=data.generator, params=params, seed=seed) for seed in data.seeds]


def parse_sweep(doc: dict, source: Path | None = None, text: str = "") -> SweepSpec:
    """Validate a parsed sweep TOML document into a :class:`SweepSpec`.

    Raises:
        HarnessInputError: one line naming the first problem found.
    """
    from harness.optimizers import make_optimizer

    origin = f" of {source}" if source is not None else ""
    if not isinstance(doc.get("sweep"), dict):
        raise HarnessInputError(f"missing table [sweep]{origin}")
    unknown = sorted(set(doc) - {"sweep", "data", "optimizer"})
    if unknown:
        raise HarnessInputError(f"unknown key {unknown[0]!r} at the top level{origin} "
                                "(allowed: sweep, data, optimizer)")
    head = dict(doc["sweep"])
    unknown = sorted(set(head) - set(_SWEEP_KEYS))
    if unknown:
        raise HarnessInputError(f"unknown key {unknown[0]!r} in [sweep] "
                                f"(allowed: {', '.join(_SWEEP_KEYS)})")
    if "steps" not in head:
        raise HarnessInputError("missing key 'steps' in [sweep]")
    horizons = _as_list(head.pop("steps"))
    if not horizons or len(set(map(repr, horizons))) != len(horizons):
        raise HarnessInputError(f"steps must be a horizon or a list of distinct horizons in "
                                f"[sweep], got {horizons!r}")
    batch_size = head.pop("batch_size", None)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise HarnessInputError(f"batch_size must be an integer >= 1 in [sweep], "
                                f"got {batch_size!r}")
    data_tables = _as_list(doc.get("data", []))
    if not data_tables:
        raise HarnessInputError("missing table [data] (or [[data]])")
    algorithms = doc.get("optimizer")
    if not isinstance(algorithms, list) or not algorithms:
        raise HarnessInputError("[[optimizer]] must be given at least once")
    expanded, origins = _expand_optimizers(algorithms)
    runs: list[RunConfig] = []
    for data_table in data_tables:
        for steps in horizons:
            scenario = parse_scenario({"scenario": {**head, "steps": steps}, "data": data_table,
                                       "optimizer": expanded}, source)
            for ref in _dataset_refs(scenario.data):
                for label, opt in zip(origins, scenario.optimizers, strict=True):
                    runs.append(RunConfig(
                        data=ref, algorithm=opt.name, label=label,
                        hyper=tuple(sorted(opt.hyper.items())), eta0=opt.eta0, a=opt.a,
                        steps=scenario.steps, per_decade=scenario.per_decade,
                        device=scenario.device))
    for label, opt in zip(origins, scenario.optimizers, strict=True):
        try:
            make_optimizer(opt.name, **opt.hyper)
        except HarnessInputError as exc:
            raise HarnessInputError(f"{exc} (in [[optimizer]] {label})") from None
    hashes = [run.config_hash for run in runs]
    if len(set(hashes)) != len(hashes):
        repeated = next(run for run in runs if hashes.count(run.config_hash) > 1)
        raise HarnessInputError(
            f"the sweep lists the same run twice ({repeated.label}, eta0={repeated.eta0:g}, "
            f"a={repeated.a:g}): repeated data seeds, eta0 or a values, or two [[optimizer]] "
            "tables with the same settings")
    return SweepSpec(name=scenario.name, runs=tuple(runs), horizons=tuple(horizons),
                     per_decade=scenario.per_decade, device=scenario.device,
                     batch_size=batch_size, description=scenario.description,
                     source_text=text)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep TOML file."""
    doc, text = read_toml_text(path, "sweep file")
    return parse_sweep(doc, source=Path(path), text=text)


@dataclass(frozen=True)
class BatchResult:
    """What a worker sends back: the batch's rows (sweep and provenance columns filled in),
    the provenance block of the machine that ran it, and its wall time in seconds."""

    rows: list
    provenance: dict
    seconds: float


def execute_batch(batch: Batch) -> BatchResult:
    """Run one batch as one engine call; this is the function the executors run remotely.

    Runs with one torch thread. Loads the data sets, runs every run of the batch with
    :func:`harness.engine.run_batch` (which certifies the max-margin references), and labels
    each row with its run's content hash, the sweep columns and the provenance (versions, git
    commit, device) of the machine it ran on. A batch the engine reports as interrupted
    raises instead of returning partial rows, so only complete batches are ever stored.
    """
    import torch

    from harness.engine import RunSpec, run_batch
    from harness.provenance import provenance

    # One batch per CPU core: parallelism is across batches. Torch's intra-op threads on tiny
    # (B, k, d) tensors only contend with the other workers (measured 8x slower per step with
    # 2 threads on a loaded 2-core machine).
    torch.set_num_threads(1)
    started = time.perf_counter()
    first = batch.runs[0]
    datasets = {}
    for run in batch.runs:
        if run.data not in datasets:
            datasets[run.data] = run.data.load()
    specs = [RunSpec(dataset=datasets[run.data], optimizer=run.algorithm, eta0=run.eta0,
                     a=run.a, hyper=dict(run.hyper), run_id=run.config_hash)
             for run in batch.runs]
    result = run_batch(specs, first.steps, device=first.device, per_decade=first.per_decade,
                       progress=False)
    if result.interrupted:
        raise KeyboardInterrupt(f"batch {batch.batch_hash} was interrupted")
    block = provenance(seeds=sorted({int(d.seed) for d in datasets.values()}),
                       device=first.device)
    env = {"harness_version": block["versions"]["harness"], "versions": block["versions"],
           "git_commit": block["git_commit"], "device": block["device"]}
    by_hash = {run.config_hash: run for run in batch.runs}
    rows = []
    for row in result.rows:
        run = by_hash[row["run_id"]]
        data = datasets[run.data]
        n, d = data.X.shape
        rows.append({**row, "config_hash": run.config_hash, "batch_hash": batch.batch_hash,
                     "label": run.label, "horizon": run.steps, "k": int(data.k), "n": int(n),
                     "d": int(d), **env})
    return BatchResult(rows=rows, provenance=block, seconds=time.perf_counter() - started)


class SweepFailed(HarnessError):
    """Some batches of a sweep raised; the others were stored."""


@dataclass
class SweepOutcome:
    """What one :func:`run_sweep` call did.

    Attributes:
        runs: runs in the spec.
        batches: batches the spec's runs form.
        cached: batches already on disk before this call (not recomputed).
        computed: hashes of the batches computed and stored by this call.
        failed: ``(batch hash, one-line error)`` of the batches that raised.
        seconds: wall time of this call.
    """

    runs: int
    batches: int
    cached: int
    computed: list[str]
    failed: list[tuple[str, str]]
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        return (f"{self.runs} runs in {self.batches} batches: {self.cached} cached, "
                f"{len(self.computed)} computed, {len(self.failed)} failed "
                f"({self.seconds:.1f} s)")


def quiet() -> bool:
    """Progress bars stay off under CI (``CI`` set) and when stderr is not a terminal."""
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def run_sweep(spec: SweepSpec, out: str | Path, executor: Executor | None, *,
              progress: bool | None = None,
              on_stored: Callable[[Batch, BatchResult], None] | None = None,
              batch_fn: Callable[[Batch], BatchResult] = execute_batch) -> SweepOutcome:
    """Run every batch of ``spec`` not yet stored under ``out`` on ``executor``, storing each
    one as it finishes.

    The spec's text is saved as ``out/sweep.toml`` (what ``python -m harness report`` reads)
    and ``out/sweep.json`` records the provenance of the submitting process and the outcome.
    Batches that raise are reported after all others are stored.

    Args:
        spec: the validated sweep.
        out: the sweep directory (the results store's root).
        executor: any :class:`concurrent.futures.Executor` (:mod:`harness.executors`); may
            be None when every batch is already stored.
        progress: show a progress bar (default: unless :func:`quiet`).
        on_stored: called after each batch file is written (tests use it to inject faults).
        batch_fn: the function submitted per batch (default :func:`execute_batch`).

    Raises:
        SweepFailed: some batches raised (the rest is stored; a rerun retries only those).
    """
    from tqdm import tqdm

    from harness.provenance import provenance

    started = time.perf_counter()
    out = Path(out)
    store = ResultsStore(out)
    store.remove_temporaries()
    if spec.source_text:
        write_text_atomic(out / "sweep.toml", spec.source_text)
    all_batches = spec.batches()
    pending = spec.batches(exclude=store.completed_runs())
    outcome = SweepOutcome(runs=len(spec.runs), batches=len(all_batches),
                           cached=len(all_batches) - len(pending), computed=[], failed=[])
    if pending and executor is None:
        raise HarnessInputError(f"{len(pending)} batches of sweep {spec.name} are not stored "
                                "yet and no executor was given")
    manifest = {"sweep": spec.name, "provenance": provenance(device=spec.device),
                "status": "running"}
    write_json_atomic(out / "sweep.json", {**manifest, "outcome": vars(outcome)})
    bar = tqdm(total=len(pending), desc=f"sweep {spec.name}", unit="batch",
               disable=quiet() if progress is None else not progress)
    futures: dict[Future, Batch] = {}
    status = "interrupted"
    try:
        futures = {executor.submit(batch_fn, batch): batch for batch in pending}
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                batch = futures.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # reported with the batch hash, after the others
                    outcome.failed.append((batch.batch_hash, _first_line(exc)))
                    bar.update(1)
                    continue
                store.write_batch(batch.batch_hash, result.rows, {
                    "batch_hash": batch.batch_hash, "sweep": spec.name,
                    "config_hashes": [run.config_hash for run in batch.runs],
                    "seconds": result.seconds, "provenance": result.provenance})
                outcome.computed.append(batch.batch_hash)
                bar.update(1)
                if on_stored is not None:
                    on_stored(batch, result)
        status = "failed" if outcome.failed else "complete"
    finally:
        for future in futures:
            future.cancel()
        bar.close()
        outcome.seconds = time.perf_counter() - started
        manifest["status"] = status
        write_json_atomic(out / "sweep.json", {**manifest, "outcome": vars(outcome)})
    if outcome.failed:
        batch_hash, message = outcome.failed[0]
        raise SweepFailed(f"{len(outcome.failed)} of {len(pending)} batches failed (first: "
                          f"batch {batch_hash}: {message}); the other results are stored, "
                          "rerun to retry")
    return outcome
