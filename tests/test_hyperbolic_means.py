"""Fréchet means of spread batches on hyperbolic manifolds (Lorentz, Poincaré ball,
stereographic with k < 0): the generic damped Karcher flow reaches a critical point of the
Fréchet function, agrees with slow Riemannian gradient descent and, for the hyperboloid, with
the Poincaré-ball mean through the isometry; weighted, batched, float32 and gradcheck cases."""

import pytest
import torch

from riemtorch import Lorentz, PoincareBall, Stereographic

F64, F32 = torch.float64, torch.float32
SPATIAL = 5

MANIFOLDS = {
    "lorentz": lambda: Lorentz(),
    "lorentz-k2.5": lambda: Lorentz(2.5),
    "poincare": lambda: PoincareBall(),
    "poincare-c2": lambda: PoincareBall(2.0),
    "stereographic-k-0.5": lambda: Stereographic(-0.5),
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def point_size(m):
    return SPATIAL + 1 if isinstance(m, Lorentz) else SPATIAL


def base_point(m, where):
    """The origin, or the point 2 (in units of the curvature radius) from it along a fixed
    direction."""
    origin = m.origin(n=point_size(m), dtype=F64)
    if where == "origin":
        return origin
    u = m.proju(origin, torch.linspace(-1.0, 1.0, point_size(m), dtype=F64))
    radius = m.k.sqrt() if isinstance(m, Lorentz) else m.k.abs().rsqrt()
    return m.expmap(origin, u * (2.0 * radius.to(F64) / m.norm(origin, u)))


def spread_batch(m, base, n=16, scale=1.5, seed=0, batch=()):
    """``Exp_base`` of tangent vectors with about ``scale`` Riemannian length per coordinate."""
    z = torch.randn(n, *batch, point_size(m), dtype=F64, generator=gen(seed))
    at = base.expand_as(z)
    u = m.proju(at, z)
    u = u * (scale * z.norm(dim=-1, keepdim=True) / m.norm(at, u, keepdim=True))
    return m.expmap(at, u)


def normalised(w, x):
    """Weights summing to 1, shaped to broadcast against the points ``x`` (stacked on dim 0)."""
    w = torch.ones(x.shape[0], dtype=x.dtype) if w is None else w.to(x.dtype)
    return (w / w.sum()).reshape((x.shape[0],) + (1,) * (x.dim() - 1))


def karcher_residual(m, mean, x, w=None):
    """``||sum_i w_i Log_mean(x_i)||`` at ``mean``, the Riemannian gradient norm of the Fréchet
    function (points stacked along dim 0)."""
    w = normalised(w, x)
    return m.norm(mean, (w * m.logmap(mean.unsqueeze(0).expand_as(x), x)).sum(0))


def gradient_descent_mean(m, x, w=None, step=0.05, iters=1500):
    """Reference mean by many small fixed steps of Riemannian gradient descent from ``x[0]``:
    on a Hadamard manifold the Fréchet function is strongly convex with Hessian at least 1, so
    a step well below ``2 / max Hessian`` converges from anywhere."""
    w = normalised(w, x)
    mean = x[0]
    for _ in range(iters):
        direction = (w * m.logmap(mean.unsqueeze(0).expand_as(x), x)).sum(0)
        mean = m.expmap(mean, step * direction)
    return mean


@pytest.fixture(params=sorted(MANIFOLDS))
def manifold(request):
    return MANIFOLDS[request.param]()


@pytest.mark.parametrize("where", ["origin", "off-origin"])
@pytest.mark.parametrize("scale", [1.5, 2.0])
def test_spread_mean_is_a_critical_point_and_matches_gradient_descent(manifold, where, scale):
    m = manifold
    x = spread_batch(m, base_point(m, where), scale=scale, seed=1)
    mean = m.frechet_mean(x)
    assert m.check_point(mean)[0]
    assert float(karcher_residual(m, mean, x)) < 1e-8
    reference = gradient_descent_mean(m, x)
    assert float(karcher_residual(m, reference, x)) < 1e-9
    assert float(m.dist(mean, reference)) < 1e-8


@pytest.mark.parametrize("where", ["origin", "off-origin"])
def test_weighted_spread_mean(manifold, where):
    m = manifold
    x = spread_batch(m, base_point(m, where), scale=1.75, seed=2)
    w = torch.rand(x.shape[0], dtype=F64, generator=gen(3)) + 0.1
    mean = m.frechet_mean(x, weights=w)
    assert float(karcher_residual(m, mean, x, w)) < 1e-8
    reference = gradient_descent_mean(m, x, w)
    assert float(m.dist(mean, reference)) < 1e-8
    # integer weights are repeated points
    counts = torch.tensor([3, 1, 2, 1] * 4)
    repeated = m.frechet_mean(x.repeat_interleave(counts, dim=0))
    assert float(m.dist(m.frechet_mean(x, weights=counts.to(F64)), repeated)) < 1e-8


@pytest.mark.parametrize("k", [1.0, 2.5])
def test_lorentz_mean_is_the_poincare_mean_through_the_isometry(k):
    lorentz, ball = Lorentz(k), PoincareBall(1.0 / k)
    x = spread_batch(lorentz, base_point(lorentz, "off-origin"), scale=2.0, seed=4)
    w = torch.rand(x.shape[0], dtype=F64, generator=gen(5)) + 0.1
    mean = lorentz.frechet_mean(x, weights=w)
    ball_mean = ball.frechet_mean(lorentz.lorentz_to_poincare(x), weights=w)
    assert float(lorentz.dist(mean, lorentz.poincare_to_lorentz(ball_mean))) < 1e-8


def test_batch_entries_converge_independently(manifold):
    # a concentrated and a spread batch entry solved together give their separate means
    m = manifold
    base = base_point(m, "off-origin")
    tight = spread_batch(m, base, scale=0.05, seed=6, batch=(1,))
    wide = spread_batch(m, base, scale=2.0, seed=7, batch=(1,))
    both = torch.cat((tight, wide), dim=1)
    mean = m.frechet_mean(both)
    assert mean.shape == (2, point_size(m))
    for j, part in enumerate((tight, wide)):
        alone = m.frechet_mean(part[:, 0])
        assert float(m.dist(mean[j], alone)) < 1e-8
        assert float(karcher_residual(m, mean[j], part[:, 0])) < 1e-8


def test_one_iteration_is_one_plain_karcher_step(manifold):
    m = manifold
    x = spread_batch(m, base_point(m, "origin"), scale=2.0, seed=8)
    start = m.frechet_mean(x, max_iter=0)
    step = m.logmap(start.unsqueeze(0).expand_as(x), x).mean(0)
    torch.testing.assert_close(m.frechet_mean(x, max_iter=1), m.expmap(start, step))


def test_positively_curved_spread_batch_still_converges():
    # where f is not convex along the path, ||g|| may grow on a step that lowers f; such steps
    # must be kept, as the plain flow keeps them
    m = Stereographic(0.7)
    x = spread_batch(m, base_point(m, "origin"), n=256, scale=1.0, seed=1)
    mean = m.frechet_mean(x)
    assert float(karcher_residual(m, mean, x)) < 1e-8


@pytest.mark.parametrize("where", ["origin", "off-origin"])
def test_float32_spread_mean_is_finite_and_near_float64(manifold, where):
    m = manifold
    x = spread_batch(m, base_point(m, where), scale=2.0, seed=9)
    mean64 = m.frechet_mean(x)
    mean32 = m.frechet_mean(x.to(F32))
    assert mean32.dtype == F32
    assert bool(torch.isfinite(mean32).all())
    assert m.check_point(mean32)[0]
    assert float(m.dist(mean32.to(F64), mean64)) < 1e-4
    assert float(karcher_residual(m, mean32.to(F64), x)) < 1e-4


@pytest.mark.parametrize("where", ["origin", "off-origin"])
def test_gradcheck_of_spread_mean(manifold, where):
    m = manifold
    x = spread_batch(m, base_point(m, where), n=5, scale=1.75, seed=10)
    if isinstance(m, Lorentz):
        # perturb the spatial coordinates only; projx puts the time coordinate back on the
        # hyperboloid
        def mean_of(spatial):
            return m.frechet_mean(m.projx(torch.cat((x[:, :1], spatial), dim=-1)), tol=1e-13)
        inputs = x[:, 1:].clone().requires_grad_()
    else:
        def mean_of(points):
            return m.frechet_mean(points, tol=1e-13)
        inputs = x.clone().requires_grad_()
    assert float(karcher_residual(m, mean_of(inputs.detach()), x)) < 1e-12
    assert torch.autograd.gradcheck(mean_of, (inputs,))
