"""Properties GL-SANDWICH, L-LE-2G, SEPARATES: loss versus proxy (THEORY.md section 2)."""

from properties._support import teeth_test, verdict_test

test_lemma_holds = verdict_test("sandwich")
test_teeth = teeth_test("sandwich")
