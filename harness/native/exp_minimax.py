"""Where the kernels' exp polynomial comes from: the minimax polynomial of ``exp`` in relative
error on ``[-ln 2 / 2, ln 2 / 2]`` (the range ``exp_shifted`` of log_frame.h reduces to), by
the Remez exchange algorithm in mpmath.

    python -m harness.native.exp_minimax [--degree 11]

prints the coefficients ``c_0 .. c_d`` as C hex literals and the largest relative error of the
polynomial with those float64 coefficients. Degree 11 gives 3.05e-18 before rounding the
coefficients and 2.3e-17 after (a fifth of an ulp): as good as the degree-13 Taylor polynomial
it replaced, with two multiply-adds fewer per exp: the lane steps take seven exps per sample,
and at the small bench size the kernel went from 0.72 to 0.67 microseconds per run-step
(one thread, side by side). tests/test_native.py holds the header's coefficients to this
computation.

Remez: with ``d + 2`` reference points ``x_i`` solve ``p(x_i) - e^{x_i} = (-1)^i E e^{x_i}``
for the ``d + 1`` coefficients and ``E``, move the points to the alternating extrema of the
relative error ``(p - e^x) / e^x`` and repeat until ``|E|`` equals the largest error.
"""

from __future__ import annotations

import argparse

import mpmath

DEGREE = 11


def relative_error(coefficients, x) -> mpmath.mpf:
    """``(p(x) - e^x) / e^x`` for ``p`` with the given coefficients (constant term first)."""
    value = mpmath.mpf(0)
    for c in reversed(coefficients):
        value = value * x + c
    return (value - mpmath.exp(x)) / mpmath.exp(x)


def _extremum(coefficients, lo, hi) -> mpmath.mpf:
    """The point of ``[lo, hi]`` where ``|relative_error|`` is largest (golden section)."""
    ratio = (mpmath.sqrt(5) - 1) / 2
    for _ in range(60):
        left, right = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if abs(relative_error(coefficients, left)) > abs(relative_error(coefficients, right)):
            hi = right
        else:
            lo = left
    return (lo + hi) / 2


def minimax_exp(degree: int = DEGREE, iterations: int = 6, grid: int = 1000,
                dps: int = 40) -> tuple[list[mpmath.mpf], mpmath.mpf]:
    """The minimax coefficients (constant term first) and the equioscillation error ``|E|``."""
    with mpmath.workdps(dps):
        a, b = -mpmath.log(2) / 2, mpmath.log(2) / 2
        count = degree + 2
        points = [(a + b) / 2 - (b - a) / 2 * mpmath.cos(mpmath.pi * i / (count - 1))
                  for i in range(count)]
        for _ in range(iterations):
            system = mpmath.matrix(count, count)
            rhs = mpmath.matrix(count, 1)
            for i, x in enumerate(points):
                for j in range(degree + 1):
                    system[i, j] = x ** j
                system[i, degree + 1] = (-1) ** i * mpmath.exp(x)
                rhs[i] = mpmath.exp(x)
            solution = mpmath.lu_solve(system, rhs)
            coefficients = [solution[j] for j in range(degree + 1)]
            xs = [a + (b - a) * k / grid for k in range(grid + 1)]
            errors = [relative_error(coefficients, x) for x in xs]
            turning = [0] + [k for k in range(1, grid)
                             if (errors[k] - errors[k - 1]) * (errors[k + 1] - errors[k]) <= 0]
            candidates = [_extremum(coefficients, xs[k - 1], xs[k + 1]) if k else xs[k]
                          for k in turning] + [xs[grid]]
            points = []
            for x in candidates:  # one point per sign run, the largest
                same = points and (relative_error(coefficients, x) > 0) == (
                    relative_error(coefficients, points[-1]) > 0)
                if not same:
                    points.append(x)
                elif abs(relative_error(coefficients, x)) > abs(
                        relative_error(coefficients, points[-1])):
                    points[-1] = x
            while len(points) > count:  # drop the smaller end
                drop = 0 if abs(relative_error(coefficients, points[0])) < abs(
                    relative_error(coefficients, points[-1])) else -1
                points.pop(drop)
            if len(points) < count:
                raise RuntimeError("Remez lost the alternation: fewer extrema than points")
        return coefficients, abs(solution[degree + 1])


def largest_error(coefficients, samples: int = 4000) -> mpmath.mpf:
    """The largest ``|relative_error|`` over ``samples + 1`` equally spaced points."""
    with mpmath.workdps(40):
        a, b = -mpmath.log(2) / 2, mpmath.log(2) / 2
        values = [mpmath.mpf(c) for c in coefficients]
        return max(abs(relative_error(values, a + (b - a) * k / samples))
                   for k in range(samples + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=DEGREE)
    args = parser.parse_args()
    coefficients, equioscillation = minimax_exp(args.degree)
    rounded = [float(c) for c in coefficients]
    for j, c in enumerate(rounded):
        print(f"c{j} = {c.hex()}  /* {c!r} */")
    print(f"equioscillation error {mpmath.nstr(equioscillation, 5)}; "
          f"with float64 coefficients {mpmath.nstr(largest_error(rounded), 5)}")


if __name__ == "__main__":
    main()
