"""Engine scaling study: run-steps/s against the batch size, beside the GEMM-only limit.

    python benchmarks/bench_engine.py [--device cpu|cuda] [--steps 400]

Prints one line per (case, batch): engine run-steps/s, the GEMM-only limit and their ratio.
The issue's two fixed cases are ``python -m harness bench``; this script shows where the
batch stops paying. Uses the same measurement code (harness.commands.bench).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from harness.commands.bench import CASES, engine_run_steps_per_second, gemm_limit, synthetic_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{'case':<7}{'batch':>7}{'engine':>12}{'gemm-only':>12}{'of limit':>10}")
    for base in CASES:
        data = synthetic_data(base.k, base.d, base.n)
        for batch in (1, 8, 64, 512):
            case = dataclasses.replace(base, batch=batch)
            engine = engine_run_steps_per_second(case, data, device, args.steps)
            limit = gemm_limit(case, data.X, device, repeats=max(20, args.steps // 4))
            print(f"{case.name:<7}{batch:>7}{engine:>12.0f}{limit:>12.0f}{engine / limit:>10.0%}")


if __name__ == "__main__":
    main()
