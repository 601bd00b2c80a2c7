"""The same values on a CUDA device as on the CPU (skipped without one).

Each check computes on the GPU and compares with the CPU result of the same input: matrix
functions, the Newton-Schulz square roots against eigh, SPD batch norm outputs and gradients,
the Lorentz and Poincaré maps, and an optimizer step.
"""

import pytest
import torch

import riemtorch
from riemtorch import linalg as L

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
        leaf = x.to(device).requires_grad_()
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
        p = riemtorch.ManifoldParameter(start.to(device), stiefel)
        opt = riemtorch.optim.RiemannianAdam([p], lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            (p[..., 0, :] ** 3).sum().backward()
            opt.step()
        points.append(p.detach().cpu())
    torch.testing.assert_close(points[0], points[1], rtol=1e-9, atol=1e-10)
