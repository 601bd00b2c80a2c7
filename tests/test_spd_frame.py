"""Gradients through the differential of the power deformation (and of ``log`` for the
log-Euclidean metric) with respect to the base point: second divided differences against
50-digit references, gradcheck of the verbs at distinct and at repeated eigenvalues."""

import pytest
import torch

import riemtorch
from riemtorch.linalg import spectral, sym
from riemtorch.linalg.second_differences import second_divided_differences

F64 = torch.float64

CASES = {
    "log": (spectral.LOG, "log"),
    "exp": (spectral.EXP, "exp"),
    "power_0.5": (spectral.Power(0.5), 0.5),
    "power_-0.8": (spectral.Power(-0.8), -0.8),
    "power_3.7": (spectral.Power(3.7), 3.7),
}


@pytest.mark.parametrize("name", list(CASES))
def test_second_divided_differences_match_50_digit_references(name):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    fn, spec = CASES[name]
    f = getattr(mpmath, spec) if isinstance(spec, str) else (lambda t: t ** spec)
    # ties, gaps of 1e-9 and 5e-3 (Taylor branch), 1.1e-2 (difference branch), wide spread
    lam = [1e-8, 0.3, 0.3, 0.3 * (1 + 1e-9), 0.3 * (1 + 5e-3), 1.0, 1.011, 2.5, 1e4]
    if name == "exp":
        lam = [-20.0, -1.0, -1.0, -1.0 + 1e-9, -1.0 + 5e-3, 0.0, 0.011, 3.0, 25.0]

    def first(a, b):
        return mpmath.diff(f, a) if a == b else (f(a) - f(b)) / (a - b)

    def second(*points):
        a, b, c = sorted(mpmath.mpf(p) for p in points)
        if a == c:
            return mpmath.diff(f, a, 2) / 2
        return (first(b, c) - first(a, b)) / (c - a)

    expected = torch.tensor([[[float(second(a, b, c)) for c in lam] for b in lam] for a in lam],
                            dtype=F64)
    torch.testing.assert_close(second_divided_differences(fn, torch.tensor(lam, dtype=F64)),
                               expected, rtol=2e-12, atol=0)


def test_second_divided_differences_need_a_known_function():
    with pytest.raises(TypeError, match="second divided differences"):
        second_divided_differences(spectral.SQRT, torch.ones(3, dtype=F64))


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
