"""Cross-entropy, multiclass exponential loss and PairLogLoss in the log domain.

Every loss here is a function of the pairwise logit gaps ``r_ic = z_{i,y_i} - z_ic`` (c != y_i)
of the logits ``z_i = W x_i``, and its gradient is

    grad L(W) = -(1/n) sum_i sum_{c != y_i} w_ic (e_{y_i} - e_c) x_i^T,

with pair weights ``w_ic = -d ell_i / d r_ic`` (THEORY.md section 1):

* CE: ``ell_i = log(1 + sum_c exp(-r_ic))``, ``w_ic = s_ic`` (the softmax entry), so the proxy
  ``G = (1/n) sum_i sum_{c != y_i} w_ic = (1/n) sum_i (1 - s_{i,y_i})``;
* exponential: ``ell_i = sum_c exp(-r_ic)``, ``w_ic = exp(-r_ic)``;
* PairLogLoss: ``ell_i = sum_c log(1 + exp(-r_ic))``, ``w_ic = sigmoid(-r_ic)``.

Why the log domain: once a margin passes ~37 (float64), ``s_y`` rounds to 1 and ``1 - s_y``
computed by subtraction is exactly 0 while the other gradient entries are not; the direction of
sign, normalized, spectral and Adam steps is then wrong. Here ``1 - s_y`` is always the sum
``sum_{c != y} s_c`` of positive terms, every quantity is available as its logarithm, and the
gradient comes as ``exp(log_scale) * grad_tilde`` with ``grad_tilde`` of order one, so nothing
underflows even when ``L`` is far below ``exp(-745)``.

The kernels (``evaluate`` and friends) are torch functions batched over leading dimensions:
``W`` is ``(..., k, d)``, ``X`` is ``(n, d)`` or ``(..., n, d)``, ``y`` is ``(n,)`` or
``(..., n)``. They do no validation (the engine calls them in its inner loop). The public
numpy-facing functions at the bottom validate their input and return numpy arrays / floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import HarnessInputError
from harness.validation import check_problem

LOSSES = ("ce", "exp", "pairlog")


def softplus(u: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(u))`` without overflow and without the threshold cut-off of torch's."""
    return torch.clamp(u, min=0) + torch.log1p(torch.exp(-torch.abs(u)))


def log_softplus(u: torch.Tensor, sp: torch.Tensor | None = None) -> torch.Tensor:
    """``log(log(1 + exp(u)))``, accurate also where ``softplus(u)`` underflows.

    For ``u < -20``: ``log1p(e^u) = e^u (1 - e^u/2 + O(e^{2u}))`` so the log is
    ``u + log1p(-h)`` with ``h = e^u / 2 < 1.1e-9``, and ``log1p(-h) = -h (1 + h/2)`` up to
    ``h^3/3 < 1e-27``. ``sp``: ``softplus(u)`` if the caller has it already (saves a pass).
    """
    if sp is None:
        sp = softplus(u)
    small = u < -20.0
    h = 0.5 * torch.exp(torch.clamp(u, max=-20.0))
    return torch.where(small, u - h * (1.0 + 0.5 * h), torch.log(sp))


def logits(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``z = X W^T``: shape ``(..., n, k)``."""
    return X @ W.transpose(-1, -2)


def _label_index(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return y.expand(z.shape[:-1]).unsqueeze(-1)


def logit_gaps(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gaps ``r_ic = z_{i,y_i} - z_ic`` of given logits ``z`` ``(..., n, k)``, with ``+inf`` on
    the label entry (any model's logits: the linear ones here, a network's in
    :mod:`harness.networks`).

    The ``+inf`` makes every ``exp(-r)`` vanish and every minimum skip the label exactly.
    """
    idx = _label_index(y, z)
    r = torch.gather(z, -1, idx) - z
    return r.scatter(-1, idx, math.inf)


def pairwise_gaps(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gaps ``r_ic = z_{i,y_i} - z_ic`` of the linear logits ``z = X W^T`` (:func:`logit_gaps`)."""
    return logit_gaps(logits(W, X), y)


def margin(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``m(W) = min_i min_{c != y_i} (e_{y_i} - e_c)^T W x_i``, shape ``(...)``."""
    return pairwise_gaps(W, X, y).amin(dim=(-2, -1))


def log_pair_weights(r: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """``log w_ic`` from the gaps ``r`` (label entries ``+inf`` give ``-inf``)."""
    if loss == "ce":
        u = torch.logsumexp(-r, dim=-1, keepdim=True)
        return -r - softplus(u)
    if loss == "exp":
        return -r
    if loss == "pairlog":
        return -softplus(r)
    raise HarnessInputError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def log_sample_losses(r: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """``log ell_i`` from the gaps ``r``, shape ``(..., n)``."""
    if loss == "ce":
        return log_softplus(torch.logsumexp(-r, dim=-1))
    if loss == "exp":
        return torch.logsumexp(-r, dim=-1)
    if loss == "pairlog":
        return torch.logsumexp(log_softplus(-r), dim=-1)
    raise HarnessInputError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


@dataclass(frozen=True)
class Evaluation:
    """Everything one step needs, without underflow.

    Attributes:
        log_loss: ``log L(W)``, shape ``(...)``.
        log_proxy: ``log G(W)``, shape ``(...)``.
        grad_tilde: ``grad L(W) / exp(log_scale)``, shape ``(..., k, d)``, largest pair weight 1.
        log_scale: ``max_ic log w_ic``, the frame of ``grad_tilde``, shape ``(...)``.
        margin: ``m(W)``, shape ``(...)``.
    """

    log_loss: torch.Tensor
    log_proxy: torch.Tensor
    grad_tilde: torch.Tensor
    log_scale: torch.Tensor
    margin: torch.Tensor

    @property
    def gradient(self) -> torch.Tensor:
        """``grad L(W)`` itself; underflows to 0 where the loss is below ``exp(-745)``."""
        return self.grad_tilde * torch.exp(self.log_scale)[..., None, None]


def coefficient_matrix(weights: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``A`` with ``grad = -(1/n) A^T X``: ``A_ic = -w_ic`` (c != y_i), ``A_{i,y_i} = sum_c w_ic``.

    The label entry is a sum of positive terms (``1 - s_y`` for CE), never a subtraction.
    """
    idx = _label_index(y, weights)
    return (-weights).scatter(-1, idx, weights.sum(dim=-1, keepdim=True))


def evaluate(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> Evaluation:
    """Loss, proxy, scaled gradient and margin of ``W`` in one pass (see module docstring).

    CE and the exponential loss go through :func:`_evaluate_factored` (the engine's inner
    loop: one ``exp`` per pair, in-place passes); PairLogLoss through the pairwise formulas.
    """
    if loss in ("ce", "exp"):
        return _evaluate_factored(W, X, y, loss)
    n = X.shape[-2]
    r = pairwise_gaps(W, X, y)
    log_w = log_pair_weights(r, loss)
    log_scale = log_w.amax(dim=(-2, -1))
    w_tilde = torch.exp(log_w - log_scale[..., None, None])
    grad_tilde = -(coefficient_matrix(w_tilde, y).transpose(-1, -2) @ X) / n
    log_n = math.log(n)
    log_proxy = log_scale + torch.log(w_tilde.sum(dim=(-2, -1))) - log_n
    log_loss = torch.logsumexp(log_sample_losses(r, loss), dim=-1) - log_n
    return Evaluation(log_loss, log_proxy, grad_tilde, log_scale, r.amin(dim=(-2, -1)))


def _evaluate_factored(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, loss: str
                       ) -> Evaluation:
    """:func:`evaluate` for CE and the exponential loss, whose pair weights factor per sample.

    With ``top_i = max_{c != y_i} z_ic - z_{i,y_i}`` (``= -min_c r_ic``) and
    ``e_ic = exp(z_ic - max_{c' != y_i} z_ic') in (0, 1]`` (0 on the label):
    ``u_i = log sum_{c != y_i} exp(-r_ic) = top_i + log S_i`` with ``S_i = sum_c e_ic`` in
    ``[1, k-1]``, and ``log w_ic = log e_ic + a_i`` with ``a_i = top_i - softplus(u_i)`` (CE,
    the formula of :func:`log_pair_weights`) or ``a_i = top_i`` (exp). Hence
    ``log_scale = max_i a_i`` and ``w~_ic = e_ic exp(a_i - log_scale)``: one ``exp`` per pair
    instead of three, every step still a sum of positive terms in the log domain. The logits
    are laid out ``(..., k, n)`` so the class reductions run along contiguous rows, and the
    ``(..., k, n)`` buffer is reused in place for ``e``, ``w~`` and the coefficient matrix.
    """
    n = X.shape[-2]
    zt = W @ X.transpose(-1, -2)  # logits, (..., k, n)
    idx = y.expand(zt.shape[:-2] + y.shape[-1:]).unsqueeze(-2)  # (..., 1, n)
    z_label = zt.gather(-2, idx)
    zt.scatter_(-2, idx, -math.inf)
    z_top = zt.amax(dim=-2, keepdim=True)
    e = zt.sub_(z_top).exp_()
    S = e.sum(dim=-2, keepdim=True)
    top = z_top - z_label
    u = top + torch.log(S)
    if loss == "ce":
        sp = softplus(u)
        a, log_ell = top - sp, log_softplus(u, sp)
    else:
        a, log_ell = top, u
    log_scale = a.amax(dim=(-2, -1))
    f = torch.exp(a - log_scale[..., None, None])
    w_label = S * f
    coeff = e.mul_(f).scatter_(-2, idx, -w_label)  # -(coefficient_matrix)^T
    grad_tilde = (coeff @ X) / n
    log_n = math.log(n)
    log_proxy = log_scale + torch.log(w_label.sum(dim=(-2, -1))) - log_n
    log_loss = torch.logsumexp(log_ell.flatten(-2), dim=-1) - log_n
    return Evaluation(log_loss, log_proxy, grad_tilde, log_scale, -top.amax(dim=(-2, -1)))


def class_proxies(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, loss: str = "ce"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class proxies ``(G_c, Q_c)``, each of shape ``(..., k)``.

    ``G_c = (1/n) sum_{i: y_i = c} sum_{c' != c} w_ic'`` (= ``(1/n) sum (1 - s_ic)`` for CE) and
    ``Q_c = (1/n) sum_{i: y_i != c} w_ic``; both sum over c to ``G``.
    """
    n = X.shape[-2]
    w = torch.exp(log_pair_weights(pairwise_gaps(W, X, y), loss))
    k = w.shape[-1]
    onehot = torch.nn.functional.one_hot(y, k).to(w.dtype).expand(w.shape)
    G_c = (onehot * w.sum(dim=-1, keepdim=True)).sum(dim=-2) / n
    Q_c = w.sum(dim=-2) / n
    return G_c, Q_c


# ----------------------------------------------------------------------------------------------
# Public numpy API (validated)
# ----------------------------------------------------------------------------------------------

def _checked(W, X, y, loss: str):
    if loss not in LOSSES:
        raise HarnessInputError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    W, X, y = check_problem(W, X, y)
    return torch.from_numpy(W), torch.from_numpy(X), torch.from_numpy(y)


def evaluate_np(W, X, y, loss: str = "ce") -> Evaluation:
    """Validated :func:`evaluate` on numpy input (tensors in the result are float64, CPU)."""
    return evaluate(*_checked(W, X, y, loss), loss)


def log_loss(W, X, y, loss: str = "ce") -> float:
    """``log L(W)``; finite even where ``L`` underflows."""
    return float(evaluate_np(W, X, y, loss).log_loss)


def log_proxy(W, X, y, loss: str = "ce") -> float:
    """``log G(W)``; finite even where ``G`` underflows."""
    return float(evaluate_np(W, X, y, loss).log_proxy)


def loss_value(W, X, y, loss: str = "ce") -> float:
    """``L(W)`` (0.0 once it underflows; use :func:`log_loss` then)."""
    return math.exp(log_loss(W, X, y, loss))


def proxy(W, X, y, loss: str = "ce") -> float:
    """``G(W)`` (0.0 once it underflows; use :func:`log_proxy` then)."""
    return math.exp(log_proxy(W, X, y, loss))


def gradient(W, X, y, loss: str = "ce") -> np.ndarray:
    """``grad L(W)`` as a k x d array, cancellation-free."""
    return evaluate_np(W, X, y, loss).gradient.numpy()


def scaled_gradient(W, X, y, loss: str = "ce") -> tuple[np.ndarray, float]:
    """``(grad_tilde, log_scale)`` with ``grad L(W) = exp(log_scale) * grad_tilde``."""
    ev = evaluate_np(W, X, y, loss)
    return ev.grad_tilde.numpy(), float(ev.log_scale)


def per_class_proxies(W, X, y, loss: str = "ce") -> tuple[np.ndarray, np.ndarray]:
    """``(G_c, Q_c)`` as two length-k arrays."""
    G_c, Q_c = class_proxies(*_checked(W, X, y, loss), loss)
    return G_c.numpy(), Q_c.numpy()


def margin_value(W, X, y) -> float:
    """``m(W)``."""
    return float(margin(*_checked(W, X, y, "ce")))


def softmax_probs(W, X, y) -> np.ndarray:
    """Softmax ``s_i`` of the logits, n x k (computed stably)."""
    Wt, Xt, _ = _checked(W, X, y, "ce")
    return torch.softmax(logits(Wt, Xt), dim=-1).numpy()


def normalized_margin(W, X, y, norm) -> float:
    """``m(W) / N(W)`` for a norm given as a :class:`harness.norms.Norm` or its name."""
    from harness.norms import Norm

    Wt, Xt, yt = _checked(W, X, y, "ce")
    N = Norm.parse(norm)
    value = float(N.value(Wt))
    if value == 0.0:
        raise HarnessInputError("W is zero: the normalized margin is undefined")
    return float(margin(Wt, Xt, yt)) / value
