"""Affine-invariant metric on SPD matrices: formulas and :class:`SPDAffineInvariant`.

The metric ``<U, V>_P = tr(P^-1 U P^-1 V)`` is invariant under every congruence
``P -> A P A^T``, so each map can be evaluated in the frame of any factor ``P = L L^T``:
``Exp_P V = L expm(L^-1 V L^-T) L^T``. The functions below use the Cholesky factor (cheaper
than a square root, and differentiable everywhere) and one ``eigh`` per matrix function.
They take tensors in the working dtype (see :mod:`riemtorch.manifolds.spd.common`).
"""

import torch

from riemtorch.linalg.batched import eigh, eigvalsh, map_batch_chunks
from riemtorch.linalg import spectral
from riemtorch.linalg.safe import safe_sqrt
from riemtorch.linalg.symmetric import apply_spectral, floor_eigenvalues, sym, working_dtype
from riemtorch.manifolds.spd import common, karcher
from riemtorch.manifolds.spd.base import GyroSPDManifold


def aim_inner(x, u, v):
    """``tr(X^-1 U X^-1 V)``, shape ``(...)``; ``U`` is whitened once when ``V`` is ``U``."""
    chol = common.cholesky(x)
    a = common.whiten(chol, u)
    return common.matrix_inner(a, a if v is u else common.whiten(chol, v))


def aim_egrad(x, g):
    """Riemannian gradient ``X sym(G) X``."""
    return sym(x @ sym(g) @ x)


def aim_exp(x, u):
    """``Exp_X U = L expm(L^-1 U L^-T) L^T``."""
    chol = common.cholesky(x)
    return common.unwhiten(chol, common.expm(common.whiten(chol, u)))


def aim_log(x, y):
    """``Log_X Y = L logm(L^-1 Y L^-T) L^T``."""
    chol = common.cholesky(x)
    return common.unwhiten(chol, common.logm(common.whiten(chol, y)))


def _aim_dist2(x, y):
    chol = common.cholesky(x)
    half = torch.linalg.solve_triangular(chol, y, upper=False)
    lam = eigvalsh(torch.linalg.solve_triangular(chol, half.transpose(-1, -2), upper=False))
    # the floor of logm (so that the distance is the norm of the logarithm); with validation
    # on, a clearly negative eigenvalue (Y not positive definite) raises
    return floor_eigenvalues(lam, lam.dtype).log().square().sum(-1)


def aim_dist2(x, y):
    """``||log eig(X^-1 Y)||^2``: one Cholesky ``X = L L^T``, two triangular solves for
    ``L^-1 Y L^-T`` and one ``eigvalsh``.

    ``eigvalsh`` reads one triangle only, so the whitened matrix is not symmetrised; its
    gradient ``U diag(g) U^T`` is symmetric, so the gradients in ``X`` and ``Y`` are too.
    Without autograd, large batches of pairs are split over threads
    (:func:`riemtorch.linalg.batched.map_batch_chunks`).
    """
    if x.shape == y.shape:
        return map_batch_chunks(_aim_dist2, x, y)
    return _aim_dist2(x, y)


def aim_transp(x, y, v):
    """Parallel transport ``E V E^T`` with ``E = (Y X^-1)^1/2 = L W^1/2 L^-1``,
    ``W = L^-1 Y L^-T``."""
    chol = common.cholesky(x)
    root = common.sqrtm(common.whiten(chol, y))
    return common.unwhiten(chol, root @ common.whiten(chol, v) @ root)


def aim_exp_transp(x, u, v):
    """``Exp_X U`` and the parallel transport of ``V`` to it from one ``eigh``: with
    ``A = L^-1 U L^-T``, ``Y = L expm(A) L^T`` and ``E = L expm(A/2) L^-1`` (the transport's
    ``(Y X^-1)^1/2``), so ``E V E^T = L expm(A/2) (L^-1 V L^-T) expm(A/2) L^T``."""
    chol = common.cholesky(x)
    full, half = apply_spectral(common.whiten(chol, u), (spectral.EXP, spectral.HALF_EXP))
    return (common.unwhiten(chol, full),
            common.unwhiten(chol, half @ common.whiten(chol, v) @ half))


def aim_whitened_gradient(x, g, moment=None):
    """The Riemannian gradient of a Euclidean gradient ``G`` at ``X = L L^T`` and a tangent
    ``moment`` in the Cholesky frame of ``X`` (``V -> L^-1 V L^-T``, where the metric at ``X``
    is the Frobenius one), for moment methods (:func:`aim_move_along`).

    Returns ``(L, R, |R|^2, M)``: ``R = L^-1 (X sym(G) X) L^-T = L^T sym(G) L`` (no solve), its
    squared norm per point ``(..., 1, 1)`` and the whitened moment (``None`` for none)."""
    chol = common.cholesky(x)
    rgrad = chol.transpose(-1, -2) @ sym(g) @ chol
    square_norm = rgrad.square().sum((-2, -1), keepdim=True)
    return chol, rgrad, square_norm, None if moment is None else common.whiten(chol, moment)


def aim_move_along(chol, moment, step):
    """``Exp_X(s V)`` and the parallel transport of ``V`` there, for ``V`` whose Cholesky-frame
    form is ``moment`` (:func:`aim_whitened_gradient`) and steps ``s`` per point
    (``(..., 1, 1)``): a moment method moving along its own moment. With
    ``moment = Q diag(m) Q^T`` both come from that one ``eigh``: ``Exp = F diag(e^(s m)) F^T``
    and the transported ``V = F diag(m e^(s m)) F^T`` with ``F = L Q`` (the transport of a
    geodesic's velocity is its velocity), where :func:`aim_exp_transp` whitens ``V`` and takes
    two more products."""
    m, q = eigh(moment)
    grow = (step[..., 0] * m).exp()
    frame = chol @ q
    return (sym((frame * grow.unsqueeze(-2)) @ frame.transpose(-1, -2)),
            sym((frame * (m * grow).unsqueeze(-2)) @ frame.transpose(-1, -2)))


def aim_geodesic(x, y, t):
    """``L (L^-1 Y L^-T)^t L^T``; ``t`` a number or a tensor ``(..., 1, 1)``."""
    chol = common.cholesky(x)
    return common.unwhiten(chol, common.scaled_expm_of_log(common.whiten(chol, y), t))


def aim_gyroadd(x, y):
    """``X^1/2 Y X^1/2``."""
    root = common.sqrtm(x)
    return sym(root @ y @ root)


def aim_gyroinv(x):
    """``X^-1``."""
    return sym(torch.cholesky_inverse(common.cholesky(x)))


def aim_gyration(x, y, z):
    """``F Z F^T`` with ``F = (X^1/2 Y X^1/2)^-1/2 X^1/2 Y^1/2``."""
    rx, ry = common.sqrtm(x), common.sqrtm(y)
    inv = common.funcm(sym(rx @ y @ rx), common.spectral.INV_SQRT)
    f = inv @ rx @ ry
    return sym(f @ z @ f.transpose(-1, -2))


def aim_karcher_mean(xs, w, tol, max_iter, input_dtype=None, method="newton"):
    """Weighted Karcher mean of ``xs`` ``(N, ..., n, n)`` with weights ``w`` ``(N, ..., 1, 1)``.

    Riemannian Newton (or, with ``method="flow"``, Karcher flow) iterations from the geometric
    mean of the arithmetic and harmonic means, stopped once the Frobenius norm of the
    Riemannian gradient ``sum_i w_i logm(L^-1 X_i L^-T)`` (in the frame ``M = L L^T`` of the
    current estimate) is at most ``tol``; differentiable by the implicit function theorem
    (:mod:`riemtorch.manifolds.spd.karcher`).
    """
    return karcher.karcher_mean(xs, w, tol, max_iter, input_dtype, method)


class SPDAffineInvariant(GyroSPDManifold):
    """SPD matrices with the affine-invariant metric (AIM) ``<U, V>_P = tr(P^-1 U P^-1 V)``.

    Exact exponential, logarithm, parallel transport ``E V E^T`` (``E = (Q P^-1)^1/2``) and
    geodesics, all through a Cholesky factor of the base point. The distance is
    ``||log eig(P^-1 Q)||`` from one Cholesky and one generalized eigenvalue problem. At
    ``P = Q`` the whitening leaves eigenvalues ``1 +- n eps`` for well-conditioned ``P``, so a
    squared distance below ``(4 n^1.5 eps)^2`` (working dtype; a distance below ``4.5e-13``
    for ``n = 64`` in float64) is rounding and the distance is returned as 0 with a zero
    gradient, where the square root of the rounding would have a gradient of unit size in a
    noise direction (the
    rounding grows with ``cond(P)``: at 1e8, ``dist(P, P)`` is about 1e-9 and its gradient
    that of a noise direction again). Every matrix function has the finite-at-ties backward
    of :mod:`riemtorch.linalg`, so gradients at the identity are finite too. The Fréchet mean is
    found by the iterations of :func:`aim_karcher_mean`. Gyro structure (Nguyen & Yang):
    ``P (+) Q = P^1/2 Q P^1/2``, ``t (*) P = P^t``, ``(-) P = P^-1``.

    Float32 input is computed in float64 (Cholesky, eigenvalues and all) and rounded back, as
    the numerical policy of :mod:`riemtorch.config` states: at condition number 1e6 the
    distance then keeps a relative error of about 1e-6.

    Parameters
    ----------
    power : float
        Power deformation ``theta`` (see :mod:`riemtorch.manifolds.spd.base`):
        ``d(P, Q) = d_AIM(P^theta, Q^theta) / theta``; ``0`` is the log-Euclidean metric.
    mean_method : {"newton", "flow"}
        Steps of the Fréchet mean: Riemannian Newton steps (quadratic convergence; the
        default) or Karcher flow steps ``M <- M^1/2 exp(a F) M^1/2`` with ``F`` the mean of the
        whitened samples' logarithms and ``a`` a step length that guarantees contraction (no
        Hessian solve, linear convergence: for means of one or a few steps, such as a batch
        norm's ``mean_iters=1``; :mod:`riemtorch.manifolds.spd.karcher`). At ``power=0`` the
        mean has a closed form and only ``"newton"`` is accepted.

    Examples
    --------
    >>> import torch, riemtorch
    >>> spd = riemtorch.SPDAffineInvariant()
    >>> p = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    >>> spd.dist(torch.eye(2, dtype=torch.float64), p)
    tensor(1.3863, dtype=torch.float64)
    """

    mean_method = "newton"  # (also for instances pickled before the option existed)

    def __init__(self, power: float = 1.0, mean_method: str = "newton"):
        super().__init__(power)
        self.mean_method = karcher.check_method(mean_method)
        if self.power == 0 and mean_method != "newton":
            raise ValueError("mean_method has no effect at power=0, where the mean is the "
                             "closed-form log-Euclidean mean; leave it at 'newton'")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mean_method={self.mean_method!r}"

    def _inner(self, x, u, v):
        return aim_inner(x, u, v)

    def _identity_form(self, a, b):
        return common.matrix_inner(a, b)

    def _identity_riesz(self, g):
        return g

    def _egrad(self, x, g):
        return aim_egrad(x, g)

    def _exp(self, x, u):
        return aim_exp(x, u)

    def _log(self, x, y):
        return aim_log(x, y)

    def _dist2(self, x, y):
        return aim_dist2(x, y)

    def dist(self, x, y, keepdim: bool = False):
        d2 = self.dist2(x, y, keepdim=keepdim)
        n = x.shape[-1]
        rounding = (4 * n ** 1.5 * torch.finfo(working_dtype(d2.dtype)).eps) ** 2
        return torch.where(d2 > rounding, safe_sqrt(d2), torch.zeros_like(d2))

    def _transp(self, x, y, v):
        return aim_transp(x, y, v)

    def _center(self, x, mean):
        # Parallel transport to I of Log_M X is M^-1/2 Log_M(X) M^-1/2 = logm(M^-1/2 X M^-1/2).
        inv_root = common.funcm(mean, spectral.INV_SQRT)
        return common.logm(sym(inv_root @ x @ inv_root))

    def _uncenter(self, u, point):
        # Exp_P of the transport P^1/2 U P^1/2 of U from I is P^1/2 expm(U) P^1/2.
        root = common.sqrtm(point)
        return sym(root @ common.expm(u) @ root)

    def _geodesic(self, x, y, t):
        return aim_geodesic(x, y, t)

    def expmap_transp(self, x, u, v):
        """``Exp_X U`` and the parallel transport of ``V`` there, from one ``eigh``."""
        if self.power != 1:
            return super().expmap_transp(x, u, v)
        common.check_matrices(u, "tangent vector")
        common.check_matrices(v, "tangent vector")
        dtype, (x, u, v) = self._points(x, u, v)
        y, w = aim_exp_transp(x, u, v)
        return y.to(dtype), w.to(dtype)

    retr_transp = expmap_transp

    def _mean(self, xs, w, tol, max_iter, input_dtype):
        return aim_karcher_mean(xs, w, tol, max_iter, input_dtype, self.mean_method)

    def _gyroadd(self, x, y):
        return aim_gyroadd(x, y)

    def _gyroinv(self, x):
        return aim_gyroinv(x)

    def _gyroscalarmul(self, t, x):
        return common.scaled_expm_of_log(x, t)

    def _gyration(self, x, y, z):
        return aim_gyration(x, y, z)
