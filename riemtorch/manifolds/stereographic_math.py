"""Formulas of the kappa-stereographic model (plain functions, usable without the classes).

The model of curvature ``k`` lives in ``R^n``: for ``k < 0`` it is the Poincaré ball of radius
``1/sqrt(-k)``, for ``k > 0`` the stereographic projection of the sphere of radius
``1/sqrt(k)``, and ``k = 0`` is Euclidean space with the metric ``4 <u, v>``. The metric at
``x`` is ``lambda_x^2 <u, v>`` with the conformal factor ``lambda_x = 2 / (1 + k |x|^2)``
(Skopek et al. 2020; Ungar's gyrovector spaces for ``k < 0``).

Every function takes the curvature ``k`` as a number or a tensor broadcastable with the batch
dimensions of the points (usually a 0-dim tensor), and is smooth in ``k`` through ``k = 0``:
the curvature-dependent functions (``tan_k``, ``artan_k``, ...) depend on ``k`` only through
``t = k r^2`` and switch to their Taylor series in ``t`` when ``|t| < 1e-3``, where the series
truncated after ``t^4`` is exact to machine precision. Points and vectors have shape
``(..., n)``.

Numerical policy (see also :mod:`riemtorch.config`): for ``k < 0`` the ball boundary is at
infinite distance, so :func:`project` keeps points at ``sqrt(-k) |x| <= 1 - margin`` with
``margin = 1e-5`` in float32 and ``1e-10`` in float64 (the largest representable distance from
the origin is then about ``12.2 / sqrt(-k)`` in float32 and ``23.7 / sqrt(-k)`` in float64).
``artanh`` arguments are clamped at ``1 - eps`` so that nothing is infinite.
"""

import torch

from riemtorch.linalg.safe import safe_norm, safe_sqrt

__all__ = [
    "tan_k", "artan_k", "arsin_k", "lambda_x", "inner", "norm", "mobius_add", "mobius_sub",
    "mobius_scalar_mul", "gyration", "expmap", "expmap0", "logmap", "logmap0", "dist", "dist0",
    "parallel_transport", "project", "ball_margin",
]

# Below this |t| the Taylor series in t (up to t^4) are used; the next term is below 1e-16.
_TAYLOR_T = 1e-3
_TAN = (1.0, 1 / 3, 2 / 15, 17 / 315, 62 / 2835)
_ATAN = (1.0, -1 / 3, 1 / 5, -1 / 7, 1 / 9)
_ASIN = (1.0, 1 / 6, 3 / 40, 5 / 112, 35 / 1152)

_MARGINS = {torch.float32: 1e-5, torch.float64: 1e-10}


def ball_margin(dtype: torch.dtype) -> float:
    """Relative distance to the boundary kept by :func:`project` (``k < 0``): ``1e-5`` for
    float32, ``1e-10`` for float64, ``1e-3`` for half precision."""
    return _MARGINS.get(dtype, 1e-3)


def _as_k(k, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(k, dtype=like.dtype, device=like.device)


def _dot(x, y):
    return (x * y).sum(-1, keepdim=True)


def even_ratio(t, pos_fn, neg_fn, coeffs, pos_max=None, neg_max=None):
    """``f(sqrt(|t|)) / sqrt(|t|)`` with ``f = pos_fn`` for ``t > 0`` and ``neg_fn`` for
    ``t < 0``, and the power series ``sum coeffs[i] t^i`` for ``|t| < 1e-3``.

    Every branch is evaluated on arguments where it is finite (the series on ``t`` clamped to
    the switch, the closed forms on ``sqrt(|t|) >= sqrt(1e-3)``), so gradients are finite
    everywhere; ``pos_max`` / ``neg_max`` clamp the argument of a branch (``artanh`` below 1).
    """
    ts = t.clamp(-_TAYLOR_T, _TAYLOR_T)
    series = ts * coeffs[-1]
    for c in coeffs[-2:0:-1]:
        series = (series + c) * ts
    series = series + coeffs[0]
    z = t.abs().clamp_min(_TAYLOR_T).sqrt()
    pos = pos_fn(z if pos_max is None else z.clamp(max=pos_max))
    neg = neg_fn(z if neg_max is None else z.clamp(max=neg_max))
    closed = torch.where(t > 0, pos, neg) / z
    return torch.where(t.abs() < _TAYLOR_T, series, closed)


def _below_one(dtype):
    return 1.0 - torch.finfo(dtype).eps


def tan_ratio(r, k):
    """``tan_k(r) / r``, smooth in ``r`` and ``k`` (1 at ``r = 0``)."""
    return even_ratio(k * r * r, torch.tan, torch.tanh, _TAN)


def artan_ratio(r, k):
    """``artan_k(r) / r``; the ``artanh`` argument is clamped at ``1 - eps``."""
    return even_ratio(k * r * r, torch.atan, torch.atanh, _ATAN, neg_max=_below_one(r.dtype))


def tan_k(r, k):
    """``tan(sqrt(k) r) / sqrt(k)`` for ``k > 0``, ``tanh(sqrt(-k) r) / sqrt(-k)`` for ``k < 0``,
    ``r`` at ``k = 0``."""
    r = torch.as_tensor(r)
    return r * tan_ratio(r, _as_k(k, r))


def artan_k(r, k):
    """Inverse of :func:`tan_k`: ``atan`` / ``artanh`` branches, ``r`` at ``k = 0``."""
    r = torch.as_tensor(r)
    return r * artan_ratio(r, _as_k(k, r))


def arsin_k(r, k):
    """``asin(sqrt(k) r) / sqrt(k)`` (argument clamped at 1) for ``k > 0``,
    ``arsinh(sqrt(-k) r) / sqrt(-k)`` for ``k < 0``, ``r`` at ``k = 0``."""
    r = torch.as_tensor(r)
    k = _as_k(k, r)
    return r * even_ratio(k * r * r, torch.asin, torch.asinh, _ASIN, pos_max=1.0)


def lambda_x(x, k, keepdim=False):
    """Conformal factor ``2 / (1 + k |x|^2)``, shape ``(...)`` or ``(..., 1)``."""
    k = _as_k(k, x)
    den = (1 + k * _dot(x, x)).clamp_min(torch.finfo(x.dtype).tiny)
    lam = 2 / den
    return lam if keepdim else lam.squeeze(-1)


def inner(x, u, v=None, *, k, keepdim=False):
    """Riemannian inner product ``lambda_x^2 <u, v>``."""
    v = u if v is None else v
    res = lambda_x(x, k, keepdim=True) ** 2 * _dot(u, v)
    return res if keepdim else res.squeeze(-1)


def norm(x, u, *, k, keepdim=False):
    """Riemannian norm ``lambda_x |u|`` (finite gradient at ``u = 0``)."""
    res = lambda_x(x, k, keepdim=True) * safe_norm(u, keepdim=True)
    return res if keepdim else res.squeeze(-1)


def _mobius_den(x2, y2, xy, k):
    # 1 - 2k<x,y> + k^2 |x|^2 |y|^2 written as a sum of two squares, so it is never negative.
    lagrange = (x2 * y2 - xy * xy).clamp_min(0)
    return ((1 - k * xy) ** 2 + k * k * lagrange).clamp_min(torch.finfo(x2.dtype).tiny)


def _add_coefs(x2, y2, xy, k):
    """``(a, b)`` with ``x ⊕ y = a x + b y``, from ``|x|^2``, ``|y|^2`` and ``<x, y>``."""
    den = _mobius_den(x2, y2, xy, k)
    return (1 - 2 * k * xy - k * y2) / den, (1 + k * x2) / den


def mobius_add(x, y, *, k, project=False):
    """Möbius addition ``x ⊕_k y``.

    ``((1 - 2k<x,y> - k|y|^2) x + (1 + k|x|^2) y) / (1 - 2k<x,y> + k^2 |x|^2 |y|^2)``;
    with ``project=True`` the result goes through :func:`project`.
    """
    k = _as_k(k, x)
    a, b = _add_coefs(_dot(x, x), _dot(y, y), _dot(x, y), k)
    out = torch.addcmul(a * x, b, y)
    return _project(out, k) if project else out


def mobius_sub(x, y, *, k):
    """``x ⊖ y = x ⊕ (-y)``."""
    return mobius_add(x, -y, k=k)


def expmap0(u, *, k, project=False):
    """Exponential map at the origin: ``tan_k(|u|) u / |u|``."""
    k = _as_k(k, u)
    out = tan_ratio(safe_norm(u, keepdim=True), k) * u
    return _project(out, k) if project else out


def logmap0(y, *, k):
    """Logarithm at the origin: ``artan_k(|y|) y / |y|``."""
    k = _as_k(k, y)
    return artan_ratio(safe_norm(y, keepdim=True), k) * y


def mobius_scalar_mul(r, x, *, k, project=False):
    """``r ⊗_k x = tan_k(r artan_k(|x|)) x / |x| = expmap0(r logmap0(x))``.

    ``r`` is a number or a tensor broadcastable with ``(..., 1)``.
    """
    return expmap0(r * logmap0(x, k=k), k=k, project=project)


def gyration(a, b, w, *, k):
    """Gyration ``gyr[a, b] w = ⊖(a ⊕ b) ⊕ (a ⊕ (b ⊕ w))``, a linear isometry in ``w``.

    Closed form (Ungar): ``w + 2 (A a + B b) / D`` with
    ``A = -k^2 <a,w> |b|^2 - k <b,w> + 2 k^2 <a,b> <b,w>``, ``B = -k^2 <b,w> |a|^2 + k <a,w>``
    and ``D = 1 - 2k<a,b> + k^2 |a|^2 |b|^2``.
    """
    k = _as_k(k, w)
    coef_a, coef_b = _gyration_coefs(_dot(a, a), _dot(b, b), _dot(a, b), _dot(a, w), _dot(b, w), k)
    return torch.addcmul(torch.addcmul(w, coef_a, a), coef_b, b)


def _gyration_coefs(a2, b2, ab, aw, bw, k):
    """``(A', B')`` with ``gyr[a, b] w = w + A' a + B' b``."""
    kk = k * k
    scale = 2 / _mobius_den(a2, b2, ab, k)
    coef_a = (-kk * aw * b2 - k * bw + 2 * kk * ab * bw) * scale
    coef_b = (-kk * bw * a2 + k * aw) * scale
    return coef_a, coef_b


def project(x, *, k, margin=None):
    """Keep points strictly inside the ball for ``k < 0``: radial clipping to
    ``sqrt(-k)|x| <= 1 - margin`` (default :func:`ball_margin`); the identity for ``k >= 0``."""
    return _project(x, _as_k(k, x), margin)


def _project(x, k, margin=None):
    margin = ball_margin(x.dtype) if margin is None else margin
    ball = k < 0
    max_norm = (1 - margin) / torch.where(ball, -k, torch.ones_like(k)).sqrt()
    n = safe_norm(x, keepdim=True)
    return x * torch.where(ball & (n > max_norm), max_norm / n, 1.0)


def expmap(x, u, *, k, project=False):
    """``Exp_x(u) = x ⊕ tan_k(lambda_x |u| / 2) u / |u|``."""
    k = _as_k(k, x)
    x2, u2, xu = _dot(x, x), _dot(u, u), _dot(x, u)
    half = 1 / (1 + k * x2).clamp_min(torch.finfo(x.dtype).tiny)  # lambda_x / 2
    c = half * tan_ratio(half * safe_sqrt(u2), k)  # the step is c u
    a, b = _add_coefs(x2, c * c * u2, c * xu, k)
    out = torch.addcmul(a * x, b * c, u)
    return _project(out, k) if project else out


def logmap(x, y, *, k):
    """``Log_x(y) = (2 / lambda_x) artan_k(|w|) w / |w|`` with ``w = (-x) ⊕ y``.

    ``|w|`` is evaluated as ``|x - y| / sqrt(D)`` (``D`` the Möbius denominator), which keeps
    its digits for nearby points.
    """
    k = _as_k(k, x)
    x2, y2, xy = _dot(x, x), _dot(y, y), _dot(x, y)
    den = _mobius_den(x2, y2, -xy, k)
    w_norm = safe_norm(x - y, keepdim=True) / den.sqrt()
    # (2 / lambda_x) artan_k(|w|) / |w|, divided by D to turn the numerator of w into w.
    scale = (1 + k * x2) * artan_ratio(w_norm, k) / den
    return torch.addcmul((scale * (1 + k * x2)) * y, scale * (k * y2 - 1 - 2 * k * xy), x)


def dist(x, y, *, k, keepdim=False):
    """Geodesic distance ``2 artan_k(|(-x) ⊕ y|)``, evaluated in a stable form.

    With ``P = (1 + k|x|^2)(1 + k|y|^2)`` and ``D`` the Möbius denominator of ``(-x, y)``,
    ``sin_k(d/2) = |x - y| / sqrt(P)`` and ``cos_k(d/2) = sqrt(D / P)``. For ``k < 0`` the
    distance is ``2 arsinh(sqrt(-k) |x - y| / sqrt(P)) / sqrt(-k)``, accurate up to the ball
    boundary; for ``k > 0`` it is ``2 atan2(sqrt(k) |x - y|, sqrt(D)) / sqrt(k)``, accurate up to
    antipodal points. The gradient is finite (zero) at ``x = y``.
    """
    k = _as_k(k, x)
    tiny = torch.finfo(x.dtype).tiny
    x2, y2, xy = _dot(x, x), _dot(y, y), _dot(x, y)
    chord = safe_norm(x - y, keepdim=True)
    ratio = chord / ((1 + k * x2) * (1 + k * y2)).clamp_min(tiny).sqrt()
    t = k * ratio * ratio
    arsin = ratio * even_ratio(t, torch.asin, torch.asinh, _ASIN, pos_max=1.0)
    # On the sphere, asin loses half the digits near antipodal points; atan2 does not.
    spherical = t > _TAYLOR_T
    sqrt_k = torch.where(spherical, k.expand_as(t), torch.ones_like(t)).sqrt()
    angle = torch.atan2(sqrt_k * chord, _mobius_den(x2, y2, -xy, k).sqrt()) / sqrt_k
    d = 2 * torch.where(spherical, angle, arsin)
    return d if keepdim else d.squeeze(-1)


def dist0(x, *, k, keepdim=False):
    """Distance from the origin, ``2 artan_k(|x|)`` (stable form of :func:`dist`)."""
    return dist(torch.zeros_like(x), x, k=k, keepdim=keepdim)


def parallel_transport(x, y, v, *, k):
    """Parallel transport along the geodesic: ``(lambda_x / lambda_y) gyr[y, -x] v``."""
    k = _as_k(k, x)
    x2, y2, xy = _dot(x, x), _dot(y, y), _dot(x, y)
    ratio = (1 + k * y2) / (1 + k * x2).clamp_min(torch.finfo(x.dtype).tiny)
    coef_y, coef_x = _gyration_coefs(y2, x2, -xy, _dot(y, v), -_dot(x, v), k)
    return torch.addcmul(torch.addcmul(ratio * v, ratio * coef_y, y), -ratio * coef_x, x)
