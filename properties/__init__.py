"""Lemma properties of THEORY.md section 2, driven by the catalogue :mod:`harness.lemmas`."""
