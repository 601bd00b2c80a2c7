"""Log-Cholesky metric on SPD matrices (Lin 2019): formulas and :class:`SPDLogCholesky`.

The Cholesky map ``P = L L^T`` is an isometry onto lower triangular matrices with positive
diagonal carrying ``<X, Y>_L = <S(X), S(Y)> + <D(L)^-1 D(X), D(L)^-1 D(Y)>``, where ``S`` is the
strictly lower part and ``D`` the diagonal. Its differential is
``dL = L half(L^-1 V L^-T)`` (``half``: strictly lower part plus half the diagonal) with inverse
``V = dL L^T + L dL^T``. Functions take working-dtype tensors.
"""

import torch

from riemtorch.linalg.symmetric import sym
from riemtorch.manifolds.spd import common
from riemtorch.manifolds.spd.base import GyroSPDManifold


def _strict(a):
    return torch.tril(a, diagonal=-1)


def _diag(a):
    return torch.diagonal(a, dim1=-2, dim2=-1)


def _compose(strict, diag):
    return strict + torch.diag_embed(diag)


def chol_differential(chol, v):
    """``d chol_P[V] = L half(L^-1 V L^-T)`` for ``P = L L^T``."""
    a = common.whiten(chol, v)
    return chol @ _compose(_strict(a), 0.5 * _diag(a))


def chol_differential_inverse(chol, x):
    """``V = X L^T + L X^T``."""
    return sym(2 * x @ chol.transpose(-1, -2))


def lcm_inner(x, u, v):
    chol = common.cholesky(x)
    a, b = chol_differential(chol, u), chol_differential(chol, v)
    d = _diag(chol)
    return common.matrix_inner(_strict(a), _strict(b)) + (_diag(a) * _diag(b) / d.square()).sum(-1)


def lcm_egrad(x, g):
    """Riemannian gradient: the Euclidean gradient in Cholesky coordinates ``tril(2 G L)``, with
    the diagonal scaled by ``D(L)^2``, mapped back by ``X L^T + L X^T``."""
    chol = common.cholesky(x)
    h = torch.tril(2 * sym(g) @ chol)
    return chol_differential_inverse(chol, _compose(_strict(h), _diag(chol).square() * _diag(h)))


def lcm_exp(x, u):
    chol = common.cholesky(x)
    a = chol_differential(chol, u)
    d = _diag(chol)
    k = _compose(_strict(chol) + _strict(a), d * torch.exp(_diag(a) / d))
    return sym(k @ k.transpose(-1, -2))


def lcm_log(x, y):
    chol, k = common.cholesky(x), common.cholesky(y)
    d = _diag(chol)
    a = _compose(_strict(k) - _strict(chol), d * torch.log(_diag(k) / d))
    return chol_differential_inverse(chol, a)


def lcm_dist2(x, y):
    """``||S(L) - S(K)||^2 + ||log D(L) - log D(K)||^2``."""
    chol, k = common.cholesky(x), common.cholesky(y)
    strict = (_strict(chol) - _strict(k)).square().sum(dim=(-1, -2))
    return strict + (torch.log(_diag(chol)) - torch.log(_diag(k))).square().sum(-1)


def lcm_transp(x, y, v):
    """Parallel transport (Lin 2019): ``S(X) + D(K) D(L)^-1 D(X)`` in Cholesky coordinates."""
    chol, k = common.cholesky(x), common.cholesky(y)
    a = chol_differential(chol, v)
    a, chol, k = torch.broadcast_tensors(a, chol, k)
    moved = _compose(_strict(a), _diag(k) / _diag(chol) * _diag(a))
    return chol_differential_inverse(k, moved)


def lcm_geodesic(x, y, t):
    chol, k = common.cholesky(x), common.cholesky(y)
    d = _diag(chol)
    tt = t[..., 0] if isinstance(t, torch.Tensor) else t
    strict = _strict(chol) + t * (_strict(k) - _strict(chol))
    g = _compose(strict, d * torch.exp(tt * torch.log(_diag(k) / d)))
    return sym(g @ g.transpose(-1, -2))


def _from_chol(k):
    return sym(k @ k.transpose(-1, -2))


def lcm_mean(xs, w):
    """Closed-form weighted mean: arithmetic in ``S(L)``, geometric in ``D(L)``."""
    chol = common.cholesky(xs)
    strict = (w * _strict(chol)).sum(0)
    diag = torch.exp((w[..., 0] * torch.log(_diag(chol))).sum(0))
    return _from_chol(_compose(strict, diag))


def lcm_gyroadd(x, y):
    """Cholesky group law ``S(L) + S(K) + D(L) D(K)``."""
    chol, k = common.cholesky(x), common.cholesky(y)
    chol, k = torch.broadcast_tensors(chol, k)
    return _from_chol(_compose(_strict(chol) + _strict(k), _diag(chol) * _diag(k)))


def lcm_gyroinv(x):
    chol = common.cholesky(x)
    return _from_chol(_compose(-_strict(chol), 1.0 / _diag(chol)))


def lcm_gyroscalarmul(t, x):
    chol = common.cholesky(x)
    tt = t[..., 0] if isinstance(t, torch.Tensor) else t
    return _from_chol(_compose(t * _strict(chol), torch.exp(tt * torch.log(_diag(chol)))))


class SPDLogCholesky(GyroSPDManifold):
    """SPD matrices with the log-Cholesky metric (LCM, Lin 2019).

    ``d(P, Q)^2 = ||S(L) - S(K)||^2 + ||log D(L) - log D(K)||^2`` for ``P = L L^T``,
    ``Q = K K^T``; exact exponential, logarithm, geodesics and parallel transport through the
    Cholesky isometry; closed-form Fréchet mean (arithmetic in the strictly lower part,
    geometric in the diagonal of the factors). Gyro structure: the abelian Lie group of the
    Cholesky factors, ``L (+) K = S(L) + S(K) + D(L) D(K)``, ``t (*) L = t S(L) + D(L)^t``
    (Chen et al., GyroBN), trivial gyrations.

    Everything goes through Cholesky factors (differentiable everywhere); with a power
    deformation the differential of ``X^theta`` and its derivative in the base point come from
    one ``eigh`` (:mod:`riemtorch.manifolds.spd.frame`, finite at repeated eigenvalues). Float32
    input is factorised in float64 (numerical policy of :mod:`riemtorch.config`).

    Parameters
    ----------
    power : float
        Power deformation ``theta`` (see :mod:`riemtorch.manifolds.spd.base`); ``0`` is the
        log-Euclidean metric with the LCM inner product at the identity,
        ``||S(V)||^2 + ||D(V)||^2 / 4``.
    """

    def __init__(self, power: float = 1.0):
        super().__init__(power)

    def _inner(self, x, u, v):
        return lcm_inner(x, u, v)

    def _egrad(self, x, g):
        return lcm_egrad(x, g)

    def _exp(self, x, u):
        return lcm_exp(x, u)

    def _log(self, x, y):
        return lcm_log(x, y)

    def _dist2(self, x, y):
        return lcm_dist2(x, y)

    def _transp(self, x, y, v):
        return lcm_transp(x, y, v)

    def _geodesic(self, x, y, t):
        return lcm_geodesic(x, y, t)

    def _mean(self, xs, w, tol, max_iter, input_dtype):
        return lcm_mean(xs, w)

    def _gyroadd(self, x, y):
        return lcm_gyroadd(x, y)

    def _gyroinv(self, x):
        return lcm_gyroinv(x)

    def _gyroscalarmul(self, t, x):
        return lcm_gyroscalarmul(t, x)

    def _gyration(self, x, y, z):
        # commutative: the identity, as a new tensor (never a view of the user's z)
        return z.expand(torch.broadcast_shapes(x.shape, y.shape, z.shape)).clone()
