"""Base class of the SPD metrics, with the power deformation and its log-Euclidean limit.

A metric class implements the undeformed geometry in ``_``-prefixed methods that take and
return working-dtype tensors (see :mod:`riemtorch.manifolds.spd.common`). :class:`SPDManifold`
turns them into the public verbs, casts dtypes and applies the power deformation:

* ``power = theta > 0``: the metric pulled back by ``phi(X) = X^theta`` and divided by
  ``theta^2``, so ``d_theta(X, Y) = d(X^theta, Y^theta) / theta``; geodesics, means and gyro
  operations are those of ``phi(X)`` mapped back by ``X^(1/theta)``.
* ``power = 0``: the limit ``theta -> 0``, the log-Euclidean metric whose inner product on
  ``log X`` is the inner product ``g_I`` of the undeformed metric at the identity (for the
  affine-invariant metric ``tr(UV)``, i.e. exactly :class:`SPDLogEuclidean`; for
  Bures-Wasserstein ``tr(UV)/4``).

With ``power != 1`` the verbs that take tangent vectors at a base point ``X`` (``inner``,
``norm``, ``expmap``, ``logmap``, ``transp``, ``egrad2rgrad``) carry them through the
differential of ``phi`` at ``X`` (:class:`riemtorch.manifolds.spd.frame.Frame`), differentiated
with respect to ``X`` by the second-order Daleckii-Krein formula: gradients stay finite where
``X`` has repeated eigenvalues, the identity among them.
"""

from typing import Optional

import torch

from riemtorch.linalg import spectral
from riemtorch.linalg.safe import safe_sqrt
from riemtorch.linalg.symmetric import sym
from riemtorch.manifolds.base import Manifold, broadcast_batch, mean_tolerance
from riemtorch.manifolds.spd import common
from riemtorch.manifolds.spd.frame import Frame


def _check_power(power) -> float:
    if isinstance(power, bool) or not isinstance(power, (int, float)):
        raise TypeError(f"power must be a Python number, got {type(power).__name__}")
    power = float(power)
    if not (power >= 0 and power < float("inf")):
        raise ValueError(f"power must be finite and >= 0, got {power}")
    return power


class SPDManifold(Manifold):
    """Symmetric positive definite ``(..., n, n)`` matrices; base of the SPD metrics.

    Points are SPD matrices, tangent vectors symmetric matrices; ``origin`` is the identity.
    ``random(*batch, n=3, cond=None)`` draws Haar-rotated matrices, with condition number
    ``cond`` when given. Float32 input is computed in float64 and cast back (numerical policy
    of :mod:`riemtorch.config`).
    """

    ndim = 2

    def __init__(self, power: float = 1.0):
        super().__init__()
        self.power = _check_power(power)

    def extra_repr(self) -> str:
        return f"power={self.power:g}"

    # ---- undeformed geometry: implemented by each metric (working-dtype tensors) -------------
    def _inner(self, x, u, v):
        raise NotImplementedError

    def _egrad(self, x, g):
        raise NotImplementedError

    def _exp(self, x, u):
        raise NotImplementedError

    def _log(self, x, y):
        raise NotImplementedError

    def _dist2(self, x, y):
        raise NotImplementedError

    def _transp(self, x, y, v):
        raise NotImplementedError

    def _geodesic(self, x, y, t):
        return self._exp(x, t * self._log(x, y))

    def _mean(self, xs, w, tol, max_iter, input_dtype):
        """Weighted mean of working-dtype ``xs`` (``input_dtype`` is the user's, for the
        accuracy of the solvers' implicit backward)."""
        raise NotImplementedError

    def _identity_form(self, a, b):
        """The inner product ``g_I(a, b)`` at the identity (the ``power = 0`` metric)."""
        return self._inner(common.identity(a.shape[-1], dtype=a.dtype, device=a.device), a, b)

    def _identity_riesz(self, g):
        """``g_I``-representer of the linear form ``<g, .>`` (Frobenius)."""
        return self._egrad(common.identity(g.shape[-1], dtype=g.dtype, device=g.device), g)

    # ---- the power deformation -----------------------------------------------------------------
    def _spectral(self):
        return spectral.LOG if self.power == 0 else spectral.Power(self.power)

    def _phi(self, x):
        return common.funcm(x, self._spectral())

    def _phi_inv(self, y):
        if self.power == 0:
            return common.expm(y)
        return common.powm(y, 1.0 / self.power)

    def _frame(self, x):
        return Frame(x, self._spectral())

    # ---- public verbs ----------------------------------------------------------------------------
    def _points(self, *xs):
        for i, x in enumerate(xs):
            common.check_matrices(x, "point" if i == 0 else f"point {i + 1}")
        return common.promote(*xs)

    def _t(self, t, dtype, device):
        if isinstance(t, torch.Tensor):
            return t.to(dtype=dtype, device=device).reshape(t.shape + (1, 1))
        return float(t)

    def inner(self, x, u, v=None, keepdim: bool = False):
        common.check_matrices(x, "point")
        common.check_matrices(u, "tangent vector")
        v = u if v is None else v
        common.check_matrices(v, "tangent vector")
        dtype, (x, u, v) = common.promote(x, u, v)
        if self.power == 1:
            val = self._inner(x, u, v)
        else:
            f = self._frame(x)
            a, b = f.push(u), f.push(v)
            if self.power == 0:
                val = self._identity_form(a, b)
            else:
                val = self._inner(f.point, a, b) / self.power ** 2
        val = val.to(dtype)
        if keepdim:
            val = val[..., None, None]
        return broadcast_batch(val, x, self.ndim, keepdim)

    def norm(self, x, u, keepdim: bool = False):
        return safe_sqrt(self.inner(x, u, keepdim=keepdim).clamp_min(0))

    def egrad2rgrad(self, x, g):
        common.check_ambient(g, "Euclidean gradient")
        dtype, (x, g) = common.promote(x, g)
        g = sym(g)
        if self.power == 1:
            out = self._egrad(x, g)
        else:
            f = self._frame(x)
            if self.power == 0:
                out = f.pull(self._identity_riesz(f.pull(g)))
            else:
                out = self.power ** 2 * f.pull(self._egrad(f.point, f.pull(g)))
        return out.to(dtype)

    def dist2(self, x, y, keepdim: bool = False):
        dtype, (x, y) = self._points(x, y)
        if self.power == 1:
            val = self._dist2(x, y)
        elif self.power == 0:
            d = self._phi(x) - self._phi(y)
            val = self._identity_form(d, d)
        else:
            val = self._dist2(self._phi(x), self._phi(y)) / self.power ** 2
        val = val.clamp_min(0).to(dtype)
        return val[..., None, None] if keepdim else val

    def dist(self, x, y, keepdim: bool = False):
        return safe_sqrt(self.dist2(x, y, keepdim=keepdim))

    def expmap(self, x, u):
        common.check_matrices(u, "tangent vector")
        dtype, (x, u) = self._points(x, u)
        if self.power == 1:
            out = self._exp(x, u)
        else:
            f = self._frame(x)
            if self.power == 0:
                out = self._phi_inv(f.point + f.push(u))
            else:
                out = self._phi_inv(self._exp(f.point, f.push(u)))
        return out.to(dtype)

    def logmap(self, x, y):
        dtype, (x, y) = self._points(x, y)
        if self.power == 1:
            out = self._log(x, y)
        else:
            f = self._frame(x)
            py = self._phi(y)
            out = f.pull(py - f.point if self.power == 0 else self._log(f.point, py))
        return out.to(dtype)

    def transp(self, x, y, v):
        common.check_matrices(v, "tangent vector")
        dtype, (x, y, v) = self._points(x, y, v)
        if self.power == 1:
            out = self._transp(x, y, v)
        else:
            fx, fy = self._frame(x), self._frame(y)
            w = fx.push(v)
            out = fy.pull(w if self.power == 0 else self._transp(fx.point, fy.point, w))
        return out.to(dtype)

    def geodesic(self, x, y, t):
        dtype, (x, y) = self._points(x, y)
        t = self._t(t, x.dtype, x.device)
        if self.power == 1:
            out = self._geodesic(x, y, t)
        elif self.power == 0:
            lx = self._phi(x)
            out = self._phi_inv(lx + t * (self._phi(y) - lx))
        else:
            out = self._phi_inv(self._geodesic(self._phi(x), self._phi(y), t))
        return out.to(dtype)

    def center(self, x, mean):
        """``Log_mean(x)`` transported to the identity.

        Through ``phi`` only (no differential of ``phi``): ``log X - log M`` for ``power = 0``,
        ``center_1(X^theta, M^theta) / theta`` for the undeformed ``center_1`` otherwise (the
        differential of ``X^theta`` at the identity is ``theta`` times the identity).
        """
        dtype, (x, mean) = self._points(x, mean)
        if self.power == 0:
            out = self._phi(x) - self._phi(mean)
        elif self.power == 1:
            out = self._center(x, mean)
        else:
            out = self._center(self._phi(x), self._phi(mean)) / self.power
        return out.to(dtype)

    def uncenter(self, u, point):
        """Inverse of :meth:`center`: ``Exp_point`` of ``u`` transported from the identity."""
        common.check_matrices(u, "tangent vector")
        dtype, (point, u) = self._points(point, u)
        if self.power == 0:
            out = self._phi_inv(self._phi(point) + u)
        elif self.power == 1:
            out = self._uncenter(u, point)
        else:
            out = self._phi_inv(self._uncenter(self.power * u, self._phi(point)))
        return out.to(dtype)

    def _center(self, x, mean):
        return self._transp(mean, self.origin_like(mean), self._log(mean, x))

    def _uncenter(self, u, point):
        return self._exp(point, self._transp(self.origin_like(point), point, u))

    def frechet_mean(self, x, weights=None, dim: int = 0, keepdim: bool = False,
                     tol: Optional[float] = None, max_iter: int = 100):
        """Weighted Fréchet mean over batch dimension ``dim``.

        The solver is specific to the metric (closed form or a convergent iteration, see the
        class docstring), is batched over the other leading dimensions and differentiable.

        Parameters
        ----------
        x : torch.Tensor
            SPD matrices, shape ``(..., N, ..., n, n)`` with ``N`` at batch dimension ``dim``.
        weights : torch.Tensor, optional
            Non-negative weights, shape ``(N,)`` or the batch shape of ``x``.
        dim : int
            Batch dimension to average over.
        keepdim : bool
            Keep the reduced dimension with size 1.
        tol : float, optional
            Stopping tolerance of iterative solvers on the Frobenius norm of the Riemannian
            gradient (``1e-10`` float64, ``1e-5`` float32): for the affine-invariant mean that
            of the whitened samples' mean logarithm, scale free; for the Bures-Wasserstein
            barycenters that of ``sum_i w_i Log_S X_i`` relative to ``||S||``. A finite number
            ``>= 0``; ignored by closed forms.
        max_iter : int
            Iteration cap of iterative solvers.

        Returns
        -------
        torch.Tensor
            The mean, shape of ``x`` without ``dim`` (or with size 1 there).
        """
        common.check_matrices(x, "points")
        xs, w, dim = self._stack_and_weights(x, weights, dim)
        dtype, (xs, w) = common.promote(xs, w)
        tol = mean_tolerance(tol, dtype)
        mean = self.working_mean(xs, w[..., None, None], tol, max_iter, dtype).to(dtype)
        return mean.unsqueeze(dim) if keepdim else mean

    def working_mean(self, xs, w, tol: float, max_iter: int, input_dtype: torch.dtype):
        """The mean of :meth:`frechet_mean` without its checks and casts: samples ``xs``
        ``(N, ..., n, n)`` and weights ``w`` ``(N, ..., 1, 1)`` (summing to one) in the working
        dtype, the mean returned in it; ``input_dtype`` is the dtype of the user's data, which
        sets the accuracy of the implicit backward passes
        (:func:`~riemtorch.manifolds.spd.common.implicit_rtol`). For layers that promote their
        input once and keep the working dtype throughout."""
        if self.power == 1:
            return self._mean(xs, w, tol, max_iter, input_dtype)
        if self.power == 0:
            return self._phi_inv((w * self._phi(xs)).sum(0))
        return self._phi_inv(self._mean(self._phi(xs), w, tol, max_iter, input_dtype))

    # ---- points, vectors, checks -----------------------------------------------------------------
    def projx(self, x):
        common.check_ambient(x, "matrix")
        return common.project_spd(x)

    def proju(self, x, u):
        common.check_ambient(u, "vector")
        return sym(u).expand(torch.broadcast_shapes(x.shape, u.shape))

    def random(self, *size, n: int = 3, cond=None, dtype=None, device=None, generator=None):
        """Random SPD ``n x n`` matrices with batch shape ``size`` (see
        :func:`riemtorch.manifolds.spd.common.random_spd`; ``cond`` sets the condition number)."""
        return common.random_spd(*size, n=n, cond=cond, dtype=dtype, device=device,
                                 generator=generator)

    def origin(self, *size, n: int = 3, dtype=None, device=None):
        """Identity matrices ``(*size, n, n)``: the base point and gyro identity."""
        return common.identity(n, size, dtype=dtype, device=device)

    def origin_like(self, x):
        return common.identity(x.shape[-1], x.shape[:-2], dtype=x.dtype, device=x.device)

    def _check_shape(self, shape, name):
        if len(shape) < 2 or shape[-1] != shape[-2]:
            return False, f"{name} must have shape (..., n, n), got {tuple(shape)}"
        return True, None

    def _check_symmetric(self, x, atol, rtol):
        if x.numel() == 0:
            return True, None
        asym = float((x - x.transpose(-1, -2)).abs().amax())
        bound = atol + rtol * float(x.abs().amax())
        if asym > bound:
            return False, f"not symmetric: max |X - X^T| = {asym:.3g} (tolerance {bound:.3g})"
        return True, None

    def _check_point_on_manifold(self, x, atol, rtol):
        ok, reason = self._check_symmetric(x, atol, rtol)
        if not ok:
            return ok, reason
        _, (y,) = common.promote(x)
        info = torch.linalg.cholesky_ex(sym(y))[1]
        if bool((info > 0).any()):
            return False, "not positive definite (Cholesky factorisation failed)"
        return True, None

    def _check_vector_on_tangent(self, x, u, atol, rtol):
        return self._check_symmetric(u, atol, rtol)


class GyroSPDManifold(SPDManifold):
    """An SPD metric with a gyrovector structure; ``origin()`` (the identity) is its identity.

    Subclasses implement ``_gyroadd``, ``_gyroinv``, ``_gyroscalarmul`` and ``_gyration`` for
    the undeformed metric; with a power deformation the operations are conjugated by
    ``phi(X) = X^theta`` (the log-Euclidean group ``exp(log X + log Y)`` for ``power = 0``).
    """

    def _gyroadd(self, x, y):
        raise NotImplementedError

    def _gyroinv(self, x):
        raise NotImplementedError

    def _gyroscalarmul(self, t, x):
        raise NotImplementedError

    def _gyration(self, x, y, z):
        raise NotImplementedError

    def _conjugate(self, op, *points):
        if self.power == 1:
            return op(*points)
        return self._phi_inv(op(*[self._phi(p) for p in points]))

    def gyroadd(self, x, y):
        """Gyro addition ``x (+) y``, shapes ``(..., n, n)`` that broadcast."""
        dtype, (x, y) = self._points(x, y)
        op = (lambda a, b: a + b) if self.power == 0 else self._gyroadd
        return self._conjugate(op, x, y).to(dtype)

    def gyroinv(self, x):
        """Gyro inverse ``(-) x``: the matrix inverse under the affine-invariant and
        log-Euclidean structures; under the log-Cholesky one, the inverse in its group of
        Cholesky factors (strictly lower part negated, diagonal inverted), which is not the
        matrix inverse."""
        dtype, (x,) = self._points(x)
        op = (lambda a: -a) if self.power == 0 else self._gyroinv
        return self._conjugate(op, x).to(dtype)

    def gyroscalarmul(self, t, x):
        """Scalar multiplication ``t (*) x``; ``t`` a number or a tensor of the batch shape."""
        dtype, (x,) = self._points(x)
        t = self._t(t, x.dtype, x.device)
        op = (lambda a: t * a) if self.power == 0 else (lambda a: self._gyroscalarmul(t, a))
        return self._conjugate(op, x).to(dtype)

    def gyration(self, x, y, z):
        """Gyration ``gyr[x, y] z``."""
        dtype, (x, y, z) = self._points(x, y, z)
        if self.power == 0:
            # the identity, as a new tensor (never a view of the user's z)
            return z.expand(torch.broadcast_shapes(x.shape, y.shape, z.shape)).to(dtype, copy=True)
        return self._conjugate(self._gyration, x, y, z).to(dtype)
