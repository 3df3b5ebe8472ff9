"""The main job: lemma checks, the paper scenarios at a short horizon, and the gate self-check.

1. lemmas: ``python -m harness lemmas --profile ci`` (reports/lemmas/);
2. scenarios: every ``scenarios/*.toml`` at its CI horizon (``run --ci``), with rate verdicts
   (reports/check/scenarios/<name>/);
3. self-check: every built-in optimizer gated with its own family and norm at the gate's
   quick profile (reports/check/gate/<case>/), against its baseline in reports/baselines/;
4. mutants: the broken optimizers of harness.mutants, which must never PASS, and
   torch.optim.Adam itself: eps = 0 must PASS, the default eps = 1e-8 must not (it leaves the
   l-inf path, THEORY.md section 4; the entry names the step where it did).

Writes reports/index.md linking every report. Exit 0 when the lemma checks pass, no scenario
fails or errors (INCONCLUSIVE at the short horizon is listed, not an error: a run that has not
reached its regime supports no verdict), every built-in optimizer PASSes its gate and no mutant
does; 1 otherwise; 2 on bad input. A built-in listed in harness.mutants.KNOWN_FINDINGS (one
that does not show its claimed bias, with the numbers) is shown as "VERDICT (known finding)"
with the finding as its detail and counts as ok while it does not PASS; if it PASSes, the
finding no longer reproduces and the check is NOT OK until the list is updated (a strict
expected failure, as in tests/test_gate_selfcheck.py).
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
    parser.add_argument("--skip-mutants", action="store_true",
                        help="do not gate the mutant corpus (harness.mutants.MUTANT_CASES)")
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
    code = main(["lemmas", "--profile", "ci", "--out", str(reports / "lemmas")])
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


def _gate_entry(case, profile: str, reports: Path, must_pass: bool) -> dict:
    """Gate one case and judge it: a built-in must PASS, a mutant or a known finding must not.

    A built-in is also compared with its committed baseline ``reports/baselines/<case>.json``
    (quick profile), so a slower fitted exponent fails the check. A known finding
    (``case.known_finding``) is listed with its verdict and the finding's
    numbers and counts as ok while it does not PASS; a PASS means the finding no longer
    reproduces, which is not ok (like a strict xfail): update harness.mutants.KNOWN_FINDINGS.
    """
    from harness.errors import HarnessInputError
    from harness.gate import configure, run_gate

    target = reports / "check" / "gate" / case.name
    label = f"gate {case.name} ({case.family}, {case.expect})"
    baseline = reports / "baselines" / f"{case.name}.json"
    use_baseline = must_pass and not case.known_finding and profile == "quick" and \
        baseline.is_file()
    try:
        result = run_gate(configure(case.impl, case.expect, case.family, kwargs=case.kwargs,
                                    profile=profile, out=target,
                                    baseline=baseline if use_baseline else None))
        verdict, detail = result.verdict, result.reason
    except HarnessInputError as exc:
        verdict, detail = "ERROR", str(exc)
    if verdict == "ERROR":
        status, ok = verdict, False
    elif case.known_finding:
        ok = verdict != "PASS"
        status = f"{verdict} (known finding)" if ok else "PASS: known finding no longer reproduced"
        detail = case.known_finding
    elif must_pass:
        status, ok = verdict, verdict == "PASS"
    else:
        status, ok = f"{verdict} (must not pass)", verdict != "PASS"
        departed = [f"{rid} left the {case.expect} path at t={dep['t_min']}"
                    for rid, dep in result.departures.items() if dep and "t_min" in dep]
        detail = "; ".join([*departed, detail])
    print(f"  {label}: {status}", flush=True)
    return {"name": label, "ok": ok, "status": status, "detail": detail,
            "link": str(target.relative_to(reports) / "report.md")}


def _selfcheck(profile: str, reports: Path) -> list[dict]:
    from harness.mutants import builtin_cases

    return [_gate_entry(case, profile, reports, must_pass=True) for case in builtin_cases()]


def _mutants(profile: str, reports: Path) -> list[dict]:
    from harness.mutants import MUTANT_CASES, TORCH_ADAM_CASES

    eps0, default_eps = TORCH_ADAM_CASES
    return [*(_gate_entry(case, profile, reports, must_pass=False) for case in MUTANT_CASES),
            _gate_entry(eps0, profile, reports, must_pass=True),
            _gate_entry(default_eps, profile, reports, must_pass=False)]


def write_index(reports: Path, entries: list[dict], seconds: float) -> Path:
    """reports/index.md: one line per check with its status and a link to its report."""
    from harness.provenance import provenance
    from harness.report import markdown_table
    from harness.storage import write_text_atomic

    ok = all(e["ok"] for e in entries)
    prov = provenance(device="cpu")
    rows = [[f"[{e['name']}]({e['link']})" if e["link"] else e["name"], e["status"],
             "ok" if e["ok"] else "NOT OK", e["detail"][:160]] for e in entries]
    findings = [f"- **{e['name']}** ({e['status']}): {e['detail']}" for e in entries
                if e["status"].endswith("(known finding)")]
    text = "\n".join([
        "# Harness check", "", f"**{'ALL OK' if ok else 'NOT OK'}** "
        f"({sum(e['ok'] for e in entries)}/{len(entries)} ok, {seconds:.0f} s)", "",
        markdown_table(["check", "status", "ok", "detail"], rows), "",
        *(["## Known findings (harness.mutants.KNOWN_FINDINGS)", "", *findings, ""]
          if findings else []),
        f"git {prov['git_commit']}, device {prov['device']}, harness "
        f"{prov['versions']['harness']}, torch {prov['versions']['torch']}", ""])
    return write_text_atomic(reports / "index.md", text)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    entries: list[dict] = []
    steps = [("lemmas", args.skip_lemmas, lambda: [_lemmas(args.reports)]),
             ("scenarios", args.skip_scenarios, lambda: _scenarios(args.scenarios, args.reports)),
             ("self-check", args.skip_selfcheck, lambda: _selfcheck(args.profile, args.reports)),
             ("mutants", args.skip_mutants, lambda: _mutants(args.profile, args.reports))]
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
