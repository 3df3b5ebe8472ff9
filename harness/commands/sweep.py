"""Run a sweep: a TOML grid of runs (data seeds x algorithms x a x eta0 x horizons), batched,
on local processes, a Dask cluster or SLURM, into a Parquet store that caches and resumes.

Only the batches whose runs are not stored yet are computed, so rerunning the same command
after a crash, a Ctrl-C or a kill finishes the sweep. Output: SWEEP_DIR/batches/*.parquet (one
row per run and checkpoint), SWEEP_DIR/sweep.toml (the spec), SWEEP_DIR/sweep.json (provenance
and what this call did). Then: python -m harness report SWEEP_DIR.

Exit codes: 0 every batch stored, 1 some batches failed (the rest is stored), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from harness.cli import EXIT_FAIL, EXIT_OK
from harness.errors import HarnessInputError

HELP = "run a sweep spec (TOML grid) on local processes, Dask or SLURM; cached and resumable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep command's options."""
    parser.add_argument("spec", type=Path, help="sweep file (see scenarios/sweeps/*.toml)")
    parser.add_argument("--executor", choices=("local", "dask", "slurm"), default="local",
                        help="where batches run (default: local processes)")
    parser.add_argument("--scheduler", metavar="ADDR",
                        help="Dask scheduler address tcp://HOST:PORT (default with --executor "
                             "dask: start a LocalCluster)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="local processes / LocalCluster workers (default: CPUs available)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="sweep directory (default: reports/sweeps/<name>)")
    parser.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition (slurm only)")
    parser.add_argument("--slurm-timeout-min", type=int, default=60, metavar="MIN",
                        help="SLURM time limit per batch in minutes (default 60)")


def run(args: argparse.Namespace) -> int:
    """Expand the spec, run the missing batches, print what was done."""
    from harness.executors import open_executor
    from harness.results_store import ResultsStore
    from harness.sweep import SweepFailed, load_sweep, run_sweep

    spec = load_sweep(args.spec)
    out = args.out if args.out is not None else Path("reports") / "sweeps" / spec.name
    if out.exists() and not out.is_dir():
        raise HarnessInputError(f"--out {out} exists and is not a directory")
    slurm = {"timeout_min": args.slurm_timeout_min}
    if args.slurm_partition:
        slurm["slurm_partition"] = args.slurm_partition
    print(f"sweep {spec.name}: {len(spec.runs)} runs, horizons {list(spec.horizons)}, "
          f"executor {args.executor} -> {out}", file=sys.stderr)
    pending = spec.batches(exclude=ResultsStore(out).completed_runs())
    # Nothing to compute: no cluster to start (run_sweep then only records the outcome).
    context = open_executor(args.executor, workers=args.workers, scheduler=args.scheduler,
                            slurm_folder=out / "slurm", slurm_parameters=slurm) \
        if pending else nullcontext(None)
    with context as executor:
        try:
            outcome = run_sweep(spec, out, executor)
        except SweepFailed as exc:
            print(f"harness: sweep failed: {exc}", file=sys.stderr)
            return EXIT_FAIL
    print(outcome.summary())
    print(f"results: {out / 'batches'}; report: python -m harness report {out}")
    return EXIT_OK
