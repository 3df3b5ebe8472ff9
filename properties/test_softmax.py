"""Properties SOFTMAX-VAR, SOFTMAX-QUAD: softmax variance bounds (THEORY.md section 2)."""

from properties._support import teeth_test, verdict_test

test_lemma_holds = verdict_test("softmax")
test_teeth = teeth_test("softmax")
