"""The Newton Hessian of the Karcher mean with its departure from the identity in float32:
error within its estimate, solves that reach their tolerance under the exact product (alone
where the estimate allows, refined in float64 where not), and no extra Newton iteration."""

import pytest
import torch

import riemtorch
from riemtorch.linalg.symmetric import sym
from riemtorch.manifolds.spd import common, karcher, newton_hessian
from riemtorch.manifolds.spd.newton_hessian import NewtonHessian, newton_kernel

F64 = torch.float64


def wishart(count, n, samples, seed, channels=()):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(count, *channels, n, samples, dtype=F64, generator=g)
    return z @ z.transpose(-1, -2) / samples


def spread(count, n, seed):
    g = torch.Generator().manual_seed(seed)
    return riemtorch.SPDAffineInvariant().random(count, n=n, cond=1e3, dtype=F64, generator=g)


def weights(xs, seed, uniform):
    if uniform:
        return common.uniform_weights(xs)
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(xs.shape[:-2], dtype=F64, generator=g) + 0.1
    return (w / w.sum(0))[..., None, None]


def hessian_at_start(xs, w):
    mean = karcher.arithmetic_harmonic_start(xs, w)[0]
    frame, lam, bases = karcher.whitened_spectrum(xs, mean)
    loglam, grad, _ = karcher.karcher_gradient(lam, bases, w)
    return NewtonHessian(newton_kernel(lam, loglam), bases, w), grad


def random_symmetric(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return sym(torch.randn(shape, dtype=F64, generator=g))


CASES = {
    "wishart 1000 x 22": lambda: wishart(1000, 22, 100, 1),
    "spread 40 x 8": lambda: spread(40, 8, 2),
    "channels 30 x 3 x 6": lambda: wishart(30, 6, 12, 3, channels=(3,)),
}


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_departure_error_is_within_its_estimate(case, uniform):
    xs = CASES[case]()
    w = weights(xs, 4, uniform)
    hessian, grad = hessian_at_start(xs, w)
    mixed = hessian.float32_product()
    for seed, d in enumerate([grad, random_symmetric(grad.shape, 5),
                              random_symmetric(grad.shape, 6)]):
        exact, low = hessian(d), mixed(d)
        assert low.dtype == F64
        error = torch.linalg.matrix_norm(low - exact)
        assert bool((error <= hessian.float32_error * torch.linalg.matrix_norm(d)).all())
        # it is a float32 computation: not exact
        assert float(error.amax()) > 0


def test_exact_product_is_the_weighted_kernel_sandwich():
    # H[D] = sum_i w_i U_i (K_i o (U_i^T D U_i)) U_i^T, summed sample by sample
    xs = spread(7, 4, 8)
    w = weights(xs, 9, uniform=False)
    hessian, _ = hessian_at_start(xs, w)
    mean = karcher.arithmetic_harmonic_start(xs, w)[0]
    _, lam, bases = karcher.whitened_spectrum(xs, mean)
    kernel = newton_kernel(lam, lam.log())
    d = random_symmetric((4, 4), 10)
    u = bases.u
    expected = sum(w[i] * u[i] @ (kernel[i] * (u[i].T @ d @ u[i])) @ u[i].T for i in range(7))
    torch.testing.assert_close(hessian(d), expected, rtol=1e-12, atol=1e-14)


def counting(monkeypatch):
    """Counts of exact (float64) and float32 products during a solve."""
    counts = {"exact": 0, "float32": 0}
    exact, float32 = NewtonHessian.__call__, NewtonHessian.float32_product

    def exact_product(self, d):
        counts["exact"] += 1
        return exact(self, d)

    def float32_product(self):
        product = float32(self)

        def counted(d):
            counts["float32"] += 1
            return product(d)

        return counted

    monkeypatch.setattr(NewtonHessian, "__call__", exact_product)
    monkeypatch.setattr(NewtonHessian, "float32_product", float32_product)
    return counts


def exact_residual(hessian, x, b):
    return float(torch.linalg.matrix_norm(NewtonHessian.__call__(hessian, x) - b))


def test_solve_in_float32_alone_within_the_estimate(monkeypatch):
    xs = wishart(200, 10, 40, 11)
    hessian, grad = hessian_at_start(xs, common.uniform_weights(xs))
    atol = 2 * hessian.float32_error * float(torch.linalg.matrix_norm(grad))
    counts = counting(monkeypatch)
    x = hessian.solve(grad, atol)
    assert counts["exact"] == 0 and counts["float32"] > 0
    monkeypatch.undo()
    # the residual under the exact product: the solve's plus the float32 part's
    assert exact_residual(hessian, x, grad) <= 2 * atol


def test_solve_below_the_estimate_refines_in_float64(monkeypatch):
    xs = wishart(200, 10, 40, 11)
    hessian, grad = hessian_at_start(xs, common.uniform_weights(xs))
    atol = 1e-12 * float(torch.linalg.matrix_norm(grad))
    assert hessian.float32_error * float(torch.linalg.matrix_norm(grad)) > 100 * atol
    counts = counting(monkeypatch)
    x = hessian.solve(grad, atol)
    refined = dict(counts)
    counts.update(exact=0, float32=0)
    reference = newton_hessian.conjugate_gradient(hessian, grad, atol)
    monkeypatch.undo()
    # one exact residual and about as many float32 products as a float64 solve takes
    assert refined["exact"] == 1 and refined["float32"] <= counts["exact"] + 2
    assert exact_residual(hessian, x, grad) <= 1.5 * atol
    torch.testing.assert_close(x, reference, rtol=0, atol=1e-10 * float(grad.norm()))


@pytest.mark.parametrize("reason", ["float32 input", "estimate too large"])
def test_solve_in_float64_alone(monkeypatch, reason):
    xs = wishart(50, 6, 20, 12)
    if reason == "float32 input":
        xs = xs.float()
    else:
        monkeypatch.setattr(newton_hessian, "MAX_FLOAT32_ERROR", 0.0)
    hessian, grad = hessian_at_start(xs, common.uniform_weights(xs))
    counts = counting(monkeypatch)
    hessian.solve(grad, 1e-6 * float(torch.linalg.matrix_norm(grad)))
    assert counts["float32"] == 0 and counts["exact"] > 0


def test_karcher_mean_of_wishart_samples_takes_one_newton_step(monkeypatch):
    # from the arithmetic-harmonic start one Newton step reaches 1e-8 on these samples (about
    # 1.5e-9); the float32 part of its solve must not cost a second decomposition
    xs = wishart(1000, 22, 100, 1)
    calls = []
    original = karcher._whitened  # every decomposition of the samples
    monkeypatch.setattr(karcher, "_whitened", lambda *args: calls.append(1) or original(*args))
    counts = counting(monkeypatch)
    mean = riemtorch.SPDAffineInvariant().frechet_mean(xs, tol=1e-8)
    assert len(calls) == 2 and counts["exact"] == 0 and counts["float32"] > 0
    monkeypatch.undo()
    w = common.uniform_weights(xs)
    _, lam, bases = karcher.whitened_spectrum(xs, mean)
    assert float(karcher.karcher_gradient(lam, bases, w)[2]) <= 1e-8


def test_start_is_the_geometric_mean_of_arithmetic_and_harmonic_with_its_factor():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    xs = spread(9, 5, 21)
    w = weights(xs, 22, uniform=False)
    mean, factor, inv_factor = karcher.arithmetic_harmonic_start(xs, w)
    a = (w * xs).sum(0).numpy()
    h = torch.linalg.inv((w * torch.linalg.inv(xs)).sum(0)).numpy()
    root = scipy_linalg.sqrtm(a).real
    inv_root = torch.linalg.inv(torch.from_numpy(root)).numpy()
    expected = root @ scipy_linalg.sqrtm(inv_root @ h @ inv_root).real @ root
    torch.testing.assert_close(mean, torch.from_numpy(expected), rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(factor @ factor.mT, mean, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(inv_factor @ factor, torch.eye(5, dtype=F64), rtol=0, atol=1e-12)


def test_mean_reached_at_the_start_comes_with_its_symmetric_frame():
    # two commuting samples with equal weights: A # H is their mean, no Newton step is taken,
    # and the spectra returned are those of M^-1/2 X_i M^-1/2, not of the start's factor
    xs = torch.stack([torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=F64)),
                      torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=F64))])
    q = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(4)))[0]
    xs = q @ xs @ q.T
    w = common.uniform_weights(xs)
    mean, frame, lam, bases, top = karcher.karcher_iterations(xs, w, 1e-10, 5)
    assert top <= 1e-10
    torch.testing.assert_close(mean, q @ torch.diag(torch.tensor([2.0, 2.0, 1.5], dtype=F64)) @ q.T)
    torch.testing.assert_close(frame.root, frame.root.mT, rtol=0, atol=1e-14)
    torch.testing.assert_close(frame.root @ frame.root, mean)
    whitened = frame.inv_root @ xs @ frame.inv_root
    torch.testing.assert_close(bases.u @ torch.diag_embed(lam) @ bases.u.mT, whitened)
