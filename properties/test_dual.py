"""Properties DUAL-LB, DUAL-UB, OTHER-LOSS (THEORY.md section 2): dual-norm bounds of the
gradient, for CE and for the exponential loss and PairLogLoss."""

from properties._support import teeth_test, verdict_test

test_lemma_holds = verdict_test("dual")
test_teeth = teeth_test("dual")
