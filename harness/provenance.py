"""Provenance recorded in every report: versions, git commit, device, seeds.

A figure in any report can be traced to the code and libraries that produced it. Nothing here
feeds back into a computed number, so the same seed and config give the same numbers.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
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
        "device": device_description(device),
        "seeds": seeds,
    }
    block.update(extra)
    return block
