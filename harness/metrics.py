"""Checkpoint metrics: the columns of a curve row (harness/curves.py), batched over runs.

One implementation serves the engine (batched, inside its loop) and the gate (one outside run
at a time): :func:`checkpoint_metrics`. For an iterate ``W_t`` and certified max-margin
references ``(gamma_N, V_N)`` it gives

* ``log_loss``, ``log_proxy`` (``log L``, ``log G``, finite far below ``exp(-745)``),
  ``g_over_l = G/L`` (-> 1 along every run, GL-SANDWICH), ``margin = m(W_t)``;
* for ``N`` in :data:`harness.curves.METRIC_NORMS` and ``own`` (the algorithm's norm):
  ``norm_N = N(W_t)``, ``nmargin_N = m(W_t) / N(W_t)``, ``gap_N = gamma_N - nmargin_N`` and
  ``corr_N = <W_t, V_N> / (||W_t||_F ||V_N||_F)``.

Loss, proxy and margin come from :func:`harness.losses.evaluate`, norms from
:class:`harness.norms.Norm`. ``W = 0`` (zero initialisation) has no direction: its normalized
margins, gaps and correlations are NaN. A norm without a reference gets NaN gaps and
correlations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.curves import METRIC_NORMS
from harness.errors import HarnessInputError
from harness.losses import evaluate, log_pair_weights, pairwise_gaps
from harness.norms import Norm


@dataclass(frozen=True)
class Reference:
    """Max-margin reference in one norm for a batch of runs.

    Attributes:
        gamma: ``gamma_N`` per run, shape ``(B,)`` (or ``()`` for a single run).
        lower: a certified lower bound on ``gamma_N`` (what the trajectory invariants use, so
            a solver's last digits can never create a violation), same shape.
        V: the max-margin solution with ``N(V) = 1``, shape ``(B, k, d)`` (or ``(k, d)``).
    """

    gamma: torch.Tensor
    lower: torch.Tensor
    V: torch.Tensor


def as_reference(certificate, device="cpu", dtype=torch.float64) -> Reference:
    """A :class:`Reference` from a ``MarginCertificate`` (harness.margins) or anything with
    ``gamma``, ``W`` and optionally ``lower`` attributes (a Reference passes through)."""
    if isinstance(certificate, Reference):
        return certificate
    gamma = torch.as_tensor(np.asarray(certificate.gamma, dtype=np.float64), dtype=dtype,
                            device=device)
    lower_value = getattr(certificate, "lower", None)
    lower = gamma if lower_value is None else torch.as_tensor(
        np.asarray(lower_value, dtype=np.float64), dtype=dtype, device=device)
    V = torch.as_tensor(np.asarray(certificate.W, dtype=np.float64), dtype=dtype, device=device)
    return Reference(gamma, lower, V)


def stack_references(per_run: Sequence[Mapping[str, object]], device="cpu",
                     dtype=torch.float64) -> dict[str, Reference]:
    """Stack per-run ``{norm name: certificate}`` maps into batched references; a norm is kept
    only if every run has it. Keys become canonical norm names."""
    if not per_run:
        return {}
    canonical = [{Norm.parse(key).name: value for key, value in refs.items()} for refs in per_run]
    shared = set(canonical[0]).intersection(*canonical[1:])
    out = {}
    for key in sorted(shared):
        refs = [as_reference(run[key], device, dtype) for run in canonical]
        out[key] = Reference(torch.stack([r.gamma for r in refs]),
                             torch.stack([r.lower for r in refs]),
                             torch.stack([r.V for r in refs]))
    return out


def metric_columns(own_norm: str | Norm) -> tuple[tuple[str, Norm], ...]:
    """``((suffix, norm), ...)`` for the norm columns: every METRIC_NORM, then ``own``."""
    return tuple((name, Norm.parse(name)) for name in METRIC_NORMS) + (
        ("own", Norm.parse(own_norm)),)


def _norm_columns(W, margin, norm: Norm, reference: Reference | None) -> dict[str, torch.Tensor]:
    value = norm.value(W)
    nmargin = margin / value
    nan = torch.full_like(value, math.nan)
    nmargin = torch.where(value > 0, nmargin, nan)
    if reference is None:
        return {"norm": value, "nmargin": nmargin, "gap": nan, "corr": nan}
    V = reference.V.to(W)
    inner = (W * V).sum(dim=(-2, -1))
    denom = torch.linalg.matrix_norm(W) * torch.linalg.matrix_norm(V)
    corr = torch.where(denom > 0, inner / denom, nan)
    return {"norm": value, "nmargin": nmargin, "gap": reference.gamma.to(W) - nmargin,
            "corr": corr}


def checkpoint_columns(W: torch.Tensor, log_loss: torch.Tensor, log_proxy: torch.Tensor,
                       margin: torch.Tensor, references: Mapping[str, Reference],
                       own_norm: str | Norm) -> dict[str, torch.Tensor]:
    """The checkpoint columns from ``W`` and its already evaluated ``log L``, ``log G`` and
    margin (the steppers have them from the step's own evaluation of ``W_t``: evaluating
    again cost 13% of a paper-size run at the bench horizon)."""
    out = {"log_loss": log_loss, "log_proxy": log_proxy,
           "g_over_l": torch.exp(log_proxy - log_loss), "margin": margin}
    per_norm: dict[str, dict[str, torch.Tensor]] = {}  # the own norm is often a metric norm
    for suffix, norm in metric_columns(own_norm):
        if norm.name not in per_norm:
            per_norm[norm.name] = _norm_columns(W, margin, norm, references.get(norm.name))
        for kind, value in per_norm[norm.name].items():
            out[f"{kind}_{suffix}"] = value
    return out


def checkpoint_tensors(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                       references: Mapping[str, Reference], own_norm: str | Norm,
                       loss: str = "ce") -> dict[str, torch.Tensor]:
    """The checkpoint columns as tensors of shape ``W.shape[:-2]`` (unchecked torch kernel)."""
    ev = evaluate(W, X, y, loss)
    return checkpoint_columns(W, ev.log_loss, ev.log_proxy, ev.margin, references, own_norm)


def checkpoint_metrics(W, X, y, references: Mapping[str, object] | None, own_norm: str | Norm,
                       loss: str = "ce") -> dict[str, np.ndarray | float]:
    """The checkpoint columns of a curve row for one iterate or a batch of iterates.

    Args:
        W: ``(k, d)`` or ``(B, k, d)`` (numpy or torch).
        X: ``(n, d)`` or ``(B, n, d)``; y: ``(n,)`` or ``(B, n)``.
        references: ``{norm name: MarginCertificate or Reference}`` (gamma ``()`` or ``(B,)``,
            solution ``(k, d)`` or ``(B, k, d)``); None or missing norms give NaN gaps.
        own_norm: the algorithm's own norm (for the ``*_own`` columns).
        loss: ``"ce"`` (default), ``"exp"`` or ``"pairlog"``.

    Returns:
        ``{column: value}``: floats for a single ``W``, arrays of shape ``(B,)`` for a batch.
    """
    Wt = torch.as_tensor(W, dtype=torch.float64) if not torch.is_tensor(W) else W
    if Wt.ndim not in (2, 3):
        raise HarnessInputError(f"W must be (k, d) or (B, k, d), got shape {tuple(Wt.shape)}")
    Xt = torch.as_tensor(X, dtype=Wt.dtype, device=Wt.device)
    yt = torch.as_tensor(y, dtype=torch.int64, device=Wt.device)
    if Xt.shape[-1] != Wt.shape[-1]:
        raise HarnessInputError(
            f"W has {Wt.shape[-1]} columns but X has {Xt.shape[-1]} features")
    refs = {Norm.parse(key).name: as_reference(value, Wt.device, Wt.dtype)
            for key, value in (references or {}).items()}
    columns = checkpoint_tensors(Wt, Xt, yt, refs, own_norm, loss)
    if Wt.ndim == 2:
        return {key: float(value) for key, value in columns.items()}
    return {key: value.detach().cpu().numpy() for key, value in columns.items()}


def log_class_proxy_sums(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                         loss: str = "ce") -> torch.Tensor:
    """``log(G_c + Q_c)`` per class, shape ``(..., k)``, without underflow.

    ``n (G_c + Q_c) = sum_i |A_ic|`` with ``A`` the coefficient matrix of the gradient
    (``|A_ic| = w_ic`` off the label, ``sum_{c'} w_ic'`` on it), so the per-class row bound of
    PER-CLASS and the MOMENTUM-TRACK denominator are one log-sum-exp of the pair weights.
    """
    log_w = log_pair_weights(pairwise_gaps(W, X, y), loss)
    label = y.expand(log_w.shape[:-1]).unsqueeze(-1)
    log_abs = log_w.scatter(-1, label, torch.logsumexp(log_w, dim=-1, keepdim=True))
    return torch.logsumexp(log_abs, dim=-2) - math.log(X.shape[-2])
