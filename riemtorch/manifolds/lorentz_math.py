"""Formulas of the hyperboloid (Lorentz) model (plain functions, usable without the class).

Points ``x = (x_0, x_1, ..., x_d)`` of shape ``(..., d + 1)`` satisfy
``<x, x>_L = -x_0^2 + sum_i x_i^2 = -k`` with ``x_0 > 0``; the sectional curvature is ``-1/k``
(the convention of geoopt's ``Lorentz(k)``). Tangent vectors at ``x`` satisfy ``<x, u>_L = 0``
and the metric is ``<u, v>_L``. ``k`` is a positive number or tensor broadcastable with
``(..., 1)``.

Numerics. The squared Minkowski chord ``q = <x - y, x - y>_L = -2k - 2<x, y>_L`` is computed
from the difference ``x - y`` when that is the more accurate form (close points) and from
``<x, y>_L`` otherwise (points far from each other or from the origin), and the distance is
``2 sqrt(k) arsinh(sqrt(q) / (2 sqrt(k)))``: accurate at small and large distances (no
``arcosh`` of a number near 1), with a finite (zero) gradient at ``x = y``. Results of
:func:`expmap` and :func:`expmap0` are put back on the hyperboloid by :func:`project`
(``x_0 = sqrt(k + |x_{1:}|^2)``), so repeated steps do not drift off it.
"""

import torch

from riemtorch.linalg.safe import safe_norm, safe_sqrt
from riemtorch.manifolds.stereographic_math import _ASIN, even_ratio

__all__ = [
    "minkowski_inner", "project", "project_u", "egrad2rgrad", "norm", "dist", "expmap",
    "expmap0", "logmap", "logmap0", "parallel_transport", "centroid", "lorentz_to_poincare",
    "poincare_to_lorentz",
]


def _as_k(k, like):
    return torch.as_tensor(k, dtype=like.dtype, device=like.device)


def _dot(a, b):
    """``sum_i a_i b_i`` over the last dimension, keeping it (size 1). For operands of one shape
    a contraction (no product temporary: about 2.5x faster on 100000 x 17 on CPU); broadcast
    operands (pairwise distances) keep the product-and-sum, which is faster for them."""
    if a.shape == b.shape:
        return torch.einsum("...i,...i->...", a, b).unsqueeze(-1)
    return (a * b).sum(-1, keepdim=True)


def minkowski_inner(u, v, keepdim=False):
    """``<u, v>_L = -u_0 v_0 + sum_i u_i v_i``, as ``sum_i u_i v_i - 2 u_0 v_0`` over the whole
    vectors (the same rounding, about ``eps |u| |v|``, as summing the spatial part first)."""
    res = _dot(u, v) - 2 * u[..., :1] * v[..., :1]
    return res if keepdim else res.squeeze(-1)


def project(x, *, k):
    """Point of the hyperboloid with the same spatial part: ``(sqrt(k + |x_{1:}|^2), x_{1:})``."""
    k = _as_k(k, x)
    xs = x[..., 1:]
    x0 = (k + xs.square().sum(-1, keepdim=True)).sqrt()
    return torch.cat((x0, xs), dim=-1)


def project_u(x, u, *, k):
    """Orthogonal (Minkowski) projection onto the tangent space: ``u + <x, u>_L x / k``."""
    return u + minkowski_inner(x, u, keepdim=True) / _as_k(k, x) * x


def egrad2rgrad(x, g, *, k):
    """Riemannian gradient: flip the sign of the time coordinate (``J g``), then project."""
    return project_u(x, torch.cat((-g[..., :1], g[..., 1:]), dim=-1), k=k)


def norm(u, keepdim=False):
    """``sqrt(<u, u>_L)`` of tangent vectors (clamped at 0; finite gradient at ``u = 0``)."""
    return safe_sqrt(minkowski_inner(u, u, keepdim=keepdim).clamp_min(0))


def _sinh_ratio(theta):
    """``sinh(theta) / theta`` for ``theta >= 0`` (series below ``1e-2``: exact to eps)."""
    th2 = theta * theta
    series = 1 + th2 * (1 / 6 + th2 / 120)
    safe = theta.clamp_min(1e-2)
    return torch.where(theta < 1e-2, series, torch.sinh(safe) / safe)


def _asinh_ratio(r):
    """``arsinh(r) / r``."""
    return even_ratio(-r * r, torch.asin, torch.asinh, _ASIN, pos_max=1.0)


def _chord2(x, y, k):
    """``<x - y, x - y>_L`` (>= 0) from whichever form has the smaller rounding error."""
    diff = x - y
    diff2 = _dot(diff, diff)
    via_diff = diff2 - 2 * diff[..., :1].square()
    via_inner = -2 * k - 2 * minkowski_inner(x, y, keepdim=True)
    # Rounding errors: ~eps |x - y|^2 (difference form) and ~eps x_0 y_0 (inner product form).
    use_diff = diff2 < 4 * x[..., :1] * y[..., :1]
    return torch.where(use_diff, via_diff, via_inner).clamp_min(0)


def dist(x, y, *, k, keepdim=False):
    """Geodesic distance ``sqrt(k) arcosh(-<x, y>_L / k)``, computed stably (module notes)."""
    k = _as_k(k, x)
    sqrt_k = k.sqrt()
    d = 2 * sqrt_k * torch.asinh(safe_sqrt(_chord2(x, y, k)) / (2 * sqrt_k))
    return d if keepdim else d.squeeze(-1)


def expmap(x, u, *, k):
    """``Exp_x(u) = cosh(|u|/sqrt(k)) x + sqrt(k) sinh(|u|/sqrt(k)) u / |u|``, projected."""
    k = _as_k(k, x)
    theta = norm(u, keepdim=True) / k.sqrt()
    return project(torch.cosh(theta) * x + _sinh_ratio(theta) * u, k=k)


def expmap0(u, *, k):
    """Exponential map at the origin ``(sqrt(k), 0, ..., 0)``; uses the spatial part of ``u``."""
    k = _as_k(k, u)
    us = u[..., 1:]
    theta = safe_norm(us, keepdim=True) / k.sqrt()
    return project(torch.cat((torch.zeros_like(u[..., :1]), _sinh_ratio(theta) * us), -1), k=k)


def logmap(x, y, *, k):
    """``Log_x(y) = theta / sinh(theta) (y + <x, y>_L x / k)``, ``theta = d(x, y) / sqrt(k)``.

    The direction is evaluated as ``(y - x) - q / (2k) x`` with the chord ``q`` of :func:`dist`,
    which keeps its digits when ``y`` is close to ``x``.
    """
    k = _as_k(k, x)
    q = _chord2(x, y, k)
    sqrt_k = k.sqrt()
    theta = 2 * torch.asinh(safe_sqrt(q) / (2 * sqrt_k))
    return ((y - x) - q / (2 * k) * x) / _sinh_ratio(theta)


def logmap0(y, *, k):
    """Logarithm at the origin: ``(0, arsinh(r)/r y_{1:})`` with ``r = |y_{1:}| / sqrt(k)``."""
    k = _as_k(k, y)
    ys = y[..., 1:]
    r = safe_norm(ys, keepdim=True) / k.sqrt()
    return torch.cat((torch.zeros_like(y[..., :1]), _asinh_ratio(r) * ys), dim=-1)


def parallel_transport(x, y, v, *, k):
    """Parallel transport along the geodesic: ``v + <y, v>_L / (k - <x, y>_L) (x + y)``."""
    k = _as_k(k, x)
    den = 2 * k + _chord2(x, y, k) / 2  # = k - <x, y>_L >= 2k
    return v + minkowski_inner(y, v, keepdim=True) / den * (x + y)


def centroid(x, weights, *, k):
    """Lorentz centroid (Law et al. 2019): ``sqrt(k) s / sqrt(-<s, s>_L)``, ``s = sum w_i x_i``.

    ``x`` has shape ``(N, ..., d + 1)`` and ``weights`` (non-negative) ``(N, ...)``; the sum
    runs over the first dimension. It minimises the weighted squared Lorentzian distance.
    """
    k = _as_k(k, x)
    s = (weights.unsqueeze(-1) * x).sum(0)
    scale = k.sqrt() / safe_sqrt((-minkowski_inner(s, s, keepdim=True)).clamp_min(0))
    return project(scale * s, k=k)


def lorentz_to_poincare(x, k):
    """Isometry onto the Poincaré ball of curvature ``-1/k`` (radius ``sqrt(k)``):
    ``sqrt(k) x_{1:} / (x_0 + sqrt(k))``.

    geoopt's function of the same name lands in the unit ball instead (equal for ``k = 1``).
    """
    sqrt_k = _as_k(k, x).sqrt()
    return sqrt_k * x[..., 1:] / (x[..., :1] + sqrt_k)


def poincare_to_lorentz(p, k):
    """Inverse of :func:`lorentz_to_poincare`:
    ``(sqrt(k) (k + |p|^2), 2 k p) / (k - |p|^2)``, projected onto the hyperboloid."""
    k = _as_k(k, p)
    p2 = p.square().sum(-1, keepdim=True)
    den = (k - p2).clamp_min(torch.finfo(p.dtype).tiny)
    x0 = k.sqrt() * (k + p2) / den
    return project(torch.cat((x0, 2 * k * p / den), dim=-1), k=k)
