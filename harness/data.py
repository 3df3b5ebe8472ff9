"""Reproducible datasets: generators, separability certificates, ``.npz`` storage.

Generators (:func:`make_dataset`; deterministic by seed through one ``numpy.random.Generator``):

* ``"paper"`` (paper 000, THEORY.md section 6): ``k`` class centres ``mu_c ~ N(0, I_d)``, and
  ``n_per_class`` points ``x = mu_c + sigma xi``, ``xi ~ N(0, I_d)``, per class (rows ordered
  by class). Defaults ``k=10, d=25, n_per_class=50, sigma=0.1`` (n = 500).
* ``"binary"``: the same construction with two classes (``d``, ``n_per_class``, ``sigma``).
* ``"teacher"`` (paper 002, section 4.1): inputs ``x ~ N(0, I_d)`` labelled by a sparse
  one-hidden-layer ReLU teacher without biases, ``f(x) = sum_j a_j relu(w_j^T x)``, where each
  of the ``teacher_width`` neurons reads ``active`` random coordinates (N(0, 1) weights; paper
  002 uses 3) and the output weights ``a_j`` are +-1, half of each sign (so both labels occur).
  The label is ``sign f(x)`` mapped to {0, 1} (``1`` for ``f > 0``); points with
  ``|f(x)| <= teacher_margin`` are redrawn, so no label is decided by a zero output. Rows are
  i.i.d. draws (a prefix/suffix split is a train/test split).

Separability. The linear generators (``paper``, ``binary``) certify every dataset they return
as linearly separable with :func:`harness.margins.max_margin` in the max norm (separability
does not depend on the norm: ``gamma_N > 0`` for one N iff for all): the certified bracket goes
into ``Dataset.info["separability"]``. A draw that is not separable is discarded with a logged
reason and the generator draws again from the same stream (still deterministic by seed), up to
``max_attempts`` times. The teacher data are separable *by the teacher network* (every
``|f(x)| > teacher_margin >= 0``; the smallest ``|f(x)|`` is recorded in
``info["teacher_min_abs_output"]``) but in general NOT linearly separable, so no linear
certificate is computed or claimed for them; the teacher's weights are kept in
``Dataset.extras`` (``teacher_hidden``, ``teacher_output``).

Storage: ``.npz`` with arrays ``X`` (n x d float64), ``y`` (n int64), ``k``, the extras as
``extra_<name>``, and ``meta``, a JSON string with the generator name, its parameters, the
seed, ``info`` and the provenance block (:func:`harness.provenance.provenance`). Written
atomically (:mod:`harness.storage`). :meth:`Dataset.load` also reads a plain ``.npz`` holding
only ``X`` and ``y``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import HarnessInputError, NotSeparableError
from harness.provenance import provenance
from harness.storage import write_bytes_atomic
from harness.validation import check_labels, check_matrix

logger = logging.getLogger(__name__)

#: Each generator's parameters and their defaults (the CLI options are built from these).
GENERATOR_DEFAULTS: dict[str, dict[str, int | float]] = {
    "paper": {"k": 10, "d": 25, "n_per_class": 50, "sigma": 0.1},
    "binary": {"d": 25, "n_per_class": 50, "sigma": 0.1},
    "teacher": {"n": 100, "d": 20, "teacher_width": 4, "active": 3, "teacher_margin": 0.0},
}
#: Generators whose datasets are certified linearly separable.
LINEAR_GENERATORS = ("paper", "binary")
#: Draws per dataset before giving up.
DEFAULT_MAX_ATTEMPTS = 10
#: Input batches the teacher's rejection sampling may use before blaming teacher_margin.
_MAX_TEACHER_BATCHES = 200


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset with its provenance.

    Attributes:
        X: n x d float64 data (the dataset's own copy; do not modify it in place).
        y: n int64 labels in ``{0..k-1}``, every class present (own copy).
        k: number of classes.
        name: the generator (``paper``, ``binary``, ``teacher``) or ``file`` for a plain npz.
        params: the generator's full parameter set (defaults filled in), so that
            ``make_dataset(name, seed, **params)`` reproduces the dataset.
        seed: the generator's seed (None for a plain file).
        info: facts about the draw (attempts, discarded draws, the separability certificate).
        extras: further arrays (the teacher network's weights).
    """

    X: np.ndarray
    y: np.ndarray
    k: int
    name: str
    params: dict = field(default_factory=dict)
    seed: int | None = None
    info: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        X = check_matrix("X", self.X).copy()
        y, k = check_labels(self.y, X.shape[0], int(self.k))
        y = y.copy()
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "k", k)

    @property
    def n(self) -> int:
        """Number of samples."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Number of features."""
        return self.X.shape[1]

    def meta(self) -> dict:
        """The JSON-able description stored next to the arrays."""
        return {"name": self.name, "params": self.params, "seed": self.seed, "info": self.info,
                "provenance": provenance(seeds=None if self.seed is None else [self.seed])}

    def save(self, path: str | Path) -> Path:
        """Write the dataset to ``path`` (``.npz``) atomically; returns the path."""
        arrays = {"X": self.X, "y": self.y, "k": np.int64(self.k),
                  "meta": np.array(json.dumps(self.meta(), sort_keys=True))}
        arrays.update({f"extra_{key}": np.asarray(value) for key, value in self.extras.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read a dataset written by :meth:`save`, or any ``.npz`` with ``X`` and ``y``.

        Raises:
            HarnessInputError: a missing, unreadable or malformed file, or invalid data.
        """
        path = Path(path)
        if not path.is_file():
            raise HarnessInputError(f"dataset file {str(path)!r} not found")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HarnessInputError(
                f"{str(path)!r} is not a readable .npz dataset ({reason})") from None
        missing = [key for key in ("X", "y") if key not in arrays]
        if missing:
            raise HarnessInputError(
                f"{str(path)!r} has no array {missing[0]!r} (found: {', '.join(arrays) or 'none'})")
        meta = _read_meta(path, arrays.get("meta"))
        k = _read_k(path, arrays.get("k"))
        X = check_matrix(f"X in {path.name}", arrays["X"])
        y, k = check_labels(arrays["y"], X.shape[0], k)
        extras = {key[len("extra_"):]: value for key, value in arrays.items()
                  if key.startswith("extra_")}
        return cls(X=X, y=y, k=k, name=str(meta.get("name", "file")),
                   params=dict(meta.get("params") or {}), seed=meta.get("seed"),
                   info=dict(meta.get("info") or {}), extras=extras)


def _read_k(path: Path, raw) -> int | None:
    if raw is None:
        return None
    if raw.size != 1 or raw.dtype.kind not in "iu":
        raise HarnessInputError(f"{str(path)!r} has a corrupt class count k "
                                f"(dtype {raw.dtype}, shape {raw.shape})")
    return int(raw)


def _read_meta(path: Path, raw) -> dict:
    if raw is None:
        return {}
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise HarnessInputError(f"{str(path)!r} has corrupt metadata ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise HarnessInputError(f"{str(path)!r} has corrupt metadata (not a JSON object)")
    return meta


# ----------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------

def _gaussian_classes(rng: np.random.Generator, k: int, d: int, n_per_class: int,
                      sigma: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Paper 000's classes: centres ``N(0, I_d)``, points ``centre + sigma N(0, I_d)``."""
    centres = rng.standard_normal((k, d))
    X = np.repeat(centres, n_per_class, axis=0) + sigma * rng.standard_normal((k * n_per_class, d))
    return X, np.repeat(np.arange(k), n_per_class), {}


def _teacher_outputs(X: np.ndarray, hidden: np.ndarray, output: np.ndarray) -> np.ndarray:
    """``f(x) = sum_j a_j relu(w_j^T x)`` for every row of ``X``."""
    return np.maximum(X @ hidden.T, 0.0) @ output


def _teacher(rng: np.random.Generator, n: int, d: int, teacher_width: int, active: int,
             teacher_margin: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Paper 002's teacher-student data (see the module docstring)."""
    chosen = np.argsort(rng.random((teacher_width, d)), axis=1)[:, :active]
    hidden = np.zeros((teacher_width, d))
    np.put_along_axis(hidden, chosen, rng.standard_normal((teacher_width, active)), axis=1)
    output = rng.permutation(np.where(np.arange(teacher_width) % 2 == 0, 1.0, -1.0))
    kept, count = [], 0
    for _ in range(_MAX_TEACHER_BATCHES):  # rejection of |f| <= teacher_margin, batch-wise
        batch = rng.standard_normal((2 * (n - count) + 16, d))
        batch = batch[np.abs(_teacher_outputs(batch, hidden, output)) > teacher_margin]
        kept.append(batch[: n - count])
        count += kept[-1].shape[0]
        if count == n:
            break
    else:
        raise HarnessInputError(f"teacher_margin={teacher_margin:g} is too large: only {count} "
                                f"of {n} inputs had |f(x)| above it")
    X = np.concatenate(kept)
    f = _teacher_outputs(X, hidden, output)
    extras = {"teacher_hidden": hidden, "teacher_output": output}
    return X, (f > 0).astype(np.int64), {
        "extras": extras, "teacher_min_abs_output": float(np.abs(f).min()),
        "separable_by": "teacher network (not certified linearly separable)"}


def _check_params(generator: str, params: dict) -> dict:
    """Defaults filled in, types checked; one-line errors naming the parameter."""
    if generator not in GENERATOR_DEFAULTS:
        raise HarnessInputError(f"unknown generator {generator!r}; choose one of "
                                f"{', '.join(GENERATOR_DEFAULTS)}")
    defaults = GENERATOR_DEFAULTS[generator]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise HarnessInputError(f"generator {generator!r} has no parameter {unknown[0]!r}; "
                                f"its parameters: {', '.join(defaults)}")
    out = {}
    for name, default in defaults.items():
        value = params.get(name, default)
        try:
            number = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(default, int):
            if not (math.isfinite(number) and number.is_integer() and number >= 1):
                raise HarnessInputError(f"{generator} parameter {name} must be a positive "
                                        f"integer, got {value!r}")
            out[name] = int(number)
        else:
            if not (math.isfinite(number) and number >= 0):
                raise HarnessInputError(f"{generator} parameter {name} must be a finite "
                                        f"number >= 0, got {value!r}")
            out[name] = number
    if generator == "paper" and out["k"] < 2:
        raise HarnessInputError(f"paper parameter k must be >= 2, got {out['k']}")
    if generator == "teacher":
        if out["active"] > out["d"]:
            raise HarnessInputError(f"teacher parameter active ({out['active']}) must be <= d "
                                    f"({out['d']})")
        if out["teacher_width"] < 2:
            raise HarnessInputError("teacher parameter teacher_width must be >= 2 (one "
                                    "positive and one negative output weight)")
    return out


def _draw(generator: str, rng: np.random.Generator, params: dict):
    if generator == "paper":
        return _gaussian_classes(rng, **params)
    if generator == "binary":
        return _gaussian_classes(rng, k=2, **params)
    return _teacher(rng, **params)


def _rejection(generator: str, X: np.ndarray, y: np.ndarray, k: int) -> tuple[str | None, dict]:
    """``(reason to discard the draw or None, facts to record)``."""
    from harness.margins import max_margin

    missing = np.setdiff1d(np.arange(k), y)
    if missing.size:
        return f"class {int(missing[0])} has no points", {}
    if generator not in LINEAR_GENERATORS:
        return None, {}
    try:
        cert = max_margin(X, y, "max")
    except NotSeparableError as exc:
        return str(exc), {}
    return None, {"separability": {"norm": cert.norm, "gamma": cert.gamma, "lower": cert.lower,
                                   "upper": cert.upper, "solver": cert.solver,
                                   "status": cert.status}}


def make_dataset(generator: str, seed: int, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 **params) -> Dataset:
    """Draw a dataset from ``generator`` (``paper``, ``binary``, ``teacher``), deterministic
    in ``seed``; see the module docstring for the constructions and the separability rule.

    Raises:
        HarnessInputError: unknown generator or parameter, bad values, bad seed.
        NotSeparableError: no acceptable draw in ``max_attempts`` (the message says why).
    """
    params = _check_params(generator, params)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HarnessInputError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    k = params.get("k", 2)
    discarded: list[str] = []
    for attempt in range(1, max_attempts + 1):
        X, y, facts = _draw(generator, rng, params)
        reason, certificate = _rejection(generator, X, y, k)
        if reason is None:
            extras = facts.pop("extras", {})
            info = {"attempts": attempt, "discarded": discarded, **facts, **certificate}
            return Dataset(X=X, y=y, k=k, name=generator, params=params, seed=int(seed),
                           info=info, extras=extras)
        logger.warning("%s seed=%d draw %d discarded: %s; drawing again", generator, seed,
                       attempt, reason)
        discarded.append(reason)
    raise NotSeparableError(f"generator {generator!r} (seed {seed}, {params}) gave no "
                            f"acceptable dataset in {max_attempts} draws; last: {discarded[-1]}")
