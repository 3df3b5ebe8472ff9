"""Properties PER-CLASS: per-class proxies and gradient rows (THEORY.md section 2)."""

from properties._support import teeth_test, verdict_test

test_lemma_holds = verdict_test("per_class")
test_teeth = teeth_test("per_class")
