"""The two checks every property module runs, parametrized over its lemma family.

A module for family ``F`` says ``test_lemma_holds = verdict_test("F")`` and, when the family
has sharp constants, ``test_teeth = teeth_test("F")``.

Both call :func:`harness.lemma_search.search` under the hypothesis profile pytest loaded
(``--hypothesis-profile``; ``dev`` unless told; the teeth with at least the ``ci`` budget, see
:func:`teeth_settings`), so pytest and ``python -m harness lemmas`` run the same search and the
same mpmath verdicts.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

from harness.lemma_search import search
from harness.lemmas import Lemma, family


def verdict_params(lemmas: tuple[Lemma, ...]) -> list:
    """One pytest param per lemma; a lemma with a pinned counterexample is a strict xfail."""
    return [pytest.param(lemma, id=lemma.id, marks=(
        [pytest.mark.xfail(strict=True, reason=lemma.xfail)] if lemma.xfail else []))
        for lemma in lemmas]


def teeth_params(lemmas: tuple[Lemma, ...]) -> list:
    """One pytest param per sharp constant of the family."""
    return [pytest.param(lemma, constant.name, id=f"{lemma.id}-{constant.name}")
            for lemma in lemmas for constant in lemma.sharp_constants]


def check_verdict(lemma: Lemma) -> None:
    """No violation in the profile's budget, and every example judged in mpmath."""
    budget = settings().max_examples
    outcome = search(lemma, settings())
    assert outcome.error is None, f"{lemma.id}: {outcome.error}"
    assert outcome.violation is None, (
        f"{lemma.id} violated after {outcome.examples} examples: {outcome.violation}")
    assert outcome.examples >= budget, (
        f"{lemma.id}: only {outcome.examples} of {budget} examples judged")


def teeth_settings() -> settings:
    """The loaded profile with at least the ``ci`` profile's budget, derandomized.

    A sharp constant's teeth are a fixed claim ("1% tighter is falsified within N examples"),
    so they must not depend on the luck of a short randomized ``dev`` run (measured: some
    constants need several hundred examples, more than ``dev``'s 100).
    """
    current, ci = settings(), settings.get_profile("ci")
    return settings(current, max_examples=max(current.max_examples, ci.max_examples),
                    derandomize=True)


def check_teeth(lemma: Lemma, constant: str) -> None:
    """With ``constant`` 1% tighter the search must find a violation (judged in mpmath)."""
    tightened = lemma.tightened(constant)
    outcome = search(lemma, teeth_settings(), tightened)
    assert outcome.error is None, f"{lemma.id}: {outcome.error}"
    assert outcome.violation is not None, (
        f"{lemma.id}: {constant} = {tightened[constant]} (1% tighter) was not falsified in "
        f"{outcome.examples} examples; largest LHS/RHS {outcome.worst_ratio}")


def verdict_test(name: str):
    """The parametrized test that every lemma of family ``name`` holds."""

    @pytest.mark.parametrize("lemma", verdict_params(family(name)))
    def test_lemma_holds(lemma):
        check_verdict(lemma)

    return test_lemma_holds


def teeth_test(name: str):
    """The parametrized test that every sharp constant of family ``name`` has teeth."""

    @pytest.mark.parametrize(("lemma", "constant"), teeth_params(family(name)))
    def test_teeth(lemma, constant):
        check_teeth(lemma, constant)

    return test_teeth
