"""SPDNet layers and covariance pooling against independent computations."""

import numpy as np
import pytest
import torch

import riemtorch
from riemtorch import linalg as L
from riemtorch.nn import functional as F

F64 = torch.float64


def spd(*batch, n=5, cond=10.0, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(*batch, n, n, dtype=F64, generator=g))
    return ((q * torch.logspace(0, np.log10(cond), n, dtype=F64)) @ q.mT).to(dtype)


def test_covariance_matches_numpy_and_sklearn_oas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 30, dtype=F64, generator=g)
    ref = np.stack([np.cov(a) for a in x.numpy()])
    np.testing.assert_allclose(F.covariance(x).numpy(), ref, rtol=1e-12)
    sklearn_cov = pytest.importorskip("sklearn.covariance")
    short = torch.randn(3, 12, 8, dtype=F64, generator=g)  # fewer samples than channels
    oas_ref = np.stack([sklearn_cov.oas(a.T)[0] for a in short.numpy()])
    ours = F.covariance(short, shrinkage="oas")
    np.testing.assert_allclose(ours.numpy(), oas_ref, rtol=1e-10, atol=1e-14)
    assert bool((torch.linalg.eigvalsh(ours) > 0).all())
    normed = F.covariance(x, shrinkage=0.1, trace_normalize=True)
    torch.testing.assert_close(normed.diagonal(dim1=-2, dim2=-1).sum(-1), torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="shrinkage"):
        F.covariance(x, shrinkage=2.0)


@pytest.mark.parametrize("a", [0.0, 0.3, 1.0])
def test_covariance_with_float_shrinkage_matches_the_numpy_formula(a):
    # (1 - a) S + a tr(S)/c I with S the sample covariance (divided by time - 1), not trace
    # normalised; the signals have a non-unit trace so that tr(S)/c differs from 1
    g = torch.Generator().manual_seed(1)
    x = 3.0 * torch.randn(4, 6, 9, dtype=F64, generator=g) + 1.0
    s = np.stack([np.cov(m) for m in x.numpy()])
    mu = np.trace(s, axis1=-2, axis2=-1)[:, None, None] / 6
    ref = (1 - a) * s + a * mu * np.eye(6)
    np.testing.assert_allclose(F.covariance(x, shrinkage=a).numpy(), ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("shrinkage", [None, 0.2, "oas"])
@pytest.mark.parametrize("trace_normalize", [False, True])
def test_covariance_eps_adds_a_multiple_of_the_identity(shrinkage, trace_normalize):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 4, dtype=F64, generator=g)  # fewer samples than channels
    plain = F.covariance(x, shrinkage=shrinkage, trace_normalize=trace_normalize)
    loaded = F.covariance(x, shrinkage=shrinkage, trace_normalize=trace_normalize, eps=0.25)
    torch.testing.assert_close(loaded - plain, 0.25 * torch.eye(5, dtype=F64).expand(3, 5, 5),
                               rtol=0, atol=1e-14)


def test_vech_preserves_inner_products_and_inverts():
    a, b = L.sym(torch.randn(2, 5, 5, dtype=F64)), L.sym(torch.randn(2, 5, 5, dtype=F64))
    # to the last bit in float64 (default tolerances would pass a float32 sqrt(2))
    torch.testing.assert_close((F.vech(a) * F.vech(b)).sum(-1), (a * b).sum((-2, -1)),
                               rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(F.unvech(F.vech(a)), a, rtol=1e-15, atol=1e-15)
    assert F.vech(torch.ones(2, 2, dtype=F64))[1].item() == 2.0 ** 0.5
    assert F.vech(a).shape == (2, 15)
    with pytest.raises(ValueError, match="triangular"):
        F.unvech(torch.zeros(7))


def test_vech_entries_and_gradients():
    a = L.sym(torch.randn(3, 4, 4, dtype=F64))
    # row by row over the upper triangle, each entry by itself
    expected = torch.stack([a[..., i, j] * (1.0 if i == j else 2.0 ** 0.5)
                            for i in range(4) for j in range(i, 4)], -1)
    assert torch.equal(F.vech(a), expected)
    torch.testing.assert_close(F.vech(a.float()), expected.float())
    x = torch.randn(2, 4, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(F.vech, (x,))
    v = torch.randn(2, 10, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(F.unvech, (v,))


def test_reeig_clamps_the_spectrum():
    x = spd(3, n=6, cond=1e4)
    lam, u = torch.linalg.eigh(x)
    expected = (u * lam.clamp_min(0.01).unsqueeze(-2)) @ u.mT
    torch.testing.assert_close(riemtorch.nn.ReEig(0.01)(x), expected, rtol=1e-10, atol=1e-12)


def test_reeig_passes_unclamped_matrices_without_an_eigendecomposition(monkeypatch):
    # (batch 3, channels 2): some matrices straddle the threshold 1.5, the others lie above it
    x = torch.stack([spd(3, n=5, cond=10.0, seed=1), 2.0 * spd(3, n=5, cond=10.0, seed=2)], 1)
    lam, u = np.linalg.eigh(x.numpy())
    expected = (u * np.maximum(lam, 1.5)[..., None, :]) @ np.swapaxes(u, -1, -2)
    np.testing.assert_allclose(F.reeig(x, 1.5).numpy(), expected, rtol=1e-12, atol=1e-12)
    # gradients of the mixed batch: the unclamped matrices pass sym(G)
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: F.reeig(L.sym(a), 1.5), (xg,))
    g = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(F.reeig(xg, 1.5), xg, g)
    torch.testing.assert_close(grad[:, 1], L.sym(g[:, 1]), rtol=0, atol=0)
    # nothing below the threshold: no eigendecomposition at all
    def no_eigh(*args, **kwargs):
        raise AssertionError("eigh called")
    monkeypatch.setattr(torch.linalg, "eigh", no_eigh)
    above = spd(4, n=5, cond=10.0, seed=4, dtype=torch.float32)
    out = riemtorch.nn.ReEig(0.5)(above)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, L.sym(above), rtol=0, atol=0)
    with pytest.raises(AssertionError, match="eigh called"):
        riemtorch.nn.ReEig(1.5)(above)


def test_eig_layers_invert_each_other():
    x = spd(2, n=4, cond=100.0)
    torch.testing.assert_close(riemtorch.nn.ExpEig()(riemtorch.nn.LogEig()(x)), x)
    torch.testing.assert_close(riemtorch.nn.PowEig(0.5)(x) @ riemtorch.nn.PowEig(0.5)(x), x)


@pytest.mark.parametrize("p", [-1.5, 0.3, 2.0])
def test_poweig_matches_scipy_fractional_matrix_power(p):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    x = spd(3, n=5, cond=50.0, seed=3)
    ref = np.stack([scipy_linalg.fractional_matrix_power(a, p).real for a in x.numpy()])
    # scipy's Schur-Pade power is accurate to about 1e-12 relative at condition 50
    atol = 1e-12 * np.abs(ref).max()
    np.testing.assert_allclose(F.poweig(x, p).numpy(), ref, rtol=1e-10, atol=atol)
    np.testing.assert_allclose(riemtorch.nn.PowEig(p)(x).numpy(), ref, rtol=1e-10, atol=atol)


@pytest.mark.parametrize("fn", [lambda x: F.reeig(x, 0.5), F.logeig, F.expeig, lambda x: F.poweig(x, 0.3)],
                         ids=["reeig", "logeig", "expeig", "poweig"])
def test_gradcheck_eig_layers_including_the_identity(fn):
    x = torch.cat([spd(2, n=4, cond=20.0), torch.eye(4, dtype=F64)[None]]).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: fn(L.sym(a)), (x,))


def test_float32_layers_stay_finite_at_condition_1e6_and_repeated_eigenvalues():
    x = torch.cat([spd(3, n=8, cond=1e6, dtype=torch.float32),
                   torch.eye(8)[None], torch.diag(torch.tensor([2.0] * 7 + [1e-6]))[None]])
    x.requires_grad_()
    out = F.logeig(F.reeig(x, 1e-4))
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


stiefel_missing = not hasattr(riemtorch, "Stiefel") and not hasattr(riemtorch.manifolds, "Stiefel")


@pytest.mark.skipif(stiefel_missing, reason="needs the Stiefel manifold")
@pytest.mark.parametrize("n_in,n_out", [(8, 4), (4, 6)])
def test_bimap_is_congruence_by_an_orthonormal_weight(n_in, n_out):
    layer = riemtorch.nn.BiMap(n_in, n_out, dtype=F64)
    w = layer.weight.detach()
    torch.testing.assert_close(w.mT @ w, torch.eye(n_out, dtype=F64))
    x = spd(5, n=n_in, cond=50.0)
    out = layer(x)
    padded = torch.eye(max(n_in, n_out), dtype=F64).repeat(5, 1, 1)
    padded[:, :n_in, :n_in] = x
    torch.testing.assert_close(out, w.mT @ padded @ w)
    assert bool((torch.linalg.eigvalsh(out) > 0).all())
    assert torch.autograd.gradcheck(lambda a, b: F.bimap(L.sym(a), b),
                                    (x[:2].clone().requires_grad_(), w.clone().requires_grad_()))
    with pytest.raises(ValueError, match="expected"):
        layer(spd(n=n_in + 1))


def test_bimap_keeps_no_copy_of_its_input_for_the_backward_pass():
    """Autograd keeps the input itself, the weight and ``X W``: no transposed copy of ``X``
    (written as ``W^T X W`` it kept copies of ``X^T`` and ``W^T X``, which each training step
    allocates anew). The gradient of an asymmetric input is still that of ``sym(W^T X W)``."""
    x = spd(6, n=8, cond=10.0).requires_grad_()
    w = torch.linalg.qr(torch.randn(8, 3, dtype=F64, generator=torch.Generator().manual_seed(2)))[0]
    w.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        F.bimap(x, w)
    inputs = {x.untyped_storage().data_ptr(), w.untyped_storage().data_ptr()}
    new = [t for t in saved if t.untyped_storage().data_ptr() not in inputs]
    xw_bytes = 6 * 8 * 3 * x.element_size()
    assert sum(t.untyped_storage().nbytes() for t in new) <= xw_bytes
    a = torch.randn(2, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(3))
    assert torch.autograd.gradcheck(F.bimap, (a.requires_grad_(), w))
    # second derivatives too (gradient penalties), for symmetric and asymmetric input
    assert torch.autograd.gradgradcheck(F.bimap, (a, w))
    assert torch.autograd.gradgradcheck(F.bimap, (L.sym(a).detach().requires_grad_(), w))


@pytest.mark.parametrize("layer", [riemtorch.nn.ReEig(), riemtorch.nn.LogEig(),
                                   riemtorch.nn.ExpEig(), riemtorch.nn.PowEig(0.5)])
def test_eig_layers_reject_non_square_and_non_float_input(layer):
    with pytest.raises(ValueError, match=r"\(\.\.\., n, n\)"):
        layer(torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match=r"\(\.\.\., n, n\)"):
        layer(torch.ones(2, 3, 4, dtype=F64))
    with pytest.raises(TypeError, match="float32 or float64"):
        layer(torch.eye(3, dtype=torch.int64))


def test_reeig_branches_agree_on_the_symmetric_part_and_on_empty_matrices():
    # A Cholesky test reads one triangle: for a non-symmetric input it passed while the
    # symmetric part, which the layer returns, has an eigenvalue of -4.
    x = torch.tensor([[1.0, 10.0], [0.0, 1.0]], dtype=F64)
    lam = torch.linalg.eigvalsh(F.reeig(x, 1e-4))
    torch.testing.assert_close(lam, torch.tensor([1e-4, 6.0], dtype=F64))
    assert F.reeig(torch.zeros(3, 0, 0, dtype=F64)).shape == (3, 0, 0)
    assert F.reeig(torch.zeros(0, 4, 4, dtype=F64)).shape == (0, 4, 4)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), 0.0, -1.0])
def test_reeig_threshold_must_be_finite_and_positive(threshold):
    with pytest.raises(ValueError, match="threshold"):
        riemtorch.nn.ReEig(threshold)
    with pytest.raises(ValueError, match="threshold"):
        F.reeig(torch.eye(2, dtype=F64), threshold)
    with pytest.raises(ValueError, match="threshold"):
        L.clamp_eigenvalues(torch.eye(2, dtype=F64), threshold)


def test_vech_covariance_and_batch_norm_reject_bad_arguments():
    # integer input was truncated: sqrt(2) * 3 became 3, and unvech zeroed off-diagonals
    with pytest.raises(TypeError, match="float32 or float64"):
        F.vech(torch.tensor([[2, 3], [3, 5]]))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.unvech(torch.tensor([2, 4, 5]))
    with pytest.raises(ValueError, match="shrinkage"):  # True was taken as 1.0
        F.covariance(torch.randn(2, 3, 10, dtype=F64), shrinkage=True)
    for eps in (-10.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps"):
            riemtorch.nn.SPDBatchNorm(3, eps=eps)
        # eps is what keeps rank-deficient covariances positive definite
        with pytest.raises(ValueError, match="eps must be a finite non-negative"):
            F.covariance(torch.randn(2, 4, 50, dtype=F64), eps=eps)
        with pytest.raises(ValueError, match="eps must be a finite non-negative"):
            riemtorch.nn.CovPool(eps=eps)
    with pytest.raises(TypeError, match="eps must be a number"):
        riemtorch.nn.CovPool(eps=True)


def test_vech_and_unvech_train_after_a_first_call_in_inference_mode():
    # the positions and scales of the upper triangle are cached per size: a first call under
    # inference_mode must not leave inference tensors that autograd then cannot save
    with torch.inference_mode():
        F.vech(torch.eye(7, dtype=F64))
        F.unvech(torch.ones(28, dtype=F64))
    x = torch.randn(7, 7, dtype=F64)
    x = (x + x.T).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.vech(x).square().sum(), x)
    # vech reads the upper triangle: sum of squares is sum_i x_ii^2 + 2 sum_(i<j) x_ij^2
    upper = torch.triu(x.detach())
    torch.testing.assert_close(grad, 2 * upper + 2 * torch.triu(x.detach(), 1), rtol=1e-14,
                               atol=1e-14)
    v = torch.randn(28, dtype=F64, requires_grad=True)
    (grad_v,) = torch.autograd.grad(F.unvech(v).square().sum(), v)
    torch.testing.assert_close(grad_v, 2 * v.detach(), rtol=1e-14, atol=1e-14)
