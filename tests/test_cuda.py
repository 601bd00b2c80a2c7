"""The same values on a CUDA device as on the CPU (skipped without one).

Each check computes on the GPU and compares with the CPU result of the same input: matrix
functions, the Newton-Schulz square roots against eigh, SPD batch norm outputs and gradients,
the Lorentz and Poincaré maps, and an optimizer step.
"""

import pytest
import torch

import riemtorch
from riemtorch import linalg as L
from riemtorch.linalg.batched import eigh as batched_eigh

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA = torch.device("cuda")


def _spd(*batch, n=6, cond=100.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return riemtorch.SPDAffineInvariant().random(*batch, n=n, cond=cond, dtype=dtype, generator=g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_functions_match_cpu(dtype):
    x = _spd(16, dtype=dtype)
    for fn in (L.sqrtm, L.invsqrtm, L.logm):
        torch.testing.assert_close(fn(x.to(CUDA)).cpu(), fn(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cond", [1e2, 1e4])
def test_newton_schulz_matches_eigh_on_the_device(cond):
    x = _spd(32, n=32, cond=cond).to(CUDA)
    root, inv_root = L.sqrtm_invsqrtm_newton_schulz(x)
    ref_root, ref_inv = L.sqrtm_invsqrtm(x)
    for ours, ref in ((root, ref_root), (inv_root, ref_inv)):
        err = (ours - ref).norm(dim=(-2, -1)) / ref.norm(dim=(-2, -1))
        assert float(err.max()) < 1e-5


@pytest.mark.parametrize("metric", ["aim", "lem", "lcm", "bw", "gbw"])
def test_spd_batch_norm_matches_cpu(metric):
    x = _spd(12, n=5, cond=10.0)
    weight = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    results = []
    for device in ("cpu", CUDA):
        layer = riemtorch.nn.SPDBatchNorm(5, metric=metric, dtype=x.dtype, device=device)
        leaf = x.to(device, copy=True).requires_grad_()
        out = layer(leaf)
        (out * weight.to(device)).sum().backward()
        results.append((out.detach().cpu(), leaf.grad.cpu(), layer.running_mean.cpu()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_hyperbolic_maps_match_cpu():
    g = torch.Generator().manual_seed(2)
    ball, hyper = riemtorch.PoincareBall(), riemtorch.Lorentz()
    for m in (ball, hyper):
        x = m.random(64, n=5, dtype=torch.float64, generator=g)
        y = m.random(64, n=5, dtype=torch.float64, generator=g)
        for op in (m.dist, m.logmap):
            torch.testing.assert_close(op(x.to(CUDA), y.to(CUDA)).cpu(), op(x, y),
                                       rtol=1e-9, atol=1e-10)


def test_optimizer_step_matches_cpu():
    stiefel = riemtorch.Stiefel()
    start = stiefel.random(4, n=8, p=3, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(3))
    points = []
    for device in ("cpu", CUDA):
        p = riemtorch.ManifoldParameter(start.to(device, copy=True), stiefel)
        opt = riemtorch.optim.RiemannianAdam([p], lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            (p[..., 0, :] ** 3).sum().backward()
            opt.step()
        points.append(p.detach().cpu())
    torch.testing.assert_close(points[0], points[1], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_batched_eigh_on_host_matches_device(dtype):
    x = _spd(24, n=40, dtype=dtype).to(CUDA).requires_grad_()
    lam, u = batched_eigh(x)
    assert lam.device.type == "cuda" and u.device.type == "cuda"
    with riemtorch.config.override(cuda_eigh_on_host=False):
        ref_lam, ref_u = batched_eigh(x)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lam, ref_lam, **tol)
    # eigenvectors up to sign: compare the reconstructed matrices
    torch.testing.assert_close((u * lam.unsqueeze(-2)) @ u.mT, x.detach(), **tol)
    (grad,) = torch.autograd.grad(lam.sum(), x)
    eye = torch.eye(40, dtype=dtype, device=CUDA).expand_as(grad)
    torch.testing.assert_close(grad, eye, **tol)
