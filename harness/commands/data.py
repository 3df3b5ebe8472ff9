"""Generate a dataset and write it as .npz (atomically), deterministic by seed.

Generators: paper (paper 000's Gaussian classes: k centres from N(0, I_d), within-class noise
sigma, n_per_class points per class), binary (the same with two classes), teacher (paper 002:
Gaussian inputs labelled by the sign of a sparse one-hidden-layer ReLU teacher). paper and
binary datasets are certified linearly separable (max-norm max margin > 0, redrawn otherwise);
teacher datasets are separable by the teacher network, not necessarily linearly.
"""

from __future__ import annotations

from harness.cli import EXIT_OK
from harness.data import GENERATOR_DEFAULTS, make_dataset

HELP = "generate a dataset (paper, binary, teacher) and write it as .npz"

_DESCRIPTIONS = {
    "paper": "paper 000's Gaussian classes (certified linearly separable)",
    "binary": "two Gaussian classes (certified linearly separable)",
    "teacher": "paper 002's sparse ReLU teacher labels (separable by the teacher network)",
}


def add_arguments(parser) -> None:
    """One sub-command per generator; its options are the generator's parameters."""
    generators = parser.add_subparsers(dest="generator", metavar="GENERATOR")
    generators.required = True
    for name, defaults in GENERATOR_DEFAULTS.items():
        sub = generators.add_parser(name, help=_DESCRIPTIONS[name],
                                    description=_DESCRIPTIONS[name])
        sub.add_argument("--seed", type=int, required=True, help="the generator's seed (>= 0)")
        sub.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
        for param, default in defaults.items():
            sub.add_argument(f"--{param.replace('_', '-')}", dest=param, type=type(default),
                             default=default, help=f"default {default}")


def run(args) -> int:
    """Draw the dataset, write it, print a one-line summary."""
    params = {param: getattr(args, param) for param in GENERATOR_DEFAULTS[args.generator]}
    dataset = make_dataset(args.generator, args.seed, **params)
    path = dataset.save(args.out)
    summary = f"wrote {path}: {dataset.name} seed={dataset.seed} n={dataset.n} d={dataset.d} " \
              f"k={dataset.k}"
    separability = dataset.info.get("separability")
    if separability:
        summary += (f", certified max-norm margin in [{separability['lower']:.10g}, "
                    f"{separability['upper']:.10g}]")
    print(summary)
    return EXIT_OK
