"""Padding of per-sample matrices for faster batched products."""

import pytest
import torch

import riemtorch
from riemtorch.linalg.padding import pad_identity, pad_ones, product_size

F64 = torch.float64


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="sizes measured with MKL")
def test_product_sizes():
    cpu = torch.device("cpu")
    padded = {n: product_size(n, cpu) for n in range(1, 60)}
    assert padded[6] == padded[7] == 8
    assert padded[10] == padded[11] == 12
    assert [padded[n] for n in (21, 22, 23, 33, 35, 45, 47)] == [24, 24, 24, 36, 36, 48, 48]
    unchanged = [1, 2, 5, 8, 9, 13, 16, 20, 32, 40, 49, 57, 59]
    assert all(padded[n] == n for n in unchanged)
    assert all(padded[n] >= n for n in padded)
    assert product_size(22, torch.device("meta")) == 22


def test_no_padding_without_mkl(monkeypatch):
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: False)
    assert product_size(22, torch.device("cpu")) == 22


@pytest.mark.parametrize("column_major", [False, True])
def test_pad_identity_embeds_the_matrix_beside_an_identity_block(column_major):
    x = torch.randn(3, 2, 5, 5, dtype=F64)
    if column_major:
        x = x.mT.contiguous().mT
    out = pad_identity(x, 8)
    assert out.shape == (3, 2, 8, 8)
    assert out.mT.is_contiguous() == column_major
    expected = torch.zeros(3, 2, 8, 8, dtype=F64)
    expected[..., :5, :5] = x
    expected[..., 5:, 5:] = torch.eye(3, dtype=F64)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert pad_identity(x, 5) is x
    values = torch.rand(3, 5, dtype=F64)
    torch.testing.assert_close(pad_ones(values, 8)[..., :5], values, rtol=0, atol=0)
    assert bool((pad_ones(values, 8)[..., 5:] == 1).all())


@pytest.mark.parametrize("n, channels, scale", [(22, None, 1.0), (7, 3, 1.0), (22, None, 1e-12),
                                               (7, None, 1e8)])
def test_bures_wasserstein_barycenter_is_the_same_padded(monkeypatch, n, channels, scale):
    """The barycenter computed on padded per-sample matrices equals the unpadded computation
    to rounding, with per-channel weights too, and for samples far from the identity block's
    scale (residuals are relative to the samples' block alone)."""
    from riemtorch.manifolds.spd import bw_barycenter

    g = torch.Generator().manual_seed(4)
    z = torch.randn(40, n, 3 * n, dtype=F64, generator=g)
    x = scale * z @ z.mT / (3 * n)
    w = torch.rand(40, 1, 1, dtype=F64, generator=g)
    if channels:
        x = x.unsqueeze(1)
        w = torch.rand(40, channels, 1, 1, dtype=F64, generator=g)
    w = w / w.sum(0)
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: True)
    assert product_size(n, x.device) > n
    padded, converged = bw_barycenter.barycenter_fixed_point(x, w, 1e-12, 50)
    assert converged
    monkeypatch.setattr(bw_barycenter, "product_size", lambda n, device: n)
    plain, converged = bw_barycenter.barycenter_fixed_point(x, w, 1e-12, 50)
    assert converged
    assert float((padded - plain).abs().max() / plain.abs().max()) < 1e-13
    bw = riemtorch.SPDBuresWasserstein()
    grad = bw.logmap(padded.expand(40, *padded.shape), x.expand(40, *padded.shape))
    assert float(torch.linalg.matrix_norm((w * grad).sum(0)).max()) < 1e-10 * scale
