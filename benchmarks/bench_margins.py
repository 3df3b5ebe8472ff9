"""Benchmark (not a test): certified max-norm max margin on paper-style data, n=5000, k=10, d=50.

Prints the wall time of the certified solve (data generation not included), the bracket and
its relative width, for the default cutting-plane solve and (``--full``) the all-pairs LP.

    python benchmarks/bench_margins.py [--seed 0] [--norm max] [--full]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness.margins import max_margin


def paper_style(seed: int, k: int = 10, d: int = 50, n_per_class: int = 500, sigma: float = 0.1):
    """Paper 000's construction at benchmark size, drawn without the separability check (the
    benchmark must time the certificate once, not twice)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    X = np.repeat(centres, n_per_class, axis=0) + sigma * rng.standard_normal((k * n_per_class, d))
    return X, np.repeat(np.arange(k), n_per_class)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--norm", default="max")
    parser.add_argument("--full", action="store_true", help="also time the all-pairs solve")
    args = parser.parse_args()
    X, y = paper_style(args.seed)
    variants = [("working set", True)] + ([("all pairs", False)] if args.full else [])
    print(f"n={X.shape[0]} k={int(y.max()) + 1} d={X.shape[1]} norm={args.norm}")
    for label, working_set in variants:
        start = time.perf_counter()
        cert = max_margin(X, y, args.norm, working_set=working_set)
        seconds = time.perf_counter() - start
        print(f"{label:12s} time {seconds:6.2f} s  gamma {cert.gamma!r}  bracket "
              f"[{cert.lower!r}, {cert.upper!r}]  relative width {cert.relative_width:.2e}  "
              f"{cert.solver} {cert.status} ({cert.rounds} rounds, {cert.active_pairs} pairs)")


if __name__ == "__main__":
    main()
