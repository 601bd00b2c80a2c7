"""The unit sphere ``S^{n-1}`` in ``R^n`` with the round metric."""

import torch

from riemtorch.linalg.safe import safe_norm
from riemtorch.manifolds.base import Manifold, broadcast_batch


def _dot(x, y, keepdim=True):
    return (x * y).sum(-1, keepdim=keepdim)


class Sphere(Manifold):
    """Unit vectors ``(..., n)`` with the metric induced by ``R^n``.

    Exact exponential and logarithm maps, distance ``atan2(|y - <x,y>x|, <x,y>)`` (accurate at
    small and near-antipodal separations, finite gradient at ``x = y``), and parallel transport
    along the minimising geodesic ``v - <y,v>/(1+<x,y>) (x + y)``. The retraction is the metric
    projection ``(x + u)/|x + u|``; the origin is the first basis vector.
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
        err = _dot(x, u).abs().amax() if u.numel() else torch.tensor(0.0)
        if bool(err > atol):
            return False, f"<x, u> = {float(err):.3g}, expected 0 (tolerance {atol:g})"
        return True, None

    def projx(self, x):
        return x / x.norm(dim=-1, keepdim=True)

    def proju(self, x, u):
        return u - _dot(x, u) * x

    def inner(self, x, u, v=None, keepdim=False):
        v = u if v is None else v
        return broadcast_batch(_dot(u, v, keepdim), x, self.ndim, keepdim)

    def norm(self, x, u, keepdim=False):
        return broadcast_batch(safe_norm(u, keepdim=keepdim), x, self.ndim, keepdim)

    def expmap(self, x, u):
        n = safe_norm(u, keepdim=True)
        return self.projx(torch.cos(n) * x + torch.sinc(n / torch.pi) * u)

    def retr(self, x, u):
        return self.projx(x + u)

    def _chord(self, x, y):
        """``(y - <x,y>x, |y - <x,y>x|, <x,y>)``: direction, sine and cosine of the angle."""
        c = _dot(x, y)
        v = y - c * x
        return v, safe_norm(v, keepdim=True), c

    def logmap(self, x, y):
        v, s, c = self._chord(x, y)
        return torch.atan2(s, c) / s * v

    def dist(self, x, y, keepdim=False):
        _, s, c = self._chord(x, y)
        d = torch.atan2(s, c)
        return d if keepdim else d.squeeze(-1)

    def dist2(self, x, y, keepdim=False):
        return self.dist(x, y, keepdim).square()

    def transp(self, x, y, v):
        return v - _dot(y, v) / (1 + _dot(x, y)) * (x + y)

    def random(self, *size, n=3, dtype=None, device=None, generator=None):
        """Uniform points on the sphere in ``R^n``, batch shape ``size``."""
        g = torch.randn(*size, n, dtype=dtype, device=device, generator=generator)
        return self.projx(g)

    def origin(self, *size, n=3, dtype=None, device=None):
        e = torch.zeros(*size, n, dtype=dtype, device=device)
        e[..., 0] = 1
        return e

    def origin_like(self, x):
        return self.origin(*x.shape[:-1], n=x.shape[-1], dtype=x.dtype, device=x.device)

    def _initial_mean(self, x, w):
        m = self.scale_tangent(w, x).sum(0)
        return self.projx(torch.where(safe_norm(m, keepdim=True) > 1e-3, m, x[0]))
