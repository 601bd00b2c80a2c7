"""The hyperboloid (Lorentz) model of hyperbolic space, with the gyro structure of the
Poincaré ball carried over by the isometry between the two models."""

import torch

from riemtorch.manifolds import lorentz_math as lm
from riemtorch.manifolds import stereographic_math as sm
from riemtorch.manifolds.base import checks_inputs
from riemtorch.manifolds.curvature import ConstantCurvature, curvature_tensor


class Lorentz(ConstantCurvature):
    """Hyperboloid ``{x in R^(d+1) : <x, x>_L = -k, x_0 > 0}`` of curvature ``-1/k``.

    Points and tangent vectors have shape ``(..., d + 1)``; the metric is the Minkowski product
    ``<u, v>_L = -u_0 v_0 + sum_i u_i v_i``. Exponential and logarithm maps, distance and
    parallel transport are closed forms; ``projx`` recomputes ``x_0 = sqrt(k + |x_{1:}|^2)``
    from the spatial part and ``expmap`` ends with it, so points stay on the hyperboloid over
    many steps. Distances and logarithms are accurate near and far from the origin, and
    distances have a finite gradient at ``x = y`` (see :mod:`riemtorch.manifolds.lorentz_math`).
    ``expmap`` is not, far from the origin: there the components of a tangent vector ``u`` are
    about ``|u| cosh r`` (``r`` the distance from the origin) and carry rounding errors of that
    size times ``eps``, which the exponential map amplifies by up to ``sinh |u|``; its terms
    ``cosh(theta) x`` and ``sinh(theta) u / |u|`` also cancel where the step heads back toward
    the origin (float64, both points at distance ``r`` from the origin, 20 random pairs:
    ``d(Exp_x(Log_x y), y)`` up to ``1.5e-10`` at ``r = 5``, ``1e-6`` at 8, ``6e-4`` at 10 and
    ``0.15`` at 12).

    Range: coordinates grow like ``exp(r / sqrt(k))``, and the formulas are arranged so that no
    product of two of them is formed; the maps stay finite (distances exact to rounding) for
    points up to about ``43 sqrt(k)`` from the origin in float32 and ``350 sqrt(k)`` in
    float64, where the squares of the coordinates leave the dtype's range (a tangent vector
    ``u`` at such a point has coordinates about ``|u| cosh(r / sqrt(k))``, so its squared
    norm overflows somewhat nearer).
    Beyond this range, with validation on (:mod:`riemtorch.config`), methods raise
    ``ValueError`` instead of returning ``inf`` or ``NaN``. ``gyroadd`` goes through the
    Poincaré ball, which resolves points up to about ``37 sqrt(k)`` from the origin in float64
    and ``17 sqrt(k)`` in float32: its results are clipped to that distance, as the ball's own
    points are clipped at its margin.

    Gyro structure: ``gyroadd``, ``gyroinv``, ``gyroscalarmul`` and ``gyration`` are the Möbius
    operations of the Poincaré ball of curvature ``-1/k`` transported by the isometry
    :meth:`lorentz_to_poincare`; the origin ``(sqrt(k), 0, ..., 0)`` is the identity.

    Fréchet mean: the damped Karcher flow
    (:meth:`~riemtorch.manifolds.base.Manifold.frechet_mean`) started at the closed-form Lorentz
    :meth:`centroid` (Law et al. 2019).

    Parameters
    ----------
    k : float or torch.Tensor
        Positive curvature parameter (``-1/k`` is the sectional curvature).
    learnable : bool
        Learn ``k`` (else it is a buffer): the trained ``nn.Parameter`` is ``log k``, so ``k``
        stays positive (:class:`~riemtorch.manifolds.curvature.ConstantCurvature`).
    dtype : torch.dtype, optional
        Storage dtype of ``k`` (default float64); it is cast to the points' dtype at each use.
    """

    ndim = 1
    curvature_sign = 1

    def _finite_range_hint(self, dtype: torch.dtype) -> str:
        reach = {torch.float32: "43 sqrt(k)", torch.float64: "350 sqrt(k)"}.get(dtype)
        if reach is None:
            return super()._finite_range_hint(dtype)
        wider = ", compute in float64 or" if dtype != torch.float64 else ","
        return (f"an undefined value (such as 0 / 0), or an overflow: the hyperboloid's "
                f"coordinates grow like exp(r / sqrt(k)) with the distance r from the origin "
                f"and leave the range of {dtype} beyond about {reach}{wider} keep points "
                f"nearer the origin")

    def __init__(self, k=1.0, learnable: bool = False, dtype=None):
        if not bool(curvature_tensor(k, "k", dtype) > 0):
            raise ValueError(f"Lorentz needs k > 0, got {float(k)}")
        super().__init__(k, learnable, dtype)

    # ---- checks --------------------------------------------------------------------------------
    def _check_shape(self, shape, name):
        if len(shape) < 1 or shape[-1] < 2:
            return False, f"{name} must have shape (..., d + 1) with d >= 1, got {tuple(shape)}"
        return True, None

    def _check_point_on_manifold(self, x, atol, rtol):
        if not x.numel():
            return True, None
        x = x.detach()
        if bool((x[..., 0] <= 0).any()):
            return False, "x_0 <= 0: the point is not on the upper sheet of the hyperboloid"
        k = self._k(x)
        # <x, x>_L cancels terms of size |x|^2, so its rounding error grows like |x|^2.
        excess = (lm.minkowski_inner(x, x) + k).abs() - (atol * k + rtol * x.square().sum(-1))
        if bool(excess.amax() > 0):
            worst = (lm.minkowski_inner(x, x) + k).abs().amax().detach()
            return False, (f"<x, x>_L differs from -k = {-float(self.k.detach()):g} "
                           f"by {float(worst):.3g} "
                           f"(tolerance atol*k + rtol*|x|^2, atol={atol:g}, rtol={rtol:g})")
        return True, None

    def _check_vector_on_tangent(self, x, u, atol, rtol):
        if not u.numel():
            return True, None
        x, u = x.detach(), u.detach()
        err = lm.minkowski_inner(x, u).abs() / (1 + x.norm(dim=-1) * u.norm(dim=-1))
        if bool(err.amax() > atol):
            return False, f"<x, u>_L = {float(err.amax()):.3g} (relative), expected 0"
        return True, None

    # ---- metric ------------------------------------------------------------------------------
    @checks_inputs("ambient")
    def projx(self, x):
        return lm.project(x, k=self._k(x))

    @checks_inputs("point", "ambient")
    def proju(self, x, u):
        return lm.project_u(x, u, k=self._k(x))

    @checks_inputs("point", "ambient")
    def egrad2rgrad(self, x, g):
        return lm.egrad2rgrad(x, g, k=self._k(x))

    @checks_inputs("point", "tangent vector", "tangent vector")
    def inner(self, x, u, v=None, keepdim=False):
        """``<u, v>_L`` of tangent vectors at ``x``, accurate far from the origin
        (:func:`~riemtorch.manifolds.lorentz_math.tangent_inner`)."""
        v = u if v is None else v
        return lm.tangent_inner(x, u, v, k=self._k(x), keepdim=keepdim)

    @checks_inputs("point", "tangent vector")
    def norm(self, x, u, keepdim=False):
        return lm.norm(x, u, k=self._k(x), keepdim=keepdim)

    @checks_inputs("point", "point")
    def dist(self, x, y, keepdim=False):
        return lm.dist(x, y, k=self._k(x), keepdim=keepdim)

    @checks_inputs("point", "point")
    def dist2(self, x, y, keepdim=False):
        return lm.dist(x, y, k=self._k(x), keepdim=keepdim).square()

    @checks_inputs("point")
    def dist0(self, x, keepdim=False):
        """Distance from the origin."""
        origin = self.origin(dtype=x.dtype, device=x.device, n=x.shape[-1])
        return lm.dist(origin, x, k=self._k(x), keepdim=keepdim)

    # ---- maps --------------------------------------------------------------------------------
    @checks_inputs("point", "tangent vector")
    def expmap(self, x, u):
        return lm.expmap(x, u, k=self._k(x))

    @checks_inputs("point", "point")
    def logmap(self, x, y):
        return lm.logmap(x, y, k=self._k(x))

    @checks_inputs("tangent vector")
    def expmap0(self, u):
        """Exponential map at the origin (the time coordinate of ``u`` is ignored)."""
        return lm.expmap0(u, k=self._k(u))

    @checks_inputs("point")
    def logmap0(self, y):
        """Logarithm at the origin (time coordinate 0)."""
        return lm.logmap0(y, k=self._k(y))

    @checks_inputs("point", "point", "tangent vector")
    def transp(self, x, y, v):
        return lm.parallel_transport(x, y, v, k=self._k(x))

    # ---- the isometry to the Poincaré ball and the gyro structure ------------------------------
    @checks_inputs("point")
    def lorentz_to_poincare(self, x):
        """Map to the Poincaré ball of curvature ``-1/k``, i.e. ``PoincareBall(1/k)``."""
        return lm.lorentz_to_poincare(x, self._k(x))

    def poincare_to_lorentz(self, p):
        """Inverse of :meth:`lorentz_to_poincare`."""
        return lm.poincare_to_lorentz(p, self._k(p))

    @checks_inputs("point", "point")
    def gyroadd(self, x, y):
        """Möbius addition carried over from the ball."""
        k = self._k(x)
        p = sm.mobius_add(lm.lorentz_to_poincare(x, k), lm.lorentz_to_poincare(y, k), k=-1 / k,
                          ball=True)
        return lm.poincare_to_lorentz(p, k)

    @checks_inputs("point")
    def gyroinv(self, x):
        """``⊖x = (x_0, -x_{1:})``."""
        return torch.cat((x[..., :1], -x[..., 1:]), dim=-1)

    @checks_inputs(None, "point")
    def gyroscalarmul(self, t, x):
        """``t ⊗ x = expmap0(t logmap0(x))``; ``t`` a number or a tensor over the batch."""
        k = self._k(x)
        return lm.expmap0(self.scale_tangent(t, lm.logmap0(x, k=k)), k=k)

    @checks_inputs("point", "point", "tangent vector")
    def gyration(self, x, y, z):
        """``gyr[x, y] z``: the ball gyration (linear, orthogonal) acting on the spatial part."""
        k = self._k(z)
        zs = sm.gyration(lm.lorentz_to_poincare(x, k), lm.lorentz_to_poincare(y, k), z[..., 1:],
                         k=-1 / k)
        return torch.cat((z[..., :1].expand(zs.shape[:-1] + (1,)), zs), dim=-1)

    # ---- sampling and means ------------------------------------------------------------------
    def random(self, *size, n=3, std=0.5, dtype=None, device=None, generator=None):
        """``expmap0`` of a tangent vector at the origin with N(0, std^2) spatial coordinates:
        points at distance about ``std sqrt(n - 1)`` from the origin; ``n = d + 1`` (data: no
        autograd history, also under a learnable curvature)."""
        u = torch.randn(*size, n, dtype=dtype, device=device, generator=generator)
        with torch.no_grad():
            return self.expmap0(u * std)

    def origin(self, *size, n=3, dtype=None, device=None):
        sqrt_k = self.k.to(dtype=dtype or torch.get_default_dtype(), device=device).sqrt()
        rest = torch.zeros(*size, n - 1, dtype=sqrt_k.dtype, device=device)
        return torch.cat((sqrt_k.expand(*size, 1), rest), dim=-1)

    def origin_like(self, x):
        return self.origin(*x.shape[:-1], n=x.shape[-1], dtype=x.dtype, device=x.device)

    @checks_inputs("point")
    def centroid(self, x, weights=None, dim: int = 0, keepdim: bool = False):
        """Closed-form Lorentz centroid (Law et al. 2019) over batch dimension ``dim``: the
        minimiser of the weighted squared Lorentzian distance ``-2k - 2<x, mu>_L``."""
        xs, w, dim = self._stack_and_weights(x, weights, dim)
        mean = lm.centroid(xs, w, k=self._k(x))
        return mean.unsqueeze(dim) if keepdim else mean

    def _initial_mean(self, x, w):
        return lm.centroid(x, w, k=self._k(x))
