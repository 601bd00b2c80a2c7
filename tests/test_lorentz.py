"""Lorentz specifics: geoopt agreement, the isometry to the Poincaré ball, accuracy far from the
origin and at small distances, staying on the hyperboloid, the centroid. The generic laws run in
test_axioms.py and test_gyro_laws.py."""

import math
import warnings

import pytest
import torch

from riemtorch import Lorentz, PoincareBall
from riemtorch.manifolds import lorentz_math as lm

F64, F32 = torch.float64, torch.float32


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def geoopt_module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("geoopt")


def sample(m, n=5, batch=20, seed=0, dtype=F64):
    g = gen(seed)
    x = m.random(batch, n=n, dtype=dtype, generator=g)
    y = m.random(batch, n=n, dtype=dtype, generator=g)
    u = m.proju(x, 0.3 * torch.randn(batch, n, dtype=dtype, generator=g))
    return x, y, u


def far_points(m, dist, batch=6, n=5, dtype=F32, seed=5):
    """Points at geodesic distance ``dist`` from the origin in random directions."""
    d = torch.randn(batch, n, dtype=dtype, generator=gen(seed))
    d[..., 0] = 0
    return m.expmap0(dist * d / d.norm(dim=-1, keepdim=True))


@pytest.mark.parametrize("k", [1.0, 2.5])
def test_agrees_with_geoopt_to_1e8(k):
    geoopt = geoopt_module()
    kt = torch.tensor(k, dtype=F64)
    ours, ref = Lorentz(k), geoopt.Lorentz(kt.clone())
    x, y, u = sample(ours)
    u0 = ours.logmap0(y)
    pairs = {
        "expmap": (ours.expmap(x, u), ref.expmap(x, u)),
        "logmap": (ours.logmap(x, y), ref.logmap(x, y)),
        "dist": (ours.dist(x, y), ref.dist(x, y)),
        "transp": (ours.transp(x, y, u), ref.transp(x, y, u)),
        "expmap0": (ours.expmap0(u0), ref.expmap0(u0)),
        "logmap0": (ours.logmap0(y), ref.logmap0(y)),
        "projx": (ours.projx(x + 0.1), ref.projx(x + 0.1)),
        "proju": (ours.proju(x, y), ref.proju(x, y)),
        "egrad2rgrad": (ours.egrad2rgrad(x, y), ref.egrad2rgrad(x, y)),
        "inner": (ours.inner(x, u, ours.proju(x, u0)), ref.inner(x, u, ours.proju(x, u0))),
        # geoopt maps into the unit ball; ours into the ball of radius sqrt(k) (an isometry).
        "lorentz_to_poincare": (ours.lorentz_to_poincare(x) / k**0.5,
                                geoopt.manifolds.lorentz.math.lorentz_to_poincare(x, kt)),
    }
    for name, (a, b) in pairs.items():
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-8, msg=name)


@pytest.mark.parametrize("k", [1.0, 2.5])
def test_map_to_the_poincare_ball_is_an_isometry_carrying_the_gyro_structure(k):
    m, ball = Lorentz(k), PoincareBall(1 / k)
    x, y, u = sample(m, seed=1)
    px, py = m.lorentz_to_poincare(x), m.lorentz_to_poincare(y)
    assert ball.check_point(px)[0]
    torch.testing.assert_close(m.poincare_to_lorentz(px), x)
    torch.testing.assert_close(ball.dist(px, py), m.dist(x, y))
    torch.testing.assert_close(m.lorentz_to_poincare(m.origin(3, n=5, dtype=F64)),
                               torch.zeros(3, 4, dtype=F64))
    z = m.random(20, n=5, dtype=F64, generator=gen(2))
    pz = m.lorentz_to_poincare(z)
    to_ball = m.lorentz_to_poincare
    torch.testing.assert_close(to_ball(m.gyroadd(x, y)), ball.gyroadd(px, py))
    torch.testing.assert_close(to_ball(m.gyroinv(x)), ball.gyroinv(px))
    torch.testing.assert_close(to_ball(m.gyroscalarmul(-0.7, x)), ball.gyroscalarmul(-0.7, px))
    torch.testing.assert_close(to_ball(m.gyration(x, y, z)), ball.gyration(px, py, pz))


def test_curvature_buffer_parameter_and_errors():
    assert "k" in dict(Lorentz(2.0).named_buffers())
    m = Lorentz(2.0, learnable=True)
    (t,) = m.parameters()  # log k: a learnable k stays positive
    assert t.dtype == F64 and m.k.dtype == F64
    torch.testing.assert_close(m.k.detach(), torch.tensor(2.0, dtype=F64), rtol=1e-15, atol=0)
    x, y, _ = sample(Lorentz(2.0), batch=4)
    m.dist(x.float(), y.float()).sum().backward()
    assert t.grad is not None and bool(torch.isfinite(t.grad))
    with pytest.raises(ValueError, match="k > 0"):
        Lorentz(0.0)
    ok, reason = Lorentz(1.0).check_point(torch.tensor([[-1.0, 0.0, 0.0]]))
    assert not ok and "upper sheet" in reason
    ok, reason = Lorentz(1.0).check_point(torch.tensor([[1.5, 0.0, 0.0]], dtype=F64))
    assert not ok and "differs" in reason
    assert not Lorentz(1.0).check_point(torch.ones(3, 1))[0]


@pytest.mark.parametrize("k", [1.0, 2.5])
def test_distance_20_from_origin_in_float32(k):
    m = Lorentz(k)
    d = torch.randn(6, 5, generator=gen(5))
    d[..., 0] = 0
    u = (20 * d / d.norm(dim=-1, keepdim=True)).requires_grad_()
    x = m.expmap0(u)
    x64 = m.expmap0(u.detach().double())
    assert m.check_point(x)[0]
    torch.testing.assert_close(m.dist0(x), torch.full((6,), 20.0), rtol=1e-6, atol=0)
    # Pairs of far points in different directions: relative accuracy as for any float32 op.
    y, y64 = x.roll(1, 0), x64.roll(1, 0)
    rel = (m.dist(x, y).detach().double() - m.dist(x64, y64)).abs() / m.dist(x64, y64)
    assert float(rel.max()) < 1e-5
    # Steps of moderate length from there. In float32 a tangent vector at x_0 ~ 1e8 has
    # rounding errors larger than its Minkowski norm, so only finiteness can hold.
    o = m.origin(6, n=5)
    v = m.transp(o, x, m.logmap0(m.random(6, n=5, generator=gen(6))))
    z = m.expmap(x, v)
    total = (m.dist(x, y) + m.dist(x, z) + m.dist(x, x) + m.logmap0(x).sum(-1)
             + m.logmap(x, z).sum(-1) + m.logmap(x, o).sum(-1) + m.transp(x, z, v).sum(-1))
    (grad,) = torch.autograd.grad(total.sum(), u)
    assert bool(torch.isfinite(grad).all())
    # Tangent vectors at x have coordinates ~ x_0 |v| for Minkowski norm |v|, so their norms
    # carry absolute errors ~ eps x_0^2: at 10 from the origin float64 is still accurate.
    x64 = m.expmap0(u.detach().double() / 2)
    v64 = m.transp(o.double(), x64, m.logmap0(m.random(6, n=5, dtype=F64, generator=gen(6))))
    z64 = m.expmap(x64, v64)
    torch.testing.assert_close(m.dist(x64, z64), m.norm(x64, v64), rtol=1e-7, atol=0)
    scale = float(v64.abs().max())
    torch.testing.assert_close(m.logmap(x64, z64), v64, rtol=1e-6, atol=1e-6 * scale)


def test_small_distances_keep_their_digits():
    m = Lorentz(1.0)
    x, _, u = sample(m, batch=5, seed=3)
    u = u / m.norm(x, u, keepdim=True)
    for dtype, step, rtol in ((F64, 1e-7, 1e-7), (F32, 1e-3, 1e-3)):
        xs, us = x.to(dtype), u.to(dtype)
        y = m.expmap(xs, step * us)
        torch.testing.assert_close(m.dist(xs, y), torch.full((5,), step, dtype=dtype),
                                   rtol=rtol, atol=0)
        torch.testing.assert_close(m.logmap(xs, y), step * us, rtol=rtol, atol=step * rtol)


def _reference_chord_and_norm(x, y, u, k):
    """``<x - y, x - y>_L`` and ``<u, u>_L`` in 60-digit arithmetic from the spatial parts
    (time coordinates from the hyperboloid and from tangency at ``x``)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    xs, ys, us = ([mpmath.mpf(float(t)) for t in v[1:]] for v in (x, y, u))
    x0 = mpmath.sqrt(k + sum(t * t for t in xs))
    y0 = mpmath.sqrt(k + sum(t * t for t in ys))
    u0 = sum(a * b for a, b in zip(xs, us)) / x0
    chord = sum((a - b) ** 2 for a, b in zip(xs, ys)) - (x0 - y0) ** 2
    return float(chord), float(sum(t * t for t in us) - u0 * u0)


@pytest.mark.parametrize("dtype, radius", [(F64, 10.0), (F64, 20.0), (F32, 9.0)])
def test_tangent_norms_and_short_distances_far_from_the_origin(dtype, radius):
    # Tangent coordinates there are x_0 times the vector's length, so the Minkowski products
    # of the whole vectors cancel all digits (float64 at 18 from the origin, float32 at 8).
    m, k = Lorentz(2.0), 2.0
    x = far_points(m, radius, dtype=dtype)
    g = gen(8)
    u = m.proju(x, torch.randn(x.shape, dtype=dtype, generator=g))
    u = 0.1 * u / m.norm(x, u, keepdim=True).clamp_min(1e-30)
    y = m.expmap(x, u)
    rtol = 1e-6 if dtype == F32 else 1e-10
    for i in range(x.shape[0]):
        chord, norm2 = _reference_chord_and_norm(x[i], y[i], u[i], k)
        assert abs(float(m.inner(x[i], u[i])) - norm2) <= rtol * norm2
        assert abs(float(lm._chord2(x[i], y[i], torch.tensor(k, dtype=dtype))) - chord) \
            <= 10 * rtol * chord
    # the end point is rounded to the dtype: about eps of Riemannian displacement
    torch.testing.assert_close(m.dist(x, y), torch.full_like(x[:, 0], 0.1), rtol=10 * rtol, atol=0)


@pytest.mark.parametrize("dtype, near, far", [(F64, 20.0, 40.0), (F64, 10.0, 30.0), (F32, 8.0, 16.0)])
def test_distance_along_a_ray_far_from_the_origin(dtype, near, far):
    # Two points on one ray: the part of x_s - y_s orthogonal to x_s + y_s is rounding of the
    # far point's coordinates unless taken from the near one (k = 1, (20, 40): 24.17 instead
    # of 20; the Minkowski product alone gives 0).
    m = Lorentz(1.0)
    direction = torch.randn(5, dtype=F64, generator=gen(12))
    direction[0] = 0
    direction = direction / direction.norm()
    x, y = (m.projx(m.expmap0(r * direction).to(dtype)) for r in (near, far))
    mpmath = pytest.importorskip("mpmath")
    chord, _ = _reference_chord_and_norm(x, y, x, 1.0)
    expected = float(2 * mpmath.asinh(mpmath.sqrt(chord) / 2))
    assert abs(float(m.dist(x, y)) - expected) <= (1e-8 if dtype == F64 else 1e-4) * expected
    # the logarithm subtracts coordinates of 1e17 (float64, 40 out): about 1e-8 relative
    assert abs(float(m.norm(x, m.logmap(x, y))) - expected) <= (1e-6 if dtype == F64 else 1e-3) * expected


def _transport_error(x, y, v, transported, k):
    """``|P - P_ref|_L / |v|_L`` at ``y`` for ``P_ref = v + <y, v>_L / (k - <x, y>_L) (x + y)``
    in 60-digit arithmetic from the spatial parts (time coordinates implied as above)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    xs, ys, vs, ps = ([mpmath.mpf(float(t)) for t in a[1:]] for a in (x, y, v, transported))
    x0 = mpmath.sqrt(k + sum(t * t for t in xs))
    y0 = mpmath.sqrt(k + sum(t * t for t in ys))
    v0 = sum(a * b for a, b in zip(xs, vs)) / x0
    c = (sum(a * b for a, b in zip(ys, vs)) - y0 * v0) / (k - sum(a * b for a, b in zip(xs, ys))
                                                          + x0 * y0)
    err = [p - (b + c * (a + d)) for p, a, b, d in zip(ps, xs, vs, ys)]
    err0 = sum(a * b for a, b in zip(ys, err)) / y0
    return float(mpmath.sqrt(abs(sum(t * t for t in err) - err0 ** 2))
                 / mpmath.sqrt(sum(t * t for t in vs) - v0 ** 2))


@pytest.mark.parametrize("dtype, radius", [(F64, 20.0), (F32, 8.0)])
def test_parallel_transport_far_from_the_origin(dtype, radius):
    # <y, v>_L of the whole vectors cancels terms x_0^2 times larger than the result for nearby
    # points (before: errors 1e1 in float64 at 20 from the origin, 0.16 in float32 at 8); what
    # remains is the rounding of a tangent vector stored at y, about eps y_0.
    m, k = Lorentz(2.0), 2.0
    x = far_points(m, radius * k ** 0.5, dtype=dtype)
    g = gen(10)
    v = m.proju(x, torch.randn(x.shape, dtype=dtype, generator=g))
    u = m.proju(x, torch.randn(x.shape, dtype=dtype, generator=g))
    near = m.expmap(x, 0.1 * u / m.norm(x, u, keepdim=True))
    elsewhere = far_points(m, radius * k ** 0.5, dtype=dtype, seed=11)
    origin = m.origin(x.shape[0], n=x.shape[-1], dtype=dtype)
    bound = 30 * torch.finfo(dtype).eps * float(x[:, 0].max())
    for y in (near, elsewhere, origin):
        moved = m.transp(x, y, v)
        errors = [_transport_error(x[i], y[i], v[i], moved[i], k) for i in range(x.shape[0])]
        assert max(errors) <= bound, (max(errors), bound)
        # an isometry: norms kept to the same accuracy
        torch.testing.assert_close(m.norm(y, moved), m.norm(x, v), rtol=bound, atol=0)


def test_riemannian_adam_steps_by_the_learning_rate_far_from_the_origin():
    from riemtorch import ManifoldParameter
    from riemtorch.optim import RiemannianAdam

    m = Lorentz(1.0)
    for dtype, radius in ((F64, 20.0), (F32, 9.0)):
        x = far_points(m, radius, dtype=dtype)
        p = ManifoldParameter(x.clone(), m)
        opt = RiemannianAdam([p], lr=1e-2)
        p.grad = torch.randn(x.shape, dtype=dtype, generator=gen(9))
        opt.step()
        # Adam's first step has length lr in the Riemannian norm of each point
        torch.testing.assert_close(m.dist(x, p.detach()), torch.full_like(x[:, 0], 1e-2),
                                   rtol=1e-3 if dtype == F32 else 1e-8, atol=0)


def test_gradients_at_x_equal_y_are_finite():
    m = Lorentz(2.5)
    x = m.random(3, n=4, dtype=F64, generator=gen()).requires_grad_()
    for f in (lambda x: m.dist(x, x.detach()), lambda x: m.logmap(x, x.detach()),
              lambda x: m.dist2(x, x.detach())):
        (g,) = torch.autograd.grad(f(x).sum(), x)
        assert bool(torch.isfinite(g).all())
    y = m.random(3, n=4, dtype=F64, generator=gen(1))
    assert torch.autograd.gradcheck(lambda x: m.dist(x, y), (x,))
    assert torch.autograd.gradcheck(lambda x: m.logmap(x, y), (x,))


@pytest.mark.parametrize("k", [2.5])
def test_stays_on_hyperboloid_after_many_float32_exp_maps(k):
    m = Lorentz(k)
    steps, g = 10_000, gen(7)
    x = m.random(4, n=4, dtype=F32, generator=g)
    noise = 0.1 * torch.randn(steps, 4, 4, generator=g)
    spatial = torch.tensor([0.0, 1.0, 1.0, 1.0])
    for i in range(steps):
        # A random walk pulled back towards the origin, so it stays at moderate distance.
        x = m.expmap(x, m.proju(x, noise[i] - 0.1 * spatial * x))
    x64 = x.double()
    rel = (lm.minkowski_inner(x64, x64) + k).abs() / k
    assert float(rel.max()) < 1e-5
    assert bool((m.dist0(x) > 0).all())


@pytest.mark.parametrize("k", [1.0, 2.5])
def test_centroid_of_two_points_is_the_midpoint_and_seeds_the_frechet_mean(k):
    m = Lorentz(k)
    x, y, _ = sample(m, batch=1, seed=8)
    pts = torch.cat((x, y))
    torch.testing.assert_close(m.centroid(pts), m.geodesic(x[0], y[0], 0.5))
    many = m.random(7, 3, n=4, dtype=F64, generator=gen(9))
    c = m.centroid(many, dim=0)
    assert c.shape == (3, 4) and m.check_point(c)[0]
    # The centroid maximises <x_i, mu>_L summed, among points of the hyperboloid.
    score = lm.minkowski_inner(many, c).sum(0)
    other = m.expmap(c, m.proju(c, 0.05 * torch.randn(3, 4, dtype=F64, generator=gen(1))))
    assert bool((score > lm.minkowski_inner(many, other).sum(0)).all())
    pts = pts.clone().requires_grad_()
    mean = m.frechet_mean(pts)
    torch.testing.assert_close(mean, m.geodesic(x[0], y[0], 0.5))
    (g,) = torch.autograd.grad(mean.sum(), pts)
    assert bool(torch.isfinite(g).all())


def test_expmap0_logmap0_are_exp_log_at_origin():
    m = Lorentz(2.5)
    _, y, _ = sample(m, seed=4)
    o = m.origin(20, n=5, dtype=F64)
    u = m.logmap(o, m.random(20, n=5, dtype=F64, generator=gen(3)))
    torch.testing.assert_close(m.expmap0(u), m.expmap(o, u))
    torch.testing.assert_close(m.logmap0(y), m.logmap(o, y))


def test_logmap0_gradient_is_finite_where_the_spatial_norm_is_sqrt_k():
    # the discarded asin branch of the ratio was evaluated at exactly 1: NaN gradient
    m = Lorentz(2.0)
    y = torch.tensor([2.0, 2.0 ** 0.5, 0.0], dtype=F64, requires_grad=True)  # |y_s| = sqrt(k)
    m.logmap0(y).sum().backward()
    assert bool(torch.isfinite(y.grad).all())
    assert torch.autograd.gradcheck(lambda a: m.logmap0(m.projx(a)),
                                    (y.detach().clone().requires_grad_(),))


@pytest.mark.parametrize("dtype, radius, tol", [(F64, 10.0, 1e-9), (F64, 20.0, 1e-4),
                                                (F32, 8.0, 1e-2)])
def test_transport_far_from_the_origin_is_an_isometry(dtype, radius, tol):
    # Unit vectors moved between points up to `radius` from the origin, half of the pairs
    # nearly on one ray (where the Minkowski product <y, v>_L cancels terms x_0 y_0 times
    # larger than itself): their norm at y stays 1. Computing that product directly left
    # errors of 7e-9 (float64, 10), 6e-4 (float64, 20) and 0.14 (float32, 8); through the
    # tangent projection of y (for nearby points only), 4e-10, 2e-4 and 3e-3.
    m = Lorentz(1.0)
    g = gen(3)
    count = 4000

    def directions():
        d = torch.randn(count, 3, dtype=F64, generator=g)
        return d / d.norm(dim=-1, keepdim=True)

    near_ray = torch.rand(count, 1, dtype=F64, generator=g) < 0.5
    dx = directions()
    dy = torch.where(near_ray, dx + 1e-2 * torch.rand(count, 1, dtype=F64, generator=g)
                     * directions(), directions())
    dy = dy / dy.norm(dim=-1, keepdim=True)
    zero = torch.zeros(count, 1, dtype=F64)

    def point(direction):
        r = radius * torch.rand(count, 1, dtype=F64, generator=g)
        return m.expmap0(torch.cat([zero, r * direction], -1))

    x, y = point(dx), point(dy)
    v = m.transp(m.origin(count, n=4, dtype=F64), x, torch.cat([zero, directions()], -1))
    moved = m.transp(x.to(dtype), y.to(dtype), v.to(dtype))
    assert float((m.norm(y.to(dtype), moved).double() - 1).abs().max()) <= tol
    # the ray case: x 20 from the origin, y 1.6 nearer, v along the ray
    ray = torch.tensor([0.0, 0.6, 0.8], dtype=F64)
    x, y = m.expmap0(20.0 * ray), m.expmap0(18.4 * ray)
    v = m.transp(m.origin(n=3, dtype=F64), x, -ray)
    torch.testing.assert_close(m.norm(y, m.transp(x, y, v)), torch.tensor(1.0, dtype=F64),
                               rtol=1e-12, atol=0)


def test_a_point_off_a_learnable_hyperboloid_is_reported_without_a_warning():
    # the report's numbers come from the learnable k: read without its autograd history
    m = Lorentz(1.0, learnable=True, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok, reason = m.check_point(torch.tensor([[2.0, 0.1, 0.1]], dtype=F64))
    assert not ok and "differs from -k = -1 by 2.98" in reason


@pytest.mark.parametrize("dist", [1e-4, 1e-3])
def test_logmap_of_nearby_float32_points_keeps_float32_accuracy(dist):
    # the time part of y - x was y_0 - x_0, whose rounding (eps x_0) dominated for nearby
    # points: 4e-4 relative at distance 1e-4; the reference takes the spatial coordinates as
    # the points (projx recomputes the time coordinate) and works in float64
    m = Lorentz(1.0)
    g = torch.Generator().manual_seed(0)
    spatial = 0.5 * torch.randn(3, dtype=torch.float64, generator=g)
    x = m.expmap0(torch.cat([torch.zeros(1, dtype=torch.float64), spatial]))
    v = m.proju(x, torch.randn(4, dtype=torch.float64, generator=g))
    y = m.expmap(x, v / m.norm(x, v) * dist)
    x32, y32 = m.projx(x.float()), m.projx(y.float())
    reference = m.logmap(m.projx(x32.double()), m.projx(y32.double()))
    error = (m.logmap(x32, y32).double() - reference).norm() / reference.norm()
    assert float(error) < 1e-6
    # in float64 at distance 1e-8, the tangent vector at the origin has no time part
    o = m.origin(n=4, dtype=torch.float64)
    u = torch.tensor([0.0, 0.3, 0.5, -0.2], dtype=torch.float64)
    w = m.logmap(o, m.expmap(o, u / m.norm(o, u) * 1e-8))
    assert float(w[0].abs()) < 1e-24


def _opposite(m, radius, dtype, direction=(0.0, 1.0, 0.0, 0.0)):
    """Two points ``radius`` from the origin in opposite directions (``2 radius`` apart)."""
    u = radius * torch.tensor(direction, dtype=dtype)
    o = m.origin(n=len(direction), dtype=dtype)
    return m.expmap(o, u), m.expmap(o, -u)


@pytest.mark.parametrize("dtype,radius,rtol", [(F32, 30.0, 1e-5), (F32, 35.0, 1e-5),
                                               (F64, 100.0, 1e-12), (F64, 300.0, 1e-12)])
def test_maps_stay_finite_and_exact_far_from_the_origin(dtype, radius, rtol):
    """Products of two coordinates (``q x`` in the logarithm, ``a b`` in the tangent norm)
    overflowed from about 30 (float32) apart; now the range ends where the coordinates'
    squares do. Distances stay exact; a tangent vector this far out keeps no digit of its
    part across the radius (module notes), so of the logarithm and its norm only finiteness
    is asked."""
    for k in (1.0, 2.5):
        m = Lorentz(k)
        expected = torch.tensor(2 * radius * k ** 0.5, dtype=dtype)
        for direction in ((0.0, 1.0, 0.0, 0.0), (0.0, 0.6, 0.8, 0.0)):
            x, y = _opposite(m, radius * k ** 0.5, dtype, direction)
            torch.testing.assert_close(m.dist(x, y), expected, rtol=rtol, atol=0)
            log = m.logmap(x, y)
            assert bool(torch.isfinite(log).all()) and bool(torch.isfinite(m.norm(x, log)))


@pytest.mark.parametrize("dtype,radius", [(F32, 46.0), (F64, 360.0)])
def test_beyond_the_range_of_the_dtype_methods_raise_instead_of_returning_inf(dtype, radius):
    m = Lorentz(1.0)
    o = m.origin(n=3, dtype=dtype)
    u = torch.zeros(3, dtype=dtype)
    u[1] = radius
    with pytest.raises(ValueError, match=r"not finite .*coordinates grow like exp"):
        m.expmap(o, u)
    with riemtorch_validation(False):
        assert not bool(torch.isfinite(m.expmap(o, u)).all())


@pytest.mark.parametrize("dtype,inside,outside", [(F32, 12.0, 20.0), (F64, 30.0, 40.0)])
def test_gyro_addition_clips_where_the_ball_stops_resolving(dtype, inside, outside):
    """``gyroadd`` goes through the ball; a result the ball cannot tell from its boundary
    lands at the farthest distance the ball resolves (``ln(2 / eps)``), not at an infinite or
    arbitrary point."""
    m = Lorentz(1.0)
    o = m.origin(n=3, dtype=dtype)
    y = m.expmap(o, torch.tensor([0.0, 0.0, 0.5], dtype=dtype))
    x = m.expmap(o, torch.tensor([0.0, inside, 0.0], dtype=dtype))
    assert abs(float(m.dist(o, m.gyroadd(y, x))) - inside) < 0.2
    x = m.expmap(o, torch.tensor([0.0, outside, 0.0], dtype=dtype))
    reach = math.log(2 / torch.finfo(dtype).eps)
    assert abs(float(m.dist(o, m.gyroadd(y, x))) - reach) < 0.3


@pytest.mark.parametrize("dtype", [F32, F64])
def test_ball_points_outside_or_unresolved_map_to_the_farthest_resolved_distance(dtype):
    m = Lorentz(2.0)
    reach = math.log(2 / torch.finfo(dtype).eps) * 2.0 ** 0.5
    o = m.origin(n=3, dtype=dtype)
    for p in ([2.0, 0.0], [-3.0, 4.0], [2.0 ** 0.5, 0.0]):  # outside, outside, on the boundary
        x = m.poincare_to_lorentz(torch.tensor(p, dtype=dtype))
        assert abs(float(m.dist(o, x)) - reach) < 0.3
    inside = torch.tensor([0.5, 0.0], dtype=dtype)  # unchanged inside the ball
    torch.testing.assert_close(m.lorentz_to_poincare(m.poincare_to_lorentz(inside)), inside)


@pytest.mark.parametrize("dtype,radius", [(F32, 35.0), (F64, 300.0)])
def test_transport_stays_finite_far_from_the_origin(dtype, radius):
    m = Lorentz(1.0)
    o = m.origin(n=3, dtype=dtype)
    x = m.expmap(o, torch.tensor([0.0, radius, 0.0], dtype=dtype))
    y = m.expmap(o, torch.tensor([0.0, 0.3 * radius, radius], dtype=dtype))
    v = m.proju(x, torch.tensor([0.0, 0.0, 1.0], dtype=dtype))
    moved = m.transp(x, y, v)
    assert bool(torch.isfinite(moved).all())
    moved_back = m.transp(y, x, moved)
    assert bool(torch.isfinite(moved_back).all())


def test_checked_results_name_the_non_finite_scalar_and_skip_ambient_only_methods():
    m = Lorentz(1.0)
    x = m.random(3, n=3, dtype=F64, generator=gen(2))
    with pytest.raises(ValueError, match="gyroscalarmul: t contains NaN"):
        m.gyroscalarmul(torch.tensor(float("nan"), dtype=F64), x)
    # projx takes no value-checked argument: no host read, so it maps under torch.vmap
    batched = torch.vmap(m.projx)(x.unsqueeze(1))
    torch.testing.assert_close(batched.squeeze(1), m.projx(x))


def test_a_nan_in_an_unchecked_argument_is_named():
    """Euclidean gradients are not checked on entry; a NaN in one is reported by name from
    the result, instead of a NaN gradient reaching the optimizer."""
    m = Lorentz(1.0)
    x = m.random(4, n=3, dtype=F64, generator=gen(1))
    g = torch.randn(4, 3, dtype=F64)
    g[2, 1] = float("nan")
    with pytest.raises(ValueError, match="Lorentz.egrad2rgrad: g contains NaN"):
        m.egrad2rgrad(x, g)


def riemtorch_validation(on):
    import riemtorch

    return riemtorch.config.override(validate=on)
