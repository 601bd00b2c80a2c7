"""SPD metrics: float32 at high condition numbers, gradients, power deformation, means, M."""

import pytest
import torch

import riemtorch
from riemtorch.linalg.symmetric import sym

F64 = torch.float64


def make(name, **kwargs):
    if name == "SPDGeneralizedBuresWasserstein":
        g = torch.Generator().manual_seed(11)
        metric = riemtorch.SPDAffineInvariant().random(n=kwargs.pop("n", 5), cond=5.0,
                                                       dtype=F64, generator=g)
        return riemtorch.SPDGeneralizedBuresWasserstein(metric, **kwargs)
    kwargs.pop("n", None)
    return getattr(riemtorch, name)(**kwargs)


METRICS = [
    ("SPDAffineInvariant", {}),
    ("SPDAffineInvariant", {"power": 0.5}),
    ("SPDLogEuclidean", {}),
    ("SPDLogCholesky", {}),
    ("SPDLogCholesky", {"power": 0.5}),
    ("SPDBuresWasserstein", {}),
    ("SPDBuresWasserstein", {"power": 0.5}),
    ("SPDGeneralizedBuresWasserstein", {}),
]
IDS = [f"{n[3:]}-{k.get('power', 1)}" for n, k in METRICS]


def spd(batch, n=5, cond=None, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return riemtorch.SPDAffineInvariant().random(*batch, n=n, cond=cond, dtype=dtype, generator=g)


def all_finite(*tensors):
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@pytest.mark.parametrize("name, kwargs", METRICS, ids=IDS)
def test_float32_at_condition_number_1e6(name, kwargs):
    m = make(name, **kwargs)
    x = spd((4,), cond=1e6, dtype=torch.float32, seed=1)
    y = spd((4,), cond=1e6, dtype=torch.float32, seed=2)
    reference = m.dist(x.double(), y.double())
    x.requires_grad_(True)
    y.requires_grad_(True)
    d = m.dist(x, y)
    assert d.dtype == torch.float32
    assert float(((d.detach().double() - reference).abs() / reference).max()) <= 1e-3
    u = m.logmap(x, y)
    z = m.expmap(x, 1e-2 * u / m.norm(x, u, keepdim=True))
    mean = m.frechet_mean(torch.stack([x, y]))
    loss = d.sum() + u.square().sum() * 1e-12 + z.sum() + mean.sum()
    gx, gy = torch.autograd.grad(loss, (x, y))
    assert all_finite(d, u, z, mean, gx, gy)


@pytest.mark.parametrize("name, kwargs", METRICS, ids=IDS)
@pytest.mark.parametrize("where", ["x_equals_y", "x_identity"])
def test_distance_gradient_is_finite_at_coincident_points_and_identity(name, kwargs, where):
    m = make(name, **kwargs)
    y = spd((3,), seed=3)
    x = y.clone() if where == "x_equals_y" else torch.eye(5, dtype=F64).expand(3, 5, 5).clone()
    x.requires_grad_(True)
    y.requires_grad_(True)
    gx, gy = torch.autograd.grad(m.dist(x, y).sum(), (x, y))
    assert all_finite(gx, gy)
    if where == "x_equals_y" and name == "SPDAffineInvariant" and not kwargs:
        # the distance is 0 there and so is its gradient, not a rounding-noise direction of
        # unit size (the square root of a squared distance of 1e-31)
        assert float(m.dist(x, y).detach().abs().max()) == 0.0
        assert float(gx.abs().max()) == 0.0 and float(gy.abs().max()) == 0.0
        # a distance well above the rounding level keeps its value and its unit gradient
        u = sym(torch.randn(5, 5, dtype=F64, generator=torch.Generator().manual_seed(4)))
        z = m.expmap(y.detach(), 1e-9 * u / m.norm(y.detach(), u, keepdim=True))
        torch.testing.assert_close(m.dist(y.detach(), z), torch.full((3,), 1e-9, dtype=F64),
                                   rtol=1e-5, atol=0)


@pytest.mark.parametrize("name, kwargs", METRICS, ids=IDS)
def test_distance_gradcheck(name, kwargs):
    m = make(name, n=3, **kwargs)
    x, y = spd((1,), n=3, seed=4), spd((1,), n=3, seed=5)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: m.dist(sym(a), sym(b)), (x, y))


@pytest.mark.parametrize("power", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("name", ["SPDAffineInvariant", "SPDLogCholesky", "SPDBuresWasserstein",
                                  "SPDGeneralizedBuresWasserstein", "SPDLogEuclidean"])
def test_egrad2rgrad_is_the_riesz_representer(name, power):
    if name == "SPDLogEuclidean" and power != 0.0:
        pytest.skip("no power argument")
    m = make(name) if name == "SPDLogEuclidean" else make(name, power=power)
    x = spd((3,), seed=6)
    g = torch.randn(3, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    v = sym(torch.randn(3, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(1)))
    r = m.egrad2rgrad(x, g)
    torch.testing.assert_close(m.inner(x, r, v), (sym(g) * v).sum((-1, -2)), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["SPDAffineInvariant", "SPDLogCholesky", "SPDBuresWasserstein"])
def test_power_deformation_is_the_scaled_pullback(name):
    x, y = spd((3,), seed=7), spd((3,), seed=8)
    theta = 0.6
    plain = make(name)
    powered = make(name, power=theta)
    xp, yp = riemtorch.linalg.powm(x, theta), riemtorch.linalg.powm(y, theta)
    torch.testing.assert_close(powered.dist(x, y), plain.dist(xp, yp) / theta)
    torch.testing.assert_close(riemtorch.linalg.powm(powered.frechet_mean(torch.stack([x, y])),
                                                     theta),
                               plain.frechet_mean(torch.stack([xp, yp])))


@pytest.mark.parametrize("name, scale", [("SPDAffineInvariant", 1.0), ("SPDBuresWasserstein", 0.5),
                                         ("SPDLogCholesky", None)])
def test_power_tends_to_the_log_euclidean_limit(name, scale):
    x, y = spd((3,), seed=9), spd((3,), seed=10)
    limit = make(name, power=0.0)
    small = make(name, power=1e-5)
    torch.testing.assert_close(small.dist(x, y), limit.dist(x, y), rtol=1e-4, atol=0)
    u = limit.logmap(x, y)
    torch.testing.assert_close(small.logmap(x, y), u, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(small.expmap(x, u), limit.expmap(x, u), rtol=1e-4, atol=1e-4)
    lem = riemtorch.SPDLogEuclidean()
    if scale is not None:
        torch.testing.assert_close(limit.dist(x, y), scale * lem.dist(x, y))
    torch.testing.assert_close(limit.expmap(x, u), y)
    torch.testing.assert_close(limit.frechet_mean(torch.stack([x, y])),
                               lem.frechet_mean(torch.stack([x, y])))


def test_random_has_the_requested_condition_number():
    x = spd((5,), n=8, cond=1e6)
    lam = torch.linalg.eigvalsh(x)
    torch.testing.assert_close(lam[:, -1] / lam[:, 0], torch.full((5,), 1e6, dtype=F64),
                               rtol=1e-6, atol=0)
    assert riemtorch.SPDAffineInvariant().check_point(x)[0]


@pytest.mark.parametrize("name", ["SPDAffineInvariant", "SPDLogEuclidean", "SPDLogCholesky",
                                  "SPDBuresWasserstein", "SPDGeneralizedBuresWasserstein"])
def test_frechet_mean_is_batched_and_weighted(name):
    m = make(name)
    x = spd((2, 6), seed=12)
    w = torch.rand(2, 6, dtype=F64, generator=torch.Generator().manual_seed(2)) + 0.1
    mean = m.frechet_mean(x, weights=w, dim=1)
    assert mean.shape == (2, 5, 5)
    for i in range(2):
        torch.testing.assert_close(mean[i], m.frechet_mean(x[i], weights=w[i]))
    kept = m.frechet_mean(x.transpose(0, 1), weights=w.T, dim=0, keepdim=True)
    torch.testing.assert_close(kept[0], mean)
    var = m.frechet_variance(x, mean, weights=w, dim=1)
    torch.testing.assert_close(var, (w / w.sum(1, keepdim=True) * m.dist2(mean[:, None], x)).sum(1))


@pytest.mark.parametrize("name", ["SPDAffineInvariant", "SPDBuresWasserstein"])
@pytest.mark.parametrize("batch", [(3,), (3, 2)])
def test_iterative_means_are_differentiable(name, batch):
    # (3, 2): two channels averaged over dimension 0, each with its own implicit solve
    m = make(name)
    x = spd(batch, n=2, seed=13).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: m.frechet_mean(sym(a), tol=1e-13), (x,))
    if len(batch) > 1:
        # a loss that reads one channel only: the other's adjoint right-hand side is zero
        (grad,) = torch.autograd.grad(m.frechet_mean(x)[0].sum(), x)
        assert bool(torch.isfinite(grad).all()) and not bool(grad[:, 1].any())


@pytest.mark.parametrize("name, module", [("SPDAffineInvariant", "karcher")])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_iterative_means_floor_in_the_working_dtype_and_solve_for_the_input_dtype(
        name, module, dtype, monkeypatch):
    """float32 input is averaged in float64: the whitened samples formed there are floored at
    float64's epsilon (their small eigenvalues are information), while the implicit backward
    is solved to the accuracy the input dtype calls for (riemtorch.config)."""
    import importlib

    from riemtorch.manifolds.spd import common

    solver = importlib.import_module(f"riemtorch.manifolds.spd.{module}")
    seen = []
    floor, rtol = solver.floor_eigenvalues, common.implicit_rtol

    def recorded_floor(values, kind):
        seen.append(("floor_eigenvalues", kind))
        return floor(values, kind)

    def recorded_rtol(kind):
        seen.append(("implicit_rtol", kind))
        return rtol(kind)

    monkeypatch.setattr(solver, "floor_eigenvalues", recorded_floor)
    monkeypatch.setattr(common, "implicit_rtol", recorded_rtol)
    x = spd((6,), cond=10.0, dtype=dtype, seed=16).requires_grad_(True)
    mean = make(name).frechet_mean(x)
    assert mean.dtype == dtype
    mean.sum().backward()
    assert {kind for what, kind in seen if what == "floor_eigenvalues"} == {F64}
    assert {kind for what, kind in seen if what == "implicit_rtol"} == {dtype}


@pytest.mark.parametrize("name", ["SPDAffineInvariant", "SPDBuresWasserstein",
                                  "SPDGeneralizedBuresWasserstein"])
@pytest.mark.parametrize("weights", [None, (0.05, 0.95)])
def test_float32_means_of_ill_conditioned_samples_match_the_closed_form(name, weights):
    # commuting samples at condition number 1e6 (exact in float32): whitened by their mean
    # they reach condition number 1e9 to 1e12, far beyond float32's relative eps
    if weights is None:
        d = torch.tensor([[1e3, 1.0, 1e-3], [1e-3, 2.0, 1e3], [2e-3, 1.0, 5e2]], dtype=F64)
        w = torch.full((3,), 1 / 3, dtype=F64)
    else:
        d = torch.tensor([[1e3, 1.0, 1e-3], [1e-3, 1.0, 1e3]], dtype=F64)
        w = torch.tensor(weights, dtype=F64)
    x = torch.diag_embed(d).float()
    if name == "SPDAffineInvariant":
        expected = (w[:, None] * d.log()).sum(0).exp()
    else:
        expected = (w[:, None] * d.sqrt()).sum(0).square()
    # a diagonal metric matrix commutes with the samples and leaves the BW mean unchanged
    manifold = (riemtorch.SPDGeneralizedBuresWasserstein(torch.diag(torch.tensor([2.0, 0.5, 3.0])))
                if name == "SPDGeneralizedBuresWasserstein" else make(name))
    mean = manifold.frechet_mean(x, weights=None if weights is None else w.float())
    assert mean.dtype == torch.float32
    torch.testing.assert_close(torch.diagonal(mean).double(), expected, rtol=1e-5, atol=0)


# the floor at condition number 4e10 depends on the LAPACK build: 6.3e-8 with torch 2.13's,
# 1.0e-7 with torch 2.3's
@pytest.mark.parametrize("spread, accuracy", [(4, 1e-9), (5, 2e-7)])
def test_karcher_mean_stops_at_the_rounding_floor_of_ill_conditioned_samples(
        monkeypatch, spread, accuracy):
    # samples A Y_i A^T at condition numbers 4e8 and 4e10: the Newton iterations reach the
    # rounding floor of ||F|| (1e-9, 1e-7) above the default tolerance 1e-10 after four steps
    # and then used to run all 100 (10x the time) while wandering away (2e-8, 3e-7 off)
    from riemtorch.manifolds.spd import karcher
    steps = []
    gradient = karcher.karcher_gradient
    monkeypatch.setattr(karcher, "karcher_gradient", lambda *a: steps.append(1) or gradient(*a))
    manifold = make("SPDAffineInvariant")
    g = torch.Generator().manual_seed(3)
    y = manifold.random(40, n=10, cond=10.0, dtype=F64, generator=g)
    q = torch.linalg.qr(torch.randn(10, 10, dtype=F64, generator=g))[0]
    a = (q * torch.logspace(0, spread, 10, dtype=F64)).requires_grad_()
    x = a @ y @ a.mT
    mean = manifold.frechet_mean(x)
    assert len(steps) <= 12
    # affine equivariance gives the reference from the well-conditioned samples
    expected = a.detach() @ manifold.frechet_mean(y) @ a.detach().mT
    assert float(manifold.dist(mean.detach(), expected)) < accuracy
    (grad,) = torch.autograd.grad(mean.sum(), a)
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("spread", [4, 6])
def test_bures_wasserstein_barycenter_of_ill_conditioned_samples_converges(spread):
    # samples A Y_i A^T at condition numbers 4e8 and 4e12: the roots of F^T X_i F (condition
    # number about cond(S)^2 near the fixed point) were floored at eps relative, which held
    # the criterion near 1e-8 and ran the iteration to max_iter, 2e-8 (4e8) off
    mpmath = pytest.importorskip("mpmath")
    from riemtorch.manifolds.spd.bw_barycenter import barycenter_fixed_point

    mpmath.mp.dps = 40
    g = torch.Generator().manual_seed(3)
    n, count = 6, 12
    y = make("SPDAffineInvariant").random(count, n=n, cond=10.0, dtype=F64, generator=g)
    q = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))[0]
    a = q * torch.logspace(0, spread, n, dtype=F64)
    x = a @ y @ a.mT
    w = torch.full((count, 1, 1), 1 / count, dtype=F64)
    s, converged = barycenter_fixed_point(x, w, 1e-10, 10)
    assert converged
    torch.testing.assert_close(make("SPDBuresWasserstein").frechet_mean(x), s, rtol=0, atol=0)

    def root(m):  # symmetric square root in 40 digits
        values, vectors = mpmath.eigsy((m + m.T) / 2)
        return vectors * mpmath.diag([mpmath.sqrt(v) for v in values]) * vectors.T

    # the fixed point: S = sum_i w_i (S^1/2 X_i S^1/2)^1/2
    s_mp = mpmath.matrix(s.tolist())
    half = root(s_mp)
    image = sum((root(half * mpmath.matrix(xi.tolist()) * half) for xi in x),
                mpmath.zeros(n, n)) / count
    assert float(mpmath.mnorm(image - s_mp, "f") / mpmath.mnorm(s_mp, "f")) < 1e-10


def test_bures_wasserstein_transport_is_parallel_between_commuting_matrices():
    q = torch.linalg.qr(torch.randn(5, 5, dtype=F64, generator=torch.Generator().manual_seed(3)))[0]
    s, t = torch.tensor([0.5, 1, 2, 3, 4], dtype=F64), torch.tensor([2, 0.3, 1, 5, 1], dtype=F64)
    x, y = q @ torch.diag(s) @ q.T, q @ torch.diag(t) @ q.T
    v = sym(torch.randn(5, 5, dtype=F64, generator=torch.Generator().manual_seed(4)))
    factor = ((t[:, None] + t[None]) / (s[:, None] + s[None])).sqrt()
    expected = q @ (factor * (q.T @ v @ q)) @ q.T
    torch.testing.assert_close(riemtorch.SPDBuresWasserstein().transp(x, y, v), expected)


def test_generalized_bures_wasserstein_metric_matrix_is_module_state():
    metric = spd((), seed=14)
    fixed = riemtorch.SPDGeneralizedBuresWasserstein(metric)
    assert "M" in dict(fixed.named_buffers())
    assert fixed.to(torch.float32).M.dtype == torch.float32
    learnable = riemtorch.SPDGeneralizedBuresWasserstein(metric, learnable=True)
    assert isinstance(learnable.M, riemtorch.ManifoldParameter)
    assert "M" in learnable.state_dict()
    x, y = spd((3,), seed=15), spd((3,), seed=16)
    learnable.dist(x, y).sum().backward()
    assert learnable.M.grad is not None and all_finite(learnable.M.grad)
    ident = riemtorch.SPDGeneralizedBuresWasserstein(torch.eye(5, dtype=F64))
    torch.testing.assert_close(ident.dist(x, y), riemtorch.SPDBuresWasserstein().dist(x, y))


@pytest.mark.parametrize("threads", [1, 2])
def test_karcher_mean_names_the_sample_that_is_not_positive_definite(threads):
    # the harmonic mean of the start factors the samples by slices, one per thread: the error
    # names the sample's index in the whole batch, not in its slice
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = riemtorch.SPDAffineInvariant().random(64, n=20, dtype=F64,
                                                  generator=torch.Generator().manual_seed(3))
        x[61] = -x[61]
        with pytest.raises(ValueError, match="sample 61 of the batch"):
            riemtorch.SPDAffineInvariant().frechet_mean(x)
        with pytest.raises(ValueError, match="sample 61 of the batch"):
            riemtorch.nn.SPDBatchNorm(20, dtype=F64)(x)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("metric", ["bw", "gbw"])
def test_bures_wasserstein_statistics_name_a_sample_that_is_not_positive(metric):
    # the barycenter takes square roots of congruent forms of the samples: without the check
    # an indefinite sample counted as its positive part (and -X as the zero matrix)
    m = (riemtorch.SPDBuresWasserstein() if metric == "bw" else
         riemtorch.SPDGeneralizedBuresWasserstein(spd(()).detach() + torch.eye(5, dtype=F64)))
    g = torch.Generator().manual_seed(4)
    x = riemtorch.SPDAffineInvariant().random(6, 2, n=5, dtype=F64, generator=g)
    bad = x.clone()
    bad[4, 1] = -bad[4, 1]
    with pytest.raises(ValueError, match="sample 4 of the batch has a negative eigenvalue"):
        m.frechet_mean(bad)
    with pytest.raises(ValueError, match="negative eigenvalue"):
        m.frechet_variance(bad)
    with pytest.raises(ValueError, match="second point has a negative eigenvalue"):
        m.dist2(x[0, 0], -x[0, 0])
    with pytest.raises(ValueError, match="sample 4 of the batch"):
        riemtorch.nn.SPDBatchNorm(5, metric=metric, channels=(2,), dtype=F64)(bad)
    # positive semidefinite samples (rank deficient, zero) stay valid input
    low = torch.randn(6, 2, 5, 3, dtype=F64, generator=g)
    singular = low @ low.transpose(-1, -2)
    singular[0, 0] = 0.0
    mean = m.frechet_mean(torch.cat([x, singular]))
    assert bool(torch.isfinite(mean).all())
    assert bool((torch.linalg.eigvalsh(mean) > 0).all())


@pytest.mark.parametrize("seed", [3, 7])
def test_bures_wasserstein_barycenter_reaches_tol_at_condition_1e8(seed):
    # the chord-refined roots stalled the criterion at 5e-9 to 4e-8 up to the iteration cap on
    # these samples; the plain fixed point with fresh square roots reaches the tolerance
    from riemtorch.manifolds.spd import bw_barycenter as barycenter

    g = torch.Generator().manual_seed(seed)
    x = riemtorch.SPDAffineInvariant().random(20, n=5, cond=1e8, dtype=F64, generator=g)
    w = torch.full((20, 1, 1), 1 / 20, dtype=F64)
    with torch.no_grad():
        mean, converged = barycenter.barycenter_fixed_point(x, w, 1e-10, 100)
        plain = x.mean(0)
        for _ in range(150):
            plain = barycenter.fixed_point_map(plain, x, w)
    assert converged
    bw = riemtorch.SPDBuresWasserstein()
    criterion = (w * bw.logmap(mean.expand_as(x), x)).sum(0).norm() / mean.norm()
    assert float(criterion) < 2e-10
    assert float((mean - plain).norm() / plain.norm()) < 1e-7


@pytest.mark.parametrize("seed", [2, 3])
def test_bures_wasserstein_barycenter_at_its_rounding_floor_is_differentiated_implicitly(seed):
    # at condition 1e9 the criterion stalls at 1e-10 to 2e-9, above tol, until the cap: a
    # gradient request unrolled 100 fixed-point steps from the arithmetic mean (a different
    # value, and 0.3-1.2 s for 20 matrices of 5 x 5); near the floor the iterate is close
    # enough for the implicit derivative
    from riemtorch.manifolds.spd import bw_barycenter as barycenter

    g = torch.Generator().manual_seed(seed)
    x = riemtorch.SPDAffineInvariant().random(20, n=5, cond=1e9, dtype=F64, generator=g)
    bw = riemtorch.SPDBuresWasserstein()
    mean = bw.frechet_mean(x)
    xg = x.clone().requires_grad_(True)
    tracked = bw.frechet_mean(xg)
    assert torch.equal(tracked.detach(), mean)
    assert tracked.grad_fn.name() == "_BarycenterBackward"
    direction = torch.randn(5, 5, dtype=F64, generator=g)
    grad, = torch.autograd.grad((tracked * (direction + direction.T)).sum(), xg)
    # the derivative of a long plain iteration agrees to the conditioning of the problem
    xu = x.clone().requires_grad_(True)
    w = torch.full((20, 1, 1), 1 / 20, dtype=F64)
    unrolled = barycenter.unrolled_fixed_point(xu, w, 100)
    reference, = torch.autograd.grad((unrolled * (direction + direction.T)).sum(), xu)
    assert float((grad - reference).norm() / reference.norm()) < 1e-3


def test_affine_invariant_distance_floors_like_the_logarithm():
    # at condition numbers 1e10 the whitened spectrum can hold a rounding eigenvalue <= 0: the
    # distance took log(tiny) = -708 for it; it now floors as logm does, so dist = |Log|
    aim = riemtorch.SPDAffineInvariant()
    x, y = spd((2,), n=4, cond=1e10, seed=5)
    d = aim.dist(x, y)
    assert float(d) < 60
    torch.testing.assert_close(d, aim.norm(x, aim.logmap(x, y)), rtol=1e-6, atol=0)
    torch.testing.assert_close(aim.dist(y, x), aim.norm(y, aim.logmap(y, x)), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="not positive definite"):
        aim.dist(torch.eye(2, dtype=F64), torch.diag(torch.tensor([1.0, -0.5], dtype=F64)))


@pytest.mark.parametrize("method", ["eigh", "newton_schulz"])
def test_bures_wasserstein_maps_reject_an_indefinite_point(method):
    # the transport's kernels and the Newton-Schulz roots gave NaN for it
    eye, bad = torch.eye(2, dtype=F64), torch.diag(torch.tensor([1.0, -0.5], dtype=F64))
    for m in (riemtorch.SPDBuresWasserstein(sqrtm_method=method),
              riemtorch.SPDGeneralizedBuresWasserstein(2 * eye, sqrtm_method=method)):
        with pytest.raises(ValueError, match="second point has a negative eigenvalue"):
            m.transp(eye, bad, eye)
        with pytest.raises(ValueError, match="first point has a negative eigenvalue"):
            m.transp(bad, eye, eye)
        for verb in (m.dist, m.logmap, lambda a, b: m.geodesic(a, b, 0.5)):
            with pytest.raises(ValueError, match="not positive definite"):
                verb(eye, bad)


@pytest.mark.parametrize("method", ["eigh", "newton_schulz"])
def test_bures_wasserstein_distance_of_nearby_points_is_accurate(method):
    # tr X + tr Y - 2 tr(...)^1/2 cancels: at a true distance 3e-8 it gave 4.8e-7, at 3e-10
    # zero; the norm of the logarithm is the reference
    bw = riemtorch.SPDBuresWasserstein(sqrtm_method=method)
    x = 100 * spd((3,), n=4, seed=1)
    a = torch.randn(3, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    for scale in (1e-3, 1e-7, 1e-9):
        y = bw.expmap(x, scale * (a + a.mT))
        reference = bw.norm(x, bw.logmap(x, y))
        torch.testing.assert_close(bw.dist(x, y), reference, rtol=1e-4, atol=0)
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(bw.dist(x, x.detach() + 1e-7 * torch.eye(4, dtype=F64)).sum(), x)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().amax()) > 0


def test_generalized_bures_wasserstein_names_a_size_mismatch_with_m():
    m = riemtorch.SPDGeneralizedBuresWasserstein(torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="do not match the metric matrix M of size 3 x 3"):
        m.dist(torch.eye(4, dtype=F64), torch.eye(4, dtype=F64))


def test_bad_input_raises_clear_errors():
    m = riemtorch.SPDAffineInvariant()
    x = spd((2,))
    with pytest.raises(ValueError, match="symmetric"):
        m.dist(x + torch.triu(torch.ones(5, 5, dtype=F64), 1), x)
    with pytest.raises(ValueError, match="positive definite"):
        m.dist(-x, x)
    with pytest.raises(TypeError):
        m.dist(x.to(torch.int64), x)
    with pytest.raises(ValueError, match="n, n"):
        m.dist(torch.ones(2, 3, 4, dtype=F64), x)
    with pytest.raises(ValueError, match="power"):
        riemtorch.SPDBuresWasserstein(power=-1.0)
    with pytest.raises(ValueError, match="cond"):
        m.random(n=3, cond=0.5)
    with pytest.raises(ValueError, match="finite"):
        m.random(n=3, cond=float("inf"))
    with pytest.raises(ValueError, match="1 x 1"):
        m.random(n=1, cond=10.0)
    # float32 cannot hold cond 1e8 (it returned matrices with negative eigenvalues)
    with pytest.raises(ValueError, match="float32"):
        m.random(4, n=5, cond=1e8, dtype=torch.float32)
    assert m.check_point(m.random(4, n=5, cond=1e6, dtype=torch.float32))[0]
    ok, reason = m.check_point(-x)
    assert not ok and "positive definite" in reason


def test_bures_wasserstein_transport_backward_is_exact_and_finite_at_identity():
    m = riemtorch.SPDBuresWasserstein()
    x, y = spd((2,), n=3, seed=17), spd((2,), n=3, seed=18)
    v = sym(torch.randn(2, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(5)))
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: m.transp(sym(a), sym(b), v), (x, y))
    eye = torch.eye(3, dtype=F64).expand(2, 3, 3).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.uncenter(v, eye).sum(), (eye,))
    assert all_finite(grad)
