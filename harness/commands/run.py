"""Run a scenario: every (data seed, optimizer) of a TOML file as one batched engine program.

Writes to reports/<scenario name>/ (or --out): curves.json (one row per run and checkpoint,
with provenance), report.md and report.json (rate verdict per algorithm, final gaps per norm,
separation times, trajectory invariants) and PNG plots (gap vs t on log-log axes per norm and
per algorithm with its theory envelope, normalized margins, correlations, G/L). The format is
documented in harness/scenario.py; shipped scenarios are in scenarios/. Files with
model = "relu" are homogeneous-network scenarios (harness/network_scenario.py).

Exit codes: 0 done, 2 bad input (nothing written), 130 interrupted (what was recorded is
written and the report says so). The rate verdicts are in the report, not in the exit code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli import EXIT_INTERRUPTED, EXIT_OK
from harness.network_scenario import is_network_scenario, run_network_command
from harness.scenario import load_scenario, run_scenario

HELP = "run a scenario TOML file and write its curves, report and plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run command's options."""
    parser.add_argument("scenario", type=Path, help="scenario file (see scenarios/*.toml)")
    horizon = parser.add_mutually_exclusive_group()
    horizon.add_argument("--steps", type=int, metavar="T",
                         help="horizon override (default: the file's steps)")
    horizon.add_argument("--ci", action="store_true",
                         help="use the file's short CI horizon (ci_steps)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the file's device)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="output directory (default: reports/<scenario name>)")


def run(args: argparse.Namespace) -> int:
    """Load, validate, run, write; print where the report is. A ``model = "relu"`` file is a
    homogeneous-network scenario and goes to :mod:`harness.network_scenario`."""
    if is_network_scenario(args.scenario):
        return run_network_command(args)
    spec = load_scenario(args.scenario)
    steps = args.steps
    if args.ci:
        steps = spec.ci_steps or spec.steps
    result = run_scenario(spec, steps=steps, device=args.device, out=args.out)
    doc = result.report
    for algorithm in doc["algorithms"]:
        print(f"{algorithm['label']:>16}: {algorithm['verdict'] or 'not judged'}: "
              f"{algorithm['reason']}")
    state = "INTERRUPTED, partial report" if result.interrupted else "done"
    print(f"{doc['scenario']}: {state}; verdict {doc['verdict']}; "
          f"report: {result.files['report_md']}")
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK
