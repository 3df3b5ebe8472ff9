"""The lemma report: ``report.json`` (machine-readable) and ``report.md`` (for theory people).

JSON layout (``schema_version`` from :mod:`harness.provenance`): the provenance block
(versions, git commit, device, seeds), ``precision_digits``, ``profile``,
``examples_per_lemma`` (the profile's budget), ``total_seconds``, ``summary`` and ``lemmas``:
one :class:`harness.lemma_search.LemmaResult` per ID with ``id``, ``statement``, ``status``
(pass / fail / xfail), ``examples``, ``worst_ratio`` (largest mpmath-judged LHS/RHS),
``worst_slack`` (``1 - LHS/RHS`` at that example, computed in mpmath), ``sharp_constant``,
``teeth`` (falsified / not-falsified / null) with per-constant details, ``time`` and the first
``counterexample`` if any. Both files are written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

from harness import lemma_pool
from harness.lemma_search import LemmaResult
from harness.provenance import provenance
from harness.storage import write_json_atomic, write_text_atomic


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.6g}"


def _constant(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {v:g}" for k, v in value.items())
    return f"{value:g}"


def verdict_ok(results: list[LemmaResult]) -> bool:
    """True when no lemma failed and every sharp lemma's teeth were falsified."""
    return all(r.status != "fail" and r.teeth != "not-falsified" for r in results)


def summary(results: list[LemmaResult]) -> dict:
    """Counts per status, and the IDs whose teeth were not falsified."""
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "xfail")}
    return {**counts, "teeth_not_falsified": [r.id for r in results
                                              if r.teeth == "not-falsified"],
            "ok": verdict_ok(results)}


def _tightness(r: LemmaResult) -> str:
    if r.worst_ratio == -math.inf:
        return "no non-vacuous example"
    slack = r.worst_slack
    where = f" (part `{r.worst_part}`)" if r.worst_part else ""
    if isinstance(slack, float) and not math.isnan(slack):
        return (f"largest LHS/RHS = {r.worst_ratio:.17g}{where}, i.e. the bound held with "
                f"relative slack {slack:.3g} at its tightest example")
    return f"largest LHS/RHS = {r.worst_ratio:.17g}{where}"


def markdown(results: list[LemmaResult], meta: dict) -> str:
    """The Markdown report."""
    lines = [
        "# Lemma report (THEORY.md section 2)",
        "",
        f"Profile `{meta['profile']}`: up to {meta['examples_per_lemma']} hypothesis examples per "
        f"lemma, searched in float64 with `target()` on LHS/RHS, every example judged in mpmath "
        f"at {meta['precision_digits']} digits. Teeth: each sharp constant tightened by 1%; "
        "the search must find a violation. Commit "
        f"`{meta.get('git_commit')}`, {meta['total_seconds']:.0f} s in all.",
        "",
        "| ID | tag | status | examples | worst LHS/RHS | slack 1 - LHS/RHS | sharp constant "
        "| teeth | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.id} | {r.tag} | {r.status} | {r.examples} | {_fmt(r.worst_ratio)} | "
            f"{_fmt(r.worst_slack)} | {_constant(r.sharp_constant)} | {r.teeth or '-'} | "
            f"{r.time:.1f} |")
    lines += ["", "## How tight each bound is", ""]
    for r in results:
        lines += [f"### {r.id} ({r.status})", "", f"Statement: {r.statement}", "",
                  f"- Tightness (catalogue): {r.tightness or '-'}.",
                  f"- Measured: {_tightness(r)}."]
        if r.vacuous:
            lines.append(f"- {r.vacuous} examples met the premise in float64 but not in mpmath "
                         "(vacuous).")
        if r.undecided:
            lines.append(f"- {r.undecided} examples fell inside the certified gamma bracket "
                         "(violated with its upper end, held with its lower end): undecided.")
        for name, d in r.teeth_detail.items():
            outcome = "falsified" if d["falsified"] else "NOT falsified"
            lines.append(f"- Teeth `{name}`: {d['constant']:g} -> {d['tightened']:g}: "
                         f"{outcome} after {d['examples']} examples "
                         f"(largest LHS/RHS {d['worst_ratio']:.6g}).")
        if r.counterexample:
            lines.append(f"- Counterexample (part `{r.counterexample['part']}`, LHS/RHS "
                         f"{r.counterexample['ratio']:.17g}): `{r.counterexample['case']}`")
        if r.error:
            lines.append(f"- ERROR (a harness bug, not a verdict): {r.error}")
        if r.xfail:
            lines.append(f"- Expected failure: {r.xfail}")
        lines.append("")
    return "\n".join(lines)


def write_report(results: list[LemmaResult], out_dir: str | Path, *, profile: str,
                 examples_per_lemma: int, precision_digits: int, total_seconds: float,
                 derandomized: bool) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; return their paths."""
    seeds = {"hypothesis": "derandomized" if derandomized else "random",
             "pool": [spec[-1] for spec in lemma_pool.POOL]}
    meta = provenance(seeds=seeds, profile=profile, examples_per_lemma=examples_per_lemma,
                      precision_digits=precision_digits, total_seconds=total_seconds)
    document = {**meta, "summary": summary(results), "lemmas": [r.to_json() for r in results]}
    out = Path(out_dir)
    json_path = write_json_atomic(out / "report.json", document)
    md_path = write_text_atomic(out / "report.md", markdown(results, meta) + "\n")
    return json_path, md_path
