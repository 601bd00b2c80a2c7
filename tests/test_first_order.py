"""The custom backward passes are first order: a second derivative through one raises
``NotImplementedError`` (at once where the incoming gradient is a constant, else when the
gradient is differentiated), where ``once_differentiable`` returned gradients that autograd took
for independent of the input, so that second derivatives came out silently wrong. Second
derivatives that do not pass through them stay exact."""

import pytest
import torch

import riemtorch
from riemtorch import linalg as L
from riemtorch import nn as rnn
from riemtorch.nn import functional as F

F64 = torch.float64


def spd_batch():
    return riemtorch.SPDAffineInvariant().random(4, n=3, cond=5.0, dtype=F64,
                                                 generator=torch.Generator().manual_seed(0))


def grassmann_pair():
    g = torch.Generator().manual_seed(1)
    return torch.linalg.qr(torch.randn(2, 5, 2, dtype=F64, generator=g))[0]


# one public operation per custom autograd function
CASES = {
    "spectral function (LogEig)": (spd_batch, F.logeig),
    "fused affine-invariant batch norm": (spd_batch, lambda x: rnn.SPDBatchNorm(3, dtype=F64)(x)),
    "Karcher mean": (spd_batch, lambda x: riemtorch.SPDAffineInvariant().frechet_mean(x)),
    "Bures-Wasserstein barycenter": (
        spd_batch, lambda x: riemtorch.SPDBuresWasserstein().frechet_mean(x)),
    "Newton-Schulz square root": (spd_batch, lambda x: L.sqrtm_invsqrtm_newton_schulz(x)[0]),
    "Lyapunov solve": (spd_batch, lambda x: L.solve_lyapunov(x, x.flip(0))),
    "Sylvester solve": (spd_batch, lambda x: L.solve_sylvester(x[0], x[1], x[2])),
    "eigenbasis congruence (BW transport)": (
        spd_batch, lambda x: riemtorch.SPDBuresWasserstein().transp(x[0], x[1], x[2])),
    "differential of the power map": (
        spd_batch, lambda x: riemtorch.SPDLogEuclidean().logmap(x[0], x[1])),
    "Grassmann logarithm": (grassmann_pair, lambda p: riemtorch.Grassmann().logmap(p[0], p[1])),
    "Grassmann distance": (grassmann_pair, lambda p: riemtorch.Grassmann().dist(p[0], p[1])),
}


def second_derivative(loss, x):
    grad, = torch.autograd.grad(loss, x, create_graph=True)
    return torch.autograd.grad(grad.square().sum(), x)[0]


@pytest.mark.parametrize("make, fn", CASES.values(), ids=CASES.keys())
def test_second_derivatives_raise_and_first_derivatives_work(make, fn):
    x = make().requires_grad_(True)
    # the quadratic term makes the gradient differentiable in x even without the function;
    # a loss linear in the function's output hands its backward a constant gradient (which
    # raises at once), a quadratic one a differentiable gradient (which raises when the result
    # is differentiated): once_differentiable returned a gradient taken for independent of x
    for loss in (fn(x).sum() + x.square().sum(), fn(x).square().sum() + x.square().sum()):
        with pytest.raises(NotImplementedError, match="second derivatives are not supported"):
            second_derivative(loss, x)
    # differentiated once: the gradient is finite and nonzero
    grad, = torch.autograd.grad(fn(x).square().sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().amax() > 1e-6


def test_a_second_derivative_that_avoids_the_function_is_exact():
    # a penalty on the gradient of a linear head after LogEig: its second derivative does not
    # pass through LogEig's backward, and equals the one through a twice-differentiable logm
    g = torch.Generator().manual_seed(2)
    a = torch.randn(8, 5, 5, dtype=F64, generator=g)
    x = a @ a.mT + torch.eye(5, dtype=F64)
    w0 = torch.linalg.qr(torch.randn(5, 3, dtype=F64, generator=g))[0]
    c0 = torch.randn(9, 2, dtype=F64, generator=g)

    def reference_logm(s):
        lam, u = torch.linalg.eigh(s)
        return (u * lam.log().unsqueeze(-2)) @ u.mT

    def weight_gradient(logm):
        w, c = w0.clone().requires_grad_(True), c0.clone().requires_grad_(True)
        loss = (logm(w.T @ x @ w).flatten(-2) @ c).square().mean()
        _, grad_c = torch.autograd.grad(loss, [w, c], create_graph=True)
        (loss + grad_c.square().sum()).backward()
        return w.grad

    torch.testing.assert_close(weight_gradient(F.logeig), weight_gradient(reference_logm),
                               rtol=1e-8, atol=1e-10)
