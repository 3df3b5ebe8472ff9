"""Compile a C source of this package into a shared library, once per machine, and load it.

The library is cached under ``$HARNESS_CACHE_DIR/native`` (default
``$XDG_CACHE_HOME/implicit-bias-harness/native`` or ``~/.cache/implicit-bias-harness/native``),
in a folder named by the hash of everything that decides the binary: the source and the
headers beside it, the compiler's version line, the flags, and the CPU's model and feature
flags (the code is built with ``-march=native``, so a binary from another CPU could stop on
an illegal instruction). Concurrent builds (pytest-xdist workers, sweep processes)
are safe: each compiles into a private temporary file and renames it into place atomically.

Flags: ``-O3 -march=native -fopenmp-simd`` let the compiler vectorize the kernels' loops;
``-fno-math-errno -fno-trapping-math`` let it compute both sides of a branch-free select
(the kernels' exp and log are written that way) instead of keeping a branch that stops the
loop from vectorizing; nothing from ``-ffast-math``: the kernels rely on IEEE infinities, NaN
and exact rounding. On x86-64, ``-mprefer-vector-width=512`` uses the full AVX-512 width where
the CPU has it (measured 15% faster than the 256-bit default on the development machine).
``-funroll-loops`` unrolls the short fixed-count loops (classes, register tiles) that the
kernels are made of: side by side on an AMD EPYC, 0.658 -> 0.631 microseconds per run-step at
the small bench size, 15.2 -> 14.8 at the paper size, 1.19 -> 1.16 on the per-run path; the
invariant fields of 16 lane runs (2000 steps), 9 paper-size runs (1200) and 7 per-run runs
(3000) came out bit for bit the same as without it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.errors import HarnessInputError

SOURCE_DIR = Path(__file__).resolve().parent


class NativeBuildError(HarnessInputError):
    """The C compiler is missing or failed, or the library cannot be stored or loaded; the
    message is one line. An input (setup) error: the CLI prints it and exits 2."""


def cache_dir() -> Path:
    """Where compiled kernels are kept (see the module docstring)."""
    if os.environ.get("HARNESS_CACHE_DIR"):
        return Path(os.environ["HARNESS_CACHE_DIR"]) / "native"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "implicit-bias-harness" / "native"


def _compiler() -> str:
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc)
    if path is None:
        raise NativeBuildError(f"C compiler {cc!r} not found (set CC, or HARNESS_NATIVE=0)")
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def _cpu_signature() -> str:
    """CPU model and feature flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(dict.fromkeys(line for line in lines if line.startswith(wanted)))


def _flags() -> list[str]:
    flags = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
             "-funroll-loops", "-fPIC", "-shared", "-std=gnu11"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-mprefer-vector-width=512")
    return flags


def _compile(cc: str, source: Path, target: Path, flags: list[str]) -> None:
    result = _run([cc, *flags, str(source), "-o", str(target), "-lm"])
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise NativeBuildError(f"compiling {source.name} failed: {message}")


def load_library(source_name: str) -> ctypes.CDLL:
    """The shared library built from ``harness/native/<source_name>``, compiled if needed.

    Raises:
        NativeBuildError: no compiler, compilation failed, the cache folder is not writable
            or the library does not load (one-line message).
    """
    source = SOURCE_DIR / source_name
    cc = _compiler()
    flags = _flags()
    version = (_run([cc, "--version"]).stdout.splitlines() or [""])[0]
    headers = [path.read_text() for path in sorted(SOURCE_DIR.glob("*.h"))]
    key = hashlib.sha256("\0".join([source.read_text(), *headers, version, " ".join(flags),
                                    platform.machine(), _cpu_signature()]).encode()).hexdigest()
    target = cache_dir() / key[:20] / (source.stem + ".so")
    try:
        if not target.exists():
            _build(cc, source, target, flags)
        return ctypes.CDLL(str(target))
    except OSError as error:  # an unwritable cache, a full disk, a damaged library
        raise NativeBuildError(f"{source.name}: {error.strerror or error} ({target.parent})"
                               ) from None


def _build(cc: str, source: Path, target: Path, flags: list[str]) -> None:
    """Compile into a private temporary file next to ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        _compile(cc, source, Path(tmp), flags)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
