"""Properties LOSS-DIFF, G-RATIO: how L and G change between two points (THEORY.md section 2)."""

from properties._support import teeth_test, verdict_test

test_lemma_holds = verdict_test("loss_diff")
test_teeth = teeth_test("loss_diff")
