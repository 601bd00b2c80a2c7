"""The Riemannian optimizers solve problems with known answers, staying on the manifold at
every step: extreme eigenvectors on the sphere, dominant eigenspaces on Stiefel and Grassmann
(Rayleigh quotient), the Fréchet mean of SPD matrices."""

import pytest
import torch

import riemtorch
from riemtorch.optim import RiemannianAdam, RiemannianSGD

DT = torch.float64


def _need(name):
    manifold = getattr(riemtorch, name, None)
    if manifold is None:
        pytest.skip(f"riemtorch has no {name}")
    return manifold


def _symmetric_with_spectrum(eigenvalues, seed):
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q = torch.linalg.qr(torch.randn(n, n, dtype=DT, generator=g))[0]
    return q @ torch.diag(torch.as_tensor(eigenvalues, dtype=DT)) @ q.T


def _minimise(params, loss_fn, opt, steps, scheduler=None, manifold=None):
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        for p in params:
            ok, reason = p.manifold.check_point(p.detach())
            assert ok, reason


def _sgd(ps, lr):
    return RiemannianSGD(ps, lr=lr, momentum=0.5), None


def _nesterov_expmap(ps, lr):
    return RiemannianSGD(ps, lr=lr, momentum=0.5, nesterov=True, retraction="expmap"), None


def _adam(ps, lr):
    # Adam's normalised steps need a decaying learning rate to settle; it reaches a looser
    # tolerance than SGD in the same number of steps
    opt = RiemannianAdam(ps, lr=lr, betas=(0.9, 0.9))
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, 0.95)


# (optimizer factory, learning rate, steps, tolerance)
CASES = [(_sgd, 0.1, 100, 1e-9), (_nesterov_expmap, 0.1, 100, 1e-9), (_adam, 0.2, 200, 1e-4)]


@pytest.mark.parametrize("make,lr,steps,tol", CASES)
def test_sphere_smallest_eigenvector(make, lr, steps, tol):
    eigenvalues = [0.5, 1.5, 2.0, 3.0, 4.0, 5.0]
    mats = [_symmetric_with_spectrum(eigenvalues, seed) for seed in range(2)]
    sphere = riemtorch.Sphere()
    g = torch.Generator().manual_seed(7)
    params = [riemtorch.ManifoldParameter(sphere.random(n=6, dtype=DT, generator=g), sphere)
              for _ in mats]
    opt, sched = make(params, lr)
    _minimise(params, lambda: sum(p @ a @ p for p, a in zip(params, mats)), opt, steps, sched)
    for p, a in zip(params, mats):
        v = torch.linalg.eigh(a)[1][:, 0]
        assert abs(abs(float(p.detach() @ v)) - 1) < tol
        assert abs(float(p.detach() @ a @ p.detach()) - 0.5) < tol


def _subspace_distance(x, v):
    """Spectral norm of the difference of the orthogonal projectors onto span(x), span(v)."""
    return float(torch.linalg.matrix_norm(x @ x.T - v @ v.T, ord=2))


def _rayleigh_problem(manifold, count=2, n=10, p=3, seed=0):
    eigenvalues = [10.0, 9.0, 8.0] + [4.0 - 0.3 * i for i in range(n - p)]
    mats = [_symmetric_with_spectrum(eigenvalues, seed + i) for i in range(count)]
    g = torch.Generator().manual_seed(seed + 100)
    starts = [torch.linalg.qr(torch.randn(n, p, dtype=DT, generator=g))[0] for _ in mats]
    params = [riemtorch.ManifoldParameter(x, manifold) for x in starts]
    return params, mats, lambda: sum(-(x * (a @ x)).sum() for x, a in zip(params, mats))


def _top_eigenspace_error(params, mats, p=3):
    return max(_subspace_distance(x.detach(), torch.linalg.eigh(a)[1][:, -p:])
               for x, a in zip(params, mats))


# maximising tr(X^T A X) with |A| = 10: SGD needs smaller steps than on the sphere
RAYLEIGH_CASES = [(_sgd, 0.02, 100, 1e-6), (_nesterov_expmap, 0.02, 100, 1e-6),
                  (_adam, 0.2, 200, 1e-4)]


@pytest.mark.parametrize("metric,retraction,case", [
    ("euclidean", "qr", 0), ("euclidean", "qr", 2), ("canonical", "cayley", 1),
    ("canonical", "cayley", 2), ("euclidean", "polar", 0), ("canonical", "exp", 1)])
def test_stiefel_rayleigh_quotient_finds_top_eigenspace(metric, retraction, case):
    make, lr, steps, tol = RAYLEIGH_CASES[case]
    stiefel = _need("Stiefel")(metric=metric, retraction=retraction)
    params, mats, loss = _rayleigh_problem(stiefel)
    opt, sched = make(params, lr)
    _minimise(params, loss, opt, steps, sched)
    assert _top_eigenspace_error(params, mats) < tol


@pytest.mark.parametrize("retraction,case", [("exp", 0), ("exp", 2), ("qr", 1), ("polar", 0)])
def test_grassmann_rayleigh_quotient_finds_top_eigenspace(retraction, case):
    make, lr, steps, tol = RAYLEIGH_CASES[case]
    grassmann = _need("Grassmann")(retraction=retraction)
    params, mats, loss = _rayleigh_problem(grassmann)
    opt, sched = make(params, lr)
    _minimise(params, loss, opt, steps, sched)
    assert _top_eigenspace_error(params, mats) < tol


def _spd_samples(count=8, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(count, n, n, dtype=DT, generator=g)
    return a @ a.transpose(-1, -2) / n + 0.3 * torch.eye(n, dtype=DT)


def _fit_mean(manifold, samples, opt_factory, steps):
    m = riemtorch.ManifoldParameter(torch.eye(samples.shape[-1], dtype=DT), manifold)
    opt = opt_factory([m])
    # half the mean squared distance: its Riemannian gradient is -mean Log_M(P_i), so SGD with
    # lr = 1 and the exponential map is the Karcher flow
    _minimise([m], lambda: 0.5 * manifold.dist2(m, samples).mean(), opt, steps)
    return m.detach()


def test_spd_affine_invariant_frechet_mean_by_optimisation():
    reference = pytest.importorskip("pyriemann.geometry.mean")
    manifold = _need("SPDAffineInvariant")()
    samples = _spd_samples()
    mean = _fit_mean(manifold, samples, lambda ps: RiemannianSGD(ps, lr=1.0, retraction="expmap"),
                     25)
    expected = torch.as_tensor(reference.mean_riemann(samples.numpy(), tol=1e-14))
    torch.testing.assert_close(mean, expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(mean, manifold.frechet_mean(samples), rtol=0, atol=1e-9)


def test_spd_bures_wasserstein_frechet_mean_with_momentum():
    reference = pytest.importorskip("pyriemann.geometry.mean")
    manifold = _need("SPDBuresWasserstein")()
    samples = _spd_samples(seed=2)
    mean = _fit_mean(manifold, samples, lambda ps: RiemannianSGD(ps, lr=0.7, momentum=0.2), 40)
    expected = torch.as_tensor(reference.mean_wasserstein(samples.numpy(), tol=1e-14))
    torch.testing.assert_close(mean, expected, rtol=0, atol=1e-8)


def test_spd_log_euclidean_frechet_mean_is_the_closed_form():
    manifold = _need("SPDLogEuclidean")()
    samples = _spd_samples(seed=1)
    mean = _fit_mean(manifold, samples, lambda ps: RiemannianSGD(ps, lr=1.0), 30)
    lam, vec = torch.linalg.eigh(samples)
    log_mean = (vec * lam.log()[..., None, :] @ vec.transpose(-1, -2)).mean(0)
    lam, vec = torch.linalg.eigh(log_mean)
    torch.testing.assert_close(mean, vec * lam.exp() @ vec.T, rtol=0, atol=1e-9)
