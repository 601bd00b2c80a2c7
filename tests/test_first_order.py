"""The custom backward passes are first order: asking for a differentiable gradient
(``create_graph=True``, as a gradient penalty does) raises instead of returning a gradient that
autograd would treat as independent of the input, which made second derivatives silently
wrong."""

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
    "eigenbasis congruence (BW transport)": (
        spd_batch, lambda x: riemtorch.SPDBuresWasserstein().transp(x[0], x[1], x[2])),
    "differential of the power map": (
        spd_batch, lambda x: riemtorch.SPDLogEuclidean().logmap(x[0], x[1])),
    "Grassmann logarithm": (grassmann_pair, lambda p: riemtorch.Grassmann().logmap(p[0], p[1])),
    "Grassmann distance": (grassmann_pair, lambda p: riemtorch.Grassmann().dist(p[0], p[1])),
}


@pytest.mark.parametrize("make, fn", CASES.values(), ids=CASES.keys())
def test_second_derivatives_raise_and_first_derivatives_work(make, fn):
    x = make().requires_grad_(True)
    # the quadratic term makes the gradient itself differentiable, as in a gradient penalty
    loss = fn(x).square().sum() + x.square().sum()
    with pytest.raises(NotImplementedError, match="second derivatives are not supported"):
        torch.autograd.grad(loss, x, create_graph=True)
    # the same graph, differentiated once: the gradient is finite and nonzero beyond the
    # quadratic term
    grad, = torch.autograd.grad(fn(x).square().sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().amax() > 1e-6
