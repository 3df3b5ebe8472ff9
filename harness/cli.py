"""Command line: ``python -m harness <command> ...``.

Each command is a module in :mod:`harness.commands` defining ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; the module's name is the command's name
(underscores become dashes). Commands are discovered, so adding one is adding a module.

Exit codes shared by every command: 0 success/pass, 1 fail, 2 usage or input error,
3 inconclusive, 130 interrupted. Input errors print one line ``harness: error: ...`` and no
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from harness import __version__
from harness.errors import HarnessInputError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _commands():
    import harness.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            yield info.name.replace("_", "-"), module


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per discovered command."""
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Verification harness for the implicit bias of optimizers on separable data.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _commands():
        doc = (module.__doc__ or "").strip()
        cmd = sub.add_parser(name, help=module.HELP, description=doc,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except HarnessInputError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("harness: interrupted; results written so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
