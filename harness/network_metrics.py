"""Margins, soft margin, test accuracy and KKT residual of homogeneous ReLU networks (paper 002).

For an L-homogeneous network (:mod:`harness.networks`) and a norm N of the parameters:

* geometric margin ``gamma_N(theta) = min_i min_{c != y_i} r_ic(theta) / N(theta)^L``, invariant
  to rescaling theta; l2, max (l-inf) and sum (l1) for every model, spectral (per-layer,
  modular) as well for the frozen-output model, where it is ``min_i y_i f(x_i) / ||U||_2``;
* soft margin ``gamma~_N(theta) = log(1/calL(theta)) / N(theta)^L`` with the exponential loss
  ``calL = sum_i sum_{c != y_i} exp(-r_ic)``. Since ``exp(-min r) <= calL``, ``gamma~ <= gamma``
  always, and ``gamma - gamma~ <= log(#pairs) / N^L`` (Lemma A.7 of paper 002). Theorem 3.1:
  along steepest flow in N it is non-decreasing once ``calL < 1``;
* KKT residual of ``min N(theta) s.t. r_ic(theta) >= 1`` at the normalized iterate
  ``theta^ = theta / (min r)^(1/L)`` (feasible, smallest gap 1), see :func:`kkt_residual`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from harness.errors import HarnessInputError
from harness.networks import (
    NetworkEvaluation,
    ReluNetwork,
    acts_per_layer,
    gap_jacobian,
    parameter_norm,
    sample_gaps,
)
from harness.norms import Norm

#: Geometric margins recorded for every model (canonical norm names of :mod:`harness.norms`).
MARGIN_NORMS = ("fro", "max", "sum")
#: ... and in addition for the frozen-output model (where U is the only layer).
FROZEN_MARGIN_NORMS = ("spectral",)


def margin_norms(net: ReluNetwork) -> tuple[str, ...]:
    """The norms whose geometric margins are recorded for ``net``."""
    return MARGIN_NORMS + (FROZEN_MARGIN_NORMS if net.frozen_output else ())


def geometric_margin(net: ReluNetwork, theta: torch.Tensor, margin: torch.Tensor,
                     norm: str | Norm) -> torch.Tensor:
    """``min_i r_i / N(theta)^L`` from the unnormalized ``margin = min_i r_i``, ``(B,)``."""
    return margin / parameter_norm(net, theta, norm) ** net.homogeneity


def soft_margin(net: ReluNetwork, theta: torch.Tensor, log_loss: torch.Tensor,
                norm: str | Norm) -> torch.Tensor:
    """``log(1/calL) / N(theta)^L`` from ``log calL`` (exponential loss), ``(B,)``."""
    return -log_loss / parameter_norm(net, theta, norm) ** net.homogeneity


def checkpoint_columns(net: ReluNetwork, theta: torch.Tensor, ev: NetworkEvaluation,
                       own_norm: str | Norm, loss: str) -> dict[str, torch.Tensor]:
    """Every per-checkpoint metric of a batch of networks, each ``(B,)``.

    Columns: ``log_loss``, ``margin`` (unnormalized), ``train_acc``, ``norm_<N>`` and
    ``nmargin_<N>`` for N in :func:`margin_norms` and ``own``, and ``soft_margin_own``
    (exponential loss only; NaN for CE, where paper 002 defines no such soft margin).
    """
    cols = {"log_loss": ev.log_loss, "margin": ev.margin, "train_acc": ev.accuracy}
    names = dict.fromkeys(margin_norms(net))
    for key, norm in [(n, n) for n in names] + [("own", own_norm)]:
        value = parameter_norm(net, theta, norm)
        cols[f"norm_{key}"] = value
        cols[f"nmargin_{key}"] = ev.margin / value ** net.homogeneity
    if loss == "exp":
        cols["soft_margin_own"] = soft_margin(net, theta, ev.log_loss, own_norm)
    else:
        cols["soft_margin_own"] = torch.full_like(ev.log_loss, float("nan"))
    return cols


def dead_samples(net: ReluNetwork, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Number of samples with no active hidden unit, ``relu(U x_i) = 0``, per run, ``(B,)``.

    Such a sample has ``f(x_i) = 0`` whatever the output layer is and no gradient of its own
    (the ReLU's derivative is 0 at and below 0), so its loss ``exp(0) = 1`` keeps ``calL >= 1``
    (no late phase) until the other samples' updates of ``U`` switch one of its units back on.
    ``X`` is ``(n, d)`` or ``(B, n, d)``."""
    U = net.layers(theta)[0]
    return ((X @ U.mT) <= 0).all(dim=-1).sum(dim=-1)


def test_accuracy(net: ReluNetwork, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                  frozen: torch.Tensor | None = None) -> torch.Tensor:
    """Fraction of held-out samples classified correctly (every gap > 0), ``(B,)``."""
    return (sample_gaps(net, theta, X, y, frozen) > 0).to(theta.dtype).mean(dim=-1)


@dataclass(frozen=True)
class KKTResidual:
    """Approximate-KKT measure of ``min N(theta) s.t. r_ic(theta) >= 1`` (Dutta et al. 2013,
    paper 002 Definition A.12) at the normalized iterate ``theta^``.

    With ``g`` ranging over the dual ball ``N_dual(g) <= 1`` and multipliers ``lam >= 0`` on
    every constraint, the three parts are

    * ``stationarity = N_dual(g - sum lam_ic grad r_ic(theta^))``: distance, in the dual norm,
      from ``g`` to the cone spanned by the constraint gradients;
    * ``complementary_slackness = sum lam_ic (r_ic(theta^) - 1) / N(theta^)``: multiplier
      weight on constraints that are not active (each ``>= 0`` since ``theta^`` is feasible);
    * ``subgradient_gap = (N(theta^) - <g, theta^>) / N(theta^)``: how far ``g`` is from
      ``dN(theta^) = {g : N_dual(g) <= 1, <g, theta^> = N(theta^)}`` (an eps-subgradient with
      ``eps = subgradient_gap * N``; near a limit point the iterate's exact subdifferential
      can be a single vertex while the limit's is a face, so the exact one is too strict).

    ``total`` is their minimized sum; each part is dimensionless. ``lam = 0`` with any
    subgradient gives ``total = 1``, so ``total`` lies in ``[0, 1]``; it is 0 exactly at a KKT
    point (then ``sum lam = N(theta^)/L`` by Euler's identity).

    Attributes:
        total, stationarity, complementary_slackness, subgradient_gap: see above.
        multiplier_mass: ``L sum lam / N(theta^)`` (1 at a KKT point).
        support: number of constraints with ``lam_ic > 1e-6 max lam``.
        n_constraints: number of constraints ``r_ic >= 1``.
        status: the solver's status string.
    """

    total: float
    stationarity: float
    complementary_slackness: float
    subgradient_gap: float
    multiplier_mass: float
    support: int
    n_constraints: int
    status: str

    def as_dict(self) -> dict:
        """Plain dict for JSON reports."""
        return asdict(self)


def _dual_norm_expression(net: ReluNetwork, v, norm: Norm):
    """cvxpy expression of :func:`harness.networks.parameter_dual_norm` at the vector ``v``."""
    import cvxpy as cp

    if not acts_per_layer(norm):
        return cp.norm(v, norm.dual.p)
    if norm.p != float("inf"):
        raise HarnessInputError(f"KKT residual supports the spectral Schatten norm only, "
                                f"got {norm.name}")
    terms, start = [], 0
    for rows, cols in net.layer_shapes:
        block = v[start:start + rows * cols]
        start += rows * cols
        if min(rows, cols) == 1:
            terms.append(cp.norm(block, 2))
        else:
            terms.append(cp.normNuc(cp.reshape(block, (rows, cols), order="C")))
    return cp.sum(cp.hstack(terms))


def kkt_residual(net: ReluNetwork, theta, X, y, norm: str | Norm, frozen=None) -> KKTResidual:
    """The KKT residual of one network (see :class:`KKTResidual`), solved with cvxpy.

    Args:
        net: the architecture.
        theta: trainable parameters ``(P,)`` (numpy or torch).
        X: training inputs ``(n, d)``; y: labels ``(n,)``.
        norm: the norm N of the problem (the algorithm's own norm).
        frozen: the fixed output weights ``(k_out, m)`` of the frozen model, else None.

    Raises:
        HarnessInputError: if ``theta`` does not classify every training point correctly
            (the normalization to a feasible point needs ``min r > 0``).
    """
    import cvxpy as cp

    N = Norm.parse(norm)
    as_t = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    theta_t, X_t, frozen_t = as_t(theta), as_t(X), as_t(frozen)
    y_t = torch.as_tensor(y, dtype=torch.int64)
    gaps, J = gap_jacobian(net, theta_t, X_t, y_t, frozen_t)
    smallest = float(gaps.min())
    if not smallest > 0:
        raise HarnessInputError(f"KKT residual needs a network that separates the training "
                                f"data; its smallest gap is {smallest:.3g}")
    L = net.homogeneity
    scale = smallest ** (-1.0 / L)
    theta_hat = (scale * theta_t).numpy()
    J_hat = (scale ** (L - 1) * J).numpy()
    slack = (gaps / smallest).numpy() - 1.0
    size = float(parameter_norm(net, torch.as_tensor(theta_hat), N))
    g = cp.Variable(theta_hat.shape[0])
    lam = cp.Variable(len(slack), nonneg=True)
    stationarity = _dual_norm_expression(net, g - J_hat.T @ lam, N)
    slackness = slack @ lam / size
    subgap = (size - theta_hat @ g) / size
    problem = cp.Problem(cp.Minimize(stationarity + slackness + subgap),
                         [_dual_norm_expression(net, g, N) <= 1])
    problem.solve(solver=cp.CLARABEL)
    if lam.value is None:
        raise HarnessInputError(f"KKT residual: the solver returned no solution "
                                f"(status {problem.status})")
    lam_v = np.maximum(lam.value, 0.0)
    parts = [float(stationarity.value), float(slackness.value), float(subgap.value)]
    return KKTResidual(
        total=float(sum(parts)), stationarity=parts[0], complementary_slackness=parts[1],
        subgradient_gap=parts[2], multiplier_mass=float(L * lam_v.sum() / size),
        support=int(np.count_nonzero(lam_v > 1e-6 * max(lam_v.max(), 1e-300))),
        n_constraints=len(slack), status=str(problem.status))
