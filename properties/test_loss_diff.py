"""Properties LOSS-DIFF, G-RATIO: how L and G change between two points (THEORY.md section 2)."""

import pytest

from harness.lemmas import family
from properties._support import check_teeth, check_verdict, teeth_params, verdict_params

LEMMAS = family("loss_diff")


@pytest.mark.parametrize("lemma", verdict_params(LEMMAS))
def test_lemma_holds(lemma):
    check_verdict(lemma)


@pytest.mark.parametrize(("lemma", "constant"), teeth_params(LEMMAS))
def test_teeth(lemma, constant):
    check_teeth(lemma, constant)
