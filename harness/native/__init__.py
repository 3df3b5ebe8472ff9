"""Native CPU kernels, compiled on first use (C, through ctypes; no torch headers).

:func:`log_frame_kernel` is the CPU float64 backend of :func:`harness.losses.evaluate` for CE
and the exponential loss: the whole log-domain pass between the two matrix products of a step
(``log_frame_ce.c``), one loop nest per run that stays in cache, instead of the ~20 torch
kernels of the reference path, each streaming the ``(B, k, n)`` logits through memory. The
formulas are those of :func:`harness.losses._evaluate_factored`; the torch path remains the
reference, the CUDA path and the fallback, and the tests hold the two to float64 rounding.

``HARNESS_NATIVE`` selects: ``auto`` (default: use the kernel when it builds, else warn once
and use torch), ``0``/``off`` (never), ``1``/``on`` (always; failing to build is an error).
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import lru_cache

from harness.errors import HarnessInputError
from harness.native.build import NativeBuildError, load_library

__all__ = ["NativeBuildError", "flush_exp", "log_frame_kernel", "native_mode"]

_MODES = {"auto": "auto", "": "auto", "0": "off", "off": "off", "1": "on", "on": "on"}
_double_p, _long, _int = ctypes.c_void_p, ctypes.c_long, ctypes.c_int


def native_mode() -> str:
    """``auto``, ``off`` or ``on``, from ``HARNESS_NATIVE``."""
    value = os.environ.get("HARNESS_NATIVE", "auto").strip().lower()
    if value not in _MODES:
        raise HarnessInputError(
            f"HARNESS_NATIVE must be auto, 0/off or 1/on, got {os.environ['HARNESS_NATIVE']!r}")
    return _MODES[value]


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = load_library("log_frame_ce.c")
    lib.log_frame_ce.argtypes = [_double_p, _double_p, _double_p, _long, _double_p, _long,
                                 _long, _long, _long, _long, _int] + [_double_p] * 7
    lib.log_frame_ce.restype = None
    lib.add_dropped_contributions.argtypes = [_double_p, _double_p, _double_p, _long, _long]
    lib.add_dropped_contributions.restype = None
    lib.flush_exp.argtypes = [_double_p, _double_p, _long]
    lib.flush_exp.restype = None
    return lib


@lru_cache(maxsize=1)
def _auto_library() -> ctypes.CDLL | None:
    try:
        return _library()
    except NativeBuildError as error:
        print(f"harness: warning: native kernel unavailable ({error}); using the torch path",
              file=sys.stderr)
        return None


def log_frame_kernel():
    """The C library with ``log_frame_ce`` and ``add_dropped_contributions``, or None when
    ``HARNESS_NATIVE`` is off or (under ``auto``) it cannot be built.

    Signatures (tensors float64/int64, contiguous, on the CPU; pointers by ``data_ptr()``):
    ``log_frame_ce(z, A, y, y_stride, X, x_stride, d, B, k, n, loss_is_ce, log_loss,
    log_proxy, log_scale, margin, dropped, G_lo, scratch)``: ``z`` the ``(B, k, n)`` logits
    (overwritten), ``A`` the ``(B, k, n)`` coefficient matrix it writes, labels and data of
    run ``b`` at ``y + b * y_stride`` and ``X + b * x_stride``, five ``(B,)`` outputs,
    ``G_lo`` a ``(B, k, d)`` output and ``8 n`` doubles of scratch. ``dropped[b]`` counts the
    coefficients below ``e^-708`` written as 0, whose part of ``A^T X`` (times ``2^64``) is in
    ``G_lo``; ``add_dropped_contributions(grad, G_lo, dropped, B, k d)`` adds it to the
    product (see ``log_frame_ce.c``).

    Raises:
        NativeBuildError: ``HARNESS_NATIVE=on`` and the kernel cannot be built.
    """
    mode = native_mode()
    if mode == "off":
        return None
    return _library() if mode == "on" else _auto_library()


def flush_exp(x):
    """The kernel's exp on a float64 numpy array (values <= 0; 0 below -708), for the tests."""
    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _library().flush_exp(x.ctypes.data, out.ctypes.data, x.size)
    return out
