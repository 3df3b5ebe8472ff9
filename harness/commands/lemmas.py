"""Check every lemma of THEORY.md section 2: hypothesis search in float64, mpmath verdicts.

Writes report.json and report.md to reports/lemmas/ (or --out). For each lemma: status
(pass / fail / xfail), examples judged, the largest LHS/RHS seen, and for every sharp constant
the teeth search (the constant tightened by 1% must be falsified). One progress line per lemma
on stderr. Exit 0 when every lemma passes (or fails as an expected xfail) and every sharp
lemma's teeth are falsified, 1 otherwise, 2 on bad options. An interrupted run writes the
lemmas finished so far (exit 130).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.cli import EXIT_FAIL, EXIT_OK
from harness.errors import HarnessInputError
from harness.lemma_report import verdict_ok, write_report
from harness.lemma_search import (
    DEFAULT_DPS,
    LemmaResult,
    default_jobs,
    profile_settings,
    run_catalogue,
)
from harness.lemmas import IDS, get

HELP = "check the lemma catalogue (THEORY.md section 2) and write reports/lemmas/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The lemmas command's options."""
    parser.add_argument("--profile", default="ci",
                        help="hypothesis profile: dev, ci (default) or thorough")
    parser.add_argument("--out", type=Path, default=Path("reports/lemmas"), metavar="DIR",
                        help="output directory (default: reports/lemmas)")
    parser.add_argument("--only", metavar="ID,...",
                        help=f"comma-separated lemma IDs (default: all {len(IDS)})")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes (default: available cores, at most 2)")
    parser.add_argument("--dps", type=int, default=DEFAULT_DPS, metavar="DIGITS",
                        help=f"mpmath digits of every verdict (default {DEFAULT_DPS}, minimum 50)")


def _selected(only: str | None) -> tuple[str, ...]:
    if only is None:
        return IDS
    ids = tuple(part.strip() for part in only.split(",") if part.strip())
    if not ids:
        raise HarnessInputError("--only needs at least one lemma ID")
    for lemma_id in ids:
        get(lemma_id)
    return ids


def _line(done: int, total: int, r: LemmaResult) -> str:
    teeth = f", teeth {r.teeth}" if r.teeth else ""
    return (f"[{done:2d}/{total}] {r.id:<12} {r.status:<5} {r.examples:6d} examples, "
            f"worst LHS/RHS {r.worst_ratio:.6g}{teeth}, {r.time:.1f} s")


def run(args: argparse.Namespace) -> int:
    """Validate the options, run the searches, write the report."""
    settings = profile_settings(args.profile)
    ids = _selected(args.only)
    if args.dps < DEFAULT_DPS:
        raise HarnessInputError(f"--dps must be at least {DEFAULT_DPS}, got {args.dps}")
    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise HarnessInputError(f"--jobs must be at least 1, got {jobs}")
    print(f"lemmas: {len(ids)} lemmas, profile {args.profile} ({settings.max_examples} "
          f"examples each), {args.dps} digits, {jobs} processes", file=sys.stderr, flush=True)
    finished: list[LemmaResult] = []

    def report_line(result: LemmaResult) -> None:
        finished.append(result)
        print(_line(len(finished), len(ids), result), file=sys.stderr, flush=True)

    start = time.perf_counter()

    def write(results: list[LemmaResult]) -> Path:
        _, md = write_report(results, args.out, profile=args.profile,
                             examples_per_lemma=settings.max_examples,
                             precision_digits=args.dps,
                             total_seconds=time.perf_counter() - start,
                             derandomized=bool(settings.derandomize))
        return md

    try:
        results = run_catalogue(ids, args.profile, jobs=jobs, dps=args.dps,
                                on_result=report_line)
    except KeyboardInterrupt:
        order = {lemma_id: i for i, lemma_id in enumerate(ids)}
        write(sorted(finished, key=lambda r: order[r.id]))
        raise
    md = write(results)
    ok = verdict_ok(results)
    print(f"lemmas: {'OK' if ok else 'FAILED'} in {time.perf_counter() - start:.0f} s; "
          f"report: {md}", file=sys.stderr, flush=True)
    return EXIT_OK if ok else EXIT_FAIL
