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


def _softplus_and_log_kernel(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softplus(u), log softplus(u))`` with ``softplus(u) = log(1 + exp(u))``, both accurate
    for every ``u`` (no threshold cut-off, no underflow of the log), branch-free.

    With ``p = max(u, 0)``, ``q = min(u, 0)`` and ``x = exp(-|u|) = exp(q) exp(-p)``:
    ``softplus(u) = p + x h`` and ``log softplus(u) = q + log(p + h exp(-p))``, where
    ``h = log1p(x) / x`` in ``[log 2, 1]`` is Kahan's ``log(w) / (w - 1)``, ``w = 1 + x``
    (``h = 1`` where ``w`` rounds to 1, the limit ``x -> 0``). For ``u <= 0`` the log is
    ``u + log h``, which stays exact where ``softplus(u)`` underflows (``u < -745``). Written
    without ``log1p`` and boolean masks, whose CPU kernels cost ~10x an ``exp`` here: this
    runs in the engine's inner loop.
    """
    p, q = u.clamp(min=0.0), u.clamp(max=0.0)
    exp_neg_p = torch.exp(-p)
    x = torch.exp(q).mul_(exp_neg_p)
    w = x + 1.0
    h = torch.log(w).div_(w.sub_(1.0)).nan_to_num_(nan=1.0)
    return torch.addcmul(p, x, h), torch.addcmul(p, h, exp_neg_p).log_().add_(q)


class _SoftplusAndLog(torch.autograd.Function):
    """Autograd for :func:`_softplus_and_log_kernel`, whose in-place, branch-free forward is
    not differentiable as written (``log(w) / (w - 1)`` is 0/0 where ``w`` rounds to 1).

    Backward from the outputs: ``d softplus/du = sigmoid(u) = exp(u - softplus(u))`` and
    ``d log softplus/du = sigmoid(u) / softplus(u) = exp(u - softplus(u) - log softplus(u))``,
    both in ``(0, 1]`` and finite for every ``u``.
    """

    @staticmethod
    def forward(ctx, u):
        sp, log_sp = _softplus_and_log_kernel(u)
        ctx.save_for_backward(u, sp, log_sp)
        return sp, log_sp

    @staticmethod
    def backward(ctx, grad_sp, grad_log_sp):
        u, sp, log_sp = ctx.saved_tensors
        log_sigmoid = u - sp
        grad = torch.zeros_like(u)
        if grad_sp is not None:
            grad = grad + grad_sp * torch.exp(log_sigmoid)
        if grad_log_sp is not None:
            grad = grad + grad_log_sp * torch.exp(log_sigmoid - log_sp)
        return grad


def softplus_and_log(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softplus(u), log softplus(u))``, accurate for every ``u`` (see
    :func:`_softplus_and_log_kernel`); differentiable when ``u`` requires grad (the lemma
    checks differentiate the loss with autograd), the bare kernel otherwise (the engine)."""
    if u.requires_grad:
        return _SoftplusAndLog.apply(u)
    return _softplus_and_log_kernel(u)


def softplus(u: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(u))`` without overflow and without the threshold cut-off of torch's."""
    return softplus_and_log(u)[0]


def log_softplus(u: torch.Tensor) -> torch.Tensor:
    """``log(log(1 + exp(u)))``, accurate also where ``softplus(u)`` underflows."""
    return softplus_and_log(u)[1]


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


class Workspace:
    """Preallocated buffers of :func:`evaluate` for one problem shape (the engine's inner loop).

    Holds the ``(..., k, n)`` logits buffer (reused in place for ``e``, ``w~`` and the
    coefficient matrix), the ``(..., k, d)`` gradient buffer and the flat indices of the label
    entries ``(run, y_i, i)`` in the logits buffer, so a step allocates no large tensor and
    touches the label entries with 1-D index kernels. The ``grad_tilde`` of an evaluation made
    with a workspace IS its gradient buffer: it is overwritten by the next evaluation.

    On the CPU in float64 it also holds what the native kernel needs
    (:func:`harness.native.log_frame_kernel`; ``native`` is None when it is off or
    unavailable): a second ``(..., k, n)`` buffer for the coefficient matrix, a second
    ``(..., k, d)`` one for the dropped coefficients' part of the gradient, the labels as
    contiguous int64 and the kernel's scratch.

    Args:
        W: ``(..., k, d)``; X: ``(n, d)`` or ``(..., n, d)``; y: ``(n,)`` or ``(..., n)``
            (only shapes, dtype and device are used from ``W`` and ``X``).
    """

    def __init__(self, W: torch.Tensor, X: torch.Tensor, y: torch.Tensor):
        k, d, n = W.shape[-2], W.shape[-1], X.shape[-2]
        lead = torch.broadcast_shapes(W.shape[:-2], X.shape[:-2], y.shape[:-1])
        self.key = (tuple(W.shape), tuple(X.shape), tuple(y.shape), W.dtype, W.device)
        self.lead = lead
        self.logits = torch.empty(lead + (k, n), dtype=W.dtype, device=W.device)
        self.grad = torch.empty(lead + (k, d), dtype=W.dtype, device=W.device)
        runs = math.prod(lead)
        labels = y.to(W.device).expand(lead + (n,)).reshape(runs, n)
        offsets = torch.arange(runs, device=W.device)[:, None] * (k * n)
        self.label = (offsets + labels * n + torch.arange(n, device=W.device)).reshape(-1)
        self.native = None
        if W.device.type == "cpu" and W.dtype == torch.float64:
            from harness.native import log_frame_kernel

            self.native = log_frame_kernel()
        if self.native is not None:
            self.coefficients = torch.empty_like(self.logits)
            self.dropped_part = torch.empty_like(self.grad)
            shared = y.dim() == 1
            self.labels = (y if shared else labels).to(torch.int64).contiguous()
            self.label_stride = 0 if shared else n
            self.scratch = torch.empty(self.native.log_frame_ce_scratch(n), dtype=W.dtype)

    def fits(self, W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> bool:
        """Whether this workspace was made for arguments of these shapes, dtype and device."""
        return self.key == (tuple(W.shape), tuple(X.shape), tuple(y.shape), W.dtype, W.device)


def evaluate(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, loss: str = "ce",
             workspace: Workspace | None = None) -> Evaluation:
    """Loss, proxy, scaled gradient and margin of ``W`` in one pass (see module docstring).

    CE and the exponential loss go through :func:`_evaluate_factored` (the engine's inner
    loop: one ``exp`` per pair, in-place passes, buffers from ``workspace`` when given), or
    on the CPU in float64 through the native kernel that fuses the same formulas
    (:func:`_evaluate_native`; not when autograd is asked for); PairLogLoss through the
    pairwise formulas.
    """
    if loss in ("ce", "exp"):
        if workspace is None or not workspace.fits(W, X, y):
            workspace = Workspace(W, X, y)
        if workspace.native is not None and not (W.requires_grad or X.requires_grad):
            return _evaluate_native(W, X, y, loss, workspace)
        return _evaluate_factored(W, X, y, loss, workspace)
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


def _evaluate_factored(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, loss: str,
                       workspace: Workspace) -> Evaluation:
    """:func:`evaluate` for CE and the exponential loss, whose pair weights factor per sample.

    With ``top_i = max_{c != y_i} z_ic - z_{i,y_i}`` (``= -min_c r_ic``) and
    ``e_ic = exp(z_ic - max_{c' != y_i} z_ic') in (0, 1]`` (0 on the label):
    ``u_i = log sum_{c != y_i} exp(-r_ic) = top_i + log S_i`` with ``S_i = sum_c e_ic`` in
    ``[1, k-1]``, and ``log w_ic = log e_ic + a_i`` with ``a_i = top_i - softplus(u_i)`` (CE,
    the formula of :func:`log_pair_weights`) or ``a_i = top_i`` (exp). Hence
    ``log_scale = max_i a_i`` and ``w~_ic = e_ic exp(a_i - log_scale)``: one ``exp`` per pair
    instead of three, every step still a sum of positive terms in the log domain. The logits
    are laid out ``(..., k, n)`` so the class reductions run along contiguous rows; the
    ``(..., k, n)`` buffer of the workspace is reused in place for ``e``, ``w~ / n`` and the
    coefficient matrix (the ``1/n`` of the gradient rides on the per-sample factor), so after
    the first matrix product a step makes four passes over it (max, subtract, exp and sum,
    scale) plus index kernels on the ``n`` label entries per run.
    """
    n = X.shape[-2]
    log_n = math.log(n)
    zt = torch.matmul(W, X.transpose(-1, -2), out=workspace.logits)  # logits, (..., k, n)
    flat, label = zt.view(-1), workspace.label
    per_sample = zt.shape[:-2] + (1, n)
    z_label = flat.index_select(0, label).view(per_sample)
    flat.index_fill_(0, label, -math.inf)
    z_top = zt.amax(dim=-2, keepdim=True)
    e = zt.sub_(z_top).exp_()
    S = e.sum(dim=-2, keepdim=True)
    top = z_top.sub_(z_label)
    u = torch.log(S).add_(top)
    if loss == "ce":
        sp, log_ell = softplus_and_log(u)
        a = top - sp
    else:
        a, log_ell = top, u
    margin = -top.amax(dim=(-2, -1))
    log_scale = a.amax(dim=(-2, -1))
    f = a.sub_((log_scale + log_n)[..., None, None]).exp_()  # exp(a - log_scale) / n
    w_label = S.mul_(f)  # sum_c w~_ic / n
    e.mul_(f)
    flat.index_copy_(0, label, w_label.view(-1).neg())
    grad_tilde = torch.matmul(zt, X, out=workspace.grad)
    log_proxy = log_scale + torch.log(w_label.sum(dim=(-2, -1)))
    log_loss = torch.logsumexp(log_ell.flatten(-2), dim=-1) - log_n
    return Evaluation(log_loss, log_proxy, grad_tilde, log_scale, margin)


def _evaluate_native(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, loss: str,
                     workspace: Workspace) -> Evaluation:
    """:func:`_evaluate_factored` with the part between the two matrix products done by the
    C kernel of :mod:`harness.native` (same formulas, one cache-resident pass per run).

    Coefficients below ``e^-708`` come back as 0 in ``A`` (subnormal operands make the matrix
    product 4x slower); the kernel carries their part of ``A^T X`` separately, scaled into the
    normal range, and it is added after the product, so the gradient keeps every contribution
    the torch path keeps.
    """
    k, d, n = W.shape[-2], W.shape[-1], X.shape[-2]
    lead, lib = workspace.lead, workspace.native
    runs = math.prod(lead)
    zt = torch.matmul(W, X.transpose(-1, -2), out=workspace.logits)
    data = X if X.dim() == 2 or X.shape[:-2] == lead else X.expand(lead + X.shape[-2:])
    data = data.contiguous()  # a no-op for the engine's data
    A, G_lo = workspace.coefficients, workspace.dropped_part
    out = torch.empty((5,) + lead, dtype=W.dtype)  # fresh: callers may keep them
    pointer, step = out.data_ptr(), runs * out.element_size()
    lib.log_frame_ce(zt.data_ptr(), A.data_ptr(), workspace.labels.data_ptr(),
                     workspace.label_stride, data.data_ptr(), 0 if X.dim() == 2 else n * d, d,
                     runs, k, n, loss == "ce", *(pointer + i * step for i in range(5)),
                     G_lo.data_ptr(), workspace.scratch.data_ptr())
    grad_tilde = torch.matmul(A, X, out=workspace.grad)
    lib.add_dropped_contributions(grad_tilde.data_ptr(), G_lo.data_ptr(), pointer + 4 * step,
                                  runs, k * d)  # touches only the runs with dropped[b] > 0
    return Evaluation(out[0], out[1], grad_tilde, out[2], out[3])


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
