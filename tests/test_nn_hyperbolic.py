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
