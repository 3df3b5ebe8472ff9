"""Test-session setup: hypothesis profiles and the ``gpu`` marker's skip."""

import pytest
from hypothesis import settings

import harness.profiles  # noqa: F401  (registers dev / ci / thorough)

settings.load_profile("dev")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    """One torch thread per test process: the suite runs under pytest-xdist on small problems,
    where intra-op threads only oversubscribe the cores (measured 5-40x slower under load)."""
    import torch

    torch.set_num_threads(1)
