"""The Stiefel manifold of ``n x p`` matrices with orthonormal columns."""

import torch

from riemtorch import config
from riemtorch.linalg.symmetric import sym
from riemtorch.manifolds import stiefel_math as sm
from riemtorch.manifolds.base import Manifold, broadcast_batch, checks_inputs, input_tolerance

_METRICS = {"euclidean": 1.0, "canonical": 0.5}
_RETRACTIONS = ("qr", "polar", "cayley", "exp")


def _orthonormality_error(x: torch.Tensor) -> torch.Tensor:
    p = x.shape[-1]
    eye = torch.eye(p, dtype=x.dtype, device=x.device)
    gram = x.transpose(-1, -2) @ x
    return (gram - eye).abs().amax() if gram.numel() else torch.zeros((), dtype=x.dtype)


def _project_tangent(x, u):
    """``u - x sym(x^T u)``: the projection onto the tangent space at ``x``."""
    return u - x @ sym(x.transpose(-1, -2) @ u)


def check_matrix_shape(shape, name: str):
    """``(ok, reason)`` for a tall ``(..., n, p)`` shape with ``n >= p >= 1``."""
    if len(shape) < 2:
        return False, f"{name} must have shape (..., n, p), got {tuple(shape)}"
    if not shape[-2] >= shape[-1] >= 1:
        return False, f"{name} must have shape (..., n, p) with n >= p >= 1, got {tuple(shape)}"
    return True, None


def check_size(n, p) -> None:
    """Raise for point sizes that are not integers with ``n >= p >= 1``."""
    if not (isinstance(n, int) and isinstance(p, int)):
        raise TypeError(f"n and p must be ints, got {type(n).__name__} and {type(p).__name__}")
    if not n >= p >= 1:
        raise ValueError(f"need n >= p >= 1, got n={n}, p={p}")


def check_projection(q: torch.Tensor) -> torch.Tensor:
    """``q``, the polar factor of an input, after checking with validation on that its columns
    are orthonormal (to the input tolerance of its dtype): they are not where the input was
    rank deficient."""
    if config.validating():
        err = float(_orthonormality_error(q.detach()))
        if not err <= input_tolerance(q.dtype):
            raise ValueError("cannot project: the input is rank deficient or too ill-conditioned "
                             f"for its polar factor (max |Q^T Q - I| = {err:.3g} after it)")
    return q


def _check_option(value, allowed, name):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


class Stiefel(Manifold):
    """Matrices ``X`` of shape ``(..., n, p)`` with ``X^T X = I_p``.

    Parameters
    ----------
    metric : {"euclidean", "canonical"}
        ``"euclidean"``: ``<U, V> = tr(U^T V)`` (the metric of the embedding);
        ``"canonical"``: ``<U, V> = tr(U^T (I - X X^T / 2) V)`` (the quotient metric of
        ``O(n) / O(n - p)``). Edelman, Arias & Smith (1998).
    retraction : {"qr", "polar", "cayley", "exp"}
        What :meth:`retr` computes: the ``Q`` factor of ``X + U`` (``diag(R) > 0``), the polar
        factor of ``X + U`` (the metric projection, second order), the Cayley transform
        ``(I - W/2)^(-1)(I + W/2) X`` with the skew ``W = P U X^T - X U^T P``,
        ``P = I - X X^T / 2`` (Wen & Yin 2013, solved as a ``2p x 2p`` system), or the exact
        exponential map.

    Notes
    -----
    :meth:`expmap` is the exact geodesic of the chosen metric (a ``2p x 2p`` matrix exponential).
    :meth:`logmap` has no closed form; it runs the algebraic Stiefel logarithm (Zimmermann 2017
    for the canonical metric, the forward iteration of Mataigne, Zimmermann & Miolane 2025 for
    the Euclidean one) to a residual of ``1e-13``, which converges for points that are not too
    far apart (about ``0.9 pi`` in the canonical distance). :meth:`dist` is the norm of the
    logarithm. :meth:`transp` is the projection ``proju(y, v)``, a vector transport (Stiefel
    has no closed-form parallel transport). The origin is ``I_{n,p} = [I_p; 0]``.

    Examples
    --------
    >>> import torch, riemtorch
    >>> st = riemtorch.Stiefel(metric="canonical")
    >>> x = st.random(4, n=5, p=2, dtype=torch.float64)
    >>> u = st.proju(x, torch.randn(4, 5, 2, dtype=torch.float64))
    >>> y = st.expmap(x, 0.1 * u)
    >>> bool(torch.allclose(st.logmap(x, y), 0.1 * u))
    True
    """

    ndim = 2

    def __init__(self, metric: str = "euclidean", retraction: str = "qr"):
        super().__init__()
        _check_option(metric, _METRICS, "metric")
        _check_option(retraction, _RETRACTIONS, "retraction")
        self.metric = metric
        self.retraction = retraction
        self.beta = _METRICS[metric]

    def extra_repr(self) -> str:
        return f"metric={self.metric!r}, retraction={self.retraction!r}"

    # ---- checks ----------------------------------------------------------------------------
    def _check_shape(self, shape, name):
        return check_matrix_shape(shape, name)

    def _check_point_on_manifold(self, x, atol, rtol):
        err = _orthonormality_error(x)
        if bool(err > atol):
            return False, f"X^T X differs from I by {float(err):.3g} (tolerance {atol:g})"
        return True, None

    def _check_vector_on_tangent(self, x, u, atol, rtol):
        s = sym(x.transpose(-1, -2) @ u)
        err = s.abs().amax() if s.numel() else torch.zeros(())
        if bool(err > atol):
            return False, f"X^T U is not skew-symmetric: max |sym| = {float(err):.3g} (tol {atol:g})"
        return True, None

    # ---- geometry ----------------------------------------------------------------------------
    @checks_inputs("ambient")
    def projx(self, x):
        """The nearest point in Frobenius norm: the polar factor of ``x``
        (:func:`~riemtorch.manifolds.stiefel_math.projection_polar`). With validation on,
        ``ValueError`` for a rank-deficient ``x`` (or one too ill-conditioned for its polar
        factor), which has no such point."""
        return check_projection(sm.projection_polar(x))

    @checks_inputs("point", "ambient")
    def proju(self, x, u):
        return _project_tangent(x, u)

    @checks_inputs("point", "ambient")
    def egrad2rgrad(self, x, g):
        if self.metric == "canonical":
            return g - x @ (g.transpose(-1, -2) @ x)
        return _project_tangent(x, g)

    @checks_inputs("point", "tangent vector", "tangent vector")
    def inner(self, x, u, v=None, keepdim=False):
        v = u if v is None else v
        prod = (u * v).sum(dim=(-2, -1), keepdim=keepdim)
        if self.metric == "canonical":
            xu = x.transpose(-1, -2) @ u
            xv = xu if v is u else x.transpose(-1, -2) @ v
            prod = prod - 0.5 * (xu * xv).sum(dim=(-2, -1), keepdim=keepdim)
        return broadcast_batch(prod, x, self.ndim, keepdim)

    @checks_inputs("point", "tangent vector")
    def expmap(self, x, u):
        return sm.stiefel_expmap(x, u, self.beta)

    @checks_inputs("point", "point")
    def logmap(self, x, y):
        return sm.stiefel_logmap(x, y, self.beta)

    @checks_inputs("point", "tangent vector")
    def retr(self, x, u):
        if self.retraction == "qr":
            return sm.qr_orthonormal(x + u)
        if self.retraction == "polar":
            return sm.polar(x + u)
        if self.retraction == "cayley":
            return self._cayley(x, u)
        return sm.stiefel_expmap(x, u, self.beta)

    def _cayley(self, x, u):
        x, u = torch.broadcast_tensors(x, u)
        half = u - 0.5 * x @ (x.transpose(-1, -2) @ u)
        # W = half X^T - X half^T satisfies W X = U for tangent U.
        left = torch.cat((half, x), -1)
        right = torch.cat((x, -half), -1)
        return sm.cayley_transform(x, left, right, u)

    @checks_inputs("point", "point", "tangent vector")
    def transp(self, x, y, v):
        return _project_tangent(y, v)

    def random(self, *size, n=3, p=2, dtype=None, device=None, generator=None):
        """Haar-uniform points: the ``Q`` factor (``diag(R) > 0``) of a Gaussian ``(*size, n, p)``."""
        check_size(n, p)
        g = torch.randn(*size, n, p, dtype=dtype, device=device, generator=generator)
        return sm.qr_orthonormal(g)

    def origin(self, *size, n=3, p=2, dtype=None, device=None):
        """``I_{n,p} = [I_p; 0]`` with batch shape ``size``."""
        check_size(n, p)
        e = torch.eye(n, p, dtype=dtype, device=device)
        return e.expand(*size, n, p).clone()

    def origin_like(self, x):
        return self.origin(*x.shape[:-2], n=x.shape[-2], p=x.shape[-1], dtype=x.dtype,
                           device=x.device)
