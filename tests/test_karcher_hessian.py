"""The Newton Hessian of the Karcher mean with its departure from the identity in float32:
error within its estimate, used only where a solve's tolerance allows, and no extra Newton
iteration for it."""

import pytest
import torch

import riemtorch
from riemtorch.linalg.symmetric import sym
from riemtorch.manifolds.spd import common, karcher
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
    mean = karcher.arithmetic_harmonic_start(xs, w)
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
    mixed = hessian.operator(grad, atol=float("inf"))
    assert mixed is not hessian
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
    mean = karcher.arithmetic_harmonic_start(xs, w)
    _, lam, bases = karcher.whitened_spectrum(xs, mean)
    kernel = newton_kernel(lam, lam.log())
    d = random_symmetric((4, 4), 10)
    u = bases.u
    expected = sum(w[i] * u[i] @ (kernel[i] * (u[i].T @ d @ u[i])) @ u[i].T for i in range(7))
    torch.testing.assert_close(hessian(d), expected, rtol=1e-12, atol=1e-14)


def test_solve_uses_float32_only_within_its_tolerance():
    xs = wishart(200, 10, 40, 11)
    w = common.uniform_weights(xs)
    hessian, grad = hessian_at_start(xs, w)
    bound = hessian.float32_error * float(torch.linalg.matrix_norm(grad))
    assert hessian.operator(grad, atol=0.5 * bound) is hessian
    assert hessian.operator(grad.float(), atol=10 * bound) is hessian
    atol = 2 * bound
    assert hessian.operator(grad, atol) is not hessian
    x = hessian.solve(grad, atol)
    # the residual under the exact product: the solve's plus the float32 part's
    assert float(torch.linalg.matrix_norm(hessian(x) - grad)) <= 2 * atol


def test_karcher_mean_of_wishart_samples_takes_one_newton_step(monkeypatch):
    # from the arithmetic-harmonic start one Newton step reaches 1e-8 on these samples (about
    # 1.5e-9); the float32 part of its solve must not cost a second decomposition
    xs = wishart(1000, 22, 100, 1)
    calls, operators = [], []
    original = karcher.whitened_spectrum
    monkeypatch.setattr(karcher, "whitened_spectrum",
                        lambda *args: calls.append(1) or original(*args))
    operator = NewtonHessian.operator

    def spy(self, b, atol):
        op = operator(self, b, atol)
        operators.append(op is not self)
        return op

    monkeypatch.setattr(NewtonHessian, "operator", spy)
    mean = riemtorch.SPDAffineInvariant().frechet_mean(xs, tol=1e-8)
    assert len(calls) == 2 and operators == [True]
    monkeypatch.undo()
    w = common.uniform_weights(xs)
    _, lam, bases = karcher.whitened_spectrum(xs, mean)
    assert float(karcher.karcher_gradient(lam, bases, w)[2]) <= 1e-8
