"""Bures-Wasserstein metric on SPD matrices: formulas and :class:`SPDBuresWasserstein`.

``L_P[V]`` solves ``P L + L P = V``. With ``P = C C^T`` (Cholesky),
``(P Q)^1/2 = C (C^T Q C)^1/2 C^-1``, so the logarithm and the distance need one Cholesky and one
``eigh``. Functions take working-dtype tensors; those that take square roots accept
``method="eigh"`` (default) or ``"newton_schulz"`` (matrix products only, see
:func:`riemtorch.linalg.sqrtm_invsqrtm_newton_schulz`).
"""

import torch

from riemtorch.linalg import congruence
from riemtorch.linalg.batched import eigvalsh
from riemtorch.linalg.lyapunov import solve_lyapunov
from riemtorch.linalg.safe import safe_sqrt
from riemtorch.linalg.symmetric import sym
from riemtorch.manifolds.spd import bw_barycenter as barycenter
from riemtorch.manifolds.spd import common
from riemtorch.manifolds.spd.base import SPDManifold


def _trace(a):
    return torch.diagonal(a, dim1=-2, dim2=-1).sum(-1)


def bw_inner(x, u, v):
    """``tr(L_X[U] V) / 2``."""
    return 0.5 * common.matrix_inner(solve_lyapunov(x, u), v)


def bw_egrad(x, g):
    """Riemannian gradient ``2 (X G + G X)`` of a function with symmetric Euclidean gradient G."""
    g = sym(g)
    return sym(2 * (x @ g + g @ x))


def bw_exp(x, u):
    """``Exp_X U = X + U + L_X[U] X L_X[U]``."""
    lu = solve_lyapunov(x, u)
    return sym(x + u + lu @ x @ lu)


def _root_product(x, y, method="eigh"):
    """``(X Y)^1/2 = C (C^T Y C)^1/2 C^-1`` with ``X = C C^T``."""
    chol = common.cholesky(x)
    ct = chol.transpose(-1, -2)
    if method != "eigh":  # the eigh path's square root checks the eigenvalues it floors
        common.check_positive_point(y)
    root = barycenter.sqrtm_by(sym(ct @ y @ chol), method)
    # (C S C^-1) = (C^-T (C S)^T)^T, a triangular solve instead of an inverse
    return torch.linalg.solve_triangular(ct, (chol @ root).transpose(-1, -2),
                                         upper=True).transpose(-1, -2)


def bw_log(x, y, method="eigh"):
    """``Log_X Y = (X Y)^1/2 + (Y X)^1/2 - 2 X``."""
    r = _root_product(x, y, method)
    return sym(r + r.transpose(-1, -2) - 2 * x)


def bw_dist2(x, y, method="eigh"):
    """``tr X + tr Y - 2 tr (X^1/2 Y X^1/2)^1/2`` from the eigenvalues of ``C^T Y C`` (or the
    trace of its Newton-Schulz square root).

    The trace formula cancels for nearby points: its absolute error is about
    ``eps (tr X + tr Y)``. Where it gives less than ``sqrt(eps)`` times ``tr X + tr Y`` (so
    that at most half its digits are left), the distance is taken as ``||C - T C||_F^2``
    instead, between the factor ``C`` of ``X`` and the factor ``T C = C^-T (C^T Y C)^1/2`` of
    ``Y`` that the optimal transport map ``T`` gives it: a difference of factors, accurate to
    about ``eps ||C||`` (a square root and a triangular solve more)."""
    chol = common.cholesky(x)
    product = sym(chol.transpose(-1, -2) @ y @ chol)
    # C^T Y C has the inertia of Y: its square root would be that of Y's positive part
    common.check_positive_point(y)
    if method == "eigh":
        cross = safe_sqrt(eigvalsh(product)).sum(-1)
    else:
        cross = _trace(barycenter.sqrtm_by(product, method))
    total = _trace(x) + _trace(y)
    d2 = total - 2 * cross
    near = d2 <= torch.finfo(d2.dtype).eps ** 0.5 * total
    if bool(near.any()):
        factor = torch.linalg.solve_triangular(chol.transpose(-1, -2),
                                               barycenter.sqrtm_by(product, method), upper=True)
        d2 = torch.where(near, (chol - factor).square().sum((-2, -1)), d2)
    return d2


def bw_geodesic(x, y, t, method="eigh"):
    """``(1-t)^2 X + t^2 Y + t(1-t) [(XY)^1/2 + (YX)^1/2]``."""
    r = _root_product(x, y, method)
    return sym((1 - t) ** 2 * x + t ** 2 * y + t * (1 - t) * (r + r.transpose(-1, -2)))


def _scale_in_eigenbasis(x, v, kernel):
    """``U (V~_ij k(s_i, s_j)) U^T`` with ``X = U diag(s) U^T``, ``V~ = U^T V U``."""
    return sym(congruence.kernel_congruence(x, v, kernel))


def bw_transp(x, y, v):
    """Vector transport through the identity: ``V~_ij sqrt(2 / (s_i + s_j))`` takes ``T_X`` to
    ``T_I`` and ``W~_ij sqrt((t_i + t_j) / 2)`` takes ``T_I`` to ``T_Y`` (eigenbases of ``X``
    and ``Y``). Both are the parallel transports along the geodesics to and from ``I``
    (Thanwerdas & Pennec), so the composite is an isometry, and it is the parallel transport
    along the geodesic from ``X`` to ``Y`` when ``X`` and ``Y`` commute."""
    common.check_positive_point(x, "the first point")
    common.check_positive_point(y)
    to_identity = _scale_in_eigenbasis(x, v, congruence.InverseHalfSumRoot())
    return _scale_in_eigenbasis(y, to_identity, congruence.HalfSumRoot())


def bw_barycenter(xs, w, tol, max_iter, method="eigh", input_dtype=None):
    """Weighted Bures-Wasserstein barycenter of ``xs`` ``(N, ..., n, n)``, weights
    ``(N, ..., 1, 1)``: :func:`riemtorch.manifolds.spd.bw_barycenter.bw_barycenter`."""
    return barycenter.bw_barycenter(xs, w, tol, max_iter, method, input_dtype)


class SPDBuresWasserstein(SPDManifold):
    """SPD matrices with the Bures-Wasserstein metric (BWM) ``<U, V>_P = tr(L_P[U] V) / 2``.

    ``d(P, Q)^2 = tr P + tr Q - 2 tr (P^1/2 Q P^1/2)^1/2`` (one Cholesky, one ``eigvalsh``),
    ``Log_P Q = (PQ)^1/2 + (QP)^1/2 - 2P``, ``Exp_P V = P + V + L_P[V] P L_P[V]`` (valid while
    ``I + L_P[V]`` is positive definite), geodesic
    ``(1-t)^2 P + t^2 Q + t(1-t)[(PQ)^1/2 + (QP)^1/2]``. The Fréchet mean is the fixed-point
    barycenter :func:`bw_barycenter` (warm-started square roots, implicit backward).

    ``transp`` is a vector transport through the identity (:func:`bw_transp`): an isometry
    between tangent spaces, equal to the parallel transport when ``P`` and ``Q`` commute (the
    general parallel transport solves an ODE and has no closed form). Its backward is
    finite at repeated eigenvalues.

    Lyapunov solves, square roots and the distance have finite gradients at repeated
    eigenvalues (:mod:`riemtorch.linalg`); the distance gradient at ``P = Q`` is finite.
    Float32 input is computed in float64 (numerical policy of :mod:`riemtorch.config`).

    Parameters
    ----------
    power : float
        Power deformation ``theta`` (see :mod:`riemtorch.manifolds.spd.base`); ``0`` is the
        log-Euclidean metric with the BW inner product at the identity ``tr(UV)/4``, so its
        distance is ``||log P - log Q|| / 2``.
    sqrtm_method : {"eigh", "newton_schulz"}
        How the square roots of the distance, logarithm, geodesic and barycenter are computed:
        by ``eigh`` (exact) or by the coupled Newton-Schulz iteration of
        :func:`riemtorch.linalg.sqrtm_invsqrtm_newton_schulz` (matrix products only, fast for
        large batches on GPUs). The roots are of products such as ``P^1/2 Q P^1/2``, whose
        condition number can reach ``cond(P) cond(Q)``; 30 iterations keep relative errors
        near ``1e-12`` up to ``1e8`` (points with condition number up to ``1e4``; ``5e-7`` at
        ``1e10``), beyond which the iteration has not converged: use ``eigh`` there. Lyapunov
        solves (inner product, exponential) and the transport stay on ``eigh``.
    """

    def __init__(self, power: float = 1.0, sqrtm_method: str = "eigh"):
        super().__init__(power)
        self.sqrtm_method = barycenter.check_method(sqrtm_method)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sqrtm_method={self.sqrtm_method!r}"

    def _inner(self, x, u, v):
        return bw_inner(x, u, v)

    def _identity_form(self, a, b):
        return 0.25 * common.matrix_inner(a, b)

    def _identity_riesz(self, g):
        return 4 * g

    def _egrad(self, x, g):
        return bw_egrad(x, g)

    def _exp(self, x, u):
        return bw_exp(x, u)

    def _log(self, x, y):
        return bw_log(x, y, self.sqrtm_method)

    def _dist2(self, x, y):
        return bw_dist2(x, y, self.sqrtm_method)

    def _transp(self, x, y, v):
        return bw_transp(x, y, v)

    def _geodesic(self, x, y, t):
        return bw_geodesic(x, y, t, self.sqrtm_method)

    def _mean(self, xs, w, tol, max_iter, input_dtype):
        return bw_barycenter(xs, w, tol, max_iter, self.sqrtm_method, input_dtype)
