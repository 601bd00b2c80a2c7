"""Hyperbolic layers: exactness on the hyperboloid, the MLR's geometric meaning, adapters."""

import math

import pytest
import torch

from riemtorch import Lorentz, PoincareBall, Stereographic
from riemtorch.nn.hyperbolic import ExpMap0, LogMap0, LorentzLinear, PoincareMLR

F64 = torch.float64


def minkowski(x, y):
    return -x[..., 0] * y[..., 0] + (x[..., 1:] * y[..., 1:]).sum(-1)


@pytest.mark.parametrize("k", [1.0, 2.5, 0.3])
@pytest.mark.parametrize("time_scale", [False, True])
def test_lorentz_linear_outputs_lie_exactly_on_the_hyperboloid(k, time_scale):
    torch.manual_seed(0)
    m = Lorentz(k)
    layer = LorentzLinear(m, 5, 7, time_scale=time_scale, dtype=F64)
    x = m.random(10, n=5, dtype=F64)
    y = layer(x)
    assert y.shape == (10, 7)
    torch.testing.assert_close(minkowski(y, y), torch.full((10,), -k, dtype=F64), rtol=1e-12, atol=1e-12)
    ok, reason = m.check_point(y)
    assert ok, reason
    assert torch.autograd.gradcheck(lambda a: layer(a), (x[:3].clone().requires_grad_(),))
    # a fresh layer maps the origin to h = 0 (no time column, no bias): the origin
    origin = LorentzLinear(m, 5, 7, time_scale=time_scale, dtype=F64)(m.origin(2, n=5, dtype=F64))
    torch.testing.assert_close(origin, m.origin(2, n=7, dtype=F64), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("k", [1.0, 2.5, 0.3])
def test_lorentz_linear_time_scale_matches_the_formula_of_chen_et_al(k):
    # t = exp(s) sigmoid(v^T x + c) + sqrt(k) (1 + 1e-3) is the time coordinate, and the
    # spatial part is h = W x + b rescaled to |h| = sqrt(t^2 - k)
    torch.manual_seed(3)
    m = Lorentz(k)
    layer = LorentzLinear(m, 4, 6, time_scale=True, dtype=F64)
    with torch.no_grad():
        layer.linear.bias.normal_()
        layer.log_scale.fill_(math.log(2.0))
    x = m.random(8, n=4, dtype=F64)
    y = layer(x)
    w, b = layer.linear.weight.detach(), layer.linear.bias.detach()
    v, c = layer.time_linear.weight.detach()[0], layer.time_linear.bias.detach()[0]
    t = 2.0 / (1 + torch.exp(-(x @ v + c))) + math.sqrt(k) * (1 + 1e-3)
    h = x @ w.T + b
    h = h / h.norm(dim=-1, keepdim=True) * (t.square() - k).sqrt()[:, None]
    torch.testing.assert_close(y[:, 0], t, rtol=1e-12, atol=0)
    torch.testing.assert_close(y[:, 1:], h, rtol=1e-12, atol=1e-14)


def test_lorentz_linear_float32_far_from_origin_is_finite():
    m = Lorentz(1.0)
    layer = LorentzLinear(m, 4, 4)
    x = m.expmap0(torch.tensor([[0.0, 15.0, 0.0, 0.0]])).float().requires_grad_()
    layer(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_lorentz_linear_rejects_bad_arguments():
    with pytest.raises(TypeError, match="Lorentz"):
        LorentzLinear(PoincareBall(), 3, 3)
    layer = LorentzLinear(Lorentz(), 3, 3)
    with pytest.raises(ValueError, match="dimension 3"):
        layer(torch.zeros(2, 4))


@pytest.mark.parametrize("c", [1.0, 0.5])
def test_poincare_mlr_logit_is_signed_distance_to_the_hyperplane_times_normal_norm(c):
    torch.manual_seed(1)
    ball = PoincareBall(c)
    mlr = PoincareMLR(ball, 2, 3, dtype=F64)
    with torch.no_grad():
        mlr.points.copy_(ball.random(3, n=2, std=0.4, dtype=F64))
    x = ball.random(5, n=2, std=0.5, dtype=F64)
    logits = mlr(x)
    # The hyperplane is the geodesic through p orthogonal to the normal a: minimise the
    # distance along it on a coarse grid, then on a fine grid around the coarse minimum.
    coarse = torch.linspace(-12, 12, 24001, dtype=F64)
    for k in range(3):
        p = mlr.points[k].detach()
        a = ball.transp0(p, mlr.normals[k].detach())
        direction = torch.stack([-a[1], a[0]]) / a.norm() / ball.lambda_x(p)
        coarse_line = ball.expmap(p, coarse[:, None] * direction)
        best = coarse[ball.dist(x[:, None, :], coarse_line).argmin(-1)]
        fine = best[:, None] + torch.linspace(-2e-3, 2e-3, 4001, dtype=F64)
        line = ball.expmap(p, fine[..., None] * direction)
        dist = ball.dist(x[:, None, :], line).min(-1).values
        side = torch.sign(((ball.gyroadd(-p, x)) * a).sum(-1))
        expected = side * dist * ball.lambda_x(p) * a.norm()
        torch.testing.assert_close(logits[:, k].detach(), expected, rtol=1e-5, atol=1e-6)


def test_poincare_mlr_tends_to_euclidean_logits_at_small_curvature():
    torch.manual_seed(2)
    ball = PoincareBall(1e-8)
    mlr = PoincareMLR(ball, 3, 4, dtype=F64)
    with torch.no_grad():
        mlr.points.copy_(0.1 * torch.randn(4, 3, dtype=F64))
    x = 0.2 * torch.randn(6, 3, dtype=F64)
    a = mlr.normals.detach()
    expected = 4 * (x @ a.T - (mlr.points.detach() * a).sum(-1))
    torch.testing.assert_close(mlr(x).detach(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("manifold", [Lorentz(1.5), PoincareBall(0.8)], ids=["lorentz", "ball"])
def test_exp_and_log_adapters_invert_each_other(manifold):
    u = 0.5 * torch.randn(4, 3, dtype=F64)
    x = ExpMap0(manifold)(u)
    ok, reason = manifold.check_point(x)
    assert ok, reason
    torch.testing.assert_close(LogMap0(manifold)(x), u)
    assert x.shape[-1] == (4 if isinstance(manifold, Lorentz) else 3)
    if isinstance(manifold, Lorentz):
        torch.testing.assert_close(manifold.dist0(x), manifold.norm(manifold.origin(4, n=4, dtype=F64),
                                   torch.cat([torch.zeros(4, 1, dtype=F64), u], -1)))
    assert math.isfinite(float(LogMap0(manifold)(x).sum()))


def test_poincare_mlr_rejects_points_of_the_wrong_dimension():
    with pytest.raises(ValueError, match="dimension 3"):
        PoincareMLR(PoincareBall(1.0), 3, 2, dtype=F64)(torch.zeros(2, 4, dtype=F64))


def test_poincare_mlr_rejects_a_learnable_curvature_that_left_the_ball_domain():
    ball = Stereographic(-1.0, learnable=True, dtype=F64)
    mlr = PoincareMLR(ball, 2, 3, dtype=F64)
    x = torch.tensor([[0.1, 0.2]], dtype=F64)
    assert bool(mlr(x).isfinite().all())
    with torch.no_grad():
        ball.k.fill_(0.25)  # a step took the curvature across zero
    with pytest.raises(ValueError, match="negative curvature.*k = 0.25"):
        mlr(x)


def _ganea_logits(x, p, a, c):
    """Ganea et al.'s logits with z = (-p) ⊕ x by the Möbius addition written out (float64)."""
    z_list = []
    for pk in p:
        u, v = -pk, x
        uv, u2, v2 = (u * v).sum(-1, keepdim=True), (u * u).sum(), (v * v).sum(-1, keepdim=True)
        z_list.append(((1 + 2 * c * uv + c * v2) * u + (1 - c * u2) * v)
                      / (1 + 2 * c * uv + c * c * u2 * v2))
    z = torch.stack(z_list, -2)
    a_norm = a.norm(dim=-1)
    lam = 2 / (1 - c * (p * p).sum(-1))
    arg = 2 * c ** 0.5 * (z * a).sum(-1) / ((1 - c * (z * z).sum(-1)) * a_norm)
    return lam * a_norm / c ** 0.5 * torch.asinh(arg)


# float64 at 15 from the origin: the reference's own 1 - |z|^2 keeps about four digits
@pytest.mark.parametrize("dtype, radius, rtol", [(torch.float32, 7.0, 1e-3),
                                                 (torch.float32, 9.0, 1e-3), (F64, 15.0, 2e-3)])
def test_poincare_mlr_logits_of_points_far_apart(dtype, radius, rtol):
    # z = (-p) ⊕ x was formed by the ball's gyroadd, which keeps a margin inside the boundary:
    # the logits saturated for points far from the class points (float32, 9 from the origin:
    # 34 % off)
    ball = PoincareBall(1.0)
    g = torch.Generator().manual_seed(0)
    mlr = PoincareMLR(ball, 4, 3, dtype=dtype)

    def far(count):
        u = torch.randn(count, 4, dtype=F64, generator=g)
        return ball.expmap0(u / u.norm(dim=-1, keepdim=True) * radius / 2).to(dtype)

    with torch.no_grad():
        mlr.points.copy_(far(3))
    x = far(5)
    logits = mlr(x)
    a = ball.transp0(mlr.points.detach().double(), mlr.normals.detach().double())
    reference = _ganea_logits(x.double(), mlr.points.detach().double(), a, 1.0)
    torch.testing.assert_close(logits.double(), reference, rtol=rtol, atol=rtol)


def test_lorentz_linear_with_time_scale_has_finite_gradients_at_the_origin():
    # the origin maps to h = 0 at initialisation; h / |h| had a gradient of 1 / sqrt(tiny)
    manifold = Lorentz(1.0)
    for dtype in (torch.float32, F64):
        torch.manual_seed(0)
        net = torch.nn.Sequential(ExpMap0(manifold), LorentzLinear(manifold, 3, 4, time_scale=True,
                                                                   dtype=dtype),
                                  LorentzLinear(manifold, 4, 3, dtype=dtype), LogMap0(manifold))
        out = net(torch.zeros(2, 2, dtype=dtype))
        torch.testing.assert_close(out, torch.zeros_like(out))
        out.sum().backward()
        for param in net.parameters():
            if param.grad is not None:
                assert float(param.grad.abs().amax()) < 1e3


def test_functional_forms_take_plain_tensors_and_agree_with_the_layers():
    """The layers' formulas (tested above against independent references) are the stateless
    functions of riemtorch.nn.functional, which take any tensors, with gradients to them."""
    from riemtorch.nn import functional as F

    torch.manual_seed(5)
    lorentz = Lorentz(1.7)
    layer = LorentzLinear(lorentz, 4, 3, time_scale=True, dtype=F64)
    x = lorentz.random(6, n=4, dtype=F64)
    weight = layer.linear.weight.detach().clone().requires_grad_()
    out = F.lorentz_linear(x, weight, layer.linear.bias, k=1.7,
                           time_weight=layer.time_linear.weight,
                           time_bias=layer.time_linear.bias, log_scale=layer.log_scale)
    torch.testing.assert_close(out, layer(x))
    ok, reason = lorentz.check_point(out)
    assert ok, reason
    out.sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all()

    ball = PoincareBall(0.8)
    mlr = PoincareMLR(ball, 3, 4, dtype=F64)
    with torch.no_grad():
        mlr.points.copy_(ball.random(4, n=3, std=0.3, dtype=F64))
    z = ball.random(5, n=3, std=0.5, dtype=F64)
    points, normals = mlr.points.detach().clone(), mlr.normals.detach().clone()
    torch.testing.assert_close(F.poincare_mlr(z, points, normals, ball), mlr(z))


def test_lorentz_linear_takes_half_precision_and_checks_its_time_arguments():
    from riemtorch.nn import functional as F

    lorentz = Lorentz(1.0)
    layer = LorentzLinear(lorentz, 4, 3)
    x = lorentz.random(5, n=4)
    expected = layer(x)
    out = layer.half()(x.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="time_weight and log_scale come together"):
        F.lorentz_linear(x.float(), torch.randn(2, 4), k=1.0, time_weight=torch.randn(1, 4))
    with pytest.raises(TypeError, match="floating-point"):
        F.lorentz_linear(torch.ones(2, 4, dtype=torch.int64), torch.randn(2, 4), k=1.0)
