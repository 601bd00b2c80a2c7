"""Formulas of the Grassmann manifold on orthonormal bases ``(..., n, p)``.

A point is a basis ``X`` (``X^T X = I``) of a ``p``-dimensional subspace of ``R^n``; a tangent
vector is its horizontal lift, ``X^T U = 0``. Everything is written with functions of small
``p x p`` matrices evaluated from one decomposition (an ``eigh`` through :mod:`spectral_funcs`,
or an SVD with a backward written out below) instead of autograd through SVDs, so that gradients
are finite at repeated principal angles (e.g. at ``x = y``).

With ``M = X^T Y``, ``P = (I - X X^T) Y`` and principal angles ``theta_i`` between the
subspaces (``M = W diag(cos theta) V^T``, so ``P^T P = V diag(sin^2 theta) V^T``):

* ``Exp_X(U) = X cos(sqrt(U^T U)) + U sinc(sqrt(U^T U))`` (Edelman, Arias & Smith 1998);
* ``Log_X(Y) = P V diag(theta / sin theta) W^T``, i.e. ``P f(P^T P) M^T`` with
  ``f(s) = asin(sqrt s) / sqrt(s (1 - s))``. This is the SVD-based algorithm of Bendokat,
  Zimmermann & Absil ("A Grassmann manifold handbook", Alg. 5.3) in closed form: their
  Procrustes step ``Y* = Y O`` with the orthogonal polar factor ``O`` of ``Y^T X``, then
  ``Q S R^T = (I - X X^T) Y*`` and ``Log = Q asin(S) R^T``, reduce to the expression above.
  ``Exp_X(Log_X(Y)) = Y*``, the basis of ``span(Y)`` aligned with ``X`` (``X^T Y*`` symmetric
  positive semi-definite);
* ``d(X, Y)^2 = sum theta_i^2`` (the convention of pymanopt; the projector embedding of
  geomstats gives ``sqrt 2`` times this).

Angles near ``pi / 2`` are read from the singular values ``cos theta`` of ``M``, which the SVD
gives to an absolute error of about ``eps``; ``1 - s`` with ``s`` an eigenvalue of ``P^T P``
would give ``cos^2 theta`` only to an absolute ``eps`` (float64: the logarithm off by ``4e-5``
relatively at ``cos theta = 1e-6``, infinite at ``1e-9``). ``theta / sin theta`` varies
slowly, so the logarithm needs it only to an absolute ``eps`` near 0; the distance needs small
angles to full relative precision and takes ``sin theta_i = |P v_i|``. Float32 input is
decomposed in float64 (:mod:`riemtorch.config`). On CPU a batch of ``p x p`` SVDs costs about
twice as much as ``eigh`` of the same size (1024 matrices of 3 x 3: 2.8 ms against 1.5 ms).
"""

import torch

from riemtorch.linalg.batched import map_batch_chunks
from riemtorch.linalg.first_order import first_order
from riemtorch.linalg.symmetric import apply_spectral, as_dtype, sym, working_dtype
from riemtorch.manifolds.spectral_funcs import (
    ACOS_OVER_SIN,
    COS_SQRT,
    SINC_SQRT,
    VERSINE_SQRT,
    angle_over_sine,
)

__all__ = [
    "grassmann_expmap",
    "grassmann_logmap",
    "grassmann_dist2",
    "grassmann_transp",
    "rotate_from_origin_frame",
    "log_at_origin",
]


def _gram(a: torch.Tensor) -> torch.Tensor:
    return sym(a.transpose(-1, -2) @ a)


def grassmann_expmap(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``Exp_x(u) = x cos(sqrt(u^T u)) + u sinc(sqrt(u^T u))`` for horizontal ``u``.

    Parameters
    ----------
    x, u : torch.Tensor
        Bases and horizontal tangent vectors, shape ``(..., n, p)``.

    Returns
    -------
    torch.Tensor
        A basis of the end point, shape ``(..., n, p)``, aligned with ``x`` (``x^T Exp``
        symmetric).
    """
    cos, sinc = apply_spectral(_gram(u), (COS_SQRT, SINC_SQRT))
    return x @ cos + u @ sinc


def _angles_frame(x: torch.Tensor, y: torch.Tensor):
    x, y = torch.broadcast_tensors(x, y)
    m = x.transpose(-1, -2) @ y
    return m, y - x @ m


def _svd(m: torch.Tensor):
    """``(W, cos, V)`` with ``M = W diag(cos) V^T`` for ``(..., p, p)``, in the working dtype and
    without gradient."""
    m = m.detach().to(working_dtype(m.dtype))
    # LAPACK's SVD raises on non-finite input; such a matrix gets NaN singular values instead,
    # so NaN propagates to the results as through the eigh-based formulas.
    finite = torch.isfinite(m).all(-1).all(-1)
    w, cos, vh = map_batch_chunks(torch.linalg.svd, torch.where(finite[..., None, None], m, 0.0))
    cos = torch.where(finite[..., None], cos, torch.nan)
    return w, cos, vh.transpose(-1, -2)


class _LogFactor(torch.autograd.Function):
    """``K = V diag(h(cos theta)) W^T`` with ``h(c) = acos(c) / sqrt(1 - c^2)`` from
    ``M = W diag(cos theta) V^T``, shape ``(..., p, p)``; ``Log = P K``.

    ``K = g(M^T M) M^T`` with ``g(b) = h(sqrt b) / sqrt b`` is a smooth function of ``M``
    wherever ``M`` is invertible (:data:`ACOS_OVER_SIN` continues ``h`` analytically above
    ``c = 1``, where input perturbed off the manifold takes it). Its backward: with
    ``H = V^T G W`` (``G`` the gradient of ``K``), ``dM = W X V^T`` where
    ``X = D- o sym(H) - D+ o skew(H)``,
    ``D-_ij = (h_i - h_j) / (c_i - c_j)`` (``h'`` at ties: the divided differences of
    :data:`ACOS_OVER_SIN`) and ``D+_ij = (h_i + h_j) / (c_i + c_j)``; no ``1 / (c_i - c_j)``
    appears, so it is finite at repeated angles. ``D-`` is bounded; ``D+`` reaches
    ``1 / (cos theta_i + cos theta_j)``, the conditioning of the logarithm itself when two
    angles approach ``pi / 2`` (set to 0 where both are exactly ``pi / 2``).
    """

    @staticmethod
    def forward(ctx, m):
        w, cos, v = _svd(m)
        h = ACOS_OVER_SIN.f(cos)
        ctx.save_for_backward(w, cos, v, h)
        ctx.input_dtype = m.dtype
        return as_dtype((v * h.unsqueeze(-2)) @ w.transpose(-1, -2), m.dtype)

    @staticmethod
    @first_order
    def backward(ctx, grad):
        w, cos, v, h = ctx.saved_tensors
        vt = v.transpose(-1, -2)
        inner = vt @ grad.to(w.dtype) @ w
        inner_t = inner.transpose(-1, -2)
        den = cos.unsqueeze(-1) + cos.unsqueeze(-2)
        zero = den == 0
        plus = torch.where(zero, 0.0, (h.unsqueeze(-1) + h.unsqueeze(-2))
                           / torch.where(zero, 1.0, den))
        x = 0.5 * (ACOS_OVER_SIN.loewner(cos) * (inner + inner_t) - plus * (inner - inner_t))
        return (w @ x @ vt).to(ctx.input_dtype)


def grassmann_logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Log_x(y) = P V diag(theta / sin theta) W^T`` (Bendokat et al.'s algorithm in closed
    form).

    Parameters
    ----------
    x, y : torch.Tensor
        Bases, shape ``(..., n, p)``; all principal angles below ``pi / 2``.

    Returns
    -------
    torch.Tensor
        The horizontal lift at ``x`` of the logarithm, shape ``(..., n, p)``; it depends only on
        ``span(y)``, not on the basis ``y``. Angles are accurate up to ``pi / 2`` (float64:
        relative error below ``1e-15`` at ``cos theta = 1e-9``); at an angle of exactly
        ``pi / 2`` the result is one of the minimising geodesics.
    """
    m, p = _angles_frame(x, y)
    return p @ _LogFactor.apply(m)


class _SquaredAngleSum(torch.autograd.Function):
    """``sum_i theta_i^2`` with ``theta_i = atan2(|P v_i|, cos theta_i)`` from ``P``
    ``(..., k, p)`` and ``M = W diag(cos theta) V^T``, batch shape ``(...)``.

    As a function of ``a_i = v_i^T P^T P v_i`` and the eigenvalues ``b_i = cos^2 theta_i`` of
    ``M^T M``, ``theta^2`` is homogeneous of degree 0 with ``d/da = theta cos / (sin (a + b))``
    and ``d/db = -theta sin / (cos (a + b))``. A sum of functions of eigenvalues has no
    eigenvector term, so ``dP = 2 P V diag(g d/da) V^T`` and
    ``dM = 2 M V diag(g d/db) V^T = -2 W diag(g theta sin / (a + b)) V^T``: finite at ``x = y``
    and up to ``pi / 2``.
    """

    @staticmethod
    def forward(ctx, p, m):
        w, cos, v = _svd(m)
        pv = p.detach().to(w.dtype) @ v
        sin = torch.linalg.vector_norm(pv, dim=-2)
        theta = torch.atan2(sin, cos)
        ctx.save_for_backward(pv, w, v, sin, cos, theta)
        ctx.dtypes = (p.dtype, m.dtype)
        return as_dtype(theta.square().sum(-1), p.dtype)

    @staticmethod
    @first_order
    def backward(ctx, grad):
        pv, w, v, sin, cos, theta = ctx.saved_tensors
        g = 2 * grad.to(w.dtype).unsqueeze(-1) / (sin * sin + cos * cos)
        vt = v.transpose(-1, -2)
        grad_p = (pv * (g * angle_over_sine(sin, cos) * cos).unsqueeze(-2)) @ vt
        grad_m = -(w * (g * theta * sin).unsqueeze(-2)) @ vt
        return grad_p.to(ctx.dtypes[0]), grad_m.to(ctx.dtypes[1])


def grassmann_dist2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared distance ``sum_i theta_i^2`` from the principal angles, batch shape ``(...)``.

    ``theta_i = atan2(sin, cos)`` from ``sin = |P v_i|`` and ``cos`` a singular value of ``M``:
    small angles keep full relative precision, angles near ``pi / 2`` full absolute precision;
    the gradient is finite at ``x = y`` and up to ``pi / 2``.
    """
    m, p = _angles_frame(x, y)
    return _SquaredAngleSum.apply(p, m)


def grassmann_transp(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Parallel transport of ``v`` from ``x`` to ``y`` along the minimising geodesic.

    Edelman et al.'s formula ``tau v = v - x sinc(D) Delta^T v - Delta c(D) Delta^T v`` with
    ``Delta = Log_x(y)``, ``D = sqrt(Delta^T Delta)``, ``c(r) = (1 - cos r) / r^2`` gives the
    horizontal lift at the aligned basis ``Y* = Exp_x(Delta)``; multiplying by ``Y*^T y`` moves it
    to the basis ``y``.

    Parameters
    ----------
    x, y : torch.Tensor
        Bases, shape ``(..., n, p)``.
    v : torch.Tensor
        Horizontal vectors at ``x``, shape ``(..., n, p)``.

    Returns
    -------
    torch.Tensor
        Horizontal vectors at ``y``, shape ``(..., n, p)``.
    """
    delta = grassmann_logmap(x, y)
    cos, sinc, vers = apply_spectral(_gram(delta), (COS_SQRT, SINC_SQRT, VERSINE_SQRT))
    y_star = x @ cos + delta @ sinc
    dv = delta.transpose(-1, -2) @ v
    moved = v - x @ (sinc @ dv) - delta @ (vers @ dv)
    return moved @ (y_star.transpose(-1, -2) @ y)


def log_at_origin(x: torch.Tensor) -> torch.Tensor:
    """``B`` with ``Log_{I_{n,p}}(x) = [0; B]``, shape ``(..., n - p, p)``.

    The general logarithm specialised to the base point ``I_{n,p}``: ``M`` is the top block of
    ``x`` and ``P`` its bottom block.
    """
    p = x.shape[-1]
    top, bottom = x[..., :p, :], x[..., p:, :]
    return bottom @ _LogFactor.apply(top)


def rotate_from_origin_frame(b: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``expm(Omega_B) Z`` with ``Omega_B = [[0, -B^T], [B, 0]]``, without forming ``n x n``.

    ``expm(Omega_B) = [[C, -S B^T], [B S, I - B V B^T]]`` with ``C = cos(sqrt(B^T B))``,
    ``S = sinc(sqrt(B^T B))`` and ``V = (1 - cos r)/r^2`` of ``B^T B``: one ``p x p`` ``eigh``
    and ``O(n p k)`` products for ``Z`` of shape ``(..., n, k)``. ``b``: ``(..., n - p, p)``.
    """
    p = b.shape[-1]
    cos, sinc, vers = apply_spectral(_gram(b), (COS_SQRT, SINC_SQRT, VERSINE_SQRT))
    z_top, z_bottom = z[..., :p, :], z[..., p:, :]
    bz = b.transpose(-1, -2) @ z_bottom
    top = cos @ z_top - sinc @ bz
    bottom = z_bottom + b @ (sinc @ z_top - vers @ bz)
    return torch.cat((top, bottom), -2)
