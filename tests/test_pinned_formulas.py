"""Formulas pinned against independent references where the laws the other tests check leave
them free: optimizer terms that vanish on the manifolds of the trajectory tests (checked
against torch.optim on flat points) and layer maps against closed forms written out here."""

import pytest
import torch

import riemtorch
from riemtorch.optim import RiemannianAdam, RiemannianSGD

DT = torch.float64


# ---- optimizers on a flat manifold against torch.optim -------------------------------------
#
# On Euclidean points of one coordinate the Riemannian gradient is the Euclidean one, the
# transport is the identity and the per-point second moment is torch's element-wise one, so the
# Riemannian update must equal torch's. Unlike the sphere of the geoopt trajectories, the
# weight-decay term x is not removed by the projection onto the tangent space there, and a
# small beta2 with a shrinking gradient makes the second moment fall, so AMSGrad's running
# maximum differs from the moment itself.

FLAT_PAIRS = [
    (RiemannianAdam, torch.optim.Adam, dict(lr=0.1, betas=(0.9, 0.5), amsgrad=True)),
    (RiemannianAdam, torch.optim.Adam, dict(lr=0.1, betas=(0.8, 0.6), weight_decay=0.3)),
    (RiemannianAdam, torch.optim.Adam, dict(lr=0.1, betas=(0.9, 0.5), amsgrad=True,
                                            weight_decay=0.2)),
    (RiemannianSGD, torch.optim.SGD, dict(lr=0.1, weight_decay=0.3)),
    (RiemannianSGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.2,
                                          weight_decay=0.3)),
]


def _flat_loss(p, step):
    # gradients that shrink by a factor 3 per step: the second moment decreases
    g = torch.Generator().manual_seed(step)
    target = torch.randn(p.shape, dtype=DT, generator=g)
    return 3.0 ** (-step) * ((p - target).square() * torch.arange(1, p.shape[0] + 1,
                                                                   dtype=DT)[:, None]).sum()


@pytest.mark.parametrize("ours,theirs,config", FLAT_PAIRS)
def test_update_on_flat_points_equals_torch(ours, theirs, config):
    start = torch.linspace(-1.0, 2.0, 6, dtype=DT)[:, None]
    x = riemtorch.ManifoldParameter(start.clone(), riemtorch.Euclidean(ndim=1))
    y = torch.nn.Parameter(start.clone())
    opt_x, opt_y = ours([x], **config), theirs([y], **config)
    for step in range(8):
        for p, opt in ((x, opt_x), (y, opt_y)):
            opt.zero_grad()
            _flat_loss(p, step).backward()
            opt.step()
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-12, atol=1e-14)
    if config.get("amsgrad"):
        torch.testing.assert_close(opt_x.state[x]["max_exp_avg_sq"],
                                   opt_y.state[y]["max_exp_avg_sq"], rtol=1e-12, atol=0)


# ---- layers against closed forms -----------------------------------------------------------

def _gram_schmidt(a):
    """Classical Gram-Schmidt on the columns of one ``(n, p)`` matrix (float64 reference): the
    ``Q`` of ``A = Q R`` with a positive diagonal of ``R``."""
    cols = []
    for j in range(a.shape[-1]):
        v = a[:, j].clone()
        for q in cols:
            v = v - (q @ a[:, j]) * q
        cols.append(v / v.norm())
    return torch.stack(cols, -1)


def test_orthonormalize_is_gram_schmidt_of_the_columns():
    # the ReOrth layer's Q is unique once R has a positive diagonal (Huang et al. 2018): the
    # Gram-Schmidt basis, so the output depends on the input alone and not on LAPACK's signs
    from riemtorch.nn.grassmann import Orthonormalize

    x = torch.randn(6, 7, 3, dtype=DT, generator=torch.Generator().manual_seed(2))
    q = Orthonormalize()(x)
    expected = torch.stack([_gram_schmidt(a) for a in x])
    torch.testing.assert_close(q, expected, rtol=0, atol=1e-12)
    r = q.mT @ x
    assert bool((r.diagonal(dim1=-2, dim2=-1) > 0).all())

