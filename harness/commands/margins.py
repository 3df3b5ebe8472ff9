"""Certified max margins of a dataset file, one line (or one JSON record) per norm.

For each norm N: gamma_N = max_{N(W) <= 1} min_i min_{c != y_i} (e_{y_i} - e_c)^T W x_i with a
float64 bracket [lower, upper] (lower = m(W*)/N(W*) from the primal solution, upper from the
solver's dual multipliers), the solver and the status ("certified" when the relative bracket
width is at most --rtol, otherwise "inaccurate"). Exit 0 when every norm is certified, 1 when
one is not (or the solver fails), 2 on bad input (including data that are not separable).
"""

from __future__ import annotations

import json
import math
import sys

from harness.cli import EXIT_FAIL, EXIT_OK
from harness.data import Dataset
from harness.errors import HarnessInputError
from harness.margins import DEFAULT_RTOL, MarginSolveError, max_margins

HELP = "certified max margins of a dataset (.npz) in one or more norms"


def add_arguments(parser) -> None:
    """``DATA.npz --norm max[,l2,spectral,...] [--json] [--rtol R]``."""
    parser.add_argument("data", metavar="DATA.npz", help="a dataset written by `harness data` "
                        "or any .npz with arrays X (n x d) and y (n labels)")
    parser.add_argument("--norm", default="max",
                        help="comma-separated norms: max, sum, l<p> (1 < p < inf), fro/l2, "
                             "spectral, nuclear (default: max)")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object {"margins": [{"norm", "gamma", "lower", '
                             '"upper", "solver", "status"}, ...]}')
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                        help=f"relative bracket width required for 'certified' "
                             f"(default {DEFAULT_RTOL:g})")


def _table(certificates) -> str:
    header = (f"{'norm':<9} {'gamma':>22}  {'certified bracket [lower, upper]':<48} "
              f"{'rel.width':>9}  {'solver':<8} status")
    lines = [header]
    for cert in certificates:
        bracket = f"[{cert.lower!r}, {cert.upper!r}]"
        lines.append(f"{cert.norm:<9} {cert.gamma!r:>22}  {bracket:<48} "
                     f"{cert.relative_width:>9.1e}  {cert.solver:<8} {cert.status} "
                     f"(solver: {cert.solver_status}, {cert.rounds} rounds, {cert.seconds:.2f} s)")
    return "\n".join(lines)


def run(args) -> int:
    """Load, certify, print; see the module docstring for the exit codes."""
    norms = [part.strip() for part in args.norm.split(",") if part.strip()]
    if not norms:
        raise HarnessInputError("--norm needs at least one norm name")
    if not (math.isfinite(args.rtol) and args.rtol > 0):
        raise HarnessInputError(f"--rtol must be a positive number, got {args.rtol}")
    dataset = Dataset.load(args.data)
    try:
        certificates = max_margins(dataset.X, dataset.y, norms, rtol=args.rtol)
    except MarginSolveError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps({"margins": [cert.as_dict() for cert in certificates]}))
    else:
        print(_table(certificates))
    return EXIT_OK if all(cert.status == "certified" for cert in certificates) else EXIT_FAIL
