"""Flat space, the manifold of ordinary parameters."""

import torch

from riemtorch.linalg.checks import check_positive_int
from riemtorch.linalg.safe import safe_sqrt
from riemtorch.manifolds.base import Manifold, checks_inputs, mean_tolerance


class Euclidean(Manifold):
    """Euclidean space ``R^shape`` whose points have ``ndim`` trailing dimensions.

    Parameters
    ----------
    ndim : int
        Number of trailing dimensions forming one point (1: vectors, 2: matrices).
    """

    def __init__(self, ndim: int = 1):
        super().__init__()
        self.ndim = check_positive_int(ndim, "ndim", minimum=0)

    def extra_repr(self) -> str:
        return f"ndim={self.ndim}"

    def _sum(self, t: torch.Tensor, keepdim: bool) -> torch.Tensor:
        if self.ndim == 0:
            return t
        return t.sum(dim=tuple(range(-self.ndim, 0)), keepdim=keepdim)

    @checks_inputs("ambient")
    def projx(self, x):
        return x

    @checks_inputs("point", "ambient")
    def proju(self, x, u):
        return u.expand(torch.broadcast_shapes(x.shape, u.shape))

    @checks_inputs("point", "tangent vector", "tangent vector")
    def inner(self, x, u, v=None, keepdim=False):
        v = u if v is None else v
        prod = u * v
        return self._sum(prod.expand(torch.broadcast_shapes(x.shape, prod.shape)), keepdim)

    @checks_inputs("point", "tangent vector")
    def norm(self, x, u, keepdim=False):
        return safe_sqrt(self._sum(u.square().expand(torch.broadcast_shapes(x.shape, u.shape)),
                                   keepdim))

    @checks_inputs("point", "point")
    def dist(self, x, y, keepdim=False):
        """Euclidean distance; its gradient at ``x = y`` is 0 (not NaN)."""
        return safe_sqrt(self._sum((y - x).square(), keepdim))

    @checks_inputs("point", "point")
    def dist2(self, x, y, keepdim=False):
        return self._sum((y - x).square(), keepdim)

    @checks_inputs("point", "tangent vector")
    def expmap(self, x, u):
        return x + u

    @checks_inputs("point", "point")
    def logmap(self, x, y):
        return y - x

    @checks_inputs("point", "point", "tangent vector")
    def transp(self, x, y, v):
        return v.expand(torch.broadcast_shapes(x.shape, y.shape, v.shape))

    @checks_inputs("point", "point")
    def geodesic(self, x, y, t):
        return x + self.scale_tangent(t, y - x)

    def random(self, *size, shape=(3,), dtype=None, device=None, generator=None):
        """Standard normal points; ``shape`` is the point shape (``ndim`` dimensions)."""
        return torch.randn(*size, *shape, dtype=dtype, device=device, generator=generator)

    def origin(self, *size, shape=(3,), dtype=None, device=None):
        return torch.zeros(*size, *shape, dtype=dtype, device=device)

    def origin_like(self, x):
        return torch.zeros_like(x)

    def frechet_mean(self, x, weights=None, dim=0, keepdim=False, tol=None, max_iter=100):
        """Weighted arithmetic mean (the closed form; ``tol`` and ``max_iter`` are unused)."""
        xs, w, dim = self._stack_and_weights(x, weights, dim)
        mean_tolerance(tol, x.dtype)  # rejected as by the iterative means, for one contract
        mean = self.scale_tangent(w, xs).sum(0)
        return mean.unsqueeze(dim) if keepdim else mean

    def _check_point_on_manifold(self, x, atol, rtol):
        return True, None

    def _check_vector_on_tangent(self, x, u, atol, rtol):
        return True, None
