"""Generalized Bures-Wasserstein metric: :class:`SPDGeneralizedBuresWasserstein`."""

import torch

from riemtorch import config
from riemtorch.linalg.symmetric import sym
from riemtorch.manifolds.spd import bw, common
from riemtorch.manifolds.spd.bw_barycenter import check_method, sqrtm_invsqrtm_by
from riemtorch.manifolds.spd.aim import SPDAffineInvariant
from riemtorch.manifolds.spd.base import SPDManifold
from riemtorch.parameter import ManifoldParameter


class SPDGeneralizedBuresWasserstein(SPDManifold):
    """SPD matrices with the generalized Bures-Wasserstein metric (GBWM, Han et al. 2023).

    The Bures-Wasserstein metric pulled back by the congruence ``c(X) = M^-1/2 X M^-1/2``:
    ``<U, V>_P = <c(U), c(V)>^BW_{c(P)}``, so
    ``d(P, Q)^2 = tr(M^-1 P) + tr(M^-1 Q) - 2 tr (P^1/2 M^-1 Q M^-1 P^1/2)^1/2``, and exp, log,
    geodesics, transport and the barycenter are those of :class:`SPDBuresWasserstein` on
    ``c(P)``, mapped back by ``c^-1(Y) = M^1/2 Y M^1/2``. ``M = I`` is the BW metric.

    ``M`` is a module parameter (a :class:`~riemtorch.ManifoldParameter` on
    :class:`SPDAffineInvariant`, so Riemannian optimizers keep it SPD) when ``learnable``,
    else a buffer; either way it follows ``.to()`` and is saved in ``state_dict``. Its square
    root and inverse square root come from one ``eigh`` per call, with the finite-at-ties
    backward of :mod:`riemtorch.linalg`.

    Parameters
    ----------
    M : torch.Tensor
        SPD matrix ``(n, n)`` (or a batch ``(..., n, n)`` broadcasting with the points).
    power : float
        Power deformation ``theta`` of the GBW metric (see :mod:`riemtorch.manifolds.spd.base`):
        ``d(P, Q) = d_GBW(P^theta, Q^theta) / theta``.
    learnable : bool
        Register ``M`` as a parameter instead of a buffer.
    sqrtm_method : {"eigh", "newton_schulz"}
        How the square roots are computed: those of ``M`` and those of the Bures-Wasserstein
        operations after the pull-back (see :class:`SPDBuresWasserstein` for the accuracy of
        the Newton-Schulz iteration).
    """

    def __init__(self, M: torch.Tensor, power: float = 1.0, learnable: bool = False,
                 sqrtm_method: str = "eigh"):
        super().__init__(power)
        self.sqrtm_method = check_method(sqrtm_method)
        common.check_matrices(M, "M")
        if config.validate:
            SPDAffineInvariant().assert_check_point(M, "M")
        data = M.detach().clone()
        if learnable:
            self.M = ManifoldParameter(data, SPDAffineInvariant(), check=False)
        else:
            self.register_buffer("M", data)

    def extra_repr(self) -> str:
        learnable = isinstance(self.M, torch.nn.Parameter)
        return (f"n={self.M.shape[-1]}, power={self.power:g}, learnable={learnable}, "
                f"sqrtm_method={self.sqrtm_method!r}")

    def _roots(self, like):
        if like.shape[-1] != self.M.shape[-1]:
            raise ValueError(f"points of size {like.shape[-1]} x {like.shape[-1]} do not match "
                             f"the metric matrix M of size {self.M.shape[-1]} x "
                             f"{self.M.shape[-1]}")
        m = self.M.to(dtype=like.dtype, device=like.device)
        return sqrtm_invsqrtm_by(m, self.sqrtm_method)

    def _pull(self, *mats):
        """``c`` applied to each matrix, and ``M^1/2`` for the way back."""
        root, inv_root = self._roots(mats[0])
        return root, [sym(inv_root @ a @ inv_root) for a in mats]

    @staticmethod
    def _push(root, a):
        return sym(root @ a @ root)

    def _inner(self, x, u, v):
        _, (x, u, v) = self._pull(x, u, v)
        return bw.bw_inner(x, u, v)

    def _egrad(self, x, g):
        root, (x,) = self._pull(x)
        return self._push(root, bw.bw_egrad(x, self._push(root, g)))

    def _exp(self, x, u):
        root, (x, u) = self._pull(x, u)
        return self._push(root, bw.bw_exp(x, u))

    def _log(self, x, y):
        root, (x, y) = self._pull(x, y)
        return self._push(root, bw.bw_log(x, y, self.sqrtm_method))

    def _dist2(self, x, y):
        _, (x, y) = self._pull(x, y)
        return bw.bw_dist2(x, y, self.sqrtm_method)

    def _transp(self, x, y, v):
        root, (x, y, v) = self._pull(x, y, v)
        return self._push(root, bw.bw_transp(x, y, v))

    def _geodesic(self, x, y, t):
        root, (x, y) = self._pull(x, y)
        return self._push(root, bw.bw_geodesic(x, y, t, self.sqrtm_method))

    def _mean(self, xs, w, tol, max_iter, input_dtype):
        root, (xs,) = self._pull(xs)
        return self._push(root, bw.bw_barycenter(xs, w, tol, max_iter, self.sqrtm_method,
                                                     input_dtype))
