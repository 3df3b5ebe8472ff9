"""Gate an optimizer implementation on the implicit bias THEORY.md section 4 predicts.

Runs the implementation from W = 0 on the profile's synthetic data (one data set per seed),
with the exact log-domain gradient and the step size eta_t = eta0 (t+1)^(-a) set by the
harness, measures the margin gap in the expected norm, fits it on the tail (after the regime's
onset t0 for NMD/Adam) and compares with the bound. Writes report.md, report.json, curves.json,
gap.png and margins.png into --out.

--impl forms: MODULE:ATTR naming a torch.optim.Optimizer subclass, a factory f(params,
**kwargs) returning one, or an object/class with init(W) -> state and step(W, grad, state, t,
lr) -> (W, state); builtin:NAME for a registered harness optimizer.

Exit codes: 0 PASS, 1 FAIL (also NaN from the implementation, or worse than --baseline),
2 usage or input error, 3 INCONCLUSIVE.
"""

from __future__ import annotations

import argparse

HELP = "gate an optimizer implementation against the rates of THEORY.md section 4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.gate import PROFILES

    parser.add_argument("--impl", required=True, metavar="MODULE:ATTR",
                        help="the implementation (MODULE:ATTR or builtin:NAME)")
    parser.add_argument("--kwargs", default=None, metavar="JSON",
                        help="keyword arguments for the implementation, a JSON object")
    parser.add_argument("--expect", required=True, metavar="NORM",
                        help="the norm whose max-margin direction it should converge to "
                             "(max, fro/l2, spectral, sum, l3, ...)")
    parser.add_argument("--family", required=True, choices=("nsd", "nmd", "adam", "gd"),
                        help="the rate row it is judged by")
    parser.add_argument("--a", type=float, default=None, help="step exponent (default: "
                        "the family's row: 1/2 nsd/nmd, 2/3 adam, 0 gd)")
    parser.add_argument("--eta0", type=float, default=None, help="base step size "
                        "(default: the profile's, per family)")
    parser.add_argument("--steps", type=int, default=None, help="horizon T")
    parser.add_argument("--seeds", type=int, default=None, help="number of data seeds")
    parser.add_argument("--profile", default="quick", choices=tuple(PROFILES),
                        help="data, horizon and seeds (quick fits a CI job)")
    parser.add_argument("--baseline", default=None, metavar="FILE",
                        help="fail when the fitted exponent is worse than the stored one")
    parser.add_argument("--save-baseline", default=None, metavar="FILE",
                        help="store the fitted exponents as a baseline")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="report directory (default reports/gate/<impl>-<norm>)")


def run(args: argparse.Namespace) -> int:
    from harness.gate import configure, parse_kwargs, run_gate

    config = configure(args.impl, args.expect, args.family, kwargs=parse_kwargs(args.kwargs),
                       a=args.a, eta0=args.eta0, steps=args.steps, seeds=args.seeds,
                       profile=args.profile, out=args.out, baseline=args.baseline,
                       save_baseline=args.save_baseline)
    result = run_gate(config)
    print(f"{result.verdict}: {result.reason}")
    print(f"report: {config.out / 'report.md'} ({result.seconds:.1f} s)")
    return result.exit_code
