"""The main job: lemma checks, the paper scenarios at a short horizon, and the gate self-check.

1. lemmas: ``python -m harness lemmas --profile ci`` (reports/lemmas/);
2. scenarios: every ``scenarios/*.toml`` at its CI horizon (``run --ci``), with rate verdicts
   (reports/check/scenarios/<name>/);
3. self-check: every built-in optimizer gated with its own family and norm at the gate's
   quick profile (reports/check/gate/<case>/).

Writes reports/index.md linking every report. Exit 0 when the lemma checks pass, no scenario
fails or errors (INCONCLUSIVE at the short horizon is listed, not an error: a run that has not
reached its regime supports no verdict) and every built-in optimizer PASSes its gate; 1
otherwise; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = "the main job: lemma checks, short scenarios and the gate self-check; reports/index.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-lemmas", action="store_true", help="do not run the lemmas")
    parser.add_argument("--skip-scenarios", action="store_true", help="do not run scenarios")
    parser.add_argument("--skip-selfcheck", action="store_true",
                        help="do not gate the built-in optimizers")
    parser.add_argument("--scenarios", default="scenarios", type=Path, metavar="DIR",
                        help="directory of scenario files (default scenarios/)")
    parser.add_argument("--profile", default="quick", help="gate profile of the self-check")
    parser.add_argument("--reports", default="reports", type=Path, metavar="DIR",
                        help="reports root (default reports/)")


def _lemmas(reports: Path) -> dict:
    from harness.cli import _commands, main

    if "lemmas" not in dict(_commands()):
        return {"name": "lemmas", "ok": False, "status": "ERROR",
                "detail": "the lemmas command is not available", "link": None}
    code = main(["lemmas", "--profile", "ci"])
    return {"name": "lemmas (ci profile)", "ok": code == 0, "status": f"exit {code}",
            "detail": "", "link": "lemmas/report.md"}


def _scenarios(directory: Path, reports: Path) -> list[dict]:
    from harness.cli import main

    out = []
    for path in sorted(directory.glob("*.toml")):
        target = reports / "check" / "scenarios" / path.stem
        code = main(["run", str(path), "--ci", "--out", str(target)])
        verdict = "ERROR"
        report = target / "report.json"
        if code == 0 and report.is_file():
            verdict = json.loads(report.read_text()).get("verdict") or "not judged"
        out.append({"name": f"scenario {path.stem}", "ok": code == 0 and verdict != "FAIL",
                    "status": verdict, "detail": f"exit {code}",
                    "link": str(target.relative_to(reports) / "report.md")})
    return out


def _selfcheck(profile: str, reports: Path) -> list[dict]:
    from harness.errors import HarnessInputError
    from harness.gate import configure, run_gate
    from harness.mutants import builtin_cases

    out = []
    for case in builtin_cases():
        target = reports / "check" / "gate" / case.name
        try:
            result = run_gate(configure(case.impl, case.expect, case.family,
                                        kwargs=case.kwargs, profile=profile, out=target))
            status, ok, detail = result.verdict, result.verdict == "PASS", result.reason
        except HarnessInputError as exc:
            status, ok, detail = "ERROR", False, str(exc)
        print(f"  gate {case.name} ({case.family}, {case.expect}): {status}", flush=True)
        out.append({"name": f"gate {case.name} ({case.family}, {case.expect})", "ok": ok,
                    "status": status, "detail": detail,
                    "link": str(target.relative_to(reports) / "report.md")})
    return out


def write_index(reports: Path, entries: list[dict], seconds: float) -> Path:
    """reports/index.md: one line per check with its status and a link to its report."""
    from harness.provenance import provenance
    from harness.report import markdown_table
    from harness.storage import write_text_atomic

    ok = all(e["ok"] for e in entries)
    prov = provenance(device="cpu")
    rows = [[f"[{e['name']}]({e['link']})" if e["link"] else e["name"], e["status"],
             "ok" if e["ok"] else "NOT OK", e["detail"][:160]] for e in entries]
    text = "\n".join([
        "# Harness check", "", f"**{'ALL OK' if ok else 'NOT OK'}** "
        f"({sum(e['ok'] for e in entries)}/{len(entries)} ok, {seconds:.0f} s)", "",
        markdown_table(["check", "status", "ok", "detail"], rows), "",
        f"git {prov['git_commit']}, device {prov['device']}, harness "
        f"{prov['versions']['harness']}, torch {prov['versions']['torch']}", ""])
    return write_text_atomic(reports / "index.md", text)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    entries: list[dict] = []
    steps = [("lemmas", args.skip_lemmas, lambda: [_lemmas(args.reports)]),
             ("scenarios", args.skip_scenarios, lambda: _scenarios(args.scenarios, args.reports)),
             ("self-check", args.skip_selfcheck, lambda: _selfcheck(args.profile, args.reports))]
    for name, skip, action in steps:
        if skip:
            continue
        print(f"check: {name} ...", flush=True)
        entries.extend(action())
        write_index(args.reports, entries, time.perf_counter() - start)
    index = write_index(args.reports, entries, time.perf_counter() - start)
    ok = all(e["ok"] for e in entries)
    print(f"check: {'ALL OK' if ok else 'NOT OK'}; index: {index}")
    return 0 if ok else 1
