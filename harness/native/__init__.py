"""Native CPU kernels, compiled on first use (C, through ctypes; no torch headers).

:func:`log_frame_kernel` is the CPU float64 backend of :func:`harness.losses.evaluate` for CE
and the exponential loss: the whole log-domain pass between the two matrix products of a step
(``log_frame_ce.c``), one loop nest per run that stays in cache, instead of the ~20 torch
kernels of the reference path, each streaming the ``(B, k, n)`` logits through memory. The
formulas are those of :func:`harness.losses._evaluate_factored`; the torch path remains the
reference, the CUDA path and the fallback, and the tests hold the two to float64 rounding.

The evaluation of one run lives in ``log_frame.h`` and is shared by both libraries. The second,
:func:`steepest_steps_kernel` (``steepest_steps.c``), takes whole steps of entrywise
normalized steepest descent (SignGD, NGD, NSD-p, coordinate descent) for the engine: matrix
products, evaluation, direction and update of a span of steps in one call per run range, eight
runs at a time in vector lanes where they share their data (``steepest_lanes.h``).

``HARNESS_NATIVE`` selects: ``auto`` (default: use the kernel when it builds, else warn once
and use torch), ``0``/``off`` (never), ``1``/``on`` (always; failing to build is an error).
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache

from harness.errors import HarnessInputError
from harness.native.build import NativeBuildError, load_library

__all__ = ["NativeBuildError", "flush_exp", "log_frame_kernel", "native_log", "native_mode",
           "native_spectral_norms", "run_ranges", "spectral_norm_kernel", "steepest_steps_data",
           "steepest_steps_kernel"]

_MODES = {"auto": "auto", "": "auto", "0": "off", "off": "off", "1": "on", "on": "on"}
_double_p, _long, _int = ctypes.c_void_p, ctypes.c_long, ctypes.c_int


def native_mode() -> str:
    """``auto``, ``off`` or ``on``, from ``HARNESS_NATIVE``."""
    value = os.environ.get("HARNESS_NATIVE", "auto").strip().lower()
    if value not in _MODES:
        raise HarnessInputError(
            f"HARNESS_NATIVE must be auto, 0/off or 1/on, got {os.environ['HARNESS_NATIVE']!r}")
    return _MODES[value]


def _declare(function, argtypes, restype=None) -> None:
    function.argtypes, function.restype = argtypes, restype


@cache
def _library(source: str = "log_frame_ce.c") -> ctypes.CDLL:
    lib = load_library(source)
    if source == "log_frame_ce.c":
        _declare(lib.log_frame_ce, [_double_p, _double_p, _double_p, _long, _double_p, _long,
                                    _long, _long, _long, _long, _int] + [_double_p] * 7)
        _declare(lib.log_frame_ce_scratch, [_long], _long)
        _declare(lib.add_dropped_contributions, [_double_p, _double_p, _double_p, _long, _long])
        _declare(lib.flush_exp, [_double_p, _double_p, _long])
        _declare(lib.log_array, [_double_p, _double_p, _long])
    elif source == "steepest_steps.c":
        _declare(lib.steepest_steps, [_double_p, _double_p, _long, _double_p, _long, _double_p,
                                      _long, _double_p, _long, _long, _long, _long, _long, _int,
                                      ctypes.c_double, _double_p, _long, _long, _long,
                                      _double_p, _double_p, ctypes.c_void_p], _long)
        _declare(lib.steepest_steps_scratch, [_long, _long, _long], _long)
        _declare(lib.steepest_steps_padded_width, [_long], _long)
        _declare(lib.steepest_steps_products, [_double_p] * 4 + [_long] * 5 + [_double_p])
    elif source == "spectral_norm.c":
        _declare(lib.spectral_norms, [_double_p, _long, _long, _long, _double_p], _long)
        _declare(lib.spectral_norm_max_side, [], _long)
    return lib


@cache
def _auto_library(source: str = "log_frame_ce.c") -> ctypes.CDLL | None:
    try:
        return _library(source)
    except NativeBuildError as error:
        _warn_unavailable(str(error))
        return None


_warned: list[str] = []  # the first unavailability warning printed in this process


def _warn_unavailable(error: str) -> None:
    """One warning per process: both libraries fail for the same reason (a missing compiler,
    an unwritable cache)."""
    if not _warned:
        _warned.append(error)
        print(f"harness: warning: native kernel unavailable ({error}); using the torch path",
              file=sys.stderr)


def _chosen(source: str):
    mode = native_mode()
    if mode == "off":
        return None
    return _library(source) if mode == "on" else _auto_library(source)


def log_frame_kernel():
    """The C library with ``log_frame_ce`` and ``add_dropped_contributions``, or None when
    ``HARNESS_NATIVE`` is off or (under ``auto``) it cannot be built.

    Signatures (tensors float64/int64, contiguous, on the CPU; pointers by ``data_ptr()``):
    ``log_frame_ce(z, A, y, y_stride, X, x_stride, d, B, k, n, loss_is_ce, log_loss,
    log_proxy, log_scale, margin, dropped, G_lo, scratch)``: ``z`` the ``(B, k, n)`` logits
    (overwritten), ``A`` the ``(B, k, n)`` coefficient matrix it writes, labels and data of
    run ``b`` at ``y + b * y_stride`` and ``X + b * x_stride``, five ``(B,)`` outputs,
    ``G_lo`` a ``(B, k, d)`` output and ``log_frame_ce_scratch(n)`` doubles of scratch.
    ``dropped[b]`` counts the coefficients below ``e^-708`` written as 0, whose part of
    ``A^T X`` (times ``2^64``) is in ``G_lo``;
    ``add_dropped_contributions(grad, G_lo, dropped, B, k d)`` adds it to the product (see
    ``log_frame_ce.c``).

    Raises:
        NativeBuildError: ``HARNESS_NATIVE=on`` and the kernel cannot be built.
    """
    return _chosen("log_frame_ce.c")


def steepest_steps_kernel():
    """The C library with ``steepest_steps`` and ``steepest_steps_scratch``, or None (as
    :func:`log_frame_kernel`).

    ``steepest_steps(W, X, x_stride, XT, xt_stride, Xp, xp_stride, y, y_stride, B, k, d, n,
    loss_is_ce, p, eta, T, b0, b1, fields, scratch, claimed)`` advances runs ``b0 <= b < b1``
    of the ``(B, k, d)`` tensor ``W`` in place by ``T`` steps with the ``(T, B)`` step sizes
    ``eta``, writing the ``(T, 6, B)`` invariant rows ``fields``, and returns how many
    run-steps it took eight runs at a time (runs sharing their data advance in vector lanes,
    see ``steepest_lanes.h``); ``claimed`` is ``None`` (the call takes the whole range) or an
    int64 counter, zero before the span, shared by threads that each call on the same range
    and claim chunks of eight runs from it until none is left; ``XT`` is the data transposed
    ``(d, n)`` and ``Xp`` the data padded with zero columns to ``steepest_steps_padded_width(d)``
    (:func:`steepest_steps_data` makes both);
    ``scratch`` holds ``steepest_steps_scratch(k, d, n)`` doubles per calling thread.
    ``steepest_steps_products(W, A, XT, Xp, B, k, d, n, repeats, scratch)`` runs its two
    matrix products alone, for the bench (see ``steepest_steps.c``).

    Raises:
        NativeBuildError: ``HARNESS_NATIVE=on`` and the kernel cannot be built.
    """
    return _chosen("steepest_steps.c")


def spectral_norm_kernel():
    """The C library with ``spectral_norms`` (``spectral_norm.c``), or None (as
    :func:`log_frame_kernel`). ``spectral_norms(A, B, k, d, out)`` writes sigma_1 of each of
    the ``B`` row-major ``(k, d)`` float64 matrices at ``A`` to ``out`` (NaN for a non-finite
    matrix) and returns 0, or -1 where ``min(k, d)`` exceeds ``spectral_norm_max_side()``.

    Raises:
        NativeBuildError: ``HARNESS_NATIVE=on`` and the kernel cannot be built.
    """
    return _chosen("spectral_norm.c")


def native_spectral_norms(A):
    """sigma_1 of every ``(k, d)`` matrix of ``A`` (``(..., k, d)``) from
    :func:`spectral_norm_kernel`, or None where it does not apply: native kernels off or
    unavailable, ``A`` off the CPU, not float64, tracked by autograd, or with a smaller side
    above the kernel's limit (the caller then takes the torch path, the reference)."""
    import torch

    if (A.device.type != "cpu" or A.dtype != torch.float64 or A.requires_grad
            or A.ndim < 2 or A.numel() == 0):
        return None
    kernel = spectral_norm_kernel()
    if kernel is None or min(A.shape[-2:]) > kernel.spectral_norm_max_side():
        return None
    k, d = A.shape[-2:]
    flat = A.reshape(-1, k, d).contiguous()
    out = torch.empty(flat.shape[0], dtype=torch.float64)
    if kernel.spectral_norms(flat.data_ptr(), flat.shape[0], k, d, out.data_ptr()) != 0:
        return None  # the scratch could not be allocated
    return out.reshape(A.shape[:-2])


def steepest_steps_data(kernel, X):
    """``(XT, Xp)`` for ``steepest_steps`` from the data ``X`` (``(n, d)`` or ``(B, n, d)``):
    its transpose and its copy padded with zero feature columns to the kernel's row width."""
    import torch

    d = X.shape[-1]
    pad = kernel.steepest_steps_padded_width(d) - d
    return (X.transpose(-1, -2).contiguous(),
            torch.nn.functional.pad(X, (0, pad)).contiguous())


def run_ranges(runs: int, threads: int) -> list[tuple[int, int]]:
    """``runs`` split into ``min(threads, runs)`` contiguous ``(start, stop)`` ranges of nearly
    equal size (at least one), one per thread calling the kernel."""
    parts = max(1, min(threads, runs))
    return [(runs * i // parts, runs * (i + 1) // parts) for i in range(parts)]


def flush_exp(x):
    """The kernel's exp on a float64 numpy array (values <= 0; 0 below -708), for the tests."""
    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _library().flush_exp(x.ctypes.data, out.ctypes.data, x.size)
    return out


def native_log(x):
    """The kernels' branch-free log (``log_vec`` of log_frame.h) on a float64 numpy array, for
    the tests."""
    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _library().log_array(x.ctypes.data, out.ctypes.data, x.size)
    return out
