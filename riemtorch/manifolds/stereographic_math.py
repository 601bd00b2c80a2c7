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
``asin`` and ``artanh`` arguments are clamped at ``1 - eps`` so that nothing (value or gradient,
including that of a branch ``torch.where`` discards) is infinite.
"""

import torch

from riemtorch.linalg.safe import safe_norm, safe_sqrt
from riemtorch.linalg.vector import dot

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


def even_ratio(t, pos_fn, neg_fn, coeffs, pos_max=None, neg_max=None):
    """``f(sqrt(|t|)) / sqrt(|t|)`` with ``f = pos_fn`` for ``t > 0`` and ``neg_fn`` for
    ``t < 0``, and the power series ``sum coeffs[i] t^i`` for ``|t| < 1e-3``.

    Every branch is evaluated on arguments where it is finite (the series on ``t`` clamped to
    the switch, the closed forms on ``sqrt(|t|) >= sqrt(1e-3)``), so gradients are finite
    everywhere; ``pos_max`` / ``neg_max`` clamp the argument of a branch (``asin`` and ``artanh``
    below 1: their derivatives are infinite at 1, and ``torch.where`` turns a discarded infinite
    gradient into NaN).
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
    """``asin(sqrt(k) r) / sqrt(k)`` for ``k > 0``, ``arsinh(sqrt(-k) r) / sqrt(-k)`` for
    ``k < 0``, ``r`` at ``k = 0``.

    The ``asin`` argument is clamped at ``1 - eps``, so the gradient is finite everywhere; at
    ``sqrt(k) r >= 1 - eps`` the value is ``asin(1 - eps) / sqrt(k)``, ``sqrt(2 eps) / sqrt(k)``
    below ``pi / (2 sqrt(k))`` (``2.1e-8`` in float64, ``4.9e-4`` in float32): the rounding of
    ``r`` alone moves ``asin`` by that much there.
    """
    r = torch.as_tensor(r)
    k = _as_k(k, r)
    return r * _arsin_ratio(k * r * r)


def _arsin_ratio(t):
    """``asin(sqrt(t)) / sqrt(t)`` (``arsinh(sqrt(-t)) / sqrt(-t)`` for ``t < 0``)."""
    return even_ratio(t, torch.asin, torch.asinh, _ASIN, pos_max=_below_one(t.dtype))


def lambda_x(x, k, keepdim=False):
    """Conformal factor ``2 / (1 + k |x|^2)``, shape ``(...)`` or ``(..., 1)``."""
    k = _as_k(k, x)
    den = (1 + k * dot(x, x)).clamp_min(torch.finfo(x.dtype).tiny)
    lam = 2 / den
    return lam if keepdim else lam.squeeze(-1)


def inner(x, u, v=None, *, k, keepdim=False):
    """Riemannian inner product ``lambda_x^2 <u, v>``."""
    v = u if v is None else v
    res = lambda_x(x, k, keepdim=True) ** 2 * dot(u, v)
    return res if keepdim else res.squeeze(-1)


def norm(x, u, *, k, keepdim=False):
    """Riemannian norm ``lambda_x |u|`` (finite gradient at ``u = 0``)."""
    res = lambda_x(x, k, keepdim=True) * safe_norm(u, keepdim=True)
    return res if keepdim else res.squeeze(-1)


def _mobius_den(alpha, lagrange, k):
    """``1 - 2k<x,y> + k^2 |x|^2 |y|^2`` as the sum of two squares ``alpha^2 + k^2 lagrange``
    (never negative) from ``alpha = 1 - k<x,y>`` and the Lagrange term
    ``|x|^2 |y|^2 - <x,y>^2``."""
    return (alpha * alpha + k * k * lagrange.clamp_min(0)).clamp_min(torch.finfo(alpha.dtype).tiny)


def _add_coefs(x2, y2, xy, k):
    """``(a, b)`` with ``x ⊕ y = a x + b y``, from ``|x|^2``, ``|y|^2`` and ``<x, y>``."""
    den = _mobius_den(1 - k * xy, x2 * y2 - xy * xy, k)
    return (1 - 2 * k * xy - k * y2) / den, (1 + k * x2) / den


def mobius_add(x, y, *, k, project=False, ball=False):
    """Möbius addition ``x ⊕_k y``:
    ``((1 - 2k<x,y> - k|y|^2) x + (1 + k|x|^2) y) / (1 - 2k<x,y> + k^2 |x|^2 |y|^2)``.

    For nearly opposite ``x`` and ``y`` (the centring ``(-m) ⊕ x`` of samples near their
    mean) this textbook numerator subtracts two vectors of size ``|x|`` and the Lagrange term
    ``|x|^2 |y|^2 - <x,y>^2`` of the denominator two numbers of size ``|x|^4`` (float32,
    ``|x| = 0.99``, ``|x + y| = 1e-3``: relative error 2e-2). Through ``s = x + y``, which
    keeps its digits there, the same numbers are ``((1 + k|x|^2) s - k|s|^2 x) / D`` with
    ``D = (1 - k<x,y>)^2 + k^2 (|x|^2 |s|^2 - <x,s>^2)`` (7e-6 in that case). On the ball
    (``k < 0``: ``ball=True``, which the caller promises) the two terms of that numerator
    cancel by at most a factor 2, and it is used throughout (one pass over the points more
    than the textbook form). Otherwise the form is chosen per point: through ``s`` where
    ``|s| < |y|``, else the textbook one, which keeps the digits where the ``s`` form
    cancels (``k > 0``, ``k|x|^2`` large: float32, ``|x| = 100``, ``|y| = 1e-3``, ``k = 1``:
    relative error 0.97 through ``s``, 3e-7 textbook); both are evaluated there. ``0 ⊕ y = y``
    bit for bit; ``x ⊕ 0 = x`` bit for bit, or to an ulp with ``ball=True``. With
    ``project=True`` the result goes through :func:`project`.
    """
    k = _as_k(k, x)
    s = x + y
    x2, s2, xs = dot(x, x), dot(s, s), dot(x, s)
    b = 1 + k * x2
    if ball:
        den = _mobius_den(b - k * xs, x2 * s2 - xs * xs, k)
        out = torch.addcmul(b / den * s, -k * s2 / den, x)
    else:
        y2, xy = dot(y, y), dot(x, y)
        through_s = s2 < y2
        den = _mobius_den(1 - k * xy, torch.where(through_s, x2 * s2 - xs * xs, x2 * y2 - xy * xy),
                          k)
        coef_x = torch.where(through_s, -k * s2, 1 - 2 * k * xy - k * y2)
        out = torch.addcmul(coef_x / den * x, b / den, torch.where(through_s, s, y))
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

    Ungar's closed form ``w + 2 (A a + B b) / D`` with
    ``A = -k^2 <a,w> |b|^2 - k <b,w> + 2 k^2 <a,b> <b,w>``, ``B = -k^2 <b,w> |a|^2 + k <a,w>``
    and ``D = 1 - 2k<a,b> + k^2 |a|^2 |b|^2``, evaluated in the frame ``(b, p)`` with
    ``p = a - (<a,b> / |b|^2) b``: the rotation of the plane of ``a`` and ``b`` that turns ``p``
    towards ``b`` by ``2 atan2(k |b| |p|, 1 - k<a,b>)``, with ``D = (1 - k<a,b>)^2 +
    k^2 |b|^2 |p|^2``. So evaluated it is a rotation to rounding also where ``D`` vanishes
    (``k > 0``, ``a ⊕ b`` at the pole), where ``A a + B b`` and ``D`` formed from dot products
    have relative errors ``eps / D``. At ``D = 0`` (``a = b / (k|b|^2)``) it is the identity, the
    gyration of every other pair of parallel points.
    """
    k = _as_k(k, w)
    coef_b, coef_p, p = _gyration_frame(a, b, w, dot(b, b), k, 1.0)
    return torch.addcmul(torch.addcmul(w, coef_b, b), coef_p, p)


def _gyration_frame(a, b, w, b2, k, sign):
    """``(c_b, c_p, p)`` with ``gyr[a, sign b] w = w + c_b b + c_p p`` (``sign`` is 1 or -1,
    ``b2 = |b|^2``) and ``p`` the part of ``a`` orthogonal to ``b`` (see :func:`gyration`)."""
    ab, bw = sign * dot(a, b), sign * dot(b, w)
    b2_safe = torch.where(b2 > 0, b2, 1.0)
    p = torch.addcmul(a, -sign * ab / b2_safe, b)
    # A second projection: near D = 0, p is mostly rounding error, and the rotation is an
    # isometry only if p is orthogonal to b to working precision.
    p = torch.addcmul(p, -dot(p, b) / b2_safe, b)
    q, pw = dot(p, p), dot(p, w)
    alpha = 1 - k * ab
    den = alpha * alpha + k * k * b2 * q
    parallel = den <= torch.finfo(den.dtype).tiny
    scale = torch.where(parallel, 0.0, 2 * k / torch.where(parallel, 1.0, den))
    return sign * scale * (alpha * pw - k * q * bw), -scale * (alpha * bw + k * b2 * pw), p


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
    x2, u2, xu = dot(x, x), dot(u, u), dot(x, u)
    half = 1 / (1 + k * x2).clamp_min(torch.finfo(x.dtype).tiny)  # lambda_x / 2
    c = half * tan_ratio(half * safe_sqrt(u2), k)  # the step is c u
    a, b = _add_coefs(x2, c * c * u2, c * xu, k)
    out = torch.addcmul(a * x, b * c, u)
    return _project(out, k) if project else out


def _chord_terms(x, y, k):
    """``(|x|^2, |y|^2, |x - y|^2, num)`` with ``num = (1 + k|x|^2)(y - x) + k|x - y|^2 x``.

    ``num = D ((-x) ⊕ y)`` (``D`` the Möbius denominator of ``(-x, y)``) and
    ``|num| = |x - y| sqrt(D)``. Written with ``y - x``, ``num`` keeps its digits for nearby
    points (the textbook ``(1 + k|x|^2) y - (1 + 2k<x,y> - k|y|^2) x`` subtracts two vectors
    of size ``|x|``) and near the ball boundary; it cancels only near antipodal points
    (``k > 0``), to a relative error ``eps (1 + k|x|^2) / sqrt(D)``, where ``D`` computed from
    dot products would lose ``eps / D``.
    """
    x2 = dot(x, x)
    diff = y - x
    chord2 = dot(diff, diff)
    return x2, dot(y, y), chord2, torch.addcmul((1 + k * x2) * diff, k * chord2, x)


def _spherical_half_dist(t, k, chord2, num_norm):
    """``(t > 1e-3, d / 2)`` with ``d / 2 = atan2(sqrt(k) |x - y|, sqrt(D)) / sqrt(k)`` where
    ``t > 1e-3`` (there ``k > 0``): accurate up to antipodal points, where ``asin`` of
    ``sin_k(d / 2)`` would lose half the digits; finite (and unused) elsewhere."""
    spherical = t > _TAYLOR_T
    sqrt_k = torch.where(spherical, k.expand_as(t), torch.ones_like(t)).sqrt()
    return spherical, torch.atan2(sqrt_k * chord2, num_norm) / sqrt_k


def logmap(x, y, *, k):
    """``Log_x(y) = (2 / lambda_x) artan_k(|w|) w / |w|`` with ``w = (-x) ⊕ y``.

    Evaluated as ``(1 + k|x|^2) (d / 2) num / |num|`` with ``d = dist(x, y)`` and ``num``
    parallel to ``w`` (see :func:`dist` for the forms of ``d``), so ``norm(x, logmap(x, y))
    = dist(x, y)`` to rounding and the logarithm keeps its digits up to the ball boundary, where
    ``artanh(|w|)`` amplifies the error of ``|w|`` by ``1 / (1 - |w|^2)`` (``k = -1``, two points
    at ``|x| = |y| = 1 - 1e-6``, 13.8 apart: relative error 1e-11 against 1e-6 through ``|w|``).
    Where ``t = k|x - y|^2 / ((1 + k|x|^2)(1 + k|y|^2)) <= 1e-3`` (all ``k <= 0``, and nearby
    points for ``k > 0``) the factor ``d / (2 |num|)`` is a smooth function of ``t``, so the
    logarithm is smooth through ``x = y``.

    For ``k > 0`` the direction is ill-conditioned near the antipode ``-x / (k|x|^2)`` (an error
    ``eps (1 + k|x|^2) / sqrt(D)``, ``D`` the Möbius denominator, which vanishes there); the
    length stays ``d``. Where ``num`` is below its rounding error (at the antipode) the geodesic
    through the origin is used: ``-(1 + k|x|^2) (pi / (2 sqrt(k))) x / |x|``, the direction for
    which :func:`parallel_transport` is ``(lambda_x / lambda_y) v``.
    """
    k = _as_k(k, x)
    tiny = torch.finfo(x.dtype).tiny
    x2, y2, chord2, num = _chord_terms(x, y, k)
    # 2 / lambda_x and 2 / lambda_y
    x_factor, y_factor = 1 + k * x2, (1 + k * y2).clamp_min(tiny)
    t = k * chord2 / (x_factor * y_factor).clamp_min(tiny)
    # (1 + k|x|^2) d / (2 |num|) as a function of t = k s^2, s = sin_k(d / 2) = |x - y| / sqrt(P):
    # d / 2 = arsin_k(s) and |num| = |x - y| sqrt(P (1 - t)).
    near = _arsin_ratio(t) / (y_factor * (1 - t.clamp_max(_TAYLOR_T)).sqrt())
    num_norm = safe_norm(num, keepdim=True)
    spherical, half = _spherical_half_dist(t, k, chord2, num_norm)
    length = x_factor * half
    eps = torch.finfo(x.dtype).eps
    antipodal = spherical & (num_norm <= eps * x_factor * safe_sqrt(chord2))
    regular = spherical & ~antipodal
    coef = torch.where(regular, length / torch.where(regular, num_norm, 1.0), near)
    coef = torch.where(antipodal, 0.0, coef)
    toward_origin = torch.where(antipodal, -length / safe_sqrt(x2), 0.0)
    return torch.addcmul(coef * num, toward_origin, x)


def dist(x, y, *, k, keepdim=False):
    """Geodesic distance ``2 artan_k(|(-x) ⊕ y|)``, evaluated in a stable form.

    With ``P = (1 + k|x|^2)(1 + k|y|^2)`` and ``D`` the Möbius denominator of ``(-x, y)``,
    ``sin_k(d/2) = |x - y| / sqrt(P)`` and ``cos_k(d/2) = sqrt(D / P)``. For ``k < 0`` the
    distance is ``2 arsinh(sqrt(-k) |x - y| / sqrt(P)) / sqrt(-k)``, accurate up to the ball
    boundary; for ``k > 0`` it is ``2 atan2(sqrt(k) |x - y|, sqrt(D)) / sqrt(k)``, accurate up to
    antipodal points (``sqrt(D) |x - y|`` is evaluated as the norm of
    ``(1 + k|x|^2)(y - x) + k|x - y|^2 x``, not from dot products). The gradient is finite at
    ``x = y`` (zero) and at antipodal points.
    """
    k = _as_k(k, x)
    tiny = torch.finfo(x.dtype).tiny
    x2, y2, chord2, num = _chord_terms(x, y, k)
    p = ((1 + k * x2) * (1 + k * y2)).clamp_min(tiny)
    ratio = safe_sqrt(chord2) / p.sqrt()
    t = k * ratio * ratio
    spherical, half = _spherical_half_dist(t, k, chord2, safe_norm(num, keepdim=True))
    d = 2 * torch.where(spherical, half, ratio * _arsin_ratio(t))
    return d if keepdim else d.squeeze(-1)


def dist0(x, *, k, keepdim=False):
    """Distance from the origin, ``2 artan_k(|x|)`` (stable form of :func:`dist`)."""
    return dist(torch.zeros_like(x), x, k=k, keepdim=keepdim)


def parallel_transport(x, y, v, *, k):
    """Parallel transport along the geodesic: ``(lambda_x / lambda_y) gyr[y, -x] v``.

    The gyration is evaluated as a rotation (see :func:`gyration`), so the transport is an
    isometry to rounding up to antipodal points (``k > 0``). At the antipode
    ``y = -x / (k|x|^2)`` every geodesic from ``x`` reaches ``y``; the one used is the line
    through the origin (the geodesic of :func:`logmap` there), along which the transport is
    ``(lambda_x / lambda_y) v``, the limit as ``y`` approaches the antipode along that line.
    """
    k = _as_k(k, x)
    x2 = dot(x, x)
    ratio = (1 + k * dot(y, y)) / (1 + k * x2).clamp_min(torch.finfo(x.dtype).tiny)
    coef_x, coef_p, p = _gyration_frame(y, x, v, x2, k, -1.0)
    return torch.addcmul(torch.addcmul(ratio * v, ratio * coef_x, x), ratio * coef_p, p)
