"""Provenance recorded in every report: versions, git commit, device, seeds.

A figure in any report can be traced to the code and libraries that produced it. Nothing here
feeds back into a computed number, so the same seed and config give the same numbers.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import harness

#: Bumped whenever a report's JSON layout changes incompatibly.
SCHEMA_VERSION = 1

_PACKAGES = ("numpy", "scipy", "torch", "cvxpy", "mpmath", "hypothesis", "clarabel", "highspy")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose numerics matter."""
    out: dict[str, str | None] = {"harness": harness.__version__,
                                  "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: Path | None = None) -> str | None:
    """The current commit (with ``-dirty`` if the tree has changes), or None outside git."""
    cwd = Path(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty.strip() else "")


@lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 (16 hex digits) of the harness package's source (``*.py`` and the native
    kernel's ``*.c``): names the code that produced a number even outside a git checkout, and
    keys the sweep cache so a code change never reuses rows computed by older code."""
    root = Path(harness.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.c")]):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def evaluate_backend(device: str = "cpu") -> str:
    """``native`` where :func:`harness.losses.evaluate` runs the C kernel of
    :mod:`harness.native` on ``device`` (CPU, float64), else ``torch``."""
    import torch

    from harness.losses import Workspace

    device = torch.device(device)
    W = torch.zeros((1, 2, 1), dtype=torch.float64, device=device)
    probe = Workspace(W, torch.zeros((2, 1), dtype=torch.float64, device=device),
                      torch.arange(2, device=device))
    return "native" if probe.native is not None else "torch"


def device_description(device: str = "cpu") -> str:
    """Human-readable device: the CUDA device name, or the CPU's architecture."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.machine()}, torch threads={torch.get_num_threads()})"


def provenance(*, seeds=None, device: str = "cpu", **extra) -> dict:
    """The provenance block every report JSON carries."""
    block = {
        "schema_version": SCHEMA_VERSION,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "source_digest": source_digest(),
        "device": device_description(device),
        "evaluate_backend": evaluate_backend(device),
        "seeds": seeds,
    }
    block.update(extra)
    return block
