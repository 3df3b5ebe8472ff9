"""One-hidden-layer ReLU networks without biases, batched over runs (paper 002).

The model is ``f(x; theta) = A relu(U x)`` with hidden weights ``U`` (m x d) and output weights
``A`` (k_out x m). Without biases it is positively homogeneous: ``f(x; c theta) = c^L f(x; theta)``
for ``c > 0`` with ``L = 2`` when both layers train and ``L = 1`` when ``A`` is frozen (only
``U`` trains). Two heads:

* binary (``outputs = 1``, labels in {0, 1}): the scalar ``f`` is read as the logits
  ``z = (0, f)``, so the gap of sample i is ``y_i^pm f(x_i)`` with ``y^pm = 2 y - 1`` and the
  two-class exponential loss of :mod:`harness.losses` is paper 002's
  ``calL = sum_i exp(-y_i^pm f(x_i))``;
* multiclass (``outputs = k >= 3``): ``z = f(x)`` are the k logits; exponential loss or CE.

Everything the losses need is taken from :mod:`harness.losses` in the log domain: gaps
``r_ic = z_{i,y_i} - z_ic`` (:func:`harness.losses.logit_gaps`), log pair weights, the
cancellation-free coefficient matrix. The loss is the SUM over samples (paper 002's ``calL``,
whose ``log(1/calL)`` is the numerator of the soft margin), and its gradient comes as
``exp(log_scale) * grad_tilde`` with the largest pair weight scaled to 1, so nothing underflows
when ``calL`` is far below ``exp(-745)``.

Parameters: the trainable ones of a batch of B runs are one flat tensor ``theta`` of shape
``(B, P)`` (``U`` first, then ``A`` unless frozen); a frozen ``A`` travels separately as
``frozen`` of shape ``(B, k_out, m)``. Entrywise norms (l2, max, sum) act on the flat vector;
Schatten norms (spectral) act layer by layer and combine by the maximum (the modular norm of
paper 002 section 3.2), so spectral steepest descent on it is Shampoo without accumulation:
the spectral steepest direction of each layer's matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.errors import HarnessInputError
from harness.losses import coefficient_matrix, log_pair_weights, log_sample_losses, logit_gaps
from harness.norms import Norm

#: Losses a network can be trained with (names of :mod:`harness.losses`).
NETWORK_LOSSES = ("exp", "ce")


@dataclass(frozen=True)
class ReluNetwork:
    """The architecture ``f(x) = A relu(U x)`` (no biases).

    Attributes:
        d: input dimension.
        width: hidden width m.
        outputs: 1 for the binary scalar output, k >= 3 for k logits.
        frozen_output: True when ``A`` stays at its initialization (1-homogeneous model).
    """

    d: int
    width: int
    outputs: int = 1
    frozen_output: bool = False

    def __post_init__(self):
        for name in ("d", "width", "outputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HarnessInputError(f"{name} must be an integer >= 1, got {value!r}")
        if self.outputs == 2:
            raise HarnessInputError("outputs must be 1 (binary, labels 0/1) or k >= 3 "
                                    "(multiclass); two classes use the binary head")

    @property
    def homogeneity(self) -> int:
        """``L``: 2 with both layers trained, 1 with the output layer frozen."""
        return 1 if self.frozen_output else 2

    @property
    def classes(self) -> int:
        """Number of classes: 2 for the binary head, else ``outputs``."""
        return 2 if self.outputs == 1 else self.outputs

    @property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """Shapes of the trainable layers in ``theta`` order: ``U`` then (unless frozen) ``A``."""
        hidden = (self.width, self.d)
        return (hidden,) if self.frozen_output else (hidden, (self.outputs, self.width))

    @property
    def n_params(self) -> int:
        """``P``, the length of the trainable vector."""
        return sum(rows * cols for rows, cols in self.layer_shapes)

    @property
    def name(self) -> str:
        """Short model name for reports: ``relu-L2`` or ``relu-L1-frozen``."""
        return "relu-L1-frozen" if self.frozen_output else "relu-L2"

    def layers(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """Views of the trainable layers, each ``(..., rows, cols)``, in ``theta`` order."""
        out, start = [], 0
        for rows, cols in self.layer_shapes:
            stop = start + rows * cols
            out.append(theta[..., start:stop].unflatten(-1, (rows, cols)))
            start = stop
        return out

    def weights(self, theta: torch.Tensor, frozen: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(U, A)`` of shapes ``(..., m, d)`` and ``(..., k_out, m)``."""
        layers = self.layers(theta)
        if self.frozen_output:
            if frozen is None:
                raise HarnessInputError("the frozen-output model needs its output weights")
            return layers[0], frozen
        return layers[0], layers[1]


def init_parameters(net: ReluNetwork, seeds, scale: float | Sequence[float], *,
                    frozen_scale: float | None = None, device="cpu", dtype=torch.float64
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Small random initialization, one run per seed: every entry of ``U`` and ``A`` iid
    ``N(0, scale^2)`` (all parameters on one scale, as paper 002 asks for coordinate descent).
    ``scale`` is one number for every run or one per seed (a run initialized outside the
    small-initialization regime next to the others: it rescales the same draw, so runs that
    differ only in scale start from the same direction ``theta_0 / ||theta_0||``).

    For the frozen-output model the fixed ``A`` may have its own scale ``frozen_scale``
    (default ``scale``): ``f = A relu(U x)`` is 1-homogeneous in ``U``, so ``A``'s scale sets
    how far a normalized step of ``U`` moves the outputs (a step ``eta`` with ``A`` at scale
    ``c`` moves them as a step ``c eta`` with ``A`` at scale 1), while ``A`` never grows.

    Returns ``(theta, frozen)``: ``theta`` of shape ``(B, P)``; ``frozen`` the fixed output
    weights ``(B, k_out, m)`` for the frozen model, else None. Each run draws from its own
    ``torch.Generator`` seeded with its seed, so a run does not depend on the batch around it;
    ``frozen_scale`` rescales the same draw.
    """
    seeds = list(seeds)
    scales = list(scale) if isinstance(scale, (list, tuple)) else [scale] * len(seeds)
    if len(scales) != len(seeds):
        raise HarnessInputError(f"init scales must be one number or one per seed: "
                                f"{len(scales)} scales for {len(seeds)} seeds")
    for value in scales:
        _check_scale(value, "init scale")
    if frozen_scale is not None:
        if not net.frozen_output:
            raise HarnessInputError("frozen_scale applies to the frozen-output model only")
        _check_scale(frozen_scale, "frozen scale")
    size = net.width * net.d + net.outputs * net.width
    draws = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        draws.append(torch.randn(size, generator=gen, dtype=dtype))
    full = torch.stack(draws).to(device)
    scale = torch.tensor(scales, dtype=dtype, device=device)[:, None]
    if not net.frozen_output:
        return scale * full, None
    hidden = net.width * net.d
    output_scale = scale if frozen_scale is None else frozen_scale
    output = (output_scale * full[:, hidden:]).unflatten(-1, (net.outputs, net.width))
    return (scale * full[:, :hidden]).contiguous(), output


def _check_scale(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise HarnessInputError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class Forward:
    """Intermediate values of one forward pass (kept for the backward pass).

    Attributes:
        pre: ``U x_i`` for every sample, ``(B, n, m)``.
        hidden: ``relu(pre)``, ``(B, n, m)``.
        logits: ``(B, n, K)``: ``(0, f)`` for the binary head, ``f`` otherwise.
    """

    pre: torch.Tensor
    hidden: torch.Tensor
    logits: torch.Tensor


def forward(net: ReluNetwork, theta: torch.Tensor, X: torch.Tensor,
            frozen: torch.Tensor | None = None) -> Forward:
    """Forward pass; ``X`` is ``(n, d)`` (shared) or ``(B, n, d)`` (one data set per run)."""
    U, A = net.weights(theta, frozen)
    pre = X @ U.mT
    hidden = torch.relu(pre)
    out = hidden @ A.mT
    if net.outputs == 1:
        out = torch.cat([torch.zeros_like(out), out], dim=-1)
    return Forward(pre, hidden, out)


def backward(net: ReluNetwork, theta: torch.Tensor, X: torch.Tensor, fwd: Forward,
             d_logits: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_{i,c} d_logits[i, c] * grad_theta z_ic``, flat ``(B, P)``.

    With ``delta = d_logits`` on the outputs (binary: its class-1 column, since ``z_0 = 0``):
    ``grad_A = delta^T relu(U X^T)^T`` and ``grad_U = ((delta A) * 1[U x > 0])^T X``
    (the ReLU's derivative at 0 taken as 0, an element of its Clarke subdifferential).
    """
    U, A = net.weights(theta, frozen)
    delta = d_logits[..., 1:] if net.outputs == 1 else d_logits
    back = (delta @ A) * (fwd.pre > 0).to(delta.dtype)
    grads = [back.mT @ X]
    if not net.frozen_output:
        grads.append(delta.mT @ fwd.hidden)
    return torch.cat([g.flatten(start_dim=-2) for g in grads], dim=-1)


def check_loss(loss: str) -> str:
    """Return ``loss`` if a network can train with it, else raise a one-line error."""
    if loss not in NETWORK_LOSSES:
        raise HarnessInputError(f"unknown network loss {loss!r}; choose one of "
                                f"{', '.join(NETWORK_LOSSES)}")
    return loss


@dataclass(frozen=True)
class NetworkEvaluation:
    """Loss, scaled gradient and margin of a batch of networks, without underflow.

    Attributes:
        log_loss: ``log calL`` with ``calL = sum_i ell_i`` (a sum, paper 002), ``(B,)``.
        grad_tilde: ``grad calL / exp(log_scale)``, ``(B, P)``, largest pair weight 1.
        log_scale: ``max_ic log w_ic``, the frame of ``grad_tilde``, ``(B,)``.
        margin: ``min_i min_{c != y_i} r_ic`` (binary: ``min_i y_i^pm f(x_i)``), ``(B,)``.
        accuracy: fraction of samples with every gap > 0, ``(B,)``.
    """

    log_loss: torch.Tensor
    grad_tilde: torch.Tensor
    log_scale: torch.Tensor
    margin: torch.Tensor
    accuracy: torch.Tensor


def sample_gaps(net: ReluNetwork, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                frozen: torch.Tensor | None = None) -> torch.Tensor:
    """``min_{c != y_i} r_ic`` per sample, ``(B, n)`` (binary: ``y_i^pm f(x_i)``)."""
    gaps = logit_gaps(forward(net, theta, X, frozen).logits, y)
    return gaps.amin(dim=-1)


def evaluate(net: ReluNetwork, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
             loss: str = "exp", frozen: torch.Tensor | None = None) -> NetworkEvaluation:
    """One forward and backward pass in the log domain (see the module docstring).

    ``d calL / d z_i = -A_i`` with the coefficient matrix ``A`` of :mod:`harness.losses`
    (label entry a sum of positive pair weights, never a subtraction).
    """
    fwd = forward(net, theta, X, frozen)
    r = logit_gaps(fwd.logits, y)
    log_w = log_pair_weights(r, loss)
    log_scale = log_w.amax(dim=(-2, -1))
    w_tilde = torch.exp(log_w - log_scale[..., None, None])
    d_logits = -coefficient_matrix(w_tilde, y)
    grad_tilde = backward(net, theta, X, fwd, d_logits, frozen)
    log_loss = torch.logsumexp(log_sample_losses(r, loss), dim=-1)
    per_sample = r.amin(dim=-1)
    accuracy = (per_sample > 0).to(theta.dtype).mean(dim=-1)
    return NetworkEvaluation(log_loss, grad_tilde, log_scale, per_sample.amin(dim=-1), accuracy)


def gap_jacobian(net: ReluNetwork, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                 frozen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every margin constraint of one network and its gradient.

    For a single run (``theta`` of shape ``(P,)``, ``X`` ``(n, d)``, ``y`` ``(n,)``, ``frozen``
    ``(k_out, m)`` or None) returns ``(gaps, J)``: ``gaps`` ``(C,)`` are the gaps ``r_ic``
    for every pair ``c != y_i`` (binary: ``C = n`` and ``r_i = y_i^pm f(x_i)``) and ``J``
    ``(C, P)`` their gradients in ``theta``, computed by :func:`backward` with the seed
    ``e_{i,y_i} - e_{ic}`` on the logits of sample i (one batch entry per pair).
    """
    fwd = forward(net, theta, X, frozen)
    r = logit_gaps(fwd.logits, y)
    pairs = torch.isfinite(r).nonzero()
    n, K = r.shape
    seeds = torch.zeros(len(pairs), n, K, dtype=theta.dtype, device=theta.device)
    rows = torch.arange(len(pairs), device=theta.device)
    seeds[rows, pairs[:, 0], y[pairs[:, 0]]] = 1.0
    seeds[rows, pairs[:, 0], pairs[:, 1]] -= 1.0
    batch = len(pairs)
    fwd_b = Forward(*(v.expand(batch, *v.shape) for v in (fwd.pre, fwd.hidden, fwd.logits)))
    frozen_b = None if frozen is None else frozen.expand(batch, *frozen.shape)
    J = backward(net, theta.expand(batch, -1), X, fwd_b, seeds, frozen_b)
    return r[pairs[:, 0], pairs[:, 1]], J


# ----------------------------------------------------------------------------------------------
# Norms of the parameter vector
# ----------------------------------------------------------------------------------------------

def parameter_norm(net: ReluNetwork, theta: torch.Tensor, norm: str | Norm) -> torch.Tensor:
    """``N(theta)``, ``(...)``: an entrywise norm of the flat vector, or for a Schatten norm
    the largest of the layers' norms (modular norm; spectral: ``max_l ||W_l||_2``)."""
    N = Norm.parse(norm)
    if N.family == "entrywise":
        return N.value(theta[..., None, :])
    return torch.stack([N.value(layer) for layer in net.layers(theta)]).amax(dim=0)


def parameter_dual_norm(net: ReluNetwork, G: torch.Tensor, norm: str | Norm) -> torch.Tensor:
    """The dual of :func:`parameter_norm`: the flat vector's dual norm, or for a Schatten norm
    the sum over layers of the layers' dual norms (dual of a max is the sum of the duals)."""
    N = Norm.parse(norm)
    if N.family == "entrywise":
        return N.dual_value(G[..., None, :])
    return torch.stack([N.dual_value(layer) for layer in net.layers(G)]).sum(dim=0)


def acts_per_layer(norm: str | Norm) -> bool:
    """Whether steepest descent in ``norm`` acts layer by layer (Schatten norms: Shampoo
    without accumulation) rather than on the flat parameter vector (entrywise norms)."""
    return Norm.parse(norm).family == "schatten"
