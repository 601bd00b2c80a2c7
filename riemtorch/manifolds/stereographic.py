"""The kappa-stereographic model: Poincaré ball (``k < 0``), Euclidean space (``k = 0``) and the
stereographic projection of the sphere (``k > 0``), with their Möbius gyrovector structure."""

import torch

from riemtorch.manifolds import stereographic_math as sm
from riemtorch.manifolds.base import broadcast_batch, checks_inputs
from riemtorch.manifolds.curvature import ConstantCurvature, curvature_tensor


class Stereographic(ConstantCurvature):
    """kappa-stereographic model of constant curvature ``k`` on points ``(..., n)``.

    ``k < 0``: the Poincaré ball of radius ``1/sqrt(-k)``; ``k > 0``: the sphere of radius
    ``1/sqrt(k)`` seen through stereographic projection from its south pole (every point of
    ``R^n`` is a point; the pole is at infinity); ``k = 0``: ``R^n`` with metric ``4 <u, v>``.
    The metric at ``x`` is ``lambda_x^2 <u, v>``, ``lambda_x = 2 / (1 + k|x|^2)``; all formulas
    are smooth in ``k`` through 0, so the curvature can be learned and may change sign.
    The plain functions live in :mod:`riemtorch.manifolds.stereographic_math`.

    Gyro structure: ``gyroadd`` is Möbius addition, ``gyroscalarmul`` Möbius scalar
    multiplication, ``gyroinv(x) = -x``, ``gyration`` Ungar's closed form; the origin is the
    identity. ``transp`` is parallel transport ``(lambda_x/lambda_y) gyr[y, -x] v``.

    For ``k < 0``, results of ``projx``, ``expmap``, ``expmap0``, ``gyroadd`` and
    ``gyroscalarmul`` are kept strictly inside the ball: ``sqrt(-k)|x| <= 1 - margin`` with
    ``margin = 1e-5`` (float32) or ``1e-10`` (float64), i.e. up to a distance of about
    ``12.2/sqrt(-k)`` (float32) and ``23.7/sqrt(-k)`` (float64) from the origin. ``dist`` and
    ``logmap`` keep their digits between any such points; ``expmap`` goes through the Möbius sum
    with a point at the step's length from the origin, and its error in distance grows like
    ``eps exp(d(0, x) + |v|)`` (in units of ``1/sqrt(-k)``), so long steps from far points lose
    accuracy even between points inside the limit (float64, ``expmap(x, logmap(x, y))`` lands
    6e-8 from ``y`` for ``x`` 10 from the origin and a step of 11, 2e-3 for 15 and 19;
    float32, two points 7.6 from the origin in orthogonal directions, 14.5 apart: ``logmap(x,
    y)`` is accurate to 6e-6, the round trip lands 12 away); take long steps in float64.
    For ``k > 0`` every geodesic from ``x`` reaches its antipode ``-x/(k|x|^2)``, so near it
    the direction of ``logmap`` and the rotation of ``transp`` are ill-conditioned: at a
    relative distance ``delta`` they are off by about ``eps/delta`` (float32: 3e-4 at
    ``delta = 1e-4``), while ``dist``, the length of ``logmap`` and the isometry of ``transp``
    hold to rounding. At the antipode both follow the line through the origin. Near the pole
    (chart radius ``|x| >> 1/sqrt(k)``) ``dist(x, y)`` and the length of ``logmap(x, y)`` err
    by about ``eps sqrt(k) |x|`` relative (float64, ``|x| = 1e7``: 3e-10), where ``dist(y, x)``
    with the nearer point first keeps its digits.

    Parameters
    ----------
    k : float or torch.Tensor
        Sectional curvature.
    learnable : bool
        Register ``k`` as an ``nn.Parameter`` (else a buffer).
    dtype : torch.dtype, optional
        Storage dtype of ``k`` (default float64, so float64 work sees the exact value). It is
        cast to the dtype of the points at every use.
    """

    ndim = 1

    def __init__(self, k=0.0, learnable: bool = False, dtype=None):
        super().__init__(k, learnable, dtype)

    # ---- checks --------------------------------------------------------------------------------
    def _check_point_on_manifold(self, x, atol, rtol):
        k = float(self.k.detach())
        if k < 0 and x.numel():
            radius = float((-k) ** 0.5 * x.detach().norm(dim=-1).amax())
            if not radius < 1:
                return False, (f"sqrt(-k)|x| = {radius:.6g} is not below 1 "
                               f"(outside the ball of radius {(-k) ** -0.5:.6g})")
        return True, None

    def _check_vector_on_tangent(self, x, u, atol, rtol):
        return True, None

    # ---- metric ------------------------------------------------------------------------------
    @checks_inputs("point")
    def lambda_x(self, x, keepdim: bool = False):
        """Conformal factor ``2 / (1 + k|x|^2)``."""
        return sm.lambda_x(x, self._k(x), keepdim=keepdim)

    @checks_inputs("ambient")
    def projx(self, x):
        return sm.project(x, k=self._k(x))

    @checks_inputs("point", "ambient")
    def proju(self, x, u):
        return u.expand(torch.broadcast_shapes(x.shape, u.shape))

    @checks_inputs("point", "ambient")
    def egrad2rgrad(self, x, g):
        return g / sm.lambda_x(x, self._k(x), keepdim=True) ** 2

    @checks_inputs("point", "tangent vector", "tangent vector")
    def inner(self, x, u, v=None, keepdim=False):
        res = sm.inner(x, u, v, k=self._k(x), keepdim=keepdim)
        return broadcast_batch(res, x, self.ndim, keepdim)

    @checks_inputs("point", "tangent vector")
    def norm(self, x, u, keepdim=False):
        res = sm.norm(x, u, k=self._k(x), keepdim=keepdim)
        return broadcast_batch(res, x, self.ndim, keepdim)

    @checks_inputs("point", "point")
    def dist(self, x, y, keepdim=False):
        return sm.dist(x, y, k=self._k(x), keepdim=keepdim)

    @checks_inputs("point", "point")
    def dist2(self, x, y, keepdim=False):
        return sm.dist(x, y, k=self._k(x), keepdim=keepdim).square()

    @checks_inputs("point")
    def dist0(self, x, keepdim=False):
        """Distance from the origin."""
        return sm.dist0(x, k=self._k(x), keepdim=keepdim)

    # ---- maps --------------------------------------------------------------------------------
    @checks_inputs("point", "tangent vector")
    def expmap(self, x, u):
        return sm.expmap(x, u, k=self._k(x), project=True)

    @checks_inputs("point", "point")
    def logmap(self, x, y):
        return sm.logmap(x, y, k=self._k(x))

    @checks_inputs("tangent vector")
    def expmap0(self, u):
        """Exponential map at the origin."""
        return sm.expmap0(u, k=self._k(u), project=True)

    @checks_inputs("point")
    def logmap0(self, y):
        """Logarithm at the origin."""
        return sm.logmap0(y, k=self._k(y))

    @checks_inputs("point", "point", "tangent vector")
    def transp(self, x, y, v):
        return sm.parallel_transport(x, y, v, k=self._k(x))

    @checks_inputs("point", "tangent vector")
    def transp0(self, y, v):
        """Parallel transport of ``v`` from the origin to ``y``: ``(2 / lambda_y) v``."""
        return 2 / sm.lambda_x(y, self._k(y), keepdim=True) * v

    @checks_inputs("point", "tangent vector")
    def transp0back(self, x, v):
        """Parallel transport of ``v`` from ``x`` to the origin: ``(lambda_x / 2) v``."""
        return sm.lambda_x(x, self._k(x), keepdim=True) / 2 * v

    # ---- gyro structure ----------------------------------------------------------------------
    @checks_inputs("point", "point")
    def gyroadd(self, x, y):
        """Möbius addition ``x ⊕ y`` (in its ball form on a :class:`PoincareBall`, whose
        curvature is negative for good; see
        :func:`~riemtorch.manifolds.stereographic_math.mobius_add`)."""
        return sm.mobius_add(x, y, k=self._k(x), project=True, ball=self.curvature_sign < 0)

    @checks_inputs("point")
    def gyroinv(self, x):
        """Gyro inverse ``⊖x = -x``."""
        return -x

    @checks_inputs(None, "point")
    def gyroscalarmul(self, t, x):
        """Möbius scalar multiplication ``t ⊗ x``; ``t`` a number or a tensor over the batch."""
        if isinstance(t, torch.Tensor):
            t = t.to(x.dtype).reshape(t.shape + (1,))
        return sm.mobius_scalar_mul(t, x, k=self._k(x), project=True)

    @checks_inputs("point", "point", "tangent vector")
    def gyration(self, x, y, z):
        """Gyration ``gyr[x, y] z``."""
        return sm.gyration(x, y, z, k=self._k(z))

    # ---- sampling ----------------------------------------------------------------------------
    def random(self, *size, n=3, std=0.5, dtype=None, device=None, generator=None):
        """``expmap0`` of a tangent vector at the origin whose coordinates in an orthonormal
        basis are N(0, std^2): points at distance about ``std sqrt(n)`` from the origin (data:
        no autograd history, also under a learnable curvature)."""
        u = torch.randn(*size, n, dtype=dtype, device=device, generator=generator)
        with torch.no_grad():
            return self.expmap0(u * (std / 2))

    def origin(self, *size, n=3, dtype=None, device=None):
        return torch.zeros(*size, n, dtype=dtype, device=device)

    def origin_like(self, x):
        return torch.zeros_like(x)

    def _initial_mean(self, x, w):
        # Start the Karcher flow from the weighted mean in the tangent space at the origin.
        return self.expmap0(self.scale_tangent(w, self.logmap0(x)).sum(0))


class PoincareBall(Stereographic):
    """The Poincaré ball of curvature ``-c`` (radius ``1/sqrt(c)``): :class:`Stereographic`
    with ``k = -c``.

    Distance ``(2/sqrt(c)) artanh(sqrt(c) |(-x) ⊕ y|)``. The curvature is read as ``k`` (a
    buffer, or ``-exp(log c)`` when learnable); :attr:`c` reads ``-k``.

    Parameters
    ----------
    c : float or torch.Tensor
        Positive curvature magnitude.
    learnable : bool
        Learn the curvature: the trained ``nn.Parameter`` is ``log c``, so ``c`` stays positive
        (:class:`~riemtorch.manifolds.curvature.ConstantCurvature`).
    dtype : torch.dtype, optional
        Storage dtype of the curvature (default float64).

    Examples
    --------
    >>> import torch
    >>> ball = PoincareBall(1.0)
    >>> x = ball.expmap0(torch.tensor([0.3, 0.0], dtype=torch.float64))
    >>> float(ball.dist0(x))
    0.6
    """

    curvature_sign = -1

    def __init__(self, c=1.0, learnable: bool = False, dtype=None):
        c = curvature_tensor(c, "c", dtype)
        if not bool(c > 0):
            raise ValueError(f"PoincareBall needs c > 0, got {float(c)}")
        super().__init__(-c, learnable=learnable, dtype=dtype)

    @property
    def c(self) -> torch.Tensor:
        """Curvature magnitude ``c = -k``."""
        return -self.k

    def extra_repr(self) -> str:
        return f"c={-float(self.k.detach()):g}, learnable={self.learnable}"
