"""SPD metrics against independent references: pyRiemann and scipy formulas, float64."""

import warnings

import numpy as np
import pytest
import torch

import riemtorch

pyriemann = pytest.importorskip("pyriemann")
scipy_linalg = pytest.importorskip("scipy.linalg")
from pyriemann.geometry import distance as prd  # noqa: E402
from pyriemann.geometry import mean as prm  # noqa: E402
from pyriemann.geometry import tangentspace as prt  # noqa: E402

SIZES = [2, 5, 64]
RTOL = 1e-8


def spd_pair(n, seed, batch=3):
    g = torch.Generator().manual_seed(seed)
    m = riemtorch.SPDAffineInvariant()
    return (m.random(batch, n=n, cond=50.0, dtype=torch.float64, generator=g),
            m.random(batch, n=n, cond=50.0, dtype=torch.float64, generator=g))


def close(actual, expected, rtol=RTOL):
    expected = torch.as_tensor(np.asarray(expected), dtype=torch.float64)
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)


def per_pair(fn, x, y):
    return np.stack([fn(a, b) for a, b in zip(x.numpy(), y.numpy())])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name, reference", [
    ("SPDAffineInvariant", prd.distance_riemann),
    ("SPDLogEuclidean", prd.distance_logeuclid),
    ("SPDLogCholesky", prd.distance_logchol),
    ("SPDBuresWasserstein", prd.distance_wasserstein),
])
def test_distance_matches_pyriemann(name, reference, n):
    x, y = spd_pair(n, n)
    close(getattr(riemtorch, name)().dist(x, y), per_pair(reference, x, y))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name, log_ref, exp_ref", [
    ("SPDAffineInvariant", lambda y, x: prt.log_map_riemann(y, x, C12=True),
     lambda u, x: prt.exp_map_riemann(u, x, Cm12=True)),
    ("SPDLogEuclidean", prt.log_map_logeuclid, prt.exp_map_logeuclid),
    ("SPDLogCholesky", prt.log_map_logchol, prt.exp_map_logchol),
    ("SPDBuresWasserstein", prt.log_map_wasserstein, prt.exp_map_wasserstein),
])
def test_exp_and_log_match_pyriemann(name, log_ref, exp_ref, n):
    x, y = spd_pair(n, 100 + n)
    m = getattr(riemtorch, name)()
    u = m.logmap(x, y)
    close(u, per_pair(lambda a, b: log_ref(b, a), x, y))
    v = 0.1 * u / m.norm(x, u, keepdim=True)
    close(m.expmap(x, v), per_pair(lambda a, b: exp_ref(b, a), x, v))


@pytest.mark.parametrize("n", [2, 5, 22, 47, 64])
@pytest.mark.parametrize("name, reference", [
    ("SPDAffineInvariant", lambda x, w: prm.mean_riemann(x, tol=1e-13, maxiter=200,
                                                         sample_weight=w)),
    ("SPDLogEuclidean", lambda x, w: prm.mean_logeuclid(x, sample_weight=w)),
    ("SPDLogCholesky", lambda x, w: prm.mean_logchol(x, sample_weight=w)),
    ("SPDBuresWasserstein", lambda x, w: prm.mean_wasserstein(x, tol=1e-13, maxiter=200,
                                                              sample_weight=w)),
])
def test_weighted_mean_matches_pyriemann(name, reference, n):
    g = torch.Generator().manual_seed(n)
    x = riemtorch.SPDAffineInvariant().random(12, n=n, cond=20.0, dtype=torch.float64,
                                                generator=g)
    w = torch.rand(12, dtype=torch.float64, generator=g) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = reference(x.numpy(), (w / w.sum()).numpy())
    close(getattr(riemtorch, name)().frechet_mean(x, weights=w, tol=1e-12), expected)


def _sqrtm(a):
    lam, u = np.linalg.eigh(a)
    return (u * np.sqrt(lam)) @ u.T


@pytest.mark.parametrize("n", SIZES)
def test_generalized_bures_wasserstein_matches_closed_form(n):
    x, y = spd_pair(n, 200 + n)
    g = torch.Generator().manual_seed(n)
    metric = riemtorch.SPDAffineInvariant().random(n=n, cond=10.0, dtype=torch.float64,
                                                   generator=g)
    gbw = riemtorch.SPDGeneralizedBuresWasserstein(metric)
    mi = np.linalg.inv(metric.numpy())

    def dist(p, q):
        rp = _sqrtm(p)
        cross = np.trace(_sqrtm(rp @ mi @ q @ mi @ rp))
        return np.sqrt(max(np.trace(mi @ p) + np.trace(mi @ q) - 2 * cross, 0.0))

    close(gbw.dist(x, y), per_pair(dist, x, y))
    ident = riemtorch.SPDGeneralizedBuresWasserstein(torch.eye(n, dtype=torch.float64))
    close(ident.logmap(x, y), per_pair(lambda a, b: prt.log_map_wasserstein(b, a), x, y))


@pytest.mark.parametrize("n", [2, 5])
def test_affine_invariant_transport_matches_scipy_formula(n):
    x, y = spd_pair(n, 300 + n)
    v = riemtorch.SPDAffineInvariant().proju(x, torch.randn(x.shape, dtype=torch.float64))

    def transport(p, q, w):
        e = scipy_linalg.sqrtm(q @ np.linalg.inv(p)).real
        return e @ w @ e.T

    expected = np.stack([transport(*t) for t in zip(x.numpy(), y.numpy(), v.numpy())])
    close(riemtorch.SPDAffineInvariant().transp(x, y, v), expected, rtol=1e-7)


@pytest.mark.parametrize("n", [2, 5])
@pytest.mark.parametrize("name, reference", [
    ("SPDAffineInvariant", prt.transport_riemann),
    ("SPDLogEuclidean", prt.transport_logeuclid),
    ("SPDLogCholesky", prt.transport_logchol),
])
def test_parallel_transport_matches_pyriemann(name, reference, n):
    # pyRiemann's transport_*(X, A, B) moves X from the tangent space at A to that at B; its
    # square roots and Daleckii-Krein differentials keep about 1e-7 at condition 50, as above
    x, y = spd_pair(n, 500 + n)
    m = getattr(riemtorch, name)()
    v = m.logmap(x, m.random(3, n=n, cond=50.0, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(n)))
    expected = np.stack([reference(w, a, b) for a, b, w in zip(x.numpy(), y.numpy(), v.numpy())])
    close(m.transp(x, y, v), expected, rtol=1e-7)


@pytest.mark.parametrize("power", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("name", ["SPDAffineInvariant", "SPDLogCholesky"])
def test_parallel_transport_of_the_geodesic_velocity(name, power):
    # parallel transport along the geodesic from x to y takes its initial velocity Log_x y to
    # its final velocity, -Log_y x; the power deformation is a pullback metric, whose parallel
    # transport is the pulled-back one, and power 0 is the log-Euclidean metric
    x, y = spd_pair(5, 600)
    m = getattr(riemtorch, name)(power)
    expected = -m.logmap(y, x)
    close(m.transp(x, y, m.logmap(x, y)), expected, rtol=1e-8)


@pytest.mark.parametrize("n", [2, 5])
def test_log_euclidean_log_is_the_differential_of_expm(n):
    x, y = spd_pair(n, 400 + n)

    def log_map(p, q):
        lp = scipy_linalg.logm(p).real
        return scipy_linalg.expm_frechet(lp, scipy_linalg.logm(q).real - lp, compute_expm=False)

    close(riemtorch.SPDLogEuclidean().logmap(x, y), per_pair(log_map, x, y), rtol=1e-7)
