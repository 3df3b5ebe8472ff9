"""The catalogue covers exactly the lemma IDs of THEORY.md section 2, each with a module."""

import re
from pathlib import Path

import pytest

from harness.lemmas import CATALOGUE, IDS

THEORY = Path(__file__).resolve().parents[2] / "shared" / "spec" / "THEORY.md"


def test_ids_match_theory_section_2():
    if not THEORY.exists():
        pytest.skip(f"{THEORY} not present")
    text = THEORY.read_text().split("## 2.")[1].split("## 3.")[0]
    theory_ids = [i for i in re.findall(r"^\| ([A-Z0-9-]+) \|", text, flags=re.MULTILINE)
                  if i != "ID"]
    assert sorted(theory_ids) == sorted(IDS)


def test_every_family_has_a_property_module():
    here = Path(__file__).parent
    for lemma in CATALOGUE:
        assert (here / f"test_{lemma.family}.py").exists(), lemma.id


def test_sharp_constants_tighten_by_one_percent():
    for lemma in CATALOGUE:
        for constant in lemma.sharp_constants:
            assert abs(abs(constant.tighter / constant.value - 1) - 0.01) < 1e-12, lemma.id
