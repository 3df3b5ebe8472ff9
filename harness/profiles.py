"""Hypothesis profiles, shared by pytest (``conftest.py``) and ``python -m harness lemmas``.

* ``dev``: fast local iteration.
* ``ci``: derandomized (same examples every run), no deadline, >= 1000 examples per lemma.
* ``thorough``: nightly size, >= 10000 examples per lemma.

tox selects the profile explicitly (``--hypothesis-profile``); the lemma command takes
``--profile``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROFILES = {
    "dev": {"max_examples": 100},
    "ci": {"max_examples": 1000, "derandomize": True},
    "thorough": {"max_examples": 10000},
}

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.filter_too_much],
    "print_blob": True,
}


def register_profiles() -> None:
    """Register every profile with hypothesis (idempotent)."""
    for name, options in PROFILES.items():
        settings.register_profile(name, **_COMMON, **options)


register_profiles()
