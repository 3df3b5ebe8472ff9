"""Properties DESCENT: the one-step descent inequality of steepest descent (THEORY.md section 2)."""

from properties._support import verdict_test

test_lemma_holds = verdict_test("descent")
