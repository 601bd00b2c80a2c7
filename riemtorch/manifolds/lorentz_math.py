"""Formulas of the hyperboloid (Lorentz) model (plain functions, usable without the class).

Points ``x = (x_0, x_1, ..., x_d)`` of shape ``(..., d + 1)`` satisfy
``<x, x>_L = -x_0^2 + sum_i x_i^2 = -k`` with ``x_0 > 0``; the sectional curvature is ``-1/k``
(the convention of geoopt's ``Lorentz(k)``). Tangent vectors at ``x`` satisfy ``<x, u>_L = 0``
and the metric is ``<u, v>_L``. ``k`` is a positive number or tensor broadcastable with
``(..., 1)``.

Numerics. Far from the origin, coordinates are about ``x_0`` times larger than the lengths they
encode, and Minkowski products of whole vectors cancel those factors (float64 keeps no digit of a
tangent vector's norm at distance 18 from the origin, float32 at 8). Tangent products
(:func:`tangent_inner`, hence norms, exponential maps, parallel transport and optimizer steps) are
computed from the spatial parts as sums of non-negative terms. The squared Minkowski chord
``q = <x - y, x - y>_L = -2k - 2<x, y>_L`` is computed in the same way (:func:`_chord2`) for
points close to each other relative to their distance from the origin, and from ``<x, y>_L`` for
points far apart, and the distance is ``2 sqrt(k) arsinh(sqrt(q) / (2 sqrt(k)))``: accurate at
small and large distances (no ``arcosh`` of a number near 1), with a finite (zero) gradient at
``x = y``. Results of :func:`expmap` and :func:`expmap0` are put back on the hyperboloid by
:func:`project` (``x_0 = sqrt(k + |x_{1:}|^2)``), so repeated steps do not drift off it.
"""

import torch

from riemtorch.linalg.safe import safe_norm, safe_sqrt
from riemtorch.linalg.vector import dot
from riemtorch.manifolds.stereographic_math import _arsin_ratio
from riemtorch.manifolds.stereographic_math import project as sm_project

__all__ = [
    "minkowski_inner", "tangent_inner", "project", "project_u", "egrad2rgrad", "norm", "dist",
    "expmap", "expmap0", "logmap", "logmap0", "parallel_transport", "centroid",
    "lorentz_to_poincare", "poincare_to_lorentz",
]


def _as_k(k, like):
    return torch.as_tensor(k, dtype=like.dtype, device=like.device)


def minkowski_inner(u, v, keepdim=False):
    """``<u, v>_L = -u_0 v_0 + sum_i u_i v_i``, as ``sum_i u_i v_i - 2 u_0 v_0`` over the whole
    vectors (the same rounding, about ``eps |u| |v|``, as summing the spatial part first)."""
    res = dot(u, v) - 2 * u[..., :1] * v[..., :1]
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


def tangent_inner(x, u, v, *, k, keepdim=False):
    """``<u, v>_L`` of tangent vectors at ``x``, from the spatial parts (``u_0`` is implied by
    ``<x, u>_L = 0``), without the cancellation of :func:`minkowski_inner`.

    Tangent vectors at a point far from the origin have coordinates of size about
    ``x_0 |u|_L``, so ``sum_i u_i v_i - u_0 v_0`` cancels terms ``x_0^2`` times larger than the
    result (in float64 all digits are gone at distance 18 from the origin, in float32 at 8).
    With ``a = x_s . u_s``, ``b = x_s . v_s``, ``r^2 = |x_s|^2`` and ``x_0^2 = k + r^2``,

    ``<u, v>_L = u_s . v_s - a b / x_0^2 = u' . v' + (a b / r^2) k / x_0^2``,

    where ``u' = u_s - (a / r^2) x_s`` is the part of ``u_s`` orthogonal to ``x_s``: for
    ``u = v`` a sum of two non-negative terms. The first form is used near the origin
    (``r^2 <= k``, where it cancels at most half), the second beyond.
    """
    k = _as_k(k, x)
    same = v is u  # a norm: half the products
    xs, us, vs = x[..., 1:], u[..., 1:], v[..., 1:]
    r2 = dot(xs, xs)
    far = r2 > k
    r2_far = torch.where(far, r2, torch.ones_like(r2))  # finite in the unused branch
    a = dot(xs, us)
    b = a if same else dot(xs, vs)
    ab_x02 = a * (b / (k + r2))  # (a b overflows first far from the origin)
    near_value = dot(us, vs) - ab_x02
    u_perp = us - a / r2_far * xs
    v_perp = u_perp if same else vs - b / r2_far * xs
    far_value = dot(u_perp, v_perp) + ab_x02 * k / r2_far
    res = torch.where(far, far_value, near_value)
    return res if keepdim else res.squeeze(-1)


def norm(x, u, *, k, keepdim=False):
    """``sqrt(<u, u>_L)`` of tangent vectors at ``x`` by :func:`tangent_inner` (finite gradient
    at ``u = 0``)."""
    return safe_sqrt(tangent_inner(x, u, u, k=k, keepdim=keepdim).clamp_min(0))


def _sinh_ratio(theta):
    """``sinh(theta) / theta`` for ``theta >= 0`` (series below ``1e-2``: exact to eps)."""
    th2 = theta * theta
    series = 1 + th2 * (1 / 6 + th2 / 120)
    safe = theta.clamp_min(1e-2)
    return torch.where(theta < 1e-2, series, torch.sinh(safe) / safe)


def _asinh_ratio(r):
    """``arsinh(r) / r`` (finite gradient everywhere, ``r = 1`` included)."""
    return _arsin_ratio(-r * r)


def _chord2(x, y, k):
    """``<x - y, x - y>_L`` (>= 0) from whichever of two forms has the smaller rounding error.

    With ``D = x_s - y_s``, ``S = x_s + y_s`` (spatial parts) and ``c = (x_0 - y_0)^2 / |S|^2``
    (``x_0 - y_0 = D . S / (x_0 + y_0)``, no cancellation), the chord
    ``q = |D|^2 - (x_0 - y_0)^2`` solves ``q (1 - c) = |D'|^2 + 4 k c`` with ``D'`` the part of
    ``D`` orthogonal to ``S``: a sum of non-negative terms, where the direct difference
    ``|D|^2 - (x_0 - y_0)^2`` cancels terms ``x_0^2`` times larger than ``q`` far from the
    origin. ``D'`` is computed from ``D`` (rounding ``eps |D|``) or, for points far apart, as
    ``2 x_s' = -2 y_s'`` from the point nearer the origin (rounding ``eps`` times that point's
    coordinates, not the farther one's: two points on one ray from the origin). This form errs
    by about ``eps (q + eps m^2) / (1 - c)`` (``m`` the nearer point's ``x_0``); the other,
    ``-2k - 2 <x, y>_L``, by about ``eps x_0 y_0``; the smaller estimate decides. Both fail once coordinates pass ``1 / eps`` (float64: 36 from the origin
    in units of ``sqrt(k)``, float32: 16).
    """
    xs, ys = x[..., 1:], y[..., 1:]
    x0, y0 = x[..., :1], y[..., :1]
    d, s = xs - ys, xs + ys
    s2 = dot(s, s)
    s2_safe = torch.where(s2 > 0, s2, torch.ones_like(s2))  # S = 0: c = 0, D' = D
    gap = dot(d, s) / (x0 + y0)  # x_0 - y_0
    c = gap.square() / s2_safe
    # D' from D (rounding eps |D|: close points) or from the nearer point (eps m: far apart)
    nearer0 = torch.minimum(x0, y0)
    from_d = dot(d, d) <= 4 * nearer0.square()
    half = torch.where(from_d, 0.5 * d, torch.where(x0 <= y0, xs, ys))
    half_perp = torch.where(s2 > 0, half - dot(half, s) / s2_safe * s, half)
    eps = torch.finfo(x.dtype).eps
    one_minus_c = (1 - c).clamp_min(eps)
    via_parts = (4 * dot(half_perp, half_perp) + 4 * k * c) / one_minus_c
    via_inner = (-2 * k - 2 * minkowski_inner(x, y, keepdim=True)).clamp_min(0)
    # error estimates (over eps) judged with the inner form's q: the parts form is meaningless
    # where 1 - c is at rounding level, and there q is large
    use_parts = via_inner + eps * nearer0.square() < x0 * y0 * one_minus_c
    return torch.where(use_parts, via_parts, via_inner).clamp_min(0)


def dist(x, y, *, k, keepdim=False):
    """Geodesic distance ``sqrt(k) arcosh(-<x, y>_L / k)``, computed stably (module notes)."""
    k = _as_k(k, x)
    sqrt_k = k.sqrt()
    d = 2 * sqrt_k * torch.asinh(safe_sqrt(_chord2(x, y, k)) / (2 * sqrt_k))
    return d if keepdim else d.squeeze(-1)


def expmap(x, u, *, k):
    """``Exp_x(u) = cosh(|u|/sqrt(k)) x + sqrt(k) sinh(|u|/sqrt(k)) u / |u|``, projected."""
    k = _as_k(k, x)
    theta = norm(x, u, k=k, keepdim=True) / k.sqrt()
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
    which keeps its digits when ``y`` is close to ``x``; its second term is scaled as
    ``theta tanh(theta / 2) x`` (``q = 4k sinh^2(theta / 2)``), so the product ``q x``, which
    overflows for points far apart and far from the origin, is never formed. The time part of
    ``y - x`` is taken as
    ``(y_s - x_s) . (y_s + x_s) / (x_0 + y_0)`` (equal on the hyperboloid), not as ``y_0 - x_0``,
    whose rounding ``eps x_0`` is all of it for nearby points (a relative error of ``5e-9`` at
    distance ``1e-8`` in float64, ``3e-4`` at ``1e-4`` in float32).
    """
    k = _as_k(k, x)
    q = _chord2(x, y, k)
    sqrt_k = k.sqrt()
    theta = 2 * torch.asinh(safe_sqrt(q) / (2 * sqrt_k))
    xs, ys = x[..., 1:], y[..., 1:]
    time = dot(ys - xs, ys + xs) / (x[..., :1] + y[..., :1])
    diff = torch.cat((time, ys - xs), dim=-1)
    return torch.addcmul(diff / _sinh_ratio(theta), theta * torch.tanh(0.5 * theta), x, value=-1)


def logmap0(y, *, k):
    """Logarithm at the origin: ``(0, arsinh(r)/r y_{1:})`` with ``r = |y_{1:}| / sqrt(k)``."""
    k = _as_k(k, y)
    ys = y[..., 1:]
    r = safe_norm(ys, keepdim=True) / k.sqrt()
    return torch.cat((torch.zeros_like(y[..., :1]), _asinh_ratio(r) * ys), dim=-1)


def _point_tangent_inner(x, y, v, k):
    """``<y, v>_L`` for a point ``y`` and a tangent vector ``v`` at ``x``, shape ``(..., 1)``.

    Far from the origin the Minkowski product of the whole vectors cancels terms about
    ``x_0 y_0`` times larger than the result. With ``v_0`` implied by ``<x, v>_L = 0``, and
    ``y_s = alpha x^ + y'``, ``v_s = beta x^ + v'`` split along ``x^ = x_s / r``
    (``r = |x_s|``),

    ``<y, v>_L = y' . v' + beta (alpha x_0 - y_0 r) / x_0``,

    and for ``alpha > 0``, ``alpha x_0 - y_0 r = (k (alpha - r)(alpha + r) - r^2 |y'|^2) /
    (alpha x_0 + y_0 r)`` with ``alpha - r = x^ . (y_s - x_s)``: no cancellation beyond the
    rounding of the parts (relative errors near ``1e-12`` for points up to 20 from the origin,
    where the direct product had none left). Near the origin (``r^2 <= k``) the direct product
    is as accurate and is used.
    """
    xs, ys, vs = x[..., 1:], y[..., 1:], v[..., 1:]
    x0, y0 = x[..., :1], y[..., :1]
    r2 = dot(xs, xs)
    far = r2 > k
    r = torch.where(far, r2, torch.ones_like(r2)).sqrt()  # finite in the unused branch
    axis = xs / r
    alpha, beta = dot(axis, ys), dot(axis, vs)
    y_perp, v_perp = ys - alpha * axis, vs - beta * axis
    outward = alpha > 0
    # divided before multiplying: r^2 |y'|^2 alone overflows from about 22 sqrt(k) in float32
    inv_den = 1 / torch.where(outward, alpha * x0 + y0 * r, torch.ones_like(r))
    radial_out = (k * dot(axis, ys - xs) * ((alpha + r) * inv_den)
                  - r * (r * inv_den) * dot(y_perp, y_perp))
    radial = torch.where(outward, radial_out, alpha * x0 - y0 * r)
    far_value = dot(y_perp, v_perp) + beta * (radial / x0)
    return torch.where(far, far_value, minkowski_inner(y, v, keepdim=True))


def parallel_transport(x, y, v, *, k):
    """Parallel transport along the geodesic: ``v + <y, v>_L / (k - <x, y>_L) (x + y)``, with
    ``<y, v>_L`` from :func:`_point_tangent_inner` and ``k - <x, y>_L = 2k + q / 2`` from the
    chord ``q`` of :func:`_chord2`, both without the cancellation of Minkowski products far
    from the origin (unit vectors between points on common rays or not keep their norm to
    ``1e-10`` up to 10 from the origin and ``3e-5`` up to 20 in float64, ``4e-3`` up to 8 in
    float32).
    """
    k = _as_k(k, x)
    q = _chord2(x, y, k)
    yv = _point_tangent_inner(x, y, v, k)
    return v + yv / (2 * k + q / 2) * (x + y)


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
    ``(sqrt(k) (k + |p|^2), 2 k p) / (k - |p|^2)``, projected onto the hyperboloid.

    ``p`` is first clipped radially to ``|p| <= (1 - eps) sqrt(k)`` and ``k - |p|^2`` floored
    at ``2 eps k``, its rounding: a point the ball does not resolve from its boundary, or one
    outside the ball, maps to the farthest resolved distance from the origin
    (``ln(2 / eps) sqrt(k)``: 37 in float64, 17 in float32), as the ball's own projection
    clips, rather than to an infinite or arbitrary point."""
    k = _as_k(k, p)
    eps = torch.finfo(p.dtype).eps
    p = sm_project(p, k=-1 / k, margin=eps)
    p2 = p.square().sum(-1, keepdim=True)
    den = torch.maximum(k - p2, 2 * eps * k)
    x0 = k.sqrt() * (k + p2) / den
    return project(torch.cat((x0, 2 * k * p / den), dim=-1), k=k)
