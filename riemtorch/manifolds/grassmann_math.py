"""Formulas of the Grassmann manifold on orthonormal bases ``(..., n, p)``.

A point is a basis ``X`` (``X^T X = I``) of a ``p``-dimensional subspace of ``R^n``; a tangent
vector is its horizontal lift, ``X^T U = 0``. Everything is written with functions of small
symmetric ``p x p`` matrices evaluated from one ``eigh`` (:mod:`spectral_funcs`) instead of
SVDs, so that gradients are finite at repeated principal angles (e.g. at ``x = y``).

With ``M = X^T Y``, ``P = (I - X X^T) Y`` and principal angles ``theta_i`` between the
subspaces (eigenvalues ``sin^2 theta`` of ``P^T P = I - M^T M``):

* ``Exp_X(U) = X cos(sqrt(U^T U)) + U sinc(sqrt(U^T U))`` (Edelman, Arias & Smith 1998);
* ``Log_X(Y) = P f(P^T P) M^T`` with ``f(s) = asin(sqrt s) / sqrt(s (1 - s))``. This is the
  SVD-based algorithm of Bendokat, Zimmermann & Absil ("A Grassmann manifold handbook",
  Alg. 5.3) in closed form: their Procrustes step ``Y* = Y O`` with the orthogonal polar factor
  ``O`` of ``Y^T X``, then ``Q S R^T = (I - X X^T) Y*`` and ``Log = Q asin(S) R^T``, reduce to
  the expression above. ``Exp_X(Log_X(Y)) = Y*``, the basis of ``span(Y)`` aligned with ``X``
  (``X^T Y*`` symmetric positive semi-definite);
* ``d(X, Y)^2 = sum theta_i^2`` (the convention of pymanopt; the projector embedding of
  geomstats gives ``sqrt 2`` times this).
"""

import torch

from riemtorch.linalg.batched import eigvalsh
from riemtorch.linalg.symmetric import apply_spectral, sym, working_dtype
from riemtorch.manifolds.spectral_funcs import (
    ASIN_SQ,
    COS_SQRT,
    LOG_FACTOR,
    SINC_SQRT,
    VERSINE_SQRT,
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


def grassmann_logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Log_x(y) = P f(P^T P) M^T`` (Bendokat et al.'s algorithm in closed form).

    Parameters
    ----------
    x, y : torch.Tensor
        Bases, shape ``(..., n, p)``; all principal angles below ``pi / 2``.

    Returns
    -------
    torch.Tensor
        The horizontal lift at ``x`` of the logarithm, shape ``(..., n, p)``; it depends only on
        ``span(y)``, not on the basis ``y``.
    """
    m, p = _angles_frame(x, y)
    (factor,) = apply_spectral(_gram(p), (LOG_FACTOR,))
    return p @ factor @ m.transpose(-1, -2)


def grassmann_dist2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared distance ``sum_i theta_i^2`` from the principal angles, batch shape ``(...)``.

    The angles come from ``sin^2 theta`` (eigenvalues of ``P^T P``), which keeps small angles
    to full relative precision; the gradient is finite at ``x = y``.
    """
    _, p = _angles_frame(x, y)
    gram = _gram(p)
    # Only eigenvalues: their gradient u_i u_i^T needs no eigenvalue gaps.
    sines = eigvalsh(gram.to(working_dtype(gram.dtype)))
    return ASIN_SQ.f(sines).sum(-1).to(gram.dtype)


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
    (factor,) = apply_spectral(_gram(bottom), (LOG_FACTOR,))
    return bottom @ factor @ top.transpose(-1, -2)


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
