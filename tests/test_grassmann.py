"""Grassmann-specific tests: pymanopt, SVD and mpmath references, basis independence, gyro
structure, angles near pi / 2."""

import numpy as np
import pytest
import torch

import riemtorch
from riemtorch import Grassmann

F64 = torch.float64
N, P = 7, 3


def points(m, batch=5, seed=0, dtype=F64, n=N, p=P):
    return m.random(batch, n=n, p=p, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def tangent(m, x, norm, seed=1):
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(seed))
    u = m.proju(x, g)
    return u / m.norm(x, u, keepdim=True) * norm


def projector(x):
    return x @ x.transpose(-1, -2)


def rotation(batch, p, seed):
    g = torch.randn(batch, p, p, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return torch.linalg.qr(g)[0]


def bendokat_log(x, y):
    """Literal SVD algorithm of Bendokat, Zimmermann & Absil (handbook, Alg. 5.3)."""
    q, _, rt = np.linalg.svd(y.T @ x)
    y_star = y @ (q @ rt)
    qh, s, rht = np.linalg.svd(y_star - x @ (x.T @ y_star), full_matrices=False)
    return (qh * np.arcsin(np.clip(s, 0, 1))) @ rht


def edelman_transport(x, delta, v):
    """Parallel transport along t -> Exp_x(t delta), Edelman et al. (1998) eq. (2.68)."""
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    return (-x @ vt.T * np.sin(s) @ u.T + u * np.cos(s) @ u.T + np.eye(len(x)) - u @ u.T) @ v


@pytest.fixture
def pymanopt_grassmann():
    manifolds = pytest.importorskip("pymanopt.manifolds")
    return manifolds.Grassmann(N, P)


def test_exp_log_dist_retraction_match_pymanopt(pymanopt_grassmann):
    ref = pymanopt_grassmann
    m = Grassmann(retraction="polar")
    x, y = points(m), points(m, seed=7)
    u = tangent(m, x, 1.1)
    e, log, d, r = m.expmap(x, u), m.logmap(x, y), m.dist(x, y), m.retr(x, u)
    for i in range(x.shape[0]):
        xi, yi, ui = x[i].numpy(), y[i].numpy(), u[i].numpy()
        # pymanopt re-orthonormalises exp by QR: another basis of the same subspace.
        np.testing.assert_allclose(projector(e[i]).numpy(), projector(
            torch.from_numpy(ref.exp(xi, ui))).numpy(), atol=1e-10, rtol=0)
        np.testing.assert_allclose(log[i].numpy(), ref.log(xi, yi), atol=1e-9, rtol=0)
        np.testing.assert_allclose(float(d[i]), ref.dist(xi, yi), atol=1e-8, rtol=0)
        np.testing.assert_allclose(r[i].numpy(), ref.retraction(xi, ui), atol=1e-10, rtol=0)


def test_log_matches_the_svd_algorithm_and_exp_returns_the_aligned_basis():
    m = Grassmann()
    x, y = points(m), points(m, seed=3)
    log = m.logmap(x, y)
    for i in range(x.shape[0]):
        np.testing.assert_allclose(log[i].numpy(), bendokat_log(x[i].numpy(), y[i].numpy()),
                                   atol=1e-10, rtol=0)
    end = m.expmap(x, log)
    torch.testing.assert_close(projector(end), projector(y), atol=1e-10, rtol=0)
    xe = x.transpose(-1, -2) @ end
    torch.testing.assert_close(xe, xe.transpose(-1, -2), atol=1e-12, rtol=0)
    assert bool((torch.linalg.eigvalsh(xe) > 0).all())


def test_log_dist_transport_do_not_depend_on_the_basis():
    m = Grassmann()
    x, y = points(m), points(m, seed=3)
    v = tangent(m, x, 1.0)
    o_x, o_y = rotation(5, P, 11), rotation(5, P, 12)
    torch.testing.assert_close(m.logmap(x @ o_x, y @ o_y), m.logmap(x, y) @ o_x, atol=1e-10,
                               rtol=0)
    torch.testing.assert_close(m.dist(x @ o_x, y @ o_y), m.dist(x, y), atol=1e-10, rtol=0)
    torch.testing.assert_close(m.transp(x, y @ o_y, v), m.transp(x, y, v) @ o_y, atol=1e-10,
                               rtol=0)


def test_parallel_transport_matches_edelman_and_reverses_the_log():
    m = Grassmann()
    x, y = points(m), points(m, seed=3)
    v = tangent(m, x, 1.0)
    moved = m.transp(x, y, v)
    delta = m.logmap(x, y)
    y_star = m.expmap(x, delta)
    for i in range(x.shape[0]):
        expected = edelman_transport(x[i].numpy(), delta[i].numpy(), v[i].numpy())
        expected = expected @ (y_star[i].T @ y[i]).numpy()
        np.testing.assert_allclose(moved[i].numpy(), expected, atol=1e-10, rtol=0)
    # The velocity of the geodesic is parallel: it arrives as -Log_y(x).
    torch.testing.assert_close(m.transp(x, y, delta), -m.logmap(y, x), atol=1e-10, rtol=0)


def test_small_angles_keep_full_relative_precision():
    m = Grassmann()
    x = points(m)
    u = tangent(m, x, 1e-9)
    torch.testing.assert_close(m.dist(x, m.expmap(x, u)), m.norm(x, u), atol=0, rtol=1e-6)
    assert float(m.dist(x, x).max()) < 1e-14


def test_gradients_are_finite_at_coincident_points_and_pass_gradcheck():
    m = Grassmann()
    x = points(m, batch=2, n=5, p=2)
    y = m.expmap(x, tangent(m, x, 0.8))
    z = x.clone().requires_grad_(True)
    m.dist2(x, z).sum().backward()
    assert bool(torch.isfinite(z.grad).all()) and float(z.grad.abs().max()) < 1e-12
    e = m.origin(2, n=5, p=2, dtype=F64)
    z = e.clone().requires_grad_(True)
    m.dist(e, z).sum().backward()
    assert bool(torch.isfinite(z.grad).all())
    z = x.clone().requires_grad_(True)
    m.logmap(x, z).square().sum().backward()
    assert bool(torch.isfinite(z.grad).all())
    w = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(5))
    yy = y.clone().requires_grad_(True)
    v = tangent(m, x, 0.5, seed=9).requires_grad_(True)
    torch.autograd.gradcheck(lambda a: m.dist2(x, a), (yy,))
    torch.autograd.gradcheck(lambda a: (m.logmap(x, a) * w).sum(), (yy,))
    torch.autograd.gradcheck(lambda a: m.expmap(x, a), (v,))
    torch.autograd.gradcheck(lambda a, b: m.gyroadd(a, b), (yy, x.clone().requires_grad_(True)))


def test_gyro_identity_inverse_and_scaling_of_distance():
    m = Grassmann()
    u = points(m)
    e = m.origin(5, n=N, p=P, dtype=F64)
    # Any basis: the same subspace as the origin; the basis aligned with the origin (1 * u):
    # exactly the origin's basis.
    torch.testing.assert_close(projector(m.gyroadd(m.gyroinv(u), u)), projector(e), atol=1e-10,
                               rtol=0)
    aligned = m.gyroscalarmul(1.0, u)
    torch.testing.assert_close(projector(aligned), projector(u), atol=1e-10, rtol=0)
    torch.testing.assert_close(m.gyroadd(m.gyroinv(aligned), aligned), e, atol=1e-10, rtol=0)
    d = m.dist(e, u)
    for t in (0.3, -0.5, 0.9, -1.0):
        # Within the injectivity radius: every principal angle times |t| below pi/2.
        torch.testing.assert_close(m.dist(e, m.gyroscalarmul(t, u)), abs(t) * d, atol=1e-10,
                                   rtol=1e-8)
    t = torch.tensor([0.1, 0.2, -0.3, 0.4, 0.5], dtype=F64)
    torch.testing.assert_close(m.dist(e, m.gyroscalarmul(t, u)), t.abs() * d, atol=1e-10,
                               rtol=1e-8)


def test_gyroadd_is_the_matrix_exponential_of_omega():
    m = Grassmann()
    v, u = points(m), points(m, seed=4)
    e = m.origin(5, n=N, p=P, dtype=F64)
    b = m.logmap(e, v)[..., P:, :]
    omega = torch.zeros(5, N, N, dtype=F64)
    omega[:, P:, :P] = b
    omega[:, :P, P:] = -b.transpose(-1, -2)
    torch.testing.assert_close(m.gyroadd(v, u), torch.linalg.matrix_exp(omega) @ u, atol=1e-10,
                               rtol=0)
    # The gyration is an orthogonal map of R^n: it keeps the inner products of bases.
    a, c = points(m, seed=5), points(m, seed=6)
    g1, g2 = m.gyration(v, u, a), m.gyration(v, u, c)
    torch.testing.assert_close(g1.transpose(-1, -2) @ g2, a.transpose(-1, -2) @ c, atol=1e-10,
                               rtol=0)


def test_frechet_mean_is_batched():
    m = Grassmann()
    center = points(m, batch=3)
    x = m.expmap(center, tangent(m, center.expand(6, 3, N, P), 0.4))
    mean = m.frechet_mean(x)
    assert mean.shape == (3, N, P)
    for j in range(3):
        torch.testing.assert_close(mean[j], m.frechet_mean(x[:, j]), atol=1e-9, rtol=0)
    grad = m.logmap(mean, x).mean(0)
    assert float(grad.abs().max()) < 1e-9


def test_float32_round_trip_and_gyro():
    m = Grassmann()
    x, y = points(m, dtype=torch.float32), points(m, seed=2, dtype=torch.float32)
    u = m.logmap(x, y)
    assert u.dtype == torch.float32
    torch.testing.assert_close(projector(m.expmap(x, u)), projector(y), atol=1e-4, rtol=0)
    e = m.origin(5, n=N, p=P, dtype=torch.float32)
    torch.testing.assert_close(projector(m.gyroadd(m.gyroinv(x), x)), projector(e), atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(m.dist(e, m.gyroscalarmul(0.5, x)), 0.5 * m.dist(e, x),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["qr", "polar", "cayley"])
def test_retractions_are_first_order(kind):
    m = Grassmann(retraction=kind)
    x = points(m)
    u = tangent(m, x, 1.0)
    errs = []
    for t in (1e-2, 1e-3):
        r = m.retr(x, t * u)
        assert m.check_point(r)[0]
        errs.append(float((projector(r) - projector(m.expmap(x, t * u))).abs().max()))
    assert errs[1] < 0.02 * errs[0]


def test_bad_input_raises():
    with pytest.raises(ValueError, match="retraction"):
        Grassmann(retraction="svd")
    with pytest.raises(TypeError):
        Grassmann().random(n=4.0, p=2)
    m = Grassmann()
    x = points(m)
    ok, reason = m.check_vector(x, x)
    assert not ok and "horizontal" in reason


def pair_with_angles(angles, n=N, seed=0):
    """Bases ``x``, ``y`` of shape ``(n, p)`` whose principal angles are ``angles``."""
    p = len(angles)
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))[0]
    r = torch.linalg.qr(torch.randn(p, p, dtype=F64, generator=g))[0]
    t = torch.tensor(angles, dtype=F64)
    return q[:, :p], (q[:, :p] * t.cos() + q[:, p:2 * p] * t.sin()) @ r


def mp_log_and_dist2(x, y):
    """``Log_x(y)`` and ``d(x, y)^2`` of float bases ``(n, p)`` in 50-digit arithmetic: both bases
    orthonormalised, then Edelman et al.'s ``atan`` of the singular values of ``P M^-1``."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(50):
        def polar(a):
            u, _, v = mpmath.svd_r(mpmath.matrix(a.tolist()))
            return u * v

        xm, ym = polar(x.double()), polar(y.double())
        m = xm.T * ym
        u, s, v = mpmath.svd_r((ym - xm * m) * mpmath.inverse(m))
        angles = [mpmath.atan(t) for t in s]
        log = u * mpmath.diag(angles) * v
        return (torch.tensor([[float(e) for e in row] for row in log.tolist()], dtype=F64),
                float(mpmath.fsum(a ** 2 for a in angles)))


def unit_circle_pair(c, dtype=F64):
    """``x = e_1`` and ``y = (c, s, 0, 0)`` at the angle ``atan2(s, c)``, ``s = sqrt(1 - c^2)``,
    with the unit tangent ``xi = (-s, c, 0, 0)`` at ``y`` that increases the angle."""
    s = (1 - c * c) ** 0.5
    x = torch.eye(4, 1, dtype=dtype)
    y = torch.tensor([[c], [s], [0.0], [0.0]], dtype=dtype)
    xi = torch.tensor([[-s], [c], [0.0], [0.0]], dtype=F64)
    return x, y, xi


def test_log_transport_and_gyro_near_a_right_angle_match_the_closed_form():
    # Log_x(y) = atan2(s, c) e_2. cos^2 taken as 1 - sin^2 is known only to eps: 4e-5 relative
    # error at c = 1e-6, inf / NaN from c = 1e-9 on.
    m = Grassmann()
    for c in (1e-3, 1e-6, 1e-7, 1e-8, 1e-9, 1e-12, 0.0):
        x, y, _ = unit_circle_pair(c)
        exact = np.arctan2((1 - c * c) ** 0.5, c)
        log = m.logmap(x, y)
        assert float(log[0, 0]) == 0.0 and float(log[2:].abs().max()) == 0.0
        np.testing.assert_allclose(float(log[1, 0]), exact, rtol=1e-15, atol=0)
        np.testing.assert_allclose(float(m.dist(x, y)), exact, rtol=1e-15, atol=0)
    x, y, _ = unit_circle_pair(1e-9)
    e3 = torch.eye(4, dtype=F64)[:, 2:3]
    torch.testing.assert_close(m.transp(x, y, e3), e3, atol=1e-15, rtol=0)
    torch.testing.assert_close(m.gyroinv(y), torch.tensor([[1e-9], [-1.0], [0.0], [0.0]],
                                                          dtype=F64), atol=1e-15, rtol=0)
    # float32 (with cos^2 = 1 - sin^2: 1.6075 instead of 1.5698 at c = 1e-3)
    for c in (1e-2, 1e-3, 3e-4):
        x, y, _ = unit_circle_pair(c, torch.float32)
        exact = np.arctan2(float(y[1, 0]), float(y[0, 0]))
        np.testing.assert_allclose(float(m.logmap(x, y)[1, 0]), exact, rtol=2.5e-7, atol=0)


@pytest.mark.parametrize("angles, rtol, rtol32", [
    ((1e-9, 0.7, np.pi / 2 - 1e-9), 1e-14, 1e-6),
    # two angles close to pi / 2: the logarithm's own condition number is 1 / (c_i + c_j), and
    # M = x^T y formed in float32 is off by 6e-8 against c_i + c_j = 3e-6
    ((0.3, np.pi / 2 - 1e-6, np.pi / 2 - 2e-6), 1e-9, 5e-3),
])
def test_log_and_dist_match_mpmath_with_angles_near_a_right_angle(angles, rtol, rtol32):
    m = Grassmann()
    for seed in range(2):
        x, y = pair_with_angles(angles, seed=seed)
        log, d2 = mp_log_and_dist2(x, y)
        got = m.logmap(x, y)
        assert float((got - log).abs().max()) <= rtol * float(log.norm())
        np.testing.assert_allclose(float(m.dist2(x, y)), d2, rtol=1e-14, atol=0)
    x, y = x.float(), y.float()
    log, d2 = mp_log_and_dist2(x, y)
    assert float((m.logmap(x, y).double() - log).abs().max()) <= rtol32 * float(log.norm())
    np.testing.assert_allclose(float(m.dist2(x, y)), d2, rtol=1e-6, atol=0)


def test_gradients_near_a_right_angle_are_finite_and_exact():
    # Along the unit tangent xi at y, the angle grows at unit speed: d/dt dist = 1 and
    # d/dt Log = e_2. Through cos^2 = 1 - sin^2 both are NaN from c = 1e-9 (float64) and from
    # c = 1e-4 (float32) on.
    m = Grassmann()
    for dtype, tol in ((F64, 1e-14), (torch.float32, 3e-7)):
        for c in (1e-2, 1e-4, 1e-6, 1e-9):
            x, y, xi = unit_circle_pair(c, dtype)
            y.requires_grad_(True)
            (g_dist,) = torch.autograd.grad(m.dist(x, y), y)
            (g_log,) = torch.autograd.grad(m.logmap(x, y)[1, 0], y)
            for g in (g_dist, g_log):
                assert abs(float((g.double() * xi).sum()) - 1.0) <= tol
    w = torch.randn(N, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    for angles in ((0.2, np.pi / 2 - 1e-3, np.pi / 2 - 2e-3), (1e-4, 2e-4, 1.0), (0.5, 0.5, 0.9)):
        x, y = pair_with_angles(angles)
        yy = y.clone().requires_grad_(True)
        torch.autograd.gradcheck(lambda a: (m.logmap(x, a) * w).sum(), (yy,))
        torch.autograd.gradcheck(lambda a: m.dist2(x, a), (yy,))


def test_log_gradient_at_small_angles_matches_the_closed_form():
    # d/dt Log = e_2 along xi. Through f'(s) of f(s) = asin(sqrt s) / sqrt(s (1 - s)) with its
    # Taylor series cut after s^2 below s = 1e-3, it is off by 3e-12 just below s = 1e-3.
    m = Grassmann()
    for s2 in (5e-4, 9e-4, 9.99e-4, 1.01e-3, 1e-2, 0.3):
        x, y, xi = unit_circle_pair((1 - s2) ** 0.5)
        y.requires_grad_(True)
        (g,) = torch.autograd.grad(m.logmap(x, y)[1, 0], y)
        assert abs(float((g * xi).sum()) - 1.0) <= 1e-14


def test_theta_over_sine_and_its_slope_match_mpmath():
    # The logarithm's backward uses h(c) = acos(c) / sqrt(1 - c^2) and h'(c); above c = 1 (input
    # off the manifold) the analytic continuation acosh(c) / sqrt(c^2 - 1).
    mpmath = pytest.importorskip("mpmath")
    from riemtorch.manifolds.spectral_funcs import ACOS_OVER_SIN

    below = [1 - 10.0 ** -k for k in np.arange(0.5, 15.5, 0.5)] + list(np.logspace(-16, -0.1, 40))
    above = [1 + 10.0 ** -k for k in np.arange(0.5, 15.5, 0.5)]
    c = torch.tensor(below + above, dtype=F64)
    with mpmath.workdps(40):
        def h(t):
            t = mpmath.mpf(float(t))
            if t < 1:
                theta = mpmath.acos(t)
                sin = mpmath.sin(theta)
                return theta / sin, (theta * t - sin) / sin ** 3
            phi = mpmath.acosh(t)
            sinh = mpmath.sinh(phi)
            return phi / sinh, (sinh - phi * t) / sinh ** 3

        ref = torch.tensor([[float(v) for v in h(t)] for t in c], dtype=F64)
    torch.testing.assert_close(ACOS_OVER_SIN.f(c), ref[:, 0], rtol=1e-15, atol=0)
    torch.testing.assert_close(ACOS_OVER_SIN.f_prime(c), ref[:, 1], rtol=5e-14, atol=0)


def test_non_finite_input_raises_or_stays_in_its_sample():
    m = Grassmann()
    x = points(m, batch=2)
    y = x.clone()
    y[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="Grassmann.logmap: y contains NaN"):
        m.logmap(x, y)
    with riemtorch.config.override(validate=False):
        assert bool(m.logmap(x, y)[0].isnan().all()) and bool(m.logmap(x, y)[1].isfinite().all())
        assert bool(m.dist(x, y)[0].isnan()) and bool(m.dist(x, y)[1].isfinite())
