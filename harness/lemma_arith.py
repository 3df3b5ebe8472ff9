"""Two arithmetics for the lemma catalogue: float64 (the search) and mpmath (the verdict).

Each lemma of :mod:`harness.lemmas` writes its two sides ONCE, as code over an arithmetic
object; running that code with :data:`FLOAT64` gives the fast float64 ratio that hypothesis's
``target()`` climbs, running it with a :class:`Precise` instance gives the mpmath verdict.
Both arithmetics call the one implementation of every quantity:

* float64: the log-domain torch kernels of :mod:`harness.losses` and :mod:`harness.norms`
  (so the search also exercises the engine's own numerics);
* mpmath: the reference :mod:`harness.precise` at the working precision (set by the caller with
  :func:`harness.precise.precision`).

Arrays are numpy arrays: float64 for :data:`FLOAT64`, dtype ``object`` holding mpf for
:class:`Precise`, so elementwise numpy code (``+``, ``*``, ``abs``, ``.sum()``, ``.max()``)
works unchanged in both; transcendental functions go through the arithmetic (``ar.exp``...).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import mpmath
import numpy as np
import torch

from harness import losses, precise
from harness.norms import Norm, steepest_direction


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


class Float64Arithmetic:
    """float64 through :mod:`harness.losses` / :mod:`harness.norms` (numpy in, numpy out).

    Quantities that underflow come out as 0.0 (the search then simply has no ratio to climb);
    ``log_loss`` / ``log_proxy`` stay finite. Nothing here decides a verdict.
    """

    name = "float64"
    #: Relative tolerance of identities evaluated in this arithmetic (about 1e5 ulps).
    identity_tol = 1e-11

    def array(self, A) -> np.ndarray:
        """``A`` as a float64 array."""
        return np.asarray(A, dtype=np.float64)

    def scalar(self, x) -> float:
        """``x`` as a float."""
        return float(x)

    def fsum(self, values: Iterable) -> float:
        """Exactly rounded sum."""
        return math.fsum(float(v) for v in values)

    exp, log, log1p, expm1, sqrt = (staticmethod(np.exp), staticmethod(np.log),
                                    staticmethod(np.log1p), staticmethod(np.expm1),
                                    staticmethod(np.sqrt))

    def log_expm1_exp(self, u):
        """``log(exp(exp(u)) - 1)``, accurate for very negative ``u`` (where it is ``u``)."""
        u = float(u)
        if u < -30.0:
            return u + 0.5 * math.exp(u)
        return float(np.log(np.expm1(np.exp(u))))

    def evaluate(self, W, X, y, loss: str = "ce") -> losses.Evaluation:
        """:func:`harness.losses.evaluate` on numpy input (no validation: strategies are valid)."""
        return losses.evaluate(_tensor(W), _tensor(X), torch.as_tensor(y), loss)

    def log_loss(self, W, X, y, loss: str = "ce") -> float:
        return float(self.evaluate(W, X, y, loss).log_loss)

    def log_proxy(self, W, X, y, loss: str = "ce") -> float:
        return float(self.evaluate(W, X, y, loss).log_proxy)

    def loss(self, W, X, y, loss: str = "ce") -> float:
        return math.exp(self.log_loss(W, X, y, loss))

    def proxy(self, W, X, y, loss: str = "ce") -> float:
        return math.exp(self.log_proxy(W, X, y, loss))

    def gradient(self, W, X, y, loss: str = "ce") -> np.ndarray:
        return self.evaluate(W, X, y, loss).gradient.numpy()

    def pair_weights(self, W, X, y, loss: str = "ce") -> np.ndarray:
        """``w_ic`` (0 on the label entry), n x k."""
        r = losses.pairwise_gaps(_tensor(W), _tensor(X), torch.as_tensor(y))
        return torch.exp(losses.log_pair_weights(r, loss)).numpy()

    def gaps(self, A, X, y) -> np.ndarray:
        """``r_ic = (e_{y_i} - e_c)^T A x_i`` (0 on the label entry), n x k."""
        r = losses.pairwise_gaps(_tensor(A), _tensor(X), torch.as_tensor(y))
        return torch.where(torch.isinf(r), torch.zeros_like(r), r).numpy()

    def margin(self, W, X, y) -> float:
        return float(losses.margin(_tensor(W), _tensor(X), torch.as_tensor(y)))

    def class_proxies(self, W, X, y, loss: str = "ce") -> tuple[np.ndarray, np.ndarray]:
        G_c, Q_c = losses.class_proxies(_tensor(W), _tensor(X), torch.as_tensor(y), loss)
        return G_c.numpy(), Q_c.numpy()

    def softmax_rows(self, W, X) -> np.ndarray:
        """``s_i = softmax(W x_i)`` for every sample, n x k."""
        return torch.softmax(losses.logits(_tensor(W), _tensor(X)), dim=-1).numpy()

    def softmax(self, z) -> np.ndarray:
        return torch.softmax(_tensor(z), dim=-1).numpy()

    def norm(self, A, spec) -> float:
        return float(Norm.parse(spec).value(_tensor(A)))

    def dual_norm(self, A, spec) -> float:
        return float(Norm.parse(spec).dual_value(_tensor(A)))

    def steepest(self, G, spec) -> np.ndarray:
        return steepest_direction(_tensor(G), spec).numpy()

    def inner(self, A, B) -> float:
        return float(np.sum(np.asarray(A) * np.asarray(B)))

    def gamma(self, certificate) -> float:
        """The search uses the upper end of a certified ``gamma_N`` bracket."""
        return float(certificate.upper)

    def directional_derivative(self, W, A, X, y, loss: str = "ce") -> float:
        """``d/dt L(W + t A)`` at 0 by torch autograd through the log-domain kernels
        (``log L = logsumexp_i log ell_i - log n``; :func:`harness.losses.evaluate` itself
        works in place and is not differentiable)."""
        t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        r = losses.pairwise_gaps(_tensor(W) + t * _tensor(A), _tensor(X), torch.as_tensor(y))
        log_L = torch.logsumexp(losses.log_sample_losses(r, loss), dim=-1) - math.log(len(y))
        (d_log_L,) = torch.autograd.grad(log_L, t)
        return float(d_log_L) * math.exp(log_L.item())


class Precise:
    """mpmath at the working precision through :mod:`harness.precise`.

    Args:
        gamma_side: which end of a certified max-margin bracket ``[lower, upper]``
            :meth:`gamma` hands out ("upper" or "lower"); the lemma
            runner picks the side that makes a verdict sound (see :mod:`harness.lemma_search`).
    """

    name = "mpmath"

    def __init__(self, gamma_side: str = "upper"):
        self.gamma_side = gamma_side

    @property
    def identity_tol(self) -> mpmath.mpf:
        """Relative tolerance of identities: 15 digits short of the working precision."""
        return mpmath.mpf(10) ** (15 - mpmath.mp.dps)

    def array(self, A) -> np.ndarray:
        """``A`` as an object array of mpf (float64 entries converted exactly)."""
        arr = np.asarray(A, dtype=object)
        out = np.empty(arr.shape, dtype=object)
        out.flat[:] = [v if isinstance(v, mpmath.mpf) else mpmath.mpf(float(v))
                       for v in arr.flat]
        return out

    def scalar(self, x) -> mpmath.mpf:
        return x if isinstance(x, mpmath.mpf) else mpmath.mpf(float(x))

    def fsum(self, values: Iterable) -> mpmath.mpf:
        return mpmath.fsum(values)

    exp, log, log1p, expm1, sqrt = (staticmethod(mpmath.exp), staticmethod(mpmath.log),
                                    staticmethod(mpmath.log1p), staticmethod(mpmath.expm1),
                                    staticmethod(mpmath.sqrt))

    def log_expm1_exp(self, u):
        return mpmath.log(mpmath.expm1(mpmath.exp(u)))

    def loss(self, W, X, y, loss: str = "ce"):
        return precise.loss(W, X, y, loss)

    def proxy(self, W, X, y, loss: str = "ce"):
        return precise.proxy(W, X, y, loss)

    def log_loss(self, W, X, y, loss: str = "ce"):
        return mpmath.log(self.loss(W, X, y, loss))

    def log_proxy(self, W, X, y, loss: str = "ce"):
        return mpmath.log(self.proxy(W, X, y, loss))

    def gradient(self, W, X, y, loss: str = "ce") -> np.ndarray:
        return self.array(precise.gradient(W, X, y, loss))

    def pair_weights(self, W, X, y, loss: str = "ce") -> np.ndarray:
        return self.array(precise.pair_weights(W, X, y, loss))

    def gaps(self, A, X, y) -> np.ndarray:
        rows = precise.gaps(A, X, y)
        return self.array([[mpmath.mpf(0) if r is None else r for r in row] for row in rows])

    def margin(self, W, X, y):
        return precise.margin(W, X, y)

    def class_proxies(self, W, X, y, loss: str = "ce") -> tuple[np.ndarray, np.ndarray]:
        G_c, Q_c = precise.class_proxies(W, X, y, loss)
        return self.array(G_c), self.array(Q_c)

    def softmax_rows(self, W, X) -> np.ndarray:
        return self.array([precise.softmax(z) for z in precise.logits(W, X)])

    def softmax(self, z) -> np.ndarray:
        return self.array(precise.softmax(z))

    def norm(self, A, spec):
        return precise.norm(A, spec)

    def dual_norm(self, A, spec):
        return precise.dual_norm(A, spec)

    def steepest(self, G, spec) -> np.ndarray:
        return self.array(precise.steepest_direction(G, spec))

    def inner(self, A, B):
        return mpmath.fsum((self.array(A) * self.array(B)).flat)

    def gamma(self, certificate) -> mpmath.mpf:
        """The ``gamma_side`` end of a certified ``gamma_N`` bracket, as an exact mpf."""
        end = certificate.upper if self.gamma_side == "upper" else certificate.lower
        return mpmath.mpf(float(end))

    def directional_derivative(self, W, A, X, y, loss: str = "ce"):
        """``d/dt L(W + t A)`` at 0 by :func:`mpmath.diff` (numerical, at raised precision)."""
        Wm, Am = self.array(W), self.array(A)
        return mpmath.diff(lambda t: precise.loss(Wm + t * Am, X, y, loss), 0)


#: The search arithmetic (stateless, shared).
FLOAT64 = Float64Arithmetic()
