"""Laws every manifold obeys, run over every case of manifold_cases.CASES x dtype x seed."""

import pytest
import torch

from manifold_cases import CASES, DEVICE, build, draw

DTYPES = [torch.float64, torch.float32]
SEEDS = [0, 1, 2]
BATCH = (4,)


def tol(dtype):
    return {"atol": 1e-4, "rtol": 1e-3} if dtype == torch.float32 else {"atol": 1e-9, "rtol": 1e-8}


def close(a, b, dtype, scale=1.0):
    t = tol(dtype)
    torch.testing.assert_close(a, b, atol=t["atol"] * scale, rtol=t["rtol"] * scale)


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["f64", "f32"])
def dtype(request):
    return request.param


@pytest.fixture(params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def gen(request):
    return torch.Generator().manual_seed(request.param)


def points(case, m, dtype, gen, batch=BATCH):
    return draw(case, *batch, dtype=dtype, generator=gen)


def gaussian(x, gen):
    """Standard normal tensor shaped like ``x``, drawn on the CPU and moved to its device."""
    return torch.randn(x.shape, dtype=x.dtype, generator=gen).to(x.device)


def tangent(case, m, x, gen, step=None):
    """Tangent vectors at x with Riemannian norm ``step`` (default ``case.step``)."""
    if case.tangent is not None:
        u = case.tangent(m, x, gen)
    else:
        u = m.proju(x, gaussian(x, gen))
    n = m.norm(x, u, keepdim=True)
    return u / n * (case.step if step is None else step)


def test_random_points_are_on_manifold(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen)
    assert x.dtype == dtype
    ok, reason = m.check_point(x)
    assert ok, reason
    origin = m.origin(*BATCH, dtype=dtype, device=DEVICE, **case.random_kwargs)
    ok, reason = m.check_point(origin)
    assert ok, reason
    assert torch.equal(m.origin_like(x), origin)


def test_projx_is_idempotent_and_lands_on_manifold(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen)
    y = m.projx(x + 1e-2 * gaussian(x, gen))
    ok, reason = m.check_point(y)
    assert ok, reason
    close(m.projx(y), y, dtype)


def test_proju_lands_in_tangent_space_and_is_idempotent(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen)
    u = m.proju(x, gaussian(x, gen))
    ok, reason = m.check_vector(x, u)
    assert ok, reason
    close(m.proju(x, u), u, dtype)


def test_inner_is_symmetric_and_positive(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen)
    u, v = tangent(case, m, x, gen), tangent(case, m, x, gen)
    close(m.inner(x, u, v), m.inner(x, v, u), dtype)
    assert bool((m.inner(x, u) > 0).all())
    close(m.norm(x, u), m.inner(x, u).sqrt(), dtype)
    assert m.inner(x, u, v).shape == x.shape[: x.dim() - m.ndim]
    assert m.inner(x, u, v, keepdim=True).shape == x.shape[: x.dim() - m.ndim] + (1,) * m.ndim


def test_log_inverts_exp_and_exp_inverts_log(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen)
    u = tangent(case, m, x, gen)
    y = m.expmap(x, u)
    ok, reason = m.check_point(y)
    assert ok, reason
    close(m.logmap(x, y), u, dtype, scale=10)
    close(m.expmap(x, m.logmap(x, y)), y, dtype, scale=10)


def test_distance_of_exp_equals_tangent_norm(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen)
    u = tangent(case, m, x, gen)
    close(m.dist(x, m.expmap(x, u)), m.norm(x, u), dtype, scale=10)
    close(m.dist2(x, m.expmap(x, u)), m.inner(x, u), dtype, scale=10)


def test_distance_is_symmetric_and_zero_on_diagonal(case, dtype, gen):
    m = build(case)
    x, y = points(case, m, dtype, gen), points(case, m, dtype, gen)
    close(m.dist(x, y), m.dist(y, x), dtype, scale=10)
    assert bool((m.dist(x, x).abs() < (1e-3 if dtype == torch.float32 else 1e-6)).all())


def test_transport_is_tangent_and_parallel_keeps_inner_products(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen)
    y = m.expmap(x, tangent(case, m, x, gen))
    u, v = tangent(case, m, x, gen), tangent(case, m, x, gen)
    tu, tv = m.transp(x, y, u), m.transp(x, y, v)
    ok, reason = m.check_vector(y, tu)
    assert ok, reason
    if case.parallel:
        close(m.inner(y, tu, tv), m.inner(x, u, v), dtype, scale=10)
    y2, tu2 = m.retr_transp(x, u, v)
    close(y2, m.retr(x, u), dtype)
    close(tu2, m.transp(x, y2, v), dtype, scale=10)
    ok, reason = m.check_vector(y2, tu2)
    assert ok, reason
    y3, tu3 = m.expmap_transp(x, u, v)
    close(y3, m.expmap(x, u), dtype)
    close(tu3, m.transp(x, y3, v), dtype, scale=10)


def test_retraction_agrees_with_exp_to_first_order(case, dtype, gen):
    if dtype == torch.float32:
        pytest.skip("Taylor ratios need float64 resolution")
    m = build(case)
    x = points(case, m, dtype, gen)
    u = tangent(case, m, x, gen, step=1.0)
    errors = []
    for t in (1e-2, 1e-3):
        r = m.retr(x, t * u)
        ok, reason = m.check_point(r)
        assert ok, reason
        errors.append(float((r - m.expmap(x, t * u)).abs().max()))
    # A first-order retraction differs from Exp by O(t^2): the error falls 100x per decade of t.
    assert errors[1] <= max(0.02 * errors[0], 1e-13)


def test_geodesic_endpoints_and_midpoint(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen)
    y = m.expmap(x, tangent(case, m, x, gen))
    close(m.geodesic(x, y, 0.0), x, dtype, scale=10)
    close(m.geodesic(x, y, 1.0), y, dtype, scale=10)
    mid = m.geodesic(x, y, torch.full(x.shape[: x.dim() - m.ndim], 0.5, dtype=dtype,
                                      device=DEVICE))
    close(m.dist(x, mid), 0.5 * m.dist(x, y), dtype, scale=10)
    close(m.dist(mid, y), 0.5 * m.dist(x, y), dtype, scale=10)


def test_operations_broadcast_over_batch_dimensions(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen, batch=(2, 1))
    y = points(case, m, dtype, gen, batch=(1, 3))
    d = m.dist(x, y)
    assert d.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            close(d[i, j], m.dist(x[i, 0], y[0, j]), dtype, scale=10)
    u = tangent(case, m, x, gen)
    assert m.expmap(x, u).shape == x.shape
    assert m.logmap(x, y).shape == (2, 3) + x.shape[2:]


def test_frechet_mean_is_a_critical_point_of_the_variance(case, dtype, gen):
    m = build(case)
    center = points(case, m, dtype, gen, batch=(1,))
    x = m.expmap(center, tangent(case, m, center.expand(6, *center.shape[1:]), gen, step=0.3))
    w = torch.rand(6, dtype=dtype, generator=gen).to(DEVICE) + 0.5
    mean = m.frechet_mean(x, weights=w)
    ok, reason = m.check_point(mean)
    assert ok, reason
    grad = (w[:, None].reshape((6,) + (1,) * m.ndim) / w.sum() * m.logmap(mean, x)).sum(0)
    assert float(m.norm(mean, grad)) < (1e-4 if dtype == torch.float32 else 1e-8)
    var = m.frechet_variance(x, mean, weights=w)
    close(var, (w / w.sum() * m.dist(mean, x) ** 2).sum(), dtype, scale=10)
    same = m.frechet_mean(center.expand(3, *center.shape[1:]))
    close(same, center[0], dtype, scale=10)


def test_frechet_statistics_reject_empty_samples_and_all_zero_weights(case, dtype, gen):
    m = build(case)
    x = points(case, m, dtype, gen, batch=(3,))
    with pytest.raises(ValueError, match="zero points"):
        m.frechet_mean(x[:0])
    zero = torch.zeros(3, dtype=dtype, device=x.device)
    with pytest.raises(ValueError, match="all be zero"):
        m.frechet_mean(x, weights=zero)
    with pytest.raises(ValueError, match="all be zero"):
        m.frechet_variance(x, x[0], weights=zero)
    for bad in (float("nan"), float("inf")):
        weights = torch.tensor([bad, 1.0, 1.0], dtype=dtype, device=x.device)
        with pytest.raises(ValueError, match="weights must be finite"):
            m.frechet_mean(x, weights=weights)
        with pytest.raises(ValueError, match="weights must be finite"):
            m.frechet_variance(x, x[0], weights=weights)


def test_distance_gradients_are_finite_at_equal_points(case, dtype, gen):
    # d(x, y) is not differentiable at x = y, but a training loss that reaches it must not
    # turn NaN (the square root of a zero squared norm)
    m = build(case)
    x = points(case, m, dtype, gen, batch=(3,))
    a = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.dist(a, x).sum(), a)
    assert bool(torch.isfinite(grad).all())
    (grad2,) = torch.autograd.grad(m.dist2(a, x).sum(), a)
    assert bool(torch.isfinite(grad2).all())
