"""Verification harness for the implicit bias of optimizers on linearly separable data.

The statements checked are those of ``shared/spec/THEORY.md``; every formula lives once in
this package (losses, norms, margins, optimizers) and the properties, scenarios, gate and
reports all call it.
"""

__version__ = "0.1.0"

from harness.errors import HarnessError, HarnessInputError  # noqa: E402

__all__ = ["HarnessError", "HarnessInputError", "__version__"]
