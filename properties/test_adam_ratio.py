"""Properties ADAM-RATIO: Adam's moment ratio bound (THEORY.md section 2)."""

from properties._support import teeth_test, verdict_test

test_lemma_holds = verdict_test("adam_ratio")
test_teeth = teeth_test("adam_ratio")
