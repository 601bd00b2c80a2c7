"""Stereographic / Poincaré ball specifics: geoopt agreement, curvature handling, k -> 0, far
points in float32, points near the boundary and near antipodes against 50-digit references,
gradients. The generic laws run in test_axioms.py and test_gyro_laws.py."""

import copy
import io
import math
import warnings

import pytest
import torch

from riemtorch import Lorentz, PoincareBall, Stereographic
from riemtorch.manifolds import stereographic_math as sm

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def geoopt_module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("geoopt")


def pair(m, n=5, batch=20, seed=0, dtype=F64):
    g = gen(seed)
    x = m.random(batch, n=n, dtype=dtype, generator=g)
    y = m.random(batch, n=n, dtype=dtype, generator=g)
    u = torch.randn(batch, n, dtype=dtype, generator=g) * 0.3
    return x, y, u


@pytest.mark.parametrize("k", [-1.0, -2.0, 0.7, 1.3])
def test_agrees_with_geoopt_to_1e8(k):
    geoopt = geoopt_module()
    kt = torch.tensor(k, dtype=F64)
    ours = PoincareBall(-k) if k < 0 else Stereographic(k)
    # geoopt's constructors overwrite the tensor they are given: pass a copy.
    ref = geoopt.PoincareBall(-kt) if k < 0 else geoopt.SphereProjection(kt.clone())
    x, y, u = pair(ours)
    pairs = {
        "mobius_add": (ours.gyroadd(x, y), ref.mobius_add(x, y)),
        "expmap": (ours.expmap(x, u), ref.expmap(x, u)),
        "logmap": (ours.logmap(x, y), ref.logmap(x, y)),
        "dist": (ours.dist(x, y), ref.dist(x, y)),
        "transp": (ours.transp(x, y, u), ref.transp(x, y, u)),
        "expmap0": (ours.expmap0(u), ref.expmap0(u)),
        "logmap0": (ours.logmap0(y), ref.logmap0(y)),
        "gyration": (ours.gyration(x, y, u), ref.mobius_gyration(x, y, u)
                     if hasattr(ref, "mobius_gyration")
                     else geoopt.manifolds.stereographic.math.gyration(x, y, u, k=kt)),
        "scalar_mul": (ours.gyroscalarmul(0.6, x),
                       ref.mobius_scalar_mul(torch.tensor(0.6, dtype=F64), x)),
        # geoopt's inner broadcasts (n, 1) against (n,) unless keepdim=True.
        "inner": (ours.inner(x, u, y, keepdim=True), ref.inner(x, u, y, keepdim=True)),
        "egrad2rgrad": (ours.egrad2rgrad(x, u), ref.egrad2rgrad(x, u)),
    }
    for name, (a, b) in pairs.items():
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-8, msg=name)


@pytest.mark.parametrize("k", [-1.0, 0.7])
def test_gyration_matches_its_definition(k):
    m = Stereographic(k)
    a, b, w = pair(m, seed=3)
    k = torch.tensor(k, dtype=F64)
    direct = sm.mobius_add(-sm.mobius_add(a, b, k=k), sm.mobius_add(a, sm.mobius_add(b, w, k=k),
                                                                   k=k), k=k)
    torch.testing.assert_close(m.gyration(a, b, w), direct, atol=1e-12, rtol=1e-12)


def test_curvature_is_buffer_or_parameter_and_float64_by_default():
    fixed, learn = Stereographic(-1.0), Stereographic(-1.0, learnable=True)
    assert "k" in dict(fixed.named_buffers()) and not list(fixed.parameters())
    assert isinstance(learn.k, torch.nn.Parameter) and learn.k.dtype == F64
    assert "k" in learn.state_dict() and "k" in fixed.state_dict()
    assert PoincareBall(2.0).c.item() == 2.0
    x = learn.random(3, n=4, dtype=torch.float32, generator=gen())
    assert learn.dist(x, learn.random(3, n=4, dtype=torch.float32, generator=gen(1))).dtype \
        == torch.float32
    # Float64 work sees the exact curvature value (no float32 rounding of 0.7).
    assert Stereographic(0.7).k.item() == 0.7


def test_bad_curvature_raises():
    with pytest.raises(ValueError, match="c > 0"):
        PoincareBall(-1.0)
    with pytest.raises(TypeError):
        Stereographic("one")
    with pytest.raises(ValueError, match="finite"):
        Stereographic(float("nan"))
    with pytest.raises(ValueError, match="scalar"):
        Stereographic(torch.ones(2))


def test_check_point_rejects_points_outside_the_ball():
    ok, reason = PoincareBall(4.0).check_point(torch.tensor([[0.3, 0.45]], dtype=F64))
    assert not ok and "outside the ball" in reason
    assert Stereographic(1.0).check_point(torch.tensor([[30.0, 4.0]]))[0]


@pytest.mark.parametrize("fn,closed", [
    (sm.tan_k, lambda r, k: math.tan(math.sqrt(k) * r) / math.sqrt(k) if k > 0
     else math.tanh(math.sqrt(-k) * r) / math.sqrt(-k)),
    (sm.artan_k, lambda r, k: math.atan(math.sqrt(k) * r) / math.sqrt(k) if k > 0
     else math.atanh(math.sqrt(-k) * r) / math.sqrt(-k)),
    (sm.arsin_k, lambda r, k: math.asin(math.sqrt(k) * r) / math.sqrt(k) if k > 0
     else math.asinh(math.sqrt(-k) * r) / math.sqrt(-k)),
])
def test_curvature_functions_are_accurate_on_both_sides_of_the_taylor_switch(fn, closed):
    r = 0.8
    for t in (1e-8, 9.99e-4, 1.001e-3, 0.3):
        for sign in (-1, 1):
            k = sign * t / r**2
            got = float(fn(torch.tensor(r, dtype=F64), k))
            assert got == pytest.approx(closed(r, k), rel=2e-15)
    assert float(fn(torch.tensor(r, dtype=F64), 0.0)) == r


def test_curvature_gradient_is_smooth_through_zero():
    x, y, _ = pair(Stereographic(0.0), n=3, batch=4)
    for k0 in (-0.5, -1e-6, 0.0, 1e-6, 0.5):
        k = torch.tensor(k0, dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda k: sm.dist(x, y, k=k), (k,))
        assert torch.autograd.gradcheck(lambda k: sm.expmap(x, y, k=k), (k,))
        assert torch.autograd.gradcheck(lambda k: sm.logmap(x, y, k=k), (k,))
        assert torch.autograd.gradcheck(lambda k: sm.parallel_transport(x, y, x - y, k=k), (k,))
    d = [sm.dist(x, y, k=k) for k in (-1e-9, 0.0, 1e-9)]
    torch.testing.assert_close(d[0], d[2], atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(d[1], 2 * (x - y).norm(dim=-1), atol=1e-15, rtol=1e-15)


def test_learnable_curvature_receives_gradients():
    m = PoincareBall(1.5, learnable=True)
    x, y, _ = pair(m, batch=4)
    m.dist(x.float(), y.float()).sum().backward()
    (t,) = m.parameters()
    assert t.grad is not None and torch.isfinite(t.grad) and t.grad.dtype == F64


def test_learnable_ball_curvature_is_log_parametrized_and_keeps_its_sign():
    # The trained parameter is t = log c; its gradient is the chain rule through k = -exp(t),
    # checked against the any-sign Stereographic whose k is the parameter itself.
    ball, free = PoincareBall(1.5, learnable=True), Stereographic(-1.5, learnable=True)
    (t,) = ball.parameters()
    torch.testing.assert_close(t.detach(), torch.tensor(1.5, dtype=F64).log())
    x, y, _ = (v.detach() for v in pair(ball, batch=4))
    ball.dist(x, y).sum().backward()
    free.dist(x, y).sum().backward()
    torch.testing.assert_close(t.grad, -1.5 * free.k.grad, rtol=1e-12, atol=0)
    with torch.no_grad():
        t.sub_(60.0)  # a step that would carry a linear c through zero
    assert float(ball.k.detach()) < 0 and ball.check_point(x * 0)[0]
    assert list(ball.state_dict()) == ["log_abs_k"]
    # whole-module serialisation and copies keep the parametrization
    buffer = io.BytesIO()
    torch.save(ball, buffer)
    buffer.seek(0)
    for twin in (torch.load(buffer, weights_only=False), copy.deepcopy(ball)):
        assert isinstance(twin, PoincareBall)
        torch.testing.assert_close(twin.k, ball.k, rtol=0, atol=0)


@pytest.mark.parametrize("k", [-1.0, 0.7])
def test_gradients_at_x_equal_y_are_finite(k):
    m = Stereographic(k)
    x = m.random(3, n=4, dtype=F64, generator=gen()).requires_grad_()
    d = m.dist(x, x.detach())
    (g,) = torch.autograd.grad(d.sum(), x)
    assert bool(torch.isfinite(g).all())
    log = m.logmap(x, x.detach())
    (g,) = torch.autograd.grad(log.sum(), x)
    assert bool(torch.isfinite(g).all())
    y = x.detach().clone() + 1e-3
    assert torch.autograd.gradcheck(lambda x: m.dist2(x, y), (x,))


def test_far_points_float32_stay_inside_with_finite_gradients():
    m = PoincareBall(1.0)
    g = gen(5)
    direction = torch.randn(6, 8, generator=g)
    # Riemannian norm 20 at the origin (metric 4<u,u> there): a point at distance 20.
    u = (10 * direction / direction.norm(dim=-1, keepdim=True)).requires_grad_()
    x = m.expmap0(u)
    ok, reason = m.check_point(x)
    assert ok, reason
    assert bool((x.norm(dim=-1) < 1).all())
    # float32 cannot represent distance 20 in the ball: the margin caps it near 12.2.
    d0 = m.dist0(x)
    assert bool(torch.isfinite(d0).all()) and bool((d0 > 11.5).all())
    y = m.expmap(x, torch.randn(6, 8, generator=g))
    total = m.dist(x, y).sum() + m.logmap(x, y).sum() + m.logmap0(x).sum() + m.dist(x, x).sum()
    (grad,) = torch.autograd.grad(total, u)
    assert bool(torch.isfinite(grad).all())
    assert bool(torch.isfinite(m.transp(x, y, u.detach())).all())
    # In float64 the same point keeps its distance.
    x64 = m.expmap0(u.detach().double())
    torch.testing.assert_close(m.dist0(x64), torch.full((6,), 20.0, dtype=F64), rtol=1e-6,
                               atol=0)


def test_projx_keeps_float32_points_strictly_inside():
    m = PoincareBall(2.0)
    x = torch.randn(100, 3, generator=gen(2))
    x = x / x.norm(dim=-1, keepdim=True) * torch.linspace(0.5, 2.0, 100)[:, None]
    p = m.projx(x)
    assert bool((p.norm(dim=-1) * math.sqrt(2.0) < 1).all())
    assert m.check_point(p)[0]
    inside = x.norm(dim=-1) * math.sqrt(2) < 0.99
    torch.testing.assert_close(p[inside], x[inside])


@pytest.mark.parametrize("k", [-1.0, 0.7])
def test_egrad2rgrad_gives_the_riemannian_gradient(k):
    m = Stereographic(k)
    x, y, u = pair(m, batch=5, seed=4)
    x = x.requires_grad_()
    (eg,) = torch.autograd.grad(m.dist2(x, y).sum(), x)
    rg = m.egrad2rgrad(x.detach(), eg)
    # Directional derivative along u equals <rgrad, u>_x.
    torch.testing.assert_close(m.inner(x.detach(), rg, u), (eg * u).sum(-1))
    torch.testing.assert_close(rg, -2 * m.logmap(x.detach(), y), atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("k", [-1.0, 0.7])
def test_frechet_mean_of_two_points_is_the_midpoint_and_differentiable(k):
    m = Stereographic(k)
    x, y, _ = pair(m, batch=1, seed=6)
    pts = torch.cat((x, y)).requires_grad_()
    mean = m.frechet_mean(pts)
    torch.testing.assert_close(mean, m.geodesic(x[0], y[0], 0.5), atol=1e-9, rtol=1e-9)
    (g,) = torch.autograd.grad(mean.sum(), pts)
    assert bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0


def test_expmap0_logmap0_are_exp_log_at_origin():
    m = PoincareBall(2.0)
    _, y, u = pair(m, seed=7)
    o = m.origin(20, n=5, dtype=F64)
    torch.testing.assert_close(m.expmap0(u), m.expmap(o, u))
    torch.testing.assert_close(m.logmap0(y), m.logmap(o, y))
    torch.testing.assert_close(m.transp0(y, u), m.transp(o, y, u))
    torch.testing.assert_close(m.transp0back(y, u), m.transp(y, o, u))


def reference_log_and_transp(x, y, v, k):
    """``Log_x(y)`` and ``(lambda_x / lambda_y) gyr[y, -x] v`` in 50 digits from the textbook
    formulas (Möbius addition ``w = (-x) ⊕ y``, Ungar's gyration), as float64 tensors."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    X, Y, V = ([mpmath.mpf(float(t)) for t in a.tolist()] for a in (x, y, v))
    k = mpmath.mpf(k)

    def dot(a, b):
        return mpmath.fsum(p * q for p, q in zip(a, b))

    x2, y2, xy, xv, yv = dot(X, X), dot(Y, Y), dot(X, Y), dot(X, V), dot(Y, V)
    den = 1 + 2 * k * xy + k * k * x2 * y2
    w = [((1 + k * x2) * b - (1 + 2 * k * xy - k * y2) * a) / den for a, b in zip(X, Y)]
    w_norm, sqrt_k = mpmath.sqrt(dot(w, w)), mpmath.sqrt(abs(k))
    artan = (mpmath.atan if k > 0 else mpmath.atanh)(sqrt_k * w_norm) / sqrt_k
    log = [(1 + k * x2) * artan / w_norm * c for c in w]
    # gyr[a, b] v = v + 2 (A a + B b) / den with a = y, b = -x.
    A = -k * k * yv * x2 + k * xv + 2 * k * k * xy * xv
    B = k * k * xv * y2 + k * yv
    ratio = (1 + k * y2) / (1 + k * x2)
    transp = [ratio * (c + 2 * (A * a - B * b) / den) for c, a, b in zip(V, Y, X)]
    return (torch.tensor([float(t) for t in log], dtype=F64),
            torch.tensor([float(t) for t in transp], dtype=F64))


def relative_error(a, b):
    return float((a.double() - b).norm() / b.norm())


@pytest.mark.parametrize("dtype,radius,tol",
                         [(F64, 1 - 1e-6, 1e-9), (torch.float32, 1 - 1e-5, 1e-3)])
def test_logmap_keeps_its_digits_near_the_boundary(dtype, radius, tol):
    # Points 14.5 (float64) and 12.2 (float32) from the origin, inside the documented limits.
    # artanh(|w|) with |w| from the Möbius denominator gives relative errors of 1e-6 (float64)
    # and 0.4 (float32) there.
    m = PoincareBall(1.0)
    for angle in (1e-3, 1.0):
        x = torch.tensor([radius, 0.0, 0.0], dtype=dtype)
        y = torch.tensor([radius * math.cos(angle), radius * math.sin(angle), 0.0], dtype=dtype)
        expected, _ = reference_log_and_transp(x, y, y, -1.0)
        log = m.logmap(x, y)
        assert relative_error(log, expected) < tol
        torch.testing.assert_close(m.norm(x, log), m.dist(x, y), rtol=100 * torch.finfo(dtype).eps,
                                   atol=0)


@pytest.mark.parametrize("k", [-1.0, 0.7])
def test_logmap_of_nearby_points_keeps_its_digits(k):
    # The textbook (1 + k|x|^2) y - (1 + 2k<x,y> - k|y|^2) x has a relative error of
    # eps |x| / |y - x| (1e-6 at a step of 1e-10).
    g = gen(8)
    x = torch.randn(4, dtype=F64, generator=g) * 0.3
    for step in (1e-6, 1e-10):
        y = x + step * torch.randn(4, dtype=F64, generator=g)
        expected, _ = reference_log_and_transp(x, y, y, k)
        assert relative_error(sm.logmap(x, y, k=k), expected) < 1e-13


def antipodes(k, dtype):
    """Points ``x`` and their antipodes ``-x / (k|x|^2)``: exactly representable in the first two
    rows, rounded in the third."""
    x = torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.25, 0.0], [0.3, -0.2, 0.5]], dtype=F64)
    return x.to(dtype), (-x / (k * (x * x).sum(-1, keepdim=True))).to(dtype)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_dist_and_arsin_have_finite_gradients_at_antipodal_points(dtype):
    m = Stereographic(1.0)
    x, y = (p.requires_grad_() for p in antipodes(1.0, dtype))
    d = m.dist(x, y)
    torch.testing.assert_close(d, torch.full_like(d, math.pi))
    grads = torch.autograd.grad(d.sum(), (x, y))
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    # The end of the asin range, used (k > 0) and discarded by torch.where (k < 0).
    for k in (1.0, -1.0):
        r = torch.tensor(1.0, dtype=dtype, requires_grad=True)
        (g,) = torch.autograd.grad(sm.arsin_k(r, k), r)
        assert bool(torch.isfinite(g))


def _near_antipode(dtype):
    """``(manifold k = 1, eps of dtype, x, its antipode, a direction off the antipode)``."""
    x, anti = (p[2] for p in antipodes(1.0, F64))
    return (Stereographic(1.0), torch.finfo(dtype).eps, x, anti,
            torch.tensor([0.2, 0.3, -0.1], dtype=F64))


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_transport_near_the_antipode_is_an_isometry_and_accurate(dtype):
    # Ungar's form in dot products loses eps / delta^2 there: the norm comes out off by 8e-4 at
    # delta = 1e-6 in float64, by 30x at delta = 1e-4 in float32, and inf at delta = 0.
    m, eps, x, anti, u = _near_antipode(dtype)
    v = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    for delta in (1e-2, 1e-4, 1e-6, 1e-8, 0.0):
        for y in (anti * (1 + delta), anti + delta * anti.norm() * u):
            xs, ys, vs = x.to(dtype), y.to(dtype), v.to(dtype)
            moved = m.transp(xs, ys, vs)
            assert abs(float(m.norm(ys, moved) / m.norm(xs, vs)) - 1) < 10 * eps
            # The transport itself is ill-conditioned there: eps / delta.
            if delta > 1e3 * eps:
                _, expected = reference_log_and_transp(xs, ys, vs, 1.0)
                assert relative_error(moved, expected) < 20 * eps / delta


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_logmap_near_the_antipode_keeps_its_length(dtype):
    # With |w| = |x - y| / sqrt(D) and D from dot products, the length collapses to 1e-154
    # within 1e-10 (float64) and 1e-4 (float32) of the antipode.
    m, eps, x, anti, u = _near_antipode(dtype)
    for delta in (1e-2, 1e-4, 1e-6, 1e-8, 1e-10):
        xs, ys = x.to(dtype), (anti + delta * anti.norm() * u).to(dtype)
        log = m.logmap(xs, ys)
        torch.testing.assert_close(m.norm(xs, log), m.dist(xs, ys), rtol=10 * eps, atol=0)
        if delta > 1e3 * eps:
            expected, _ = reference_log_and_transp(xs, ys, ys, 1.0)
            assert relative_error(log, expected) < 20 * eps / delta
    x, y = antipodes(1.0, F64)
    for delta in (1e-2, 1e-3):
        xx, yy = x[2:].clone().requires_grad_(), (y[2:] + delta * u).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, y: m.logmap(x, y), (xx, yy))
        assert torch.autograd.gradcheck(lambda x, y: m.transp(x, y, u.expand_as(x)), (xx, yy))


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_logmap_and_transport_at_the_antipode_follow_the_line_through_the_origin(dtype):
    m = Stereographic(1.0)
    x, y = (p[:2].requires_grad_() for p in antipodes(1.0, dtype))
    x2 = (x * x).sum(-1, keepdim=True).detach()
    v = torch.tensor([[0.3, 1.0, -0.4], [2.0, 0.1, 0.5]], dtype=dtype)
    log = m.logmap(x, y)
    torch.testing.assert_close(log, -(1 + x2) * (math.pi / 2) * x.detach() / x2.sqrt())
    moved = m.transp(x, y, v)
    # lambda_x / lambda_y = 1 / (k|x|^2) at the antipode.
    torch.testing.assert_close(moved, v / x2)
    torch.testing.assert_close(m.transp(x, y, log), -m.logmap(y, x))
    torch.testing.assert_close(m.expmap(x.detach(), log.detach()), y.detach(), rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad((log.sum() + moved.sum()), (x, y))
    assert all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_gyration_stays_a_rotation_where_the_sum_nears_the_pole(dtype):
    # gyr[a, b] for k > 0 and a near b / (k|b|^2), where a ⊕ b is the pole (D = 0).
    k, eps = 1.0, torch.finfo(dtype).eps
    b = torch.tensor([0.3, -0.2, 0.5], dtype=F64)
    pole, u = b / (k * b.dot(b)), torch.tensor([0.2, 0.3, -0.1], dtype=F64)
    b, w = b.to(dtype), torch.tensor([1.0, -0.5, 2.0], dtype=dtype)
    for delta in (1e-3, 1e-6, 0.0):
        a = (pole * (1 + delta) + delta * u).to(dtype)
        assert abs(float(sm.gyration(a, b, w, k=k).norm() / w.norm()) - 1) < 10 * eps
    # D = 0 exactly: a and b parallel, where the gyration is the identity.
    a, b = torch.tensor([2.0, 0.0, 0.0], dtype=dtype), torch.tensor([0.5, 0.0, 0.0], dtype=dtype)
    torch.testing.assert_close(sm.gyration(a, b, w, k=k), w)


def test_a_curvature_given_as_a_tensor_is_copied():
    # training one manifold's curvature must leave the caller's tensor, and the manifolds made
    # from it, unchanged; a tensor's curvature is kept in float64 like a number's
    k = torch.tensor(-1.0, dtype=F64)
    trained = Stereographic(k, learnable=True)
    fixed = Stereographic(k)
    ball = PoincareBall(torch.tensor(1.0, dtype=F64))
    opt = torch.optim.SGD(trained.parameters(), lr=0.5)
    x = torch.tensor([[0.3, 0.4]], dtype=F64)
    trained.dist(x, -x).sum().backward()
    opt.step()
    assert float(trained.k.detach()) != -1.0
    assert float(k) == -1.0 and float(fixed.k) == -1.0 and float(ball.c) == 1.0
    assert PoincareBall(torch.tensor(0.3)).c.dtype == F64
    assert Lorentz(torch.tensor(2)).k.dtype == F64


def _textbook_mobius_add(x, y, k):
    """The textbook formula, evaluated in float64 (an independent reference)."""
    x, y = x.double(), y.double()
    x2, y2, xy = (x * x).sum(-1, keepdim=True), (y * y).sum(-1, keepdim=True), (x * y).sum(
        -1, keepdim=True)
    return (((1 - 2 * k * xy - k * y2) * x + (1 + k * x2) * y)
            / (1 - 2 * k * xy + k * k * x2 * y2))


def _relative_error(got, x, y, k):
    exact = _textbook_mobius_add(x, y, k)
    return float(((got.double() - exact).norm(dim=-1) / exact.norm(dim=-1)).max())


@pytest.mark.parametrize("manifold", [PoincareBall(1.0), Stereographic(-1.0)],
                         ids=["ball form", "per-point form"])
@pytest.mark.parametrize("radius,gap", [(0.99, 1e-3), (0.9, 1e-4), (0.5, 1e-5)])
def test_mobius_addition_of_nearly_opposite_points_keeps_float32_digits(manifold, radius, gap):
    """``(-m) ⊕ x`` for ``x`` near ``m`` (centring a sample at its mean): the textbook
    numerator subtracts two vectors of size ``|m|`` (relative error 2e-2 at |m| = 0.99, gap
    1e-3); the form through ``s = x + y`` keeps the digits of the float32 inputs."""
    g = torch.Generator().manual_seed(7)
    u = torch.randn(500, 6, dtype=torch.float64, generator=g)
    m = radius * u / u.norm(dim=-1, keepdim=True)
    x = m + gap * torch.randn(500, 6, dtype=torch.float64, generator=g) / 6 ** 0.5
    m32, x32 = m.float(), x.float()
    got = manifold.gyroadd(manifold.gyroinv(m32), x32)
    assert _relative_error(got, -m32, x32, -1.0) < 3e-5


def test_mobius_addition_with_positive_curvature_keeps_float32_digits_far_out_and_opposite():
    """For k > 0 points may lie anywhere: far from the origin (k|x|^2 large) the form
    through s cancels and the textbook one does not; for nearly opposite points it is the
    other way round. The per-point choice keeps both."""
    sphere = Stereographic(1.0)
    g = torch.Generator().manual_seed(8)
    u = torch.randn(500, 5, dtype=torch.float64, generator=g)
    far = 100.0 * u / u.norm(dim=-1, keepdim=True)
    step = 1e-3 * torch.randn(500, 5, dtype=torch.float64, generator=g)
    assert _relative_error(sphere.gyroadd(far.float(), step.float()), far.float(),
                           step.float(), 1.0) < 1e-5
    near = 0.5 * u / u.norm(dim=-1, keepdim=True)
    opposite = -near + 1e-4 * torch.randn(500, 5, dtype=torch.float64, generator=g)
    assert _relative_error(sphere.gyroadd(near.float(), opposite.float()), near.float(),
                           opposite.float(), 1.0) < 3e-5
