"""Typed errors. Every user-facing failure is one of these, with a one-line message.

``HarnessInputError`` subclasses ``ValueError`` so library callers can catch the usual type;
the CLI turns it into ``harness: error: <message>`` and exit code 2.
"""


class HarnessError(Exception):
    """Base class of every error the harness raises on purpose."""


class HarnessInputError(HarnessError, ValueError):
    """Bad input: NaN/inf, wrong shapes, labels out of range, empty classes, unknown names."""


class NotSeparableError(HarnessInputError):
    """The data set is not linearly separable (its max margin is not positive)."""
