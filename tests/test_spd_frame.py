"""Gradients through the differential of the power deformation (and of ``log`` for the
log-Euclidean metric) with respect to the base point: gradcheck of the verbs at distinct and
at repeated eigenvalues (the second divided differences they use are tested against 50-digit
references in test_linalg.py)."""

import pytest
import torch

import riemtorch
from riemtorch.linalg import sym

F64 = torch.float64

MANIFOLDS = {
    "lem": riemtorch.SPDLogEuclidean(),
    "aim_0.5": riemtorch.SPDAffineInvariant(0.5),
    "bw_1.5": riemtorch.SPDBuresWasserstein(1.5),
    "lcm_0.7": riemtorch.SPDLogCholesky(0.7),
}
POINTS = {
    "distinct": lambda: torch.diag(torch.tensor([0.5, 0.8, 1.3], dtype=F64)) + 0.1,
    "identity": lambda: torch.eye(3, dtype=F64),
    "repeated": lambda: torch.diag(torch.tensor([0.7, 0.7, 1.6], dtype=F64)),
}


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("name", list(MANIFOLDS))
def test_verbs_at_a_base_point_have_exact_gradients_in_it(name, point):
    # Differentiating the eigh of the base point gave NaN at the identity and at repeated
    # eigenvalues (every verb below); the second-order Daleckii-Krein formula does not.
    m = MANIFOLDS[name]
    g = torch.Generator().manual_seed(0)
    u, v = (0.3 * sym(torch.randn(3, 3, dtype=F64, generator=g)) for _ in range(2))
    y = m.expmap(torch.eye(3, dtype=F64), v)
    verbs = {
        "inner": lambda x: m.inner(x, u, v),
        "expmap": lambda x: m.expmap(x, u),
        "logmap": lambda x: m.logmap(x, y),
        "transp from": lambda x: m.transp(x, y, u),
        "transp to": lambda x: m.transp(y, x, u),
        "egrad2rgrad": lambda x: m.egrad2rgrad(x, u),
    }
    x = POINTS[point]().requires_grad_()
    for verb, f in verbs.items():
        (grad,) = torch.autograd.grad(f(x).sum(), x)
        assert bool(torch.isfinite(grad).all()), verb
        assert torch.autograd.gradcheck(lambda a: f(sym(a)), (x,)), verb
