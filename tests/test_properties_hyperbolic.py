"""Property-based tests (hypothesis) of the constant-curvature manifolds: Stereographic (either
sign of k, k = 0 and |k| down to 1e-12), PoincareBall, Lorentz and Sphere.

The fixed-seed tests (test_axioms.py, test_gyro_laws.py, test_stereographic.py, test_lorentz.py,
test_sphere_euclidean.py) check the laws at moderate points. Here hypothesis searches the edges
of the documented domain: curvature near 0 on both sides, points near the ball boundary, far out
on the hyperboloid or near the pole of the k > 0 chart, nearly equal and nearly antipodal pairs,
tiny and long tangent vectors, float32.

Tolerances are the dtype's machine epsilon times the condition of the quantity at the drawn
points (how much rounding of the terms the formulas form moves it), so they stay tight where the
geometry is benign and loosen only where the docstrings say accuracy is lost. Every test is
deterministic (``derandomize=True``).
"""

import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from riemtorch import Lorentz, PoincareBall, Sphere, Stereographic
from riemtorch.manifolds import lorentz_math as lm
from riemtorch.manifolds import stereographic_math as sm

F64, F32 = torch.float64, torch.float32
EPS = {F64: torch.finfo(F64).eps, F32: torch.finfo(F32).eps}
BATCH = 4  # pairs per drawn example: one curvature and one set of distances, four directions
# Square roots in the distances are floored at sqrt(tiny) (riemtorch.linalg.safe_sqrt) so that
# their gradient at x = y is finite: d(x, x) is 2 sqrt(tiny) lambda_x (3e-154 at the origin in
# float64, 2e-19 in float32, larger by lambda_x near the ball boundary) rather than 0.
FLOOR = {F64: 1e-100, F32: 1e-12}


def examples(n, shrink=True):
    """Hypothesis settings: ``n`` examples, deterministic, no deadline, no example database
    (``shrink=False`` for expected failures: no time spent minimising them)."""
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow], phases=phases)


def mpmath_module():
    return pytest.importorskip("mpmath")


def geoopt_module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("geoopt")


def geoopt_twin(case, name, seed):
    """geoopt, the case ``(m, x, y)``, its curvature as a float64 tensor, geoopt's manifold
    ``name`` at that curvature and a generator seeded with ``seed``."""
    geoopt = geoopt_module()
    k = torch.tensor(float(case[0].k), dtype=F64)
    return geoopt, case, k, getattr(geoopt, name)(k.clone()), generator(seed)


def generator(seed, stream=1):
    """A seeded torch generator. The strategies draw points from ``stream`` 0 and the tests
    their tangent vectors from ``stream`` 1, so that equal drawn seeds (hypothesis shrinks them
    all to 0) do not make a tangent vector parallel to its point."""
    return torch.Generator().manual_seed(seed * 2 + stream)


def unit_directions(batch, n, generator):
    d = torch.randn(batch, n, dtype=F64, generator=generator)
    return d / d.norm(dim=-1, keepdim=True)


def sq(x):
    """``|x|^2`` over the last dimension, in float64."""
    x = x.double()
    return (x * x).sum(-1)


# ---- strategies ---------------------------------------------------------------------------------

def curvatures(zero=True, smallest=1e-12, largest=10.0):
    """Curvatures of both signs with magnitudes log-uniform in ``[smallest, largest]``, and 0."""
    exponent = st.floats(math.log10(smallest), math.log10(largest))
    signed = st.builds(lambda s, e: s * 10.0 ** e, st.sampled_from([-1.0, 1.0]), exponent)
    return st.one_of(st.just(0.0), signed) if zero else signed


def rho_max(k, dtype):
    """Farthest distance from the origin, in units of ``1/sqrt|k|``, at which points are drawn.

    ``k < 0``: inside the ball margin (``stereographic_math.ball_margin``), which caps distances
    at 23.7 (float64) and 12.2 (float32). ``k > 0``: up to ``1e-6`` (float64) or ``1e-3``
    (float32) of the pole at infinity, chart coordinates up to ``2e6`` or ``2e3`` times
    ``1/sqrt(k)``. ``k = 0``: ``R^n``, distance in absolute units.
    """
    if k < 0:
        return 23.0 if dtype == F64 else 12.0
    if k > 0:
        return math.pi - (1e-6 if dtype == F64 else 1e-3)
    return 20.0


def chart_radius(k, rho):
    """``|x|`` of the points at distance ``rho / sqrt|k|`` from the origin (``rho`` for k = 0)."""
    if k < 0:
        return math.tanh(rho / 2) / math.sqrt(-k)
    if k > 0:
        return math.tan(rho / 2) / math.sqrt(k)
    return rho / 2


def distances(top):
    return st.one_of(st.just(0.0), st.just(top), st.floats(1e-8, top))


@st.composite
def stereo_pairs(draw, dtype=F64, modes=("apart", "near", "antipodal"), curvature=None,
                 rho_cap=None):
    """``(manifold, x, y)``: ``BATCH`` pairs for one drawn curvature.

    ``x`` lies at a drawn distance from the origin; ``y`` is ``"apart"`` (its own distance, its
    own direction), ``"near"`` ``x`` (a relative offset from 1e-3 down to 1e-13), or, for
    ``k > 0``, ``"antipodal"``: near ``-x / (k|x|^2)`` (relative offsets 1e-1 to 1e-12).
    ``rho_cap`` (a function of ``k``) lowers the largest distance from the origin.
    """
    k = draw(curvature if curvature is not None else curvatures())
    n = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    top = rho_max(k, dtype) if rho_cap is None else min(rho_max(k, dtype), rho_cap(k))
    rho_x, rho_y = draw(distances(top)), draw(distances(top))
    mode = draw(st.sampled_from(modes))
    g = generator(seed, 0)
    e = unit_directions(BATCH, n, g)
    if mode == "antipodal" and k > 0:
        x = unit_directions(BATCH, n, g) * chart_radius(k, max(rho_x, 1e-3))
        gap = 10.0 ** -draw(st.floats(1, 12))
        anti = -x / (k * (x * x).sum(-1, keepdim=True))
        y = anti * (1 + gap * draw(st.floats(-1, 1))) + gap * anti.norm(dim=-1, keepdim=True) * e
    else:
        x = unit_directions(BATCH, n, g) * chart_radius(k, rho_x)
        if mode == "near":
            offset = 10.0 ** -draw(st.floats(3, 13))
            y = x + offset * (x.norm(dim=-1, keepdim=True) + chart_radius(k, 1.0)) * e
        else:
            y = e * chart_radius(k, rho_y)
    m = Stereographic(k)
    return m, m.projx(x.to(dtype)), m.projx(y.to(dtype))


# ---- references and error bounds for the stereographic model ------------------------------------

def stereo_dist_reference(x, y, k):
    """``2 artan_k(|(-x) ⊕ y|)`` in 50 digits from the coordinates as given (textbook Möbius
    addition; ``atan`` covers all distances below ``pi / sqrt(k)`` for k > 0), float64."""
    mpmath = mpmath_module()
    out = []
    with mpmath.workdps(50):
        kk = mpmath.mpf(k)
        for a, b in zip(x.double().tolist(), y.double().tolist()):
            X, Y = [mpmath.mpf(t) for t in a], [mpmath.mpf(t) for t in b]
            x2, y2 = mpmath.fsum(t * t for t in X), mpmath.fsum(t * t for t in Y)
            xy = mpmath.fsum(p * q for p, q in zip(X, Y))
            den = 1 + 2 * kk * xy + kk * kk * x2 * y2
            w = [((1 + kk * x2) * q - (1 + 2 * kk * xy - kk * y2) * p) / den
                 for p, q in zip(X, Y)]
            w_norm = mpmath.sqrt(mpmath.fsum(t * t for t in w))
            if k == 0:
                out.append(2 * w_norm)
            else:
                s = mpmath.sqrt(abs(kk))
                out.append(2 * (mpmath.atan if k > 0 else mpmath.atanh)(s * w_norm) / s)
    return torch.tensor([float(v) for v in out], dtype=F64)


def stereo_dist_tolerance(k, x, y, d, dtype=F64):
    """Error bound of ``dist(x, y)`` (and of the length of ``logmap(x, y)``).

    The terms ``1 + k|x|^2`` and ``1 + k|y|^2`` carry rounding ``eps |k||x|^2`` relative to
    themselves, i.e. ``eps |k||x|^2 lambda_x / 2``: near the ball boundary that is the inputs'
    own condition (a float64 point 1e-10 from the boundary moves by 1e-6 relative under rounding
    of its coordinates). For k > 0 the numerator ``(1 + k|x|^2)(y - x) + k|x - y|^2 x`` has the
    relative error ``eps (1 + k|x|^2) / sqrt(D)`` stated in ``stereographic_math._chord_terms``;
    through ``atan2`` it moves ``d`` by ``2 eps |x - y| / (1 + k|y|^2)`` (large only for ``x``
    near the pole of the chart, see the xfail test below).
    """
    x, y = x.double(), y.double()
    x2, y2 = sq(x), sq(y)
    lam_x, lam_y = 2 / (1 + k * x2), 2 / (1 + k * y2)
    tol = d * (1 + abs(k) * (x2 * lam_x + y2 * lam_y))
    if k > 0:
        tol = tol + 2 * (x - y).norm(dim=-1) / (1 + k * y2)
    return 16 * EPS[dtype] * tol + FLOOR[dtype]


def stereo_rounding_displacement(k, x):
    """Riemannian length ``lambda_x |x|`` of a relative displacement 1 of ``x``: times eps, how
    far rounding the coordinates of ``x`` moves it."""
    x = x.double()
    return 2 * x.norm(dim=-1) / (1 + k * sq(x))


# ---- stereographic model: distance --------------------------------------------------------------

@examples(50)
@given(stereo_pairs())
def test_stereographic_dist_matches_a_50_digit_reference(case):
    m, x, y = case
    k = float(m.k)
    expected = stereo_dist_reference(x, y, k)
    d = m.dist(x, y)
    assert bool(torch.isfinite(d).all())
    err = (d - expected).abs()
    assert bool((err <= stereo_dist_tolerance(k, x, y, expected)).all()), \
        (k, err, expected)


@examples(40)
@given(stereo_pairs(), st.integers(0, 2**31 - 1))
def test_stereographic_dist_is_a_metric(case, seed):
    m, x, y = case
    k = float(m.k)
    g = generator(seed)
    z = m.projx(unit_directions(BATCH, x.shape[-1], g)
                * chart_radius(k, float(torch.rand((), generator=g, dtype=F64))
                               * rho_max(k, F64)))
    assert bool((m.dist(x, x) <= FLOOR[F64]).all()) and bool((m.dist(y, y) <= FLOOR[F64]).all())
    dxy, dyx, dxz, dyz = m.dist(x, y), m.dist(y, x), m.dist(x, z), m.dist(y, z)
    tol = {(a, b): stereo_dist_tolerance(k, p, q, d)
           for (a, p), (b, q), d in ((("x", x), ("y", y), dxy), (("y", y), ("x", x), dyx),
                                     (("x", x), ("z", z), dxz), (("y", y), ("z", z), dyz))}
    assert bool(((dxy - dyx).abs() <= tol["x", "y"] + tol["y", "x"]).all())
    assert bool((dxz <= dxy + dyz + tol["x", "z"] + tol["x", "y"] + tol["y", "z"]).all())
    assert bool((dxy <= dxz + dyz + tol["x", "z"] + tol["x", "y"] + tol["y", "z"]).all())


@examples(10)
@given(st.floats(4, 7), curvatures(zero=False, smallest=1e-2, largest=10.0)
       .filter(lambda k: k > 0), st.integers(0, 2**31 - 1))
def test_stereographic_dist_near_the_pole_of_the_positive_curvature_chart(log_radius, k, seed):
    # x at sqrt(k)|x| = 1e4..1e7 (1e-4..1e-7 from the pole), y at a right angle from it on the
    # sphere: neither near the other's antipode, and the inputs' rounding moves d by eps. With
    # the nearer point first the distance keeps its digits; the other order errs by the
    # documented eps sqrt(k)|x| relative.
    m = Stereographic(k)
    g = generator(seed)
    x = unit_directions(BATCH, 3, g) * 10.0 ** log_radius / math.sqrt(k)
    y = unit_directions(BATCH, 3, g) / math.sqrt(k)
    expected = stereo_dist_reference(x, y, k)
    assert bool(((m.dist(y, x) - expected).abs() <= 16 * EPS[F64] * expected).all())
    bound = 16 * EPS[F64] * (1 + math.sqrt(k) * x.norm(dim=-1)) * expected
    assert bool(((m.dist(x, y) - expected).abs() <= bound).all())


# ---- stereographic model: exponential and logarithm ---------------------------------------------

def _exp_error_growth(k, x, step):
    """For k < 0, the Möbius sum ``x ⊕ p`` in ``expmap`` (``p`` at the step's length from the
    origin) loses about ``eps exp(sqrt(-k) (d(0, x) + |v|))`` in units of ``1/sqrt(-k)``: both
    points near the boundary, the sum inside. 0 for k >= 0."""
    if k >= 0:
        return torch.zeros_like(step)
    s = math.sqrt(-k)
    return torch.exp(s * (sm.dist0(x.double(), k=k) + step)) / s


@examples(40)
@given(stereo_pairs(rho_cap=lambda k: 7.5 if k < 0 else math.inf))
def test_stereographic_logmap_has_length_dist_and_expmap_inverts_it(case):
    # x and y at most 7.5 / sqrt(-k) from the origin: d(0, x) + d(x, y) <= 22.5 / sqrt(-k),
    # where the Möbius sum of expmap keeps about 1e-6 of 1 / sqrt(-k) in float64.
    m, x, y = case
    k = float(m.k)
    d = m.dist(x, y)
    log = m.logmap(x, y)
    assert bool(torch.isfinite(log).all())
    length_tol = stereo_dist_tolerance(k, x, y, d)
    assert bool(((m.norm(x, log) - d).abs() <= length_tol).all())
    back = m.expmap(x, log)
    tol = 16 * EPS[F64] * (stereo_rounding_displacement(k, x) + stereo_rounding_displacement(k, y)
                           + _exp_error_growth(k, x, d)) + length_tol
    assert bool((m.dist(back, y) <= tol).all()), (k, m.dist(back, y), tol)


def step_cap(k, rho_x, dtype):
    """Longest drawn step (units of ``1/sqrt|k|``): for k < 0 the step from ``x`` stays within
    23 (float64) or 10 (float32) of the origin (see :func:`_exp_error_growth`); for k > 0 below
    the injectivity radius ``pi / sqrt(k)``."""
    if k < 0:
        return max((23.0 if dtype == F64 else 10.0) - rho_x, 1e-6)
    if k > 0:
        return math.pi * (1 - 1e-3)
    return 20.0


@examples(40)
@given(curvatures(), st.integers(2, 6), st.integers(0, 2**31 - 1), st.floats(0, 1),
       st.floats(-10, 0))
def test_stereographic_logmap_inverts_expmap_and_dist_is_the_step_length(k, n, seed, where,
                                                                         log_fraction):
    # steps from 1e-10 of the largest (in units of 1/sqrt|k|) to the largest of step_cap
    g = generator(seed)
    rho_x = where * rho_max(k, F64)
    m = Stereographic(k)
    x = m.projx(unit_directions(BATCH, n, g) * chart_radius(k, rho_x))
    unit = max(abs(k), 1e-300) ** -0.5 if k != 0 else 1.0
    step = 10.0 ** log_fraction * step_cap(k, rho_x, F64) * unit
    v = unit_directions(BATCH, n, g) / m.lambda_x(x, keepdim=True) * step
    y = m.expmap(x, v)
    assert bool(torch.isfinite(y).all()) and m.check_point(y)[0]
    s = m.norm(x, v)
    # the rounding of x and y, the growth of expmap's error for k < 0, and the error of the
    # distance (or of the length of logmap) at (x, y)
    bound = (16 * EPS[F64] * (stereo_rounding_displacement(k, x)
                              + stereo_rounding_displacement(k, y) + _exp_error_growth(k, x, s))
             + stereo_dist_tolerance(k, x, y, s))
    if k > 0:
        # near the injectivity radius the direction of logmap is ill-conditioned: eps / delta
        # at a distance delta (relative) from the antipode, here delta >= 1e-3
        bound = bound + 16 * EPS[F64] * s * math.pi / (math.pi - math.sqrt(k) * s)
    assert bool(((m.dist(x, y) - s).abs() <= bound).all()), (k, m.dist(x, y) - s, bound)
    back = m.logmap(x, y)
    assert bool((m.norm(x, back - v) <= bound).all()), (k, m.norm(x, back - v), bound)


# ---- stereographic model: transport, gradients, projections -------------------------------------

@examples(40)
@given(stereo_pairs(), st.integers(0, 2**31 - 1))
def test_stereographic_transport_keeps_inner_products_and_is_reversible(case, seed):
    m, x, y = case
    k = float(m.k)
    g = generator(seed)
    u = torch.randn(x.shape, dtype=F64, generator=g)
    v = torch.randn(x.shape, dtype=F64, generator=g)
    tu, tv = m.transp(x, y, u), m.transp(x, y, v)
    assert bool(torch.isfinite(tu).all())
    nu, nv = m.norm(x, u), m.norm(x, v)
    # an isometry to rounding up to the antipode (documented): lambda_y |P u| equals
    # lambda_x |u| up to the few roundings of the rotation and of the ratio lambda_x / lambda_y
    assert bool(((m.norm(y, tu) - nu).abs() <= 64 * EPS[F64] * nu).all())
    assert bool(((m.inner(y, tu, tv) - m.inner(x, u, v)).abs()
                 <= 64 * EPS[F64] * nu * nv).all())
    # back along the same geodesic; near the antipode the rotation is ill-conditioned
    # (eps / delta), so only where D, the Möbius denominator of (-x, y), is away from 0
    x2, y2, xy = sq(x), sq(y), (x.double() * y.double()).sum(-1)
    d_ratio = (1 + 2 * k * xy + k * k * x2 * y2) / ((1 + k * x2) * (1 + k * y2))
    ok = d_ratio > 1e-6
    back = m.transp(y, x, tu)
    assert bool((m.norm(x, back - u)[ok] <= 1e-9 * nu[ok]).all())


@examples(40)
@given(stereo_pairs(modes=("apart",)), st.integers(0, 2**31 - 1))
def test_stereographic_egrad2rgrad_represents_the_euclidean_gradient(case, seed):
    # inner(x, egrad2rgrad(x, g), u) = <g, u> for every tangent u: lambda_x^2 / lambda_x^2
    m, x, _ = case
    g = generator(seed)
    grad = torch.randn(x.shape, dtype=F64, generator=g)
    u = m.proju(x, torch.randn(x.shape, dtype=F64, generator=g))
    lhs = m.inner(x, m.egrad2rgrad(x, grad), u)
    assert bool(((lhs - (grad * u).sum(-1)).abs()
                 <= 16 * EPS[F64] * grad.norm(dim=-1) * u.norm(dim=-1)).all())
    assert torch.equal(m.proju(x, u), u)


@examples(40)
@given(curvatures(), st.sampled_from([F64, F32]), st.integers(2, 6), st.integers(0, 2**31 - 1),
       st.floats(-3, 3), st.floats(-40, 40))
def test_stereographic_projx_is_idempotent_and_results_stay_inside_the_ball(k, dtype, n, seed,
                                                                            log_scale, step):
    # The documented guarantee: for k < 0 (here PoincareBall(-k)) projx, expmap, expmap0,
    # gyroadd and gyroscalarmul return points with sqrt(-k)|x| <= 1 - margin, nothing NaN, for
    # inputs up to 1e3 times the radius and steps up to 40 / sqrt(-k). For k >= 0 projx is the
    # identity.
    m = PoincareBall(-k) if k < 0 else Stereographic(k)
    g = generator(seed)
    unit = abs(k) ** -0.5 if k != 0 else 1.0
    z = (unit_directions(BATCH, n, g) * 10.0 ** log_scale * unit).to(dtype)
    p = m.projx(z)
    if k >= 0:
        assert torch.equal(p, z)
        return
    pp = m.projx(p)
    torch.testing.assert_close(pp, p, rtol=4 * EPS[dtype], atol=0)
    limit = (1 - sm.ball_margin(dtype)) * (1 + 2 * EPS[dtype])
    u = (unit_directions(BATCH, n, g) * step * unit).to(dtype)
    results = {"projx": p, "projx twice": pp, "expmap0": m.expmap0(u),
               "expmap": m.expmap(p, u), "gyroadd": m.gyroadd(p, m.expmap0(u)),
               "gyroscalarmul": m.gyroscalarmul(step, p)}
    for name, r in results.items():
        assert bool(torch.isfinite(r).all()), name
        radius = math.sqrt(-k) * r.double().norm(dim=-1)
        assert bool((radius <= limit).all()), (name, radius)
        assert m.check_point(r)[0], name
    inside = math.sqrt(-k) * z.double().norm(dim=-1) < 1 - sm.ball_margin(dtype)
    assert torch.equal(p[inside], z[inside])


# ---- stereographic model: gyrovector laws -------------------------------------------------------

def gyro_points(k, n, seed, rho, count, dtype=F64):
    g = generator(seed)
    radii = torch.rand(count, BATCH, 1, dtype=F64, generator=g) * rho
    pts = []
    for i in range(count):
        d = unit_directions(BATCH, n, g)
        pts.append(d * torch.tensor([[chart_radius(k, float(r))] for r in radii[i, :, 0]],
                                    dtype=F64))
    return [p.to(dtype) for p in pts]


def assert_close_in_chart(k, a, b, scale, what):
    """``|a - b| <= scale * eps`` in units of ``1/sqrt|k|`` (chart coordinates of moderate points
    are at most a few such units)."""
    unit = abs(k) ** -0.5 if k != 0 else 1.0
    err = float((a - b).abs().max()) / unit
    assert err <= scale * EPS[a.dtype], (what, k, err / EPS[a.dtype])


@examples(50)
@given(curvatures(), st.integers(2, 6), st.integers(0, 2**31 - 1),
       st.floats(0.05, 1.2))
def test_stereographic_gyrogroup_laws_for_any_curvature(k, n, seed, rho):
    # Points within 1.2 / sqrt|k| of the origin (k > 0: the sums stay at most 3.6 from the
    # origin, away from the pole; k < 0: far from the boundary).
    m = Stereographic(k)
    a, b, c, w = gyro_points(k, n, seed, rho, 4)
    zero = torch.zeros_like(a)
    # the origin is a left identity bit for bit (a bias at the origin changes nothing) and a
    # right identity to an ulp (the sum is formed through s = a + 0, then rescaled)
    assert torch.equal(m.gyroadd(zero, a), a)
    torch.testing.assert_close(m.gyroadd(a, zero), a, rtol=2 * EPS[F64], atol=0)
    assert_close_in_chart(k, m.gyroadd(m.gyroinv(a), a), zero, 16, "left inverse")
    assert_close_in_chart(k, m.gyroadd(m.gyroinv(a), m.gyroadd(a, b)), b, 64, "left cancellation")
    left = m.gyroadd(a, m.gyroadd(b, c))
    right = m.gyroadd(m.gyroadd(a, b), m.gyration(a, b, c))
    assert_close_in_chart(k, left, right, 256, "gyroassociativity")
    # gyrations are linear isometries of R^n (Euclidean norm and dot products kept), fixing 0
    gw, gc = m.gyration(a, b, w), m.gyration(a, b, c)
    torch.testing.assert_close(gw.norm(dim=-1), w.norm(dim=-1), rtol=16 * EPS[F64], atol=0)
    torch.testing.assert_close((gw * gc).sum(-1), (w * c).sum(-1), rtol=0,
                               atol=32 * EPS[F64] * float(w.norm(dim=-1).max()
                                                          * c.norm(dim=-1).max()))
    assert torch.equal(m.gyration(a, b, zero), zero)
    torch.testing.assert_close(m.gyration(a, b, 2 * w - c), 2 * gw - gc, rtol=0,
                               atol=64 * EPS[F64] * float((2 * w - c).norm(dim=-1).max()))
    # left translations are isometries
    d_before, d_after = m.dist(b, c), m.dist(m.gyroadd(a, b), m.gyroadd(a, c))
    unit = abs(k) ** -0.5 if k != 0 else 1.0
    assert float((d_before - d_after).abs().max()) <= 256 * EPS[F64] * unit


@examples(50)
@given(curvatures(), st.integers(2, 6), st.integers(0, 2**31 - 1), st.floats(0.05, 1.0),
       st.floats(-1.5, 1.5), st.floats(-1.5, 1.5))
def test_stereographic_scalar_multiplication_laws(k, n, seed, rho, s, t):
    # (s + t) ⊗ x = s ⊗ x ⊕ t ⊗ x and (s t) ⊗ x = s ⊗ (t ⊗ x); |s|, |t| <= 1.5 and x within
    # 1 / sqrt|k| of the origin keep every multiple within 3 / sqrt|k| (k > 0: before the pole).
    m = Stereographic(k)
    (x,) = gyro_points(k, n, seed, rho, 1)
    sx, tx = m.gyroscalarmul(s, x), m.gyroscalarmul(t, x)
    assert_close_in_chart(k, m.gyroscalarmul(s + t, x), m.gyroadd(sx, tx), 256, "distributive")
    assert_close_in_chart(k, m.gyroscalarmul(s * t, x), m.gyroscalarmul(s, tx), 256,
                          "associative")
    assert_close_in_chart(k, m.gyroscalarmul(-1.0, x), m.gyroinv(x), 16, "minus one")
    assert_close_in_chart(k, m.gyroscalarmul(1.0, x), x, 16, "one")
    # scaling is along the geodesic through the origin: d(0, s ⊗ x) = |s| d(0, x)
    unit = abs(k) ** -0.5 if k != 0 else 1.0
    err = (m.dist0(sx) - abs(s) * m.dist0(x)).abs().max()
    assert float(err) <= 64 * EPS[F64] * unit


# ---- stereographic model: curvature through zero ------------------------------------------------

def _dist_series(x, y, k):
    """``d_k(x, y)`` to second order in ``k`` (from ``d = 2 arsin_k(|x - y| / sqrt(P))``,
    ``P = (1 + k|x|^2)(1 + k|y|^2)``)."""
    c = (x - y).norm(dim=-1)
    a, b = sq(x) + sq(y), sq(x) * sq(y)
    first = -c * a + c ** 3 / 3
    second = 2 * (c * (3 * a * a / 8 - b / 2) - c ** 3 * a / 4 + 3 * c ** 5 / 40)
    return 2 * c + k * first + k * k * second


@examples(50)
@given(curvatures(zero=False, smallest=1e-12, largest=1e-3), st.integers(2, 6),
       st.integers(0, 2**31 - 1), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_stereographic_is_smooth_in_the_curvature_through_zero(k, n, seed, rx, ry):
    # Points with |x|, |y| <= 1 (chart units, independent of k): for |k| <= 1e-3 every k-dependent
    # quantity is within |k| of its k = 0 value, and the distance follows its Taylor series.
    g = generator(seed)
    x = unit_directions(BATCH, n, g) * rx
    y = unit_directions(BATCH, n, g) * ry
    v = unit_directions(BATCH, n, g)
    flat, curved = Stereographic(0.0), Stereographic(k)
    d = curved.dist(x, y)
    # third-order remainder: |k|^3 times a coefficient below 10 for |x|, |y| <= 1
    torch.testing.assert_close(d, _dist_series(x, y, k), rtol=0,
                               atol=8 * EPS[F64] + 10 * abs(k) ** 3)
    torch.testing.assert_close(d, 2 * (x - y).norm(dim=-1), rtol=0,
                               atol=8 * EPS[F64] + 2 * abs(k))
    for name, f in (("logmap", lambda m: m.logmap(x, y)), ("expmap", lambda m: m.expmap(x, v)),
                    ("transp", lambda m: m.transp(x, y, v)),
                    ("gyroadd", lambda m: m.gyroadd(x, y)),
                    ("gyration", lambda m: m.gyration(x, y, v)),
                    ("gyroscalarmul", lambda m: m.gyroscalarmul(0.7, x))):
        at_k, at_minus_k, at_0 = f(curved), f(Stereographic(-k)), f(flat)
        # first order in k: |f(k) - f(0)| <= C |k| with C below 40 at these sizes
        torch.testing.assert_close(at_k, at_0, rtol=0, atol=16 * EPS[F64] + 40 * abs(k),
                                   msg=name)
        # the first-order terms cancel in (f(k) + f(-k)) / 2: smooth (no kink) at k = 0
        torch.testing.assert_close((at_k + at_minus_k) / 2, at_0, rtol=0,
                                   atol=16 * EPS[F64] + 400 * k * k, msg=name)


@examples(40)
@given(st.floats(-10, -0.05), st.sampled_from([-1.0, 1.0]), st.floats(-3, 3))
def test_curvature_functions_match_mpmath_on_both_sides_of_the_series_switch(log_t, sign,
                                                                             log_r):
    # t = k r^2 spans 1e-10 .. 0.9 in magnitude, across the switch to the series at 1e-3; within
    # sqrt|t| <= 0.95 the closed forms have condition numbers below 10 (artanh: 1 / (1 - t)).
    mpmath = mpmath_module()
    t, r = sign * 10.0 ** log_t, 10.0 ** log_r
    k = t / r ** 2
    rr = torch.tensor(r, dtype=F64)
    with mpmath.workdps(40):
        s, R = mpmath.sqrt(abs(mpmath.mpf(k))), mpmath.mpf(r)
        pos = k > 0
        refs = {"tan_k": (mpmath.tan if pos else mpmath.tanh)(s * R) / s,
                "artan_k": (mpmath.atan if pos else mpmath.atanh)(s * R) / s,
                "arsin_k": (mpmath.asin if pos else mpmath.asinh)(s * R) / s}
    for name, fn in (("tan_k", sm.tan_k), ("artan_k", sm.artan_k), ("arsin_k", sm.arsin_k)):
        got, expected = float(fn(rr, k)), float(refs[name])
        assert abs(got - expected) <= 32 * EPS[F64] * abs(expected), (name, t, got, expected)


# ---- stereographic model: references, float32, gradients ----------------------------------------

@examples(30)
@given(stereo_pairs(modes=("apart", "near"), curvature=curvatures(zero=False, smallest=1e-2,
                                                                  largest=3.0),
                    rho_cap=lambda k: 3.0 if k < 0 else 2.0), st.integers(0, 2**31 - 1))
def test_stereographic_agrees_with_geoopt(case, seed):
    # geoopt's SphereProjection / PoincareBall in float64 at moderate points (geoopt's textbook
    # formulas lose digits near the boundary, the pole, and at tiny |k|, where it switches to a
    # first-order series).
    geoopt, (m, x, y), k, ref, g = geoopt_twin(case, "Stereographic", seed)
    u = 0.3 * torch.randn(x.shape, dtype=F64, generator=g) / m.lambda_x(x, keepdim=True)
    pairs = {
        "dist": (m.dist(x, y), ref.dist(x, y)),
        "logmap": (m.logmap(x, y), ref.logmap(x, y)),
        "expmap": (m.expmap(x, u), ref.expmap(x, u)),
        "transp": (m.transp(x, y, u), ref.transp(x, y, u)),
        "mobius_add": (m.gyroadd(x, y), ref.mobius_add(x, y)),
        "gyration": (m.gyration(x, y, u), geoopt.manifolds.stereographic.math.gyration(
            x, y, u, k=k)),
        "scalar_mul": (m.gyroscalarmul(-0.6, x), ref.mobius_scalar_mul(
            torch.tensor(-0.6, dtype=F64), x)),
        "egrad2rgrad": (m.egrad2rgrad(x, u), ref.egrad2rgrad(x, u)),
    }
    for name, (a, b) in pairs.items():
        # geoopt's logmap of nearby points loses eps |x| / |x - y| (its textbook numerator)
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8 if name != "logmap" else 1e-6,
                                   msg=name)


@examples(40)
@given(stereo_pairs(dtype=F32, rho_cap=lambda k: 10.0 if k < 0 else math.inf),
       st.integers(0, 2**31 - 1))
def test_stereographic_float32_agrees_with_float64(case, seed):
    # Inputs rounded to float32 once; the float64 computation on the same values is the
    # reference, so the tolerances are the float32 error bounds of the float64 tests.
    m, x, y = case
    k = float(m.k)
    x64, y64 = x.double(), y.double()
    d, d64 = m.dist(x, y), m.dist(x64, y64)
    assert d.dtype == F32 and bool(torch.isfinite(d).all())
    assert bool(((d.double() - d64).abs()
                 <= stereo_dist_tolerance(k, x64, y64, d64, F32)).all()), (k, d, d64)
    log = m.logmap(x, y)
    assert bool(torch.isfinite(log).all())
    assert bool(((m.norm(x64, log.double()) - d64).abs()
                 <= stereo_dist_tolerance(k, x64, y64, d64, F32)).all())
    g = generator(seed)
    u = (0.5 * unit_directions(BATCH, x.shape[-1], g) / m.lambda_x(x64, keepdim=True)).float()
    # a step of length 1: within the float32 range of expmap (see _exp_error_growth)
    z = m.expmap(x, u)
    assert bool(torch.isfinite(z).all()) and m.check_point(z)[0]
    assert bool((m.dist(z.double(), m.expmap(x64, u.double()))
                 <= 64 * EPS[F32] * (1 + stereo_rounding_displacement(k, x64)
                                     + _exp_error_growth(k, x64, torch.ones_like(d64)))).all())
    # transport: an isometry to the rounding of lambda_x / lambda_y (as for the distance)
    moved = m.transp(x, y, u)
    assert bool(torch.isfinite(moved).all())
    norm_u = m.norm(x64, u.double())
    rel = 64 * EPS[F32] * (1 + abs(k) * (sq(x64) * m.lambda_x(x64) + sq(y64) * m.lambda_x(y64)))
    assert bool(((m.norm(y64, moved.double()) - norm_u).abs() <= rel * norm_u).all())
    assert bool(torch.isfinite(m.gyroadd(x, y)).all())


@examples(40)
@given(curvatures(), st.sampled_from([F64, F32]), st.integers(2, 6), st.integers(0, 2**31 - 1),
       st.floats(0, 1), st.floats(0, 15))
def test_stereographic_gradients_are_finite_at_equal_and_boundary_points(k, dtype, n, seed,
                                                                         where, log_gap):
    # x = y anywhere (including the ball margin and far out in the k > 0 chart), and pairs a
    # relative 10^-log_gap apart: dist, dist2, logmap and transp have finite gradients.
    m = Stereographic(k)
    g = generator(seed)
    x = m.projx((unit_directions(BATCH, n, g) * chart_radius(k, where * rho_max(k, dtype)))
                .to(dtype))
    y = m.projx(x * (1 - 10.0 ** -log_gap))
    v = unit_directions(BATCH, n, g).to(dtype)
    for other in (x, y):
        a = x.clone().requires_grad_()
        b = other.clone().requires_grad_()
        total = (m.dist(a, b).sum() + m.dist2(a, b).sum() + m.logmap(a, b).sum()
                 + m.transp(a, b, v).sum() + m.expmap(a, 0 * v).sum())
        grads = torch.autograd.grad(total, (a, b))
        assert all(bool(torch.isfinite(gr).all()) for gr in grads), (k, dtype)
    # d(x, x) = 0 is the minimum of d^2: its gradient vanishes there
    a = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(m.dist2(a, x).sum(), a)
    assert bool((grad.abs() <= FLOOR[dtype]).all())


# ---- Lorentz model ------------------------------------------------------------------------------

# Largest distance from the origin, in units of sqrt(k): coordinates stay below 1 / eps (both
# chord forms of lorentz_math._chord2 fail beyond, at 36 in float64 and 16 in float32).
LORENTZ_RHO = {F64: 30.0, F32: 12.0}


def lorentz_point(k, rho, direction, dtype):
    """Points at distance ``sqrt(k) rho`` from the origin in the given spatial directions."""
    rho = torch.as_tensor(rho, dtype=F64).reshape(-1, 1)
    spatial = math.sqrt(k) * torch.sinh(rho) * direction
    x = lm.project(torch.cat((torch.zeros_like(spatial[..., :1]), spatial), -1), k=k)
    return lm.project(x.to(dtype), k=k)


@st.composite
def lorentz_pairs(draw, dtype=F64, modes=("apart", "near", "ray"), rho_cap=None):
    """``(manifold, x, y)``: ``BATCH`` pairs for one drawn ``k`` in ``[1e-4, 1e4]``; ``y``
    ``"apart"``, ``"near"`` ``x`` (relative offsets of the spatial part 1e-2 to 1e-14) or on the
    ``"ray"`` from the origin through ``x`` (the case where rounding is largest; the four pairs
    at 1, 3/4, 1/2 and 1/4 of the drawn distance of ``y``)."""
    k = 10.0 ** draw(st.floats(-4, 4))
    d = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    top = LORENTZ_RHO[dtype] if rho_cap is None else min(LORENTZ_RHO[dtype], rho_cap)
    rho_x, rho_y = draw(distances(top)), draw(distances(top))
    mode = draw(st.sampled_from(modes))
    g = generator(seed, 0)
    dx, dy = unit_directions(BATCH, d, g), unit_directions(BATCH, d, g)
    x = lorentz_point(k, rho_x, dx, F64)
    if mode == "near":
        offset = 10.0 ** -draw(st.floats(2, 14))
        scale = math.sqrt(k) * max(math.sinh(rho_x), 1.0) * offset
        y = lm.project(x + scale * torch.cat((torch.zeros(BATCH, 1, dtype=F64), dy), -1), k=k)
    elif mode == "ray":
        y = lorentz_point(k, rho_y * torch.tensor([1.0, 0.75, 0.5, 0.25]), dx, F64)
    else:
        y = lorentz_point(k, rho_y, dy, F64)
    return Lorentz(k), lm.project(x.to(dtype), k=k), lm.project(y.to(dtype), k=k)


def lorentz_dist_reference(x, y, k):
    """``sqrt(k) arcosh(-<x, y>_L / k)`` in 80 digits, time coordinates implied by the spatial
    parts (``x_0 = sqrt(k + |x_s|^2)``), float64."""
    mpmath = mpmath_module()
    out = []
    with mpmath.workdps(80):
        kk = mpmath.mpf(k)
        for a, b in zip(x.double().tolist(), y.double().tolist()):
            xs, ys = [mpmath.mpf(t) for t in a[1:]], [mpmath.mpf(t) for t in b[1:]]
            x0 = mpmath.sqrt(kk + mpmath.fsum(t * t for t in xs))
            y0 = mpmath.sqrt(kk + mpmath.fsum(t * t for t in ys))
            inner = mpmath.fsum(p * q for p, q in zip(xs, ys)) - x0 * y0
            out.append(mpmath.sqrt(kk) * mpmath.acosh(max(-inner / kk, mpmath.mpf(1))))
    return torch.tensor([float(v) for v in out], dtype=F64)


def lorentz_dist_tolerance(k, x, y, d, dtype=F64):
    """Error bound of ``dist(x, y)`` from the error estimates of ``lorentz_math._chord2``.

    The squared chord ``q`` errs by ``eps min((q + eps m^2) / (1 - c), x_0 y_0)`` (``m`` the
    smaller ``x_0``, ``c = (x_0 - y_0)^2 / |x_s + y_s|^2``, near 1 for two points on one ray far
    from the origin); ``d = 2 sqrt(k) arsinh(sqrt(q) / (2 sqrt(k)))`` turns it into
    ``dq / (2 sqrt(q) sqrt(1 + q / (4k)))``.
    """
    eps = EPS[dtype]
    x, y = x.double(), y.double()
    x0, y0 = x[..., 0], y[..., 0]
    s = x[..., 1:] + y[..., 1:]
    s2 = sq(s)
    gap = ((x[..., 1:] - y[..., 1:]) * s).sum(-1) / (x0 + y0)
    c = torch.where(s2 > 0, gap * gap / torch.where(s2 > 0, s2, 1.0), 0.0)
    q = 4 * k * torch.sinh(d / (2 * math.sqrt(k))) ** 2
    m = torch.minimum(x0, y0)
    dq = eps * torch.minimum((q + eps * m * m) / (1 - c).clamp_min(eps), x0 * y0)
    dd = dq / (2 * q.sqrt() * (1 + q / (4 * k)).sqrt()).clamp_min(1e-300)
    return 16 * (eps * d + dd) + FLOOR[dtype]


def lorentz_rounding_displacement(k, x):
    """Riemannian length of a relative displacement 1 of the spatial coordinates of ``x``
    (about ``x_0``): times eps, how far rounding the coordinates moves the point."""
    return x.double()[..., 0]


@examples(50)
@given(lorentz_pairs())
def test_lorentz_dist_matches_an_80_digit_reference(case):
    m, x, y = case
    k = float(m.k)
    expected = lorentz_dist_reference(x, y, k)
    d = m.dist(x, y)
    err = (d - expected).abs()
    assert bool((err <= lorentz_dist_tolerance(k, x, y, expected)).all()), (k, err, expected)


@examples(40)
@given(lorentz_pairs(), st.integers(0, 2**31 - 1), st.floats(0, 1))
def test_lorentz_dist_is_a_metric_and_the_map_to_the_ball_keeps_it(case, seed, where):
    m, x, y = case
    k = float(m.k)
    g = generator(seed)
    z = lorentz_point(k, where * LORENTZ_RHO[F64], unit_directions(BATCH, x.shape[-1] - 1, g),
                      F64)
    assert bool((m.dist(x, x) <= FLOOR[F64]).all())
    dxy, dyx, dxz, dyz = m.dist(x, y), m.dist(y, x), m.dist(x, z), m.dist(y, z)
    t_xy, t_yx = lorentz_dist_tolerance(k, x, y, dxy), lorentz_dist_tolerance(k, y, x, dyx)
    t_xz, t_yz = lorentz_dist_tolerance(k, x, z, dxz), lorentz_dist_tolerance(k, y, z, dyz)
    assert bool(((dxy - dyx).abs() <= t_xy + t_yx).all())
    assert bool((dxz <= dxy + dyz + t_xz + t_xy + t_yz).all())
    assert bool((dxy <= dxz + dyz + t_xz + t_xy + t_yz).all())
    # The isometry onto PoincareBall(1 / k), where the ball holds the points (within 20 sqrt(k)
    # of the origin, below its margin of 23.7): the distances agree within the error bounds of
    # both models and the rounding of the mapped points (eps x_0 of Riemannian displacement).
    held = torch.maximum(x[..., 0], y[..., 0]) <= math.sqrt(k) * math.cosh(20.0)
    ball = PoincareBall(1 / k)
    px, py = m.lorentz_to_poincare(x), m.lorentz_to_poincare(y)
    assert ball.check_point(px)[0] and ball.check_point(py)[0]
    tol = (t_xy + stereo_dist_tolerance(-1 / k, px, py, dxy)
           + 16 * EPS[F64] * (x[..., 0] + y[..., 0]))
    assert bool(((ball.dist(px, py) - dxy).abs()[held] <= tol[held]).all())
    back = m.poincare_to_lorentz(px)
    assert bool((m.dist(back, x)[held] <= 16 * EPS[F64] * x[held][..., 0]).all())


@examples(40)
@given(st.floats(-4, 4), st.integers(2, 6), st.integers(0, 2**31 - 1), distances(15.0),
       st.floats(0, 1), st.floats(0, 1))
def test_lorentz_exp_and_log_invert_each_other_far_from_the_origin(log_k, d, seed, rho_x,
                                                                    log_fraction, spread):
    # x up to 15 sqrt(k) from the origin, steps log-uniform from 1e-10 sqrt(k) to what keeps the
    # end point within 30 sqrt(k) of the origin (coordinates below 1e13 sqrt(k)).
    k = 10.0 ** log_k
    m = Lorentz(k)
    g = generator(seed)
    direction = unit_directions(BATCH, d, g)
    x = lorentz_point(k, rho_x, direction, F64)
    # directions of the step: spread 0 points outward along x's ray, 1 anywhere
    outward = torch.cat((torch.zeros(BATCH, 1, dtype=F64), direction), -1)
    raw = spread * torch.randn(BATCH, d + 1, dtype=F64, generator=g) + (1 - spread) * outward
    u = m.proju(x, raw)
    u = u / m.norm(x, u, keepdim=True)
    s = 1e-10 ** (1 - log_fraction) * (30.0 - rho_x) * math.sqrt(k)
    v = s * u
    y = m.expmap(x, v)
    assert bool(torch.isfinite(y).all()) and m.check_point(y)[0]
    length = m.norm(x, v)
    # v = s u rounds coordinates x_0 / sqrt(k) times its length: eps x_0 / sqrt(k) relative
    assert bool(((length - s).abs() <= 16 * EPS[F64] * s * x[..., 0] / math.sqrt(k)).all())
    # the rounding of y, the error of the distance, and the rounding of x and of the coordinates
    # of v (eps x_0, they are x_0 / sqrt(k) times its length), which grows along the geodesic
    # like a Jacobi field, by cosh(|v| / sqrt(k)): a step of 15 sqrt(k) back to the origin from
    # 15 sqrt(k) out lands eps x_0^2 / k = 6e-4 sqrt(k) from where exact arithmetic would
    bound = (16 * EPS[F64] * (lorentz_rounding_displacement(k, y) + lorentz_rounding_displacement(
        k, x) * math.cosh(s / math.sqrt(k))) + lorentz_dist_tolerance(k, x, y, length))
    assert bool(((m.dist(x, y) - s).abs() <= bound).all()), (k, m.dist(x, y) - s, bound)
    back = m.logmap(x, y)
    assert bool((m.norm(x, back - v) <= bound).all()), (k, m.norm(x, back - v), bound)
    # the same step from the origin, through expmap0 / logmap0
    v0 = s * torch.cat((torch.zeros(BATCH, 1, dtype=F64), direction), -1)
    y0 = m.expmap0(v0)
    torch.testing.assert_close(m.dist0(y0), torch.full((BATCH,), s, dtype=F64), rtol=16 * EPS[F64],
                               atol=FLOOR[F64])
    torch.testing.assert_close(m.logmap0(y0), v0, rtol=0, atol=16 * EPS[F64] * s)


def lorentz_transport_tolerance(k, x, y):
    """Error bound of ``transp`` for unit vectors: the rounding of a tangent vector stored at the
    farther point (``eps X`` with ``X = max(x_0, y_0) / sqrt(k)``: its coordinates are ``X``
    times its length), and the cancellation the docstring of ``lorentz_math.parallel_transport``
    quantifies, ``4e-10`` up to 10 from the origin, which grows like ``eps X^2``."""
    big = torch.maximum(x[..., 0], y[..., 0]) / math.sqrt(k)
    return 32 * EPS[F64] * big + torch.clamp(4 * EPS[F64] * big * big, max=4e-10)


@examples(60)
@given(lorentz_pairs(rho_cap=10.0), st.integers(0, 2**31 - 1))
def test_lorentz_transport_keeps_inner_products_and_is_reversible(case, seed):
    # Points within 10 sqrt(k) of the origin, where the documented accuracy is 4e-10.
    m, x, y = case
    k = float(m.k)
    g = generator(seed)
    u = m.proju(x, torch.randn(x.shape, dtype=F64, generator=g))
    v = m.proju(x, torch.randn(x.shape, dtype=F64, generator=g))
    u, v = u / m.norm(x, u, keepdim=True), v / m.norm(x, v, keepdim=True)
    tu, tv = m.transp(x, y, u), m.transp(x, y, v)
    tol = lorentz_transport_tolerance(k, x, y)
    assert bool(((m.norm(y, tu) - 1).abs() <= tol).all()), (m.norm(y, tu) - 1, tol)
    assert bool(((m.inner(y, tu, tv) - m.inner(x, u, v)).abs() <= tol).all())
    # tangent at y: <y, P u>_L = 0 up to the rounding of the coordinates of u and P u, the
    # larger of which are x_0 / sqrt(k) and y_0 / sqrt(k) times their length
    coords = torch.maximum(u.abs().amax(-1), tu.abs().amax(-1))
    assert bool((lm.minkowski_inner(y, tu).abs() <= 32 * EPS[F64] * y[..., 0] * coords).all())
    back = m.transp(y, x, tu)
    assert bool((m.norm(x, back - u) <= 2 * tol).all())


@pytest.mark.parametrize("dtype, rho_x, rho_y, documented",
                         [(F64, 20.0, (9.0, 9.5, 9.95, 10.5, 11.0), 3e-5),
                          (F32, 8.0, (2.5, 3.0, 3.5, 4.0), 4e-3)], ids=["f64", "f32"])
def test_lorentz_transport_along_a_ray_keeps_the_documented_accuracy(dtype, rho_x, rho_y,
                                                                    documented):
    # lorentz_math.parallel_transport: unit vectors keep their norm to 3e-5 up to 20 from the
    # origin in float64 and to 4e-3 up to 8 in float32, on common rays or not.
    m = Lorentz(1.0)
    g = generator(0)
    direction = torch.tensor([[0.6, 0.8]], dtype=F64)
    x = lorentz_point(1.0, rho_x, direction, dtype).expand(100, 3)
    worst = 0.0
    for rho in rho_y:
        y = lorentz_point(1.0, rho, direction, dtype).expand(100, 3)
        v = m.proju(x, torch.randn(100, 3, dtype=dtype, generator=g))
        v = v / m.norm(x, v, keepdim=True)
        worst = max(worst, float((m.norm(y, m.transp(x, y, v)) - 1).abs().max()))
    assert worst <= documented, worst


@examples(40)
@given(st.floats(-4, 4), st.integers(2, 6), st.integers(0, 2**31 - 1), st.floats(0, 1))
def test_lorentz_projections_and_egrad2rgrad(log_k, d, seed, where):
    # inner(x, egrad2rgrad(x, g), u) = <g, u> (Euclidean) for tangent u: the Riemannian gradient
    # represents the Euclidean one. Points up to 15 sqrt(k) from the origin, where tangent
    # vectors have coordinates X = x_0 / sqrt(k) times their length: the product errs by eps X
    # relative, and proju, through <x, u>_L x / k, by eps X^2 in u's coordinates.
    k = 10.0 ** log_k
    m = Lorentz(k)
    g = generator(seed)
    x = lorentz_point(k, 15.0 * where, unit_directions(BATCH, d, g), F64)
    z = x + torch.randn(x.shape, dtype=F64, generator=g) * x.abs().amax(-1, keepdim=True)
    p = m.projx(z)
    assert torch.equal(m.projx(p), p) and m.check_point(p)[0]
    u = m.proju(x, torch.randn(x.shape, dtype=F64, generator=g))
    big = x[..., 0] / math.sqrt(k)
    assert bool(((m.proju(x, u) - u).abs().amax(-1)
                 <= 32 * EPS[F64] * big ** 2 * u.abs().amax(-1)).all())
    assert m.check_vector(x, u)[0]
    grad = torch.randn(x.shape, dtype=F64, generator=g)
    lhs = m.inner(x, m.egrad2rgrad(x, grad), u)
    rhs = (grad * u).sum(-1)
    bound = 16 * EPS[F64] * big * grad.norm(dim=-1) * u.norm(dim=-1)
    assert bool(((lhs - rhs).abs() <= bound).all()), (lhs - rhs, bound)


@examples(40)
@given(st.floats(-2, 2), st.integers(2, 6), st.integers(0, 2**31 - 1), st.floats(0.05, 1.2),
       st.floats(-1.5, 1.5))
def test_lorentz_gyro_structure_is_that_of_the_ball(log_k, d, seed, rho, t):
    # Through lorentz_to_poincare (an isometry onto PoincareBall(1 / k)) the Lorentz gyro
    # operations are the Möbius ones; and they obey the gyrogroup laws on the hyperboloid.
    k = 10.0 ** log_k
    m, ball = Lorentz(k), PoincareBall(1 / k)
    g = generator(seed)
    a, b, c, w = (lorentz_point(k, rho * torch.rand(BATCH, dtype=F64, generator=g),
                                unit_directions(BATCH, d, g), F64) for _ in range(4))
    to_ball = m.lorentz_to_poincare
    pa, pb, pc = to_ball(a), to_ball(b), to_ball(c)
    tol = dict(rtol=0, atol=256 * EPS[F64] * math.sqrt(k))
    torch.testing.assert_close(to_ball(m.gyroadd(a, b)), ball.gyroadd(pa, pb), **tol)
    torch.testing.assert_close(to_ball(m.gyroinv(a)), ball.gyroinv(pa), **tol)
    torch.testing.assert_close(to_ball(m.gyroscalarmul(t, a)), ball.gyroscalarmul(t, pa), **tol)
    torch.testing.assert_close(to_ball(m.gyration(a, b, c)), ball.gyration(pa, pb, pc), **tol)
    o = m.origin_like(a)
    torch.testing.assert_close(m.gyroadd(o, a), a, **tol)
    torch.testing.assert_close(m.gyroadd(m.gyroinv(a), a), o, **tol)
    lhs = m.gyroadd(a, m.gyroadd(b, c))
    rhs = m.gyroadd(m.gyroadd(a, b), m.gyration(a, b, c))
    assert float(m.dist(lhs, rhs).max()) <= 1024 * EPS[F64] * math.sqrt(k)
    s_plus_t = m.gyroscalarmul(0.5 + t, w)
    sum_of_multiples = m.gyroadd(m.gyroscalarmul(0.5, w), m.gyroscalarmul(t, w))
    assert float(m.dist(s_plus_t, sum_of_multiples).max()) <= 1024 * EPS[F64] * math.sqrt(k)
    # gyrations fix the origin and keep distances
    torch.testing.assert_close(m.gyration(a, b, o), o, **tol)
    torch.testing.assert_close(m.dist(m.gyration(a, b, c), m.gyration(a, b, w)), m.dist(c, w),
                               **tol)


@examples(30)
@given(lorentz_pairs(modes=("apart", "near"), rho_cap=3.0), st.integers(0, 2**31 - 1))
def test_lorentz_agrees_with_geoopt(case, seed):
    # geoopt's Lorentz(k) has the same convention (<x, x>_L = -k, curvature -1/k). Its arcosh of
    # -<x, y>_L / k loses half the digits for nearby points, and its transport (through logmap
    # and dist^2) with them: those are compared only for pairs apart.
    geoopt, (m, x, y), k, ref, g = geoopt_twin(case, "Lorentz", seed)
    u = m.proju(x, 0.3 * math.sqrt(float(k)) * torch.randn(x.shape, dtype=F64, generator=g))
    grad = torch.randn(x.shape, dtype=F64, generator=g)
    apart = m.dist(x, y) > 1e-3 * math.sqrt(float(k))
    pairs = {
        "expmap": (m.expmap(x, u), ref.expmap(x, u), None),
        "dist": (m.dist(x, y), ref.dist(x, y), apart),
        "logmap": (m.logmap(x, y), ref.logmap(x, y), apart),
        "transp": (m.transp(x, y, u), ref.transp(x, y, u), apart),
        "proju": (m.proju(x, grad), ref.proju(x, grad), None),
        "egrad2rgrad": (m.egrad2rgrad(x, grad), ref.egrad2rgrad(x, grad), None),
    }
    for name, (a, b, where) in pairs.items():
        if where is not None:
            a, b = a[where], b[where]
        scale = float(b.abs().max()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8 * max(scale, math.sqrt(float(k))),
                                   msg=name)


@examples(40)
@given(lorentz_pairs(dtype=F32, rho_cap=8.0), st.integers(0, 2**31 - 1))
def test_lorentz_float32_agrees_with_float64_and_has_finite_gradients(case, seed):
    m, x, y = case
    k = float(m.k)
    x64, y64 = x.double(), y.double()
    d, d64 = m.dist(x, y), m.dist(x64, y64)
    assert d.dtype == F32
    assert bool(((d.double() - d64).abs() <= lorentz_dist_tolerance(k, x64, y64, d64, F32)
                 ).all()), (k, d, d64)
    log = m.logmap(x, y)
    assert bool(torch.isfinite(log).all())
    # the length of logmap: the distance's error, and the rounding of the coordinates of a
    # tangent vector, x_0 / sqrt(k) times its length
    tol = lorentz_dist_tolerance(k, x64, y64, d64, F32) + 16 * EPS[F32] * x64[..., 0] / math.sqrt(
        k) * d64
    assert bool(((m.norm(x, log).double() - d64).abs() <= tol).all())
    g = generator(seed)
    u = m.proju(x, torch.randn(x.shape, dtype=F32, generator=g))
    u = 0.5 * math.sqrt(k) * u / m.norm(x, u, keepdim=True)
    z = m.expmap(x, u)
    assert bool(torch.isfinite(z).all()) and m.check_point(z)[0]
    assert bool(torch.isfinite(m.transp(x, y, u)).all())
    a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
    for other in (b, a):
        total = m.dist(a, other).sum() + m.logmap(a, other).sum() + m.transp(a, other, u).sum()
        grads = torch.autograd.grad(total, (a, b), allow_unused=True)
        assert all(gr is None or bool(torch.isfinite(gr).all()) for gr in grads)


# ---- Sphere -------------------------------------------------------------------------------------

@st.composite
def sphere_pairs(draw, dtype=F64, modes=("apart", "near", "antipodal")):
    """``(x, y)``: ``BATCH`` unit vectors in ``R^n``; ``y`` independent, near ``x`` or near
    ``-x`` (relative offsets 1e-1 down to 1e-15, and 0)."""
    n = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    mode = draw(st.sampled_from(modes))
    g = generator(seed, 0)
    x, e = unit_directions(BATCH, n, g), unit_directions(BATCH, n, g)
    if mode == "apart":
        y = e
    else:
        offset = draw(st.one_of(st.just(0.0), st.floats(1, 15).map(lambda t: 10.0 ** -t)))
        y = (x if mode == "near" else -x) + offset * e
    s = Sphere()
    return s.projx(x.to(dtype)), s.projx(y.to(dtype))


def sphere_angle_reference(x, y):
    """Angle between ``x`` and ``y`` as given, ``atan2(sqrt(|x|^2|y|^2 - <x,y>^2), <x,y>)`` in
    50 digits, float64."""
    mpmath = mpmath_module()
    out = []
    with mpmath.workdps(50):
        for a, b in zip(x.double().tolist(), y.double().tolist()):
            X, Y = [mpmath.mpf(t) for t in a], [mpmath.mpf(t) for t in b]
            xy = mpmath.fsum(p * q for p, q in zip(X, Y))
            cross = mpmath.fsum(p * p for p in X) * mpmath.fsum(q * q for q in Y) - xy * xy
            out.append(mpmath.atan2(mpmath.sqrt(max(cross, 0)), xy))
    return torch.tensor([float(v) for v in out], dtype=F64)


@examples(50)
@given(sphere_pairs(), st.integers(0, 2**31 - 1))
def test_sphere_dist_matches_a_50_digit_reference_and_is_a_metric(case, seed):
    # Unit vectors are unit to eps, so the angle the formulas see is known to eps (absolute):
    # the bound for nearly equal and nearly antipodal points alike.
    x, y = case
    s = Sphere()
    expected = sphere_angle_reference(x, y)
    d = s.dist(x, y)
    assert bool(((d - expected).abs() <= 8 * EPS[F64] * (1 + expected)).all()), (d, expected)
    assert bool(((d - s.dist(y, x)).abs() <= 16 * EPS[F64] * (1 + d)).all())
    # d(x, x) = |x - <x, x> x| is |x| (1 - |x|^2) for a unit vector as rounded: about eps
    assert bool((s.dist(x, x) <= 4 * EPS[F64]).all())
    z = s.random(BATCH, n=x.shape[-1], dtype=F64, generator=generator(seed))
    assert bool((s.dist(x, z) <= d + s.dist(y, z) + 32 * EPS[F64] * (1 + d)).all())


@examples(40)
@given(st.integers(2, 6), st.integers(0, 2**31 - 1), st.floats(-10, 0), st.floats(1, 12))
def test_sphere_exp_log_round_trip_and_transport(n, seed, log_fraction, log_gap):
    # Steps from 1e-10 pi to pi (1 - 10^-log_gap): at a relative gap delta from the antipode the
    # direction of logmap is ill-conditioned by 1 / delta; the length is not.
    s = Sphere()
    g = generator(seed)
    x = unit_directions(BATCH, n, g)
    u = s.proju(x, torch.randn(BATCH, n, dtype=F64, generator=g))
    u = u / u.norm(dim=-1, keepdim=True)
    step = min(10.0 ** log_fraction * math.pi, math.pi * (1 - 10.0 ** -log_gap))
    v = step * u
    y = s.expmap(x, v)
    assert s.check_point(y)[0]
    torch.testing.assert_close(s.dist(x, y), torch.full((BATCH,), step, dtype=F64), rtol=0,
                               atol=8 * EPS[F64] * (1 + step))
    back = s.logmap(x, y)
    torch.testing.assert_close(s.norm(x, back), torch.full((BATCH,), step, dtype=F64), rtol=0,
                               atol=8 * EPS[F64] * (1 + step))
    # the direction of logmap is that of y - <x, y> x, of length sin(step): rounding eps there
    # turns the direction by eps / sin(step)
    cond = 1 + step / math.sin(step)
    torch.testing.assert_close(back, v, rtol=0, atol=16 * EPS[F64] * cond)
    # parallel transport along the geodesic: an isometry (up to y = -x), carrying the velocity
    # to the velocity, and undone by transport back
    w = s.proju(x, torch.randn(BATCH, n, dtype=F64, generator=g))
    tw, tv = s.transp(x, y, w), s.transp(x, y, v)
    torch.testing.assert_close(tw.norm(dim=-1), w.norm(dim=-1), rtol=16 * EPS[F64], atol=0)
    torch.testing.assert_close((tw * tv).sum(-1), (w * v).sum(-1), rtol=0,
                               atol=32 * EPS[F64] * float(w.norm(dim=-1).max()) * step)
    # tangency to the rounding of proju's input (a standard normal vector, norm below 1 + |w|)
    assert bool(((tw * y).sum(-1).abs() <= 16 * EPS[F64] * (1 + w.norm(dim=-1))).all())
    torch.testing.assert_close(tv, -s.logmap(y, x), rtol=0, atol=32 * EPS[F64] * cond)
    torch.testing.assert_close(s.transp(y, x, tw), w, rtol=0,
                               atol=32 * EPS[F64] * cond * float(w.norm(dim=-1).max()))


@examples(40)
@given(sphere_pairs(), st.integers(0, 2**31 - 1))
def test_sphere_transport_is_an_isometry_for_any_pair(case, seed):
    # Tolerances scale with the Gaussian vectors drawn: proju leaves eps times their norm.
    x, y = case
    s = Sphere()
    g = generator(seed)
    raw_u, raw_v = (torch.randn(x.shape, dtype=F64, generator=g) for _ in range(2))
    u, v = s.proju(x, raw_u), s.proju(x, raw_v)
    tu, tv = s.transp(x, y, u), s.transp(x, y, v)
    nu, nv = raw_u.norm(dim=-1), raw_v.norm(dim=-1)
    assert bool(((s.inner(y, tu, tv) - s.inner(x, u, v)).abs() <= 32 * EPS[F64] * nu * nv).all())
    assert bool(((tu * y).sum(-1).abs() <= 16 * EPS[F64] * nu).all())
    grad = torch.randn(x.shape, dtype=F64, generator=g)
    lhs = s.inner(x, s.egrad2rgrad(x, grad), u)
    assert bool(((lhs - (grad * u).sum(-1)).abs() <= 16 * EPS[F64] * grad.norm(dim=-1) * nu).all())
    assert bool(((s.proju(x, u) - u).norm(dim=-1) <= 8 * EPS[F64] * nu).all())
    torch.testing.assert_close(s.projx(y), y, rtol=0, atol=2 * EPS[F64])


@examples(40)
@given(sphere_pairs(dtype=F32))
def test_sphere_float32_agrees_with_float64_and_has_finite_gradients(case):
    x, y = case
    s = Sphere()
    d = s.dist(x, y)
    assert d.dtype == F32
    torch.testing.assert_close(d.double(), s.dist(x.double(), y.double()), rtol=0,
                               atol=8 * EPS[F32] * (1 + float(d.max())))
    # the direction of logmap turns by eps / sin(d) (none is preferred at the antipode)
    d64 = s.dist(x.double(), y.double())
    apart = d64 < math.pi - 1e-2
    torch.testing.assert_close(s.logmap(x, y).double()[apart],
                               s.logmap(x.double(), y.double())[apart], rtol=0,
                               atol=16 * EPS[F32] * (1 + math.pi / math.sin(math.pi - 1e-2)))
    a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
    for other in (b, a, -a):
        total = s.dist(a, other).sum() + s.dist2(a, other).sum() + s.logmap(a, other).sum() \
            + s.transp(a, other, a.detach().flip(-1)).sum()
        grads = torch.autograd.grad(total, (a, b), allow_unused=True)
        assert all(gr is None or bool(torch.isfinite(gr).all()) for gr in grads)


def inverse_stereographic(x, k):
    """The point of the unit sphere in ``R^(n+1)`` that ``x`` projects from (the pole at
    infinity is ``(-1, 0, ..., 0)``): the chart of ``Stereographic(k)`` scaled by ``sqrt(k)``."""
    r2 = k * (x * x).sum(-1, keepdim=True)
    return torch.cat(((1 - r2) / (1 + r2), 2 * math.sqrt(k) * x / (1 + r2)), -1)


def inverse_stereographic_differential(x, w, k):
    """The differential of :func:`inverse_stereographic` at ``x`` applied to ``w``."""
    den = 1 + k * (x * x).sum(-1, keepdim=True)
    xw = k * (x * w).sum(-1, keepdim=True)
    return torch.cat((-4 * xw / den ** 2, 2 * math.sqrt(k) * (w / den - 2 * xw * x / den ** 2)),
                     -1)


@examples(40)
@given(stereo_pairs(modes=("apart", "near"), curvature=curvatures(zero=False, smallest=1e-6)
                    .filter(lambda k: k > 0), rho_cap=lambda k: 2.5), st.integers(0, 2**31 - 1))
def test_positive_curvature_chart_is_the_sphere(case, seed):
    # Stereographic(k) is the sphere of radius 1 / sqrt(k): through the inverse projection its
    # distances are the angles (over sqrt k), and its exponential map and transport are the
    # sphere's, with tangent vectors mapped by the differential of the projection.
    # Points within 2.5 / sqrt(k) of the origin (chart coordinates below 3.1 / sqrt(k)) and
    # steps below about 5 radians: both sides are well conditioned, and 1e-12 (5e3 eps) covers
    # the rounding of the two sets of formulas and of the projection.
    m, x, y = case
    k = float(m.k)
    s = Sphere()
    sx, sy = inverse_stereographic(x, k), inverse_stereographic(y, k)
    torch.testing.assert_close(m.dist(x, y) * math.sqrt(k), s.dist(sx, sy), rtol=1e-12,
                               atol=8 * EPS[F64])
    g = generator(seed)
    v = torch.randn(x.shape, dtype=F64, generator=g) / m.lambda_x(x, keepdim=True) \
        / math.sqrt(k)

    def push(p, w):
        return inverse_stereographic_differential(p, w, k)

    torch.testing.assert_close(inverse_stereographic(m.expmap(x, v), k), s.expmap(sx, push(x, v)),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(push(y, m.transp(x, y, v)), s.transp(sx, sy, push(x, v)), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(push(x, m.logmap(x, y)), s.logmap(sx, sy), rtol=0, atol=1e-11)
