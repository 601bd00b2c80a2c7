"""Stiefel-specific tests: references (pymanopt, scipy), both metrics, retractions, gradients."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from riemtorch import Stiefel

F64 = torch.float64
N, P = 7, 3


def points(m, batch=5, seed=0, dtype=F64):
    return m.random(batch, n=N, p=P, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def tangent(m, x, norm, seed=1):
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(seed))
    u = m.proju(x, g)
    return u / m.norm(x, u, keepdim=True) * norm


def pymanopt_stiefel(retraction="qr"):
    manifolds = pytest.importorskip("pymanopt.manifolds")
    return manifolds.Stiefel(N, P, retraction=retraction)


def test_euclidean_exp_matches_pymanopt():
    ref = pymanopt_stiefel()
    m = Stiefel("euclidean")
    x = points(m)
    u = tangent(m, x, 1.3)
    y = m.expmap(x, u)
    for i in range(x.shape[0]):
        expected = ref.exp(x[i].numpy(), u[i].numpy())
        np.testing.assert_allclose(y[i].numpy(), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", ["qr", "polar"])
def test_retractions_and_transport_match_pymanopt(kind):
    ref = pymanopt_stiefel(kind)
    m = Stiefel("euclidean", retraction=kind)
    x = points(m)
    u, v = tangent(m, x, 0.8), tangent(m, x, 1.0, seed=2)
    y = m.retr(x, u)
    tv = m.transp(x, y, v)
    for i in range(x.shape[0]):
        np.testing.assert_allclose(y[i].numpy(), ref.retraction(x[i].numpy(), u[i].numpy()),
                                   atol=1e-10, rtol=0)
        np.testing.assert_allclose(tv[i].numpy(),
                                   ref.transport(x[i].numpy(), y[i].numpy(), v[i].numpy()),
                                   atol=1e-10, rtol=0)
        g = torch.randn(N, P, dtype=F64, generator=torch.Generator().manual_seed(i)).numpy()
        np.testing.assert_allclose(m.proju(x[i], torch.from_numpy(g)).numpy(),
                                   ref.projection(x[i].numpy(), g), atol=1e-12, rtol=0)


def test_canonical_exp_is_the_one_parameter_subgroup_orbit():
    # Canonical geodesics are Y = expm(W) X with W = P U X^T - X U^T P, P = I - X X^T / 2.
    m = Stiefel("canonical")
    x = points(m)
    u = tangent(m, x, 1.5)
    y = m.expmap(x, u)
    for i in range(x.shape[0]):
        xi, ui = x[i].numpy(), u[i].numpy()
        proj = np.eye(N) - 0.5 * xi @ xi.T
        w = proj @ ui @ xi.T - xi @ ui.T @ proj
        np.testing.assert_allclose(y[i].numpy(), scipy.linalg.expm(w) @ xi, atol=1e-10, rtol=0)


@pytest.mark.parametrize("metric", ["canonical", "euclidean"])
@pytest.mark.parametrize("step", [0.1, 1.0, 1.8])
def test_log_inverts_exp_for_both_metrics(metric, step):
    m = Stiefel(metric)
    x = points(m)
    u = tangent(m, x, step)
    y = m.expmap(x, u)
    torch.testing.assert_close(m.logmap(x, y), u, atol=1e-10, rtol=0)
    torch.testing.assert_close(m.dist(x, y), torch.full((5,), step, dtype=F64), atol=1e-10,
                               rtol=0)
    torch.testing.assert_close(m.dist(y, x), m.dist(x, y), atol=1e-10, rtol=0)


@pytest.mark.parametrize("metric", ["canonical", "euclidean"])
def test_float32_round_trip(metric):
    m = Stiefel(metric)
    x = points(m, dtype=torch.float32)
    u = tangent(m, x, 0.7)
    y = m.expmap(x, u)
    assert y.dtype == torch.float32
    assert m.check_point(y)[0]
    torch.testing.assert_close(m.logmap(x, y), u, atol=2e-5, rtol=0)


def test_far_points_warn_instead_of_returning_silently():
    m = Stiefel("euclidean")
    x = points(m, batch=1)
    y = -x
    with pytest.warns(RuntimeWarning, match="too far apart|does not map back"):
        m.logmap(x, y)


@pytest.mark.parametrize("metric", ["euclidean", "canonical"])
def test_opposite_columns_warn_instead_of_returning_a_wrong_logarithm(metric):
    # a column of Y opposite to X's: a rotation angle of pi, where the completion's skew part
    # vanishes and the iteration used to stop at once with Log = 0 (Exp_X(0) = X, not Y)
    m = Stiefel(metric)
    x = torch.eye(6, dtype=torch.float64)[:, :3]
    for y in (-x, torch.cat((-x[:, :1], x[:, 1:]), -1)):
        with pytest.warns(RuntimeWarning, match="does not map back"):
            m.logmap(x, y)


def test_canonical_midpoint_and_frechet_mean_of_two_points():
    m = Stiefel("canonical")
    x = points(m, batch=3)
    y = m.expmap(x, tangent(m, x, 1.2))
    mid = m.geodesic(x, y, 0.5)
    mean = m.frechet_mean(torch.stack((x, y)))
    torch.testing.assert_close(mean, mid, atol=1e-8, rtol=0)


@pytest.mark.parametrize("metric,kind,order", [
    ("euclidean", "qr", 2), ("euclidean", "polar", 3), ("canonical", "cayley", 3),
    ("canonical", "qr", 2), ("euclidean", "cayley", 2),
])
def test_retraction_order(metric, kind, order):
    # Error against the exact geodesic falls like t^order: a first-order retraction has
    # order 2, the polar (Euclidean) and Cayley (canonical) retractions have order 3.
    m = Stiefel(metric, retraction=kind)
    x = points(m)
    u = tangent(m, x, 1.0)
    errs = []
    for t in (1e-1, 1e-2):
        r = m.retr(x, t * u)
        assert m.check_point(r)[0]
        errs.append(float((r - m.expmap(x, t * u)).abs().max()))
    ratio = errs[0] / errs[1]
    assert 10 ** (order - 0.3) < ratio < 10 ** (order + 0.3), ratio


def test_canonical_riemannian_gradient_represents_the_differential():
    m = Stiefel("canonical")
    x = points(m)
    g = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    v = tangent(m, x, 1.0)
    rg = m.egrad2rgrad(x, g)
    assert m.check_vector(x, rg)[0]
    torch.testing.assert_close(m.inner(x, rg, v), (g * v).sum((-1, -2)), atol=1e-12, rtol=0)


def test_random_is_haar_distributed_and_origin_is_identity_block():
    m = Stiefel()
    x = m.random(4000, n=4, p=2, dtype=F64, generator=torch.Generator().manual_seed(0))
    # E[X X^T] = (p / n) I for the uniform distribution.
    second = (x @ x.transpose(-1, -2)).mean(0)
    torch.testing.assert_close(second, 0.5 * torch.eye(4, dtype=F64), atol=0.03, rtol=0)
    assert bool((x[:, 0, 0] < 0).any()) and bool((x[:, 0, 0] > 0).any())
    torch.testing.assert_close(m.origin(2, n=4, p=2), torch.eye(4, 2).expand(2, 4, 2))


def test_logmap_gradient_is_finite_and_matches_finite_differences():
    m = Stiefel("canonical")
    x = m.random(1, n=4, p=2, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = m.expmap(x, tangent(m, x, 0.6))
    w = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(4))

    def f(z):
        return (m.logmap(x, m.projx(z)) * w).sum()

    z = y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (z,), atol=1e-6, fast_mode=True)
    same = x.clone().requires_grad_(True)
    (m.logmap(x, same) * w).sum().backward()
    assert bool(torch.isfinite(same.grad).all())


def test_bad_input_raises():
    with pytest.raises(ValueError, match="metric"):
        Stiefel(metric="frobenius")
    with pytest.raises(ValueError, match="retraction"):
        Stiefel(retraction="svd")
    with pytest.raises(ValueError, match="n >= p"):
        Stiefel().random(n=2, p=3)
    m = Stiefel()
    ok, reason = m.check_point(2 * points(m))
    assert not ok and "X^T X" in reason
    with pytest.raises(ValueError, match="not on"):
        m.assert_check_point(torch.ones(3, 2, dtype=F64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.logmap(points(m), points(m, seed=0))


@pytest.mark.parametrize("metric", ["canonical", "euclidean"])
def test_distance_gradient_is_zero_at_equal_points(metric):
    # QR's backward of (I - X X^T) Y ~ 0 gave NaN for 8 of 100 seeds (n=5, p=2) before.
    m = Stiefel(metric)
    for seed in range(30):
        x = m.random(n=5, p=2, dtype=F64, generator=torch.Generator().manual_seed(seed))
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        grads = torch.autograd.grad(m.dist2(a, b), (a, b))
        assert all(float(g_.abs().max()) < 1e-12 for g_ in grads), seed
        grad_dist = torch.autograd.grad(m.dist(a, x), a)[0]
        assert bool(torch.isfinite(grad_dist).all()), seed


def assert_derivative_matches_finite_differences(f, w, step=1e-5):
    """``d/dt <f(t), w>`` at ``t = 0``: autograd against a central difference."""
    t = torch.zeros((), dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad((f(t) * w).sum(), t)
    diff = ((f(torch.tensor(step, dtype=F64)) - f(torch.tensor(-step, dtype=F64))) * w).sum()
    assert abs(float(grad) - float(diff) / (2 * step)) < 1e-7, (float(grad), float(diff) / 2e-5)


@pytest.mark.parametrize("metric", ["canonical", "euclidean"])
def test_log_and_exp_derivatives_where_the_normal_part_vanishes(metric):
    # (I - X X^T) Y = 0 at Y = X and at Y = X O (same span), (I - X X^T) U = 0 at U = 0. QR's
    # backward made these NaN (canonical exp at U = 0: every seed) or wrong (log at Y = X: the
    # derivative was off by 0.1 with this seed).
    m = Stiefel(metric)
    x = points(m, batch=1)[0]
    g = torch.Generator().manual_seed(5)
    d = m.proju(x, torch.randn(N, P, dtype=F64, generator=g))
    w = torch.randn(N, P, dtype=F64, generator=g)
    turn = torch.linalg.matrix_exp(torch.tensor([[0, 0.3, 0.1], [-0.3, 0, 0.2], [-0.1, -0.2, 0]],
                                                dtype=F64))
    # one column turned out of span(X): the normal part has rank 1 of 3, and the iteration
    # starts within tolerance (its derivative was 6 % off with no update taken)
    z = torch.randn(N, dtype=F64, generator=g)
    z = z - x @ (x.T @ z)
    z = z / z.norm()
    one = x.clone()
    one[:, 0] = 0.8 * x[:, 0] + 0.6 * z
    for y in (x, x @ turn, one):
        assert_derivative_matches_finite_differences(lambda t: m.logmap(x, m.projx(y + t * d)), w)
        assert_derivative_matches_finite_differences(lambda t: m.logmap(m.projx(y + t * d), x), w)
    assert_derivative_matches_finite_differences(lambda t: m.expmap(x, t * d), w)


@pytest.mark.parametrize("metric", ["canonical", "euclidean"])
def test_log_and_exp_pass_gradcheck_at_generic_points(metric):
    # The log no longer differentiates QR: its derivative is rebuilt from the gain G.
    m = Stiefel(metric)
    x = points(m, batch=1)
    u = tangent(m, x, 1.1)
    y = m.expmap(x, u)
    pair = (x.clone().requires_grad_(), y.clone().requires_grad_())
    assert torch.autograd.gradcheck(m.logmap, pair, atol=1e-6)
    assert torch.autograd.gradcheck(m.expmap, (pair[0], u.clone().requires_grad_()))


@pytest.mark.parametrize("cond", [1e2, 1e4, 1e6, 1e8])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("manifold", ["stiefel", "grassmann"])
def test_projx_of_ill_conditioned_input_is_orthonormal_and_the_svd_polar_factor(
        manifold, dtype, cond):
    from riemtorch import Grassmann

    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(6, 3, dtype=torch.float64, generator=g))[0]
    r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=g))[0]
    y = (q @ torch.diag(torch.tensor([1.0, 0.5, 1 / cond], dtype=torch.float64)) @ r.T).to(dtype)
    m = Stiefel() if manifold == "stiefel" else Grassmann()
    x = m.projx(y)
    assert x.dtype == dtype
    eps = torch.finfo(dtype).eps
    assert (x.mT @ x - torch.eye(3, dtype=dtype)).abs().max() < 20 * eps
    # the polar factor's sensitivity to the input's rounding is about eps * cond
    reference = scipy.linalg.polar(y.double().numpy())[0]
    np.testing.assert_allclose(x.double().numpy(), reference, atol=max(10 * eps, 1e-15 * cond))
    # idempotent on orthonormal input
    torch.testing.assert_close(m.projx(q.to(dtype)), q.to(dtype), rtol=0, atol=10 * eps)


@pytest.mark.parametrize("manifold", ["stiefel", "grassmann"])
def test_projx_of_rank_deficient_input_raises(manifold):
    from riemtorch import Grassmann

    m = Stiefel() if manifold == "stiefel" else Grassmann()
    y = torch.tensor([[1.0, 2.0], [3.0, 6.0], [0.0, 0.0], [2.0, 4.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="rank deficient"):
        m.projx(y)
