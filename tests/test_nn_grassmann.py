"""Grassmann layers: subspace logits, orthonormalisation, projection."""

import pytest
import torch

riemtorch = pytest.importorskip("riemtorch")
Grassmann = pytest.importorskip("riemtorch.manifolds.grassmann").Grassmann

from riemtorch.nn.grassmann import Orthonormalize, Projector, SubspaceClassifier  # noqa: E402

F64 = torch.float64


def test_subspace_logits_are_scaled_cosines_and_depend_only_on_the_subspace():
    torch.manual_seed(0)
    head = SubspaceClassifier(6, 4, subspace_dim=2, scale=3.0, dtype=F64)
    x = torch.randn(5, 6, dtype=F64)
    s = head.subspaces.detach()
    proj = s @ s.mT
    unit = x / x.norm(dim=-1, keepdim=True)
    expected = 3.0 * torch.einsum("bn,knm,bm->bk", unit, proj, unit).sqrt()
    torch.testing.assert_close(head(x), expected)
    torch.testing.assert_close(head(7.0 * x), head(x))
    rotation, _ = torch.linalg.qr(torch.randn(2, 2, dtype=F64))
    with torch.no_grad():
        head.subspaces.copy_(s @ rotation)
    torch.testing.assert_close(head(x), expected)
    x.requires_grad_()
    head(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.subspaces.grad).all()
    ok, reason = Grassmann().check_point(head.subspaces.detach())
    assert ok, reason


def test_orthonormalize_spans_the_input_columns_and_projector_is_idempotent():
    x = torch.randn(3, 7, 3, dtype=F64, requires_grad=True)
    q = Orthonormalize()(x)
    torch.testing.assert_close(q.mT @ q, torch.eye(3, dtype=F64).expand(3, 3, 3))
    p = Projector()(q)
    torch.testing.assert_close(p @ x, x)  # the columns of x lie in span(q)
    torch.testing.assert_close(p @ p, p)
    assert torch.autograd.gradcheck(lambda a: Projector()(Orthonormalize()(a)), (x,))


def test_subspace_classifier_rejects_bad_sizes_and_scales():
    with pytest.raises(ValueError, match="features of size 4"):
        SubspaceClassifier(4, 3)(torch.ones(2, 5))
    with pytest.raises(ValueError, match="scale must be a finite positive number"):
        SubspaceClassifier(4, 3, scale=0.0)


def test_gyro_batch_norm_on_float32_subspaces_whose_first_sample_is_far_from_the_mean():
    # the start's Procrustes rotation towards the first sample, taken in float32, left the
    # basis 5e-3 off orthonormal on this batch, and the mean's first logmap rejected it
    grassmann = riemtorch.Grassmann()
    x = grassmann.random(8, n=5, p=2, generator=torch.Generator().manual_seed(3))
    mean = grassmann.frechet_mean(x)
    ok, reason = grassmann.check_point(mean)
    assert ok, reason
    # the same subspace as the float64 mean (projectors compared)
    exact = grassmann.frechet_mean(x.double())
    torch.testing.assert_close((mean @ mean.mT).double(), exact @ exact.mT, rtol=0, atol=1e-4)
    y = riemtorch.nn.GyroBatchNorm(grassmann, (5, 2))(x)
    assert bool(torch.isfinite(y).all())


def test_functional_forms_agree_with_the_layers():
    from riemtorch.nn import functional as F

    torch.manual_seed(3)
    head = SubspaceClassifier(5, 3, subspace_dim=2, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)
    plain = head.subspaces.detach().clone()
    torch.testing.assert_close(F.subspace_logits(x, plain, head.log_scale.exp()), head(x))
    a = torch.randn(2, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(F.orthonormalize(a), Orthonormalize()(a))
    q = F.orthonormalize(a)
    torch.testing.assert_close(F.projector(q), Projector()(q))


def test_grassmann_layers_take_half_precision():
    head = SubspaceClassifier(4, 2).bfloat16()
    assert head(torch.randn(3, 4).bfloat16()).dtype == torch.bfloat16
    assert Projector()(torch.randn(2, 4, 2).half()).dtype == torch.float16
