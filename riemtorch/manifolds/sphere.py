"""The unit sphere ``S^{n-1}`` in ``R^n`` with the round metric."""

import torch

from riemtorch.linalg.safe import safe_norm
from riemtorch.linalg.vector import dot
from riemtorch.manifolds.base import Manifold, broadcast_batch, checks_inputs


def _antipodal_direction(x):
    """Tangent part at ``x`` of the basis vector ``e_k`` with the smallest ``|x_k|`` (norm at
    least ``sqrt(1 - 1/n)``): a fixed direction of travel from ``x`` to ``-x``."""
    k = x.detach().abs().argmin(-1, keepdim=True)
    e = torch.zeros_like(x).scatter(-1, k, 1.0)
    return e - dot(x, e) * x


def _direction_of_travel(x, w):
    """``(u, degenerate)``: the unit direction of ``w = y - <x,y> x`` at ``x``, and where ``w``
    is below rounding. Near ``-x``, ``w`` is mostly rounding error: it is re-projected on the
    tangent space at ``x``, and below ``eps`` (where its direction is noise) replaced by the
    fixed direction of :func:`_antipodal_direction`."""
    w = w - dot(x, w) * x
    degenerate = safe_norm(w, keepdim=True) <= torch.finfo(w.dtype).eps
    w = torch.where(degenerate, _antipodal_direction(x).expand_as(w), w)
    return w / safe_norm(w, keepdim=True), degenerate


def _normalized(x):
    """``x / |x|`` over the last dimension."""
    return x / x.norm(dim=-1, keepdim=True)


class Sphere(Manifold):
    """Unit vectors ``(..., n)`` with the metric induced by ``R^n``.

    Exact exponential and logarithm maps, distance ``atan2(|y - <x,y>x|, <x,y>)`` (accurate at
    small and near-antipodal separations, finite gradient at ``x = y``), and parallel transport
    along the minimising geodesic (see :meth:`transp`). The retraction is the metric projection
    ``(x + u)/|x + u|``; the origin is the first basis vector.
    """

    ndim = 1

    def _check_shape(self, shape, name):
        if len(shape) < 1 or shape[-1] < 2:
            return False, f"{name} must have shape (..., n) with n >= 2, got {tuple(shape)}"
        return True, None

    def _check_point_on_manifold(self, x, atol, rtol):
        err = (x.norm(dim=-1) - 1).abs().amax() if x.numel() else torch.tensor(0.0)
        if bool(err > atol):
            return False, f"norm differs from 1 by {float(err):.3g} (tolerance {atol:g})"
        return True, None

    def _check_vector_on_tangent(self, x, u, atol, rtol):
        err = dot(x, u).abs().amax() if u.numel() else torch.tensor(0.0)
        if bool(err > atol):
            return False, f"<x, u> = {float(err):.3g}, expected 0 (tolerance {atol:g})"
        return True, None

    @checks_inputs("ambient")
    def projx(self, x):
        return _normalized(x)

    @checks_inputs("point", "ambient")
    def proju(self, x, u):
        return u - dot(x, u) * x

    @checks_inputs("point", "tangent vector", "tangent vector")
    def inner(self, x, u, v=None, keepdim=False):
        v = u if v is None else v
        return broadcast_batch(dot(u, v, keepdim), x, self.ndim, keepdim)

    @checks_inputs("point", "tangent vector")
    def norm(self, x, u, keepdim=False):
        return broadcast_batch(safe_norm(u, keepdim=keepdim), x, self.ndim, keepdim)

    @checks_inputs("point", "tangent vector")
    def expmap(self, x, u):
        n = safe_norm(u, keepdim=True)
        return _normalized(torch.cos(n) * x + torch.sinc(n / torch.pi) * u)

    @checks_inputs("point", "tangent vector")
    def retr(self, x, u):
        return _normalized(x + u)

    def _chord(self, x, y):
        """``(y - <x,y>x, |y - <x,y>x|, <x,y>)``: direction, sine and cosine of the angle."""
        c = dot(x, y)
        v = y - c * x
        return v, safe_norm(v, keepdim=True), c

    @checks_inputs("point", "point")
    def logmap(self, x, y):
        """``atan2(s, c) / s (y - c x)`` with ``c = <x, y>``, ``s = |y - c x|``. At ``y = -x``
        (``y - c x`` below rounding, re-projected on the tangent space) the direction is the
        fixed one of :meth:`transp`: ``pi`` times the unit tangent part of ``e_k``, so that
        ``expmap(x, logmap(x, -x)) = -x`` and ``transp(x, -x, logmap(x, -x)) = -logmap(-x, x)``."""
        v, s, c = self._chord(x, y)
        theta = torch.atan2(s, c)
        unit, degenerate = _direction_of_travel(x, v)
        degenerate = degenerate & (c < 0)
        return torch.where(degenerate, theta * unit, theta / torch.where(degenerate, 1.0, s) * v)

    @checks_inputs("point", "point")
    def dist(self, x, y, keepdim=False):
        return self._angle(x, y, keepdim)

    @checks_inputs("point", "point")
    def dist2(self, x, y, keepdim=False):
        return self._angle(x, y, keepdim).square()

    def _angle(self, x, y, keepdim):
        _, s, c = self._chord(x, y)
        d = torch.atan2(s, c)
        return d if keepdim else d.squeeze(-1)

    @checks_inputs("point", "point", "tangent vector")
    def transp(self, x, y, v):
        """Parallel transport of ``v`` from ``x`` to ``y`` along the minimising geodesic.

        With ``w = y - <x,y> x = sin(theta) u`` (``u`` the unit direction of travel, ``theta`` the
        angle) it is the rotation of the plane ``(x, u)`` by ``theta``:
        ``v - <u,v> ((1 - cos theta) u + sin theta x)``. For ``c = <x,y> >= 0`` it is evaluated
        as ``v - <w,v> (w / (r (r + c)) + x / r)`` (``r = hypot(|w|, c)``), smooth at ``x = y``;
        beyond a right angle with the unit ``u``, which keeps it an isometry up to ``y = -x``
        (the textbook ``v - <y,v>/(1 + c) (x + y)`` cancels catastrophically there: NaN in
        float32 within 3e-4 of the antipode). At ``y = -x`` every half great circle is
        minimising; the one used leaves ``x`` towards the basis vector ``e_k`` with the smallest
        ``|x_k|``, so the transport is the reflection ``v - 2 <u,v> u`` with ``u`` the unit
        tangent part of ``e_k`` (for ``n = 2``: ``-v``, the transport along either half circle).
        """
        w, s, c = self._chord(x, y)
        r = torch.hypot(s, c)
        near = self._transp_near(x, w, v, r, c)
        far = self._transp_far(x, w, v, r, s, c)
        return torch.where(c >= 0, near, far)

    @staticmethod
    def _transp_near(x, w, v, r, c):
        """Transport for ``<x,y> >= 0`` in terms of ``w``; ``c`` is clamped so that the unused
        branch of :meth:`transp` stays finite (``torch.where`` would turn inf into NaN grads)."""
        c = c.clamp_min(0)
        return v - dot(w, v) * (w / (r * (r + c)) + x / r)

    @staticmethod
    def _transp_far(x, w, v, r, s, c):
        """Transport for ``<x,y> < 0`` along the unit direction of travel."""
        u, _ = _direction_of_travel(x, w)
        return v - dot(u, v) * ((1 - c / r) * u + s / r * x)

    def random(self, *size, n=3, dtype=None, device=None, generator=None):
        """Uniform points on the sphere in ``R^n``, batch shape ``size``."""
        g = torch.randn(*size, n, dtype=dtype, device=device, generator=generator)
        return _normalized(g)

    def origin(self, *size, n=3, dtype=None, device=None):
        e = torch.zeros(*size, n, dtype=dtype, device=device)
        e[..., 0] = 1
        return e

    def origin_like(self, x):
        return self.origin(*x.shape[:-1], n=x.shape[-1], dtype=x.dtype, device=x.device)

    def _initial_mean(self, x, w):
        m = self.scale_tangent(w, x).sum(0)
        return _normalized(torch.where(safe_norm(m, keepdim=True) > 1e-3, m, x[0]))
