"""riemtorch.linalg against scipy, gradcheck of every custom backward, and the identity."""

import numpy as np
import pytest
import scipy.linalg
import torch

import riemtorch
from riemtorch import linalg as L
from riemtorch.linalg import spectral
from riemtorch.linalg.second_differences import second_divided_differences
from riemtorch.linalg.symmetric import apply_spectral

F64 = torch.float64


def random_spd(*batch, n=5, cond=10.0, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(*batch, n, n, dtype=F64, generator=g))
    lam = torch.logspace(0, np.log10(cond), n, dtype=F64)
    return ((q * lam) @ q.mT).to(dtype)


def random_sym(*batch, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*batch, n, n, dtype=F64, generator=g)
    return L.sym(a)


def scipy_batched(fn, x):
    return torch.from_numpy(np.stack([fn(a) for a in x.reshape(-1, *x.shape[-2:]).numpy()]).real
                            ).reshape(x.shape)


SCIPY_CASES = [
    ("sqrtm", L.sqrtm, scipy.linalg.sqrtm),
    ("invsqrtm", L.invsqrtm, lambda a: scipy.linalg.inv(scipy.linalg.sqrtm(a))),
    ("logm", L.logm, scipy.linalg.logm),
    ("powm", lambda x: L.powm(x, 0.37), lambda a: scipy.linalg.fractional_matrix_power(a, 0.37)),
    ("powm_neg", lambda x: L.powm(x, -1.5), lambda a: scipy.linalg.fractional_matrix_power(a, -1.5)),
]


@pytest.mark.parametrize("name,ours,ref", SCIPY_CASES, ids=[c[0] for c in SCIPY_CASES])
@pytest.mark.parametrize("n", [2, 7, 16])
def test_spd_functions_match_scipy(name, ours, ref, n):
    x = random_spd(3, n=n, cond=1e3, seed=n)
    expected = scipy_batched(ref, x)
    torch.testing.assert_close(ours(x), expected, rtol=1e-10, atol=1e-10 * expected.abs().max())


@pytest.mark.parametrize("n", [2, 7, 16])
def test_expm_matches_scipy(n):
    x = random_sym(3, n=n, seed=n)
    torch.testing.assert_close(L.expm(x), scipy_batched(scipy.linalg.expm, x), rtol=1e-10, atol=1e-12)



def test_half_exponential_is_the_square_root_of_the_exponential():
    x = random_sym(n=5, seed=3)
    full, half = apply_spectral(x, (spectral.EXP, spectral.HALF_EXP))
    torch.testing.assert_close(full, torch.as_tensor(scipy.linalg.expm(x.numpy())), rtol=1e-12,
                               atol=1e-12)
    torch.testing.assert_close(half, torch.as_tensor(scipy.linalg.expm(0.5 * x.numpy())),
                               rtol=1e-12, atol=1e-12)

def test_sqrtm_invsqrtm_share_one_decomposition_and_match():
    x = random_spd(4, n=6, cond=100.0)
    s, i = L.sqrtm_invsqrtm(x)
    torch.testing.assert_close(s, L.sqrtm(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(i, L.invsqrtm(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s @ i, torch.eye(6, dtype=F64).expand(4, 6, 6), rtol=0, atol=1e-12)


def test_sym_funcm_and_clamp_eigenvalues():
    x = random_sym(2, n=5, seed=3)
    torch.testing.assert_close(L.sym_funcm(x, torch.exp, torch.exp), L.expm(x), rtol=1e-12, atol=1e-12)
    lam, u = torch.linalg.eigh(x)
    expected = (u * lam.clamp_min(0.3).unsqueeze(-2)) @ u.mT
    torch.testing.assert_close(L.clamp_eigenvalues(x, 0.3), expected, rtol=1e-12, atol=1e-12)


def sym_input(fn):
    """gradcheck perturbs entries independently: feed the symmetric part to the function."""
    return lambda a: fn(L.sym(a))


def distinct(n=4, seed=0):
    return random_spd(2, n=n, cond=20.0, seed=seed)


def repeated(n=4):
    # Identity and a matrix with a triple eigenvalue next to a simple one.
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=torch.Generator().manual_seed(1)))
    lam = torch.tensor([2.0] * (n - 1) + [5.0], dtype=F64)
    return torch.stack([torch.eye(n, dtype=F64), (q * lam) @ q.T])


GRAD_FUNCTIONS = {
    "sqrtm": L.sqrtm,
    "invsqrtm": L.invsqrtm,
    "logm": L.logm,
    "expm": L.expm,
    "powm": lambda x: L.powm(x, 0.6),
    "powm_neg": lambda x: L.powm(x, -0.8),
    "sqrtm_invsqrtm": L.sqrtm_invsqrtm,
    "clamp": lambda x: L.clamp_eigenvalues(x, 1.5),
    "sym_funcm": lambda x: L.sym_funcm(x, torch.sin, torch.cos),
    "exp_and_half_exp": lambda x: apply_spectral(x, (spectral.EXP, spectral.HALF_EXP)),
}


@pytest.mark.parametrize("name", list(GRAD_FUNCTIONS))
@pytest.mark.parametrize("point", ["distinct", "repeated"])
def test_gradcheck_spectral_functions(name, point):
    if name == "clamp" and point == "repeated":
        pytest.skip("the clamp is not differentiable at an eigenvalue equal to the threshold")
    x = (distinct() if point == "distinct" else repeated()).requires_grad_()
    assert torch.autograd.gradcheck(sym_input(GRAD_FUNCTIONS[name]), (x,))


def test_gradient_at_identity_is_finite_and_exact_where_eigh_autograd_is_nan():
    eye = torch.eye(4, dtype=F64, requires_grad=True)
    weight = random_sym(n=4, seed=7)
    (L.logm(eye) * weight).sum().backward()
    # d/dX <W, log X> at X = I is W (the derivative of log at I is the identity map).
    torch.testing.assert_close(eye.grad, weight, rtol=1e-12, atol=1e-12)

    naive = torch.eye(4, dtype=F64, requires_grad=True)
    lam, u = torch.linalg.eigh(naive)
    ((u * lam.log().unsqueeze(-2)) @ u.mT * weight).sum().backward()
    assert torch.isnan(naive.grad).any()

    eye2 = torch.eye(4, dtype=F64, requires_grad=True)
    (L.sqrtm(eye2) * weight).sum().backward()
    torch.testing.assert_close(eye2.grad, 0.5 * weight, rtol=1e-12, atol=1e-12)


def test_nearly_repeated_eigenvalues_give_accurate_gradients():
    # Loewner divided differences in closed form: no cancellation at a gap of 1e-12.
    lam = torch.tensor([1.0, 1.0 + 1e-12, 3.0], dtype=F64)
    x = torch.diag(lam).requires_grad_()
    g = torch.ones(3, 3, dtype=F64)
    (L.logm(x) * g).sum().backward()
    expected = torch.tensor([[1.0, 1.0, np.log(3) / 2], [1.0, 1.0, np.log(3) / 2],
                             [np.log(3) / 2, np.log(3) / 2, 1 / 3]], dtype=F64)
    torch.testing.assert_close(x.grad, expected, rtol=1e-10, atol=1e-12)


LOEWNER_CASES = {
    "log": (spectral.LOG, "log"),
    "exp": (spectral.EXP, "exp"),
    "sqrt": (spectral.SQRT, "sqrt"),
    "inv_sqrt": (spectral.INV_SQRT, -0.5),
    "power_0.3": (spectral.Power(0.3), 0.3),
    "power_-0.8": (spectral.Power(-0.8), -0.8),
    "power_7": (spectral.Power(7.0), 7.0),
}


def _in_50_digits(name):
    """mpmath, the spectral function ``name`` of LOEWNER_CASES and its 50-digit twin."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    fn, spec = LOEWNER_CASES[name]
    return mpmath, fn, getattr(mpmath, spec) if isinstance(spec, str) else (lambda t: t ** spec)


@pytest.mark.parametrize("name", list(LOEWNER_CASES))
def test_loewner_matrices_match_50_digit_divided_differences(name):
    mpmath, fn, f = _in_50_digits(name)
    # spread, gaps from 1e-13 to 1e-3 (relative), exact ties, tiny eigenvalues
    lam = torch.tensor([1e-12, 1e-12 * (1 + 1e-10), 1e-6, 0.5, 0.5, 1.0, 1 + 1e-13, 1 + 1e-9,
                        1 + 1e-3, 3.0, 1e6], dtype=F64)
    if name == "exp":
        lam = torch.tensor([-30.0, -1.0, -1.0 + 1e-13, 0.0, 1e-9, 2.0, 2 + 1e-6, 30.0], dtype=F64)
    mp = [mpmath.mpf(float(v)) for v in lam]
    expected = torch.tensor([[float(mpmath.diff(f, a) if a == b else (f(a) - f(b)) / (a - b))
                              for b in mp] for a in mp], dtype=F64)
    torch.testing.assert_close(fn.loewner(lam), expected, rtol=5e-14, atol=0)


@pytest.mark.parametrize("p", [0.3, -0.8, 7.0, 1.0, 0.0, 25.0, "tensor"])
def test_log_and_power_loewner_match_50_digit_divided_differences(p):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    lam = torch.tensor([1e-13, 1e-12, 1e-12 * (1 + 1e-10), 1e-6, 0.5, 0.5, 1.0, 1 + 1e-13,
                        1 + 1e-9, 1 + 1e-3, 3.0, 1e6], dtype=F64)
    if p == "tensor":  # one exponent per channel, broadcast against the pairs
        lam, p = lam.expand(2, -1), torch.tensor([[[0.9]], [[-1.7]]], dtype=F64)
    powered = (p[..., 0] * lam.log()).exp() if isinstance(p, torch.Tensor) else lam ** p
    d_log, d_power = spectral.log_and_power_loewner(lam, p, powered)

    def table(f, row):
        mp = [mpmath.mpf(float(v)) for v in row]
        return [[float(mpmath.diff(f, a) if a == b else (f(a) - f(b)) / (a - b)) for b in mp]
                for a in mp]

    exponents = p.reshape(-1).tolist() if isinstance(p, torch.Tensor) else [p]
    rows = lam.reshape(-1, lam.shape[-1])
    expected = torch.tensor([table(lambda t, q=q: t ** q, row)
                             for q, row in zip(exponents, rows)], dtype=F64).reshape(d_power.shape)
    torch.testing.assert_close(d_power, expected, rtol=1e-14, atol=1e-300)
    torch.testing.assert_close(d_log, spectral.LOG.loewner(lam), rtol=0, atol=0)
    expected_log = torch.tensor(table(mpmath.log, rows[0]), dtype=F64)
    torch.testing.assert_close(d_log if lam.dim() == 1 else d_log[0], expected_log,
                               rtol=5e-16, atol=0)


def test_log_loewner_is_differentiable_outside_backward_passes():
    # the in-place evaluation is for values only; with autograd the pairwise formula is used
    lam = torch.tensor([0.5, 0.5 + 1e-9, 2.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(spectral.LOG.loewner, (lam,))


@pytest.mark.parametrize("fn, spec, lam", [
    (spectral.Power(25.0), 25.0, [1e-13, 1.0]), (spectral.Power(50.0), 50.0, [1e-7, 0.5, 1.0]),
    (spectral.EXP, "exp", [-800.0, -745.0, 0.0, 3.0]),
    (spectral.HALF_EXP, None, [-1500.0, -10.0, 0.0])])
def test_loewner_matrices_stay_finite_where_their_factors_overflow(fn, spec, lam):
    # lo^(p-1) expm1(p d) / expm1(d) and exp(lo) expm1(d) / d: once p d (or d) passes the
    # exponent range one factor underflows to 0 and the other overflows (0 * inf = NaN), while
    # the divided difference is finite; so were the gradients of powm and expm there.
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    f = (lambda t: mpmath.exp(t / 2)) if spec is None else (
        mpmath.exp if spec == "exp" else (lambda t: t ** spec))
    lam = torch.tensor(lam, dtype=F64)
    mp = [mpmath.mpf(float(v)) for v in lam]
    expected = torch.tensor([[float(mpmath.diff(f, a) if a == b else (f(a) - f(b)) / (a - b))
                              for b in mp] for a in mp], dtype=F64)
    # (subnormal entries such as 25 (1e-13)^24 carry fewer digits: an absolute floor)
    torch.testing.assert_close(fn.loewner(lam), expected, rtol=5e-14, atol=1e-300)
    x = torch.diag(lam).requires_grad_(True)
    matrix_fn = (lambda a: L.expm(a)) if spec == "exp" else (
        (lambda a: L.powm(a, spec)) if spec is not None else None)
    if matrix_fn is not None:
        (grad,) = torch.autograd.grad(matrix_fn(x).sum(), x)
        torch.testing.assert_close(grad, expected, rtol=5e-14, atol=1e-300)


@pytest.mark.parametrize("name", ["log", "exp", "power_0.3", "power_-0.8", "power_7"])
def test_second_divided_differences_match_50_digit_references(name):
    mpmath, fn, f = _in_50_digits(name)
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
    with pytest.raises(TypeError, match="second divided differences"):
        second_divided_differences(spectral.SQRT, torch.ones(3, dtype=F64))


def test_clamp_loewner_is_the_exact_divided_difference():
    # 1 for two eigenvalues above the threshold (however close), 0 for two below, a ratio for a
    # pair that straddles it; the derivative at ties
    lam = torch.tensor([0.5, 0.9, 1.0, 1.0 + 1e-14, 1.5, 1.5 + 1e-15, 2.0], dtype=F64)
    a, b = lam[:, None], lam[None, :]
    gap = torch.where(a == b, torch.ones_like(a - b), a - b)
    expected = torch.where(a == b, (a > 1).to(F64), (a.clamp_min(1) - b.clamp_min(1)) / gap)
    torch.testing.assert_close(spectral.ClampBelow(1.0).loewner(lam), expected, rtol=1e-15,
                               atol=0)
    assert spectral.ClampBelow(1.0).loewner(lam)[3, 2].item() == 1.0


def test_lyapunov_solves_the_equation_and_matches_scipy():
    p = random_spd(3, n=6, cond=50.0)
    v = torch.randn(3, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(2))
    sol = L.solve_lyapunov(p, v)
    torch.testing.assert_close(p @ sol + sol @ p, v, rtol=1e-10, atol=1e-10)
    ref = torch.from_numpy(np.stack([scipy.linalg.solve_continuous_lyapunov(a, b)
                                     for a, b in zip(p.numpy(), v.numpy())]))
    torch.testing.assert_close(sol, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("point", ["distinct", "repeated"])
def test_lyapunov_gradcheck(point):
    p = (distinct(seed=4) if point == "distinct" else repeated()).requires_grad_()
    v = torch.randn(2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: L.solve_lyapunov(L.sym(a), b), (p, v))


def _symmetric(batch, n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return L.sym(torch.randn(*batch, n, n, dtype=F64, generator=g)) + shift * torch.eye(n, dtype=F64)


def test_sylvester_matches_scipy_for_symmetric_indefinite_and_rectangular():
    a = _symmetric((3,), 5, seed=1, shift=0.5)  # indefinite: only lam_i + mu_j != 0 matters
    b = _symmetric((3,), 3, seed=2, shift=4.0)
    c = torch.randn(3, 5, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    x = L.solve_sylvester(a, b, c)
    ref = np.stack([scipy.linalg.solve_sylvester(*m) for m in zip(a.numpy(), b.numpy(), c.numpy())])
    torch.testing.assert_close(x, torch.from_numpy(ref), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a @ x + x @ b, c, rtol=1e-10, atol=1e-10)


def test_sylvester_with_equal_matrices_is_the_lyapunov_solve():
    p = random_spd(2, n=4, cond=20.0)
    v = torch.randn(2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(L.solve_sylvester(p, p, v), L.solve_lyapunov(p, v), rtol=1e-12,
                               atol=1e-13)


def test_sylvester_gradcheck_broadcast_and_float32():
    a = _symmetric((2,), 3, seed=6, shift=3.0).requires_grad_()
    b = _symmetric((), 2, seed=7, shift=3.0).requires_grad_()  # broadcast over the batch
    c = torch.randn(2, 3, 2, dtype=F64, generator=torch.Generator().manual_seed(8),
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y, z: L.solve_sylvester(L.sym(x), L.sym(y), z),
                                    (a, b, c))
    x32 = L.solve_sylvester(a.detach().float(), b.detach().float(), c.detach().float())
    assert x32.dtype == torch.float32
    torch.testing.assert_close(x32.double(), L.solve_sylvester(a, b, c).detach(), rtol=1e-5,
                               atol=1e-6)


def test_sylvester_and_lyapunov_solve_mixed_dtypes_in_the_wider_one():
    a, b = _symmetric((), 3, seed=9, shift=3.0), _symmetric((), 2, seed=10, shift=3.0)
    c = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(11))
    with riemtorch.config.override(eigh_in_float64=False):
        mixed = L.solve_sylvester(a.float(), b, c)
        wide = L.solve_sylvester(a.float().double(), b, c)
        torch.testing.assert_close(mixed, wide, rtol=1e-12, atol=1e-14)
        p = random_spd(1, n=3, cond=10.0)[0]
        torch.testing.assert_close(L.solve_lyapunov(p.float(), a), L.solve_lyapunov(
            p.float().double(), a), rtol=1e-12, atol=1e-14)


def test_sylvester_errors():
    a, b = torch.diag(torch.tensor([1.0, 2.0], dtype=F64)), -torch.eye(1, dtype=F64)
    with pytest.raises(ValueError, match="no unique solution"):
        L.solve_sylvester(a, b, torch.ones(2, 1, dtype=F64))
    with pytest.raises(ValueError, match=r"C must have shape \(\.\.\., 2, 1\)"):
        L.solve_sylvester(a, 2 * b.neg(), torch.ones(1, 2, dtype=F64))
    with pytest.raises(ValueError, match="not symmetric"):
        L.solve_sylvester(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=F64), b.neg(),
                          torch.ones(2, 1, dtype=F64))
    with pytest.raises(ValueError, match="do not broadcast"):
        L.solve_sylvester(a.expand(3, 2, 2), b.neg().expand(2, 1, 1), torch.ones(2, 1, dtype=F64))


def test_generalized_eigvalsh_matches_scipy_and_has_finite_gradient_at_equal_matrices():
    a, b = random_spd(3, n=5, cond=30.0, seed=1), random_spd(3, n=5, cond=30.0, seed=2)
    ref = torch.from_numpy(np.stack([scipy.linalg.eigh(x, y, eigvals_only=True)
                                     for x, y in zip(a.numpy(), b.numpy())]))
    torch.testing.assert_close(L.generalized_eigvalsh(a, b), ref, rtol=1e-10, atol=1e-12)
    same = b.clone().requires_grad_()
    L.generalized_eigvalsh(same, b).log().square().sum().backward()
    assert torch.isfinite(same.grad).all()
    assert torch.autograd.gradcheck(
        lambda x, y: L.generalized_eigvalsh(L.sym(x), L.sym(y)),
        (a[:1].clone().requires_grad_(), b[:1].clone().requires_grad_()))


def test_float32_input_is_decomposed_in_float64():
    x64 = random_spd(2, n=8, cond=1e6, seed=5)
    x32 = x64.float()
    exact = L.logm(x32.double())
    out = L.logm(x32)
    assert out.dtype == torch.float32
    assert float((out.double() - exact).abs().max() / exact.abs().max()) < 1e-6
    with riemtorch.config.override(eigh_in_float64=False):
        native = L.logm(x32)
    assert float((native.double() - exact).abs().max()) > float((out.double() - exact).abs().max())


BAD_INPUTS = [
    ("non-square", lambda: torch.ones(3, 4, dtype=F64), ValueError, "shape"),
    ("vector", lambda: torch.ones(3, dtype=F64), ValueError, "shape"),
    ("non-symmetric", lambda: torch.tensor([[2.0, 1.0], [0.0, 2.0]], dtype=F64), ValueError, "not symmetric"),
    ("nan", lambda: torch.tensor([[float("nan"), 0.0], [0.0, 1.0]], dtype=F64), ValueError, "NaN"),
    ("int dtype", lambda: torch.eye(2, dtype=torch.int64), TypeError, "dtype"),
    ("half dtype", lambda: torch.eye(2, dtype=torch.float16), TypeError, "dtype"),
    ("not a tensor", lambda: np.eye(2), TypeError, "torch.Tensor"),
    ("indefinite", lambda: torch.diag(torch.tensor([1.0, -1.0], dtype=F64)), ValueError, "positive definite"),
]


@pytest.mark.parametrize("label,make,error,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_clear_error(label, make, error, message):
    with pytest.raises(error, match=message):
        L.logm(make())


def test_validation_switch_skips_value_checks():
    asym = torch.tensor([[2.0, 1.0], [0.0, 2.0]], dtype=F64)
    with riemtorch.config.override(validate=False):
        L.sqrtm(asym)  # only the lower triangle is read
        with pytest.raises(ValueError, match="shape"):
            L.sqrtm(torch.ones(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="unknown config"):
        with riemtorch.config.override(validat=False):
            pass


def test_inputs_are_not_modified():
    x = random_spd(2, n=4)
    copy = x.clone()
    L.sqrtm_invsqrtm(x), L.logm(x), L.solve_lyapunov(x, x)
    assert torch.equal(x, copy)


@pytest.mark.parametrize("cond", [10.0, 1e2, 1e3, 1e4])
@pytest.mark.parametrize("n", [4, 32])
def test_newton_schulz_square_roots_match_eigh(cond, n):
    x = random_spd(6, n=n, cond=cond, seed=int(cond) + n)
    root, inv_root = L.sqrtm_invsqrtm_newton_schulz(x)
    ref_root, ref_inv = L.sqrtm_invsqrtm(x)
    for ours, ref in ((root, ref_root), (inv_root, ref_inv)):
        err = (ours - ref).norm(dim=(-2, -1)) / ref.norm(dim=(-2, -1))
        assert float(err.max()) < 1e-5


def test_newton_schulz_backward_matches_eigh_path_and_gradchecks():
    x = random_spd(2, n=5, cond=50.0, seed=9)
    g1, g2 = L.sym(torch.randn(2, 2, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(0)))
    grads = []
    for fn in (L.sqrtm_invsqrtm_newton_schulz, L.sqrtm_invsqrtm):
        a = x.clone().requires_grad_()
        root, inv_root = fn(a)
        ((root * g1).sum() + (inv_root * g2).sum()).backward()
        grads.append(a.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-11)
    assert torch.autograd.gradcheck(lambda a: L.sqrtm_invsqrtm_newton_schulz(L.sym(a), 40),
                                    (torch.eye(4, dtype=F64).expand(2, 4, 4).clone().requires_grad_(),))
    with pytest.raises(ValueError, match="iterations"):
        L.sqrtm_invsqrtm_newton_schulz(x, 0)


@pytest.mark.parametrize("kernel", ["half_sum_root", "inverse_half_sum_root"])
@pytest.mark.parametrize("point", ["distinct", "repeated"])
def test_kernel_congruence_values_and_gradcheck(kernel, point):
    from riemtorch.linalg import congruence

    k = {"half_sum_root": congruence.HalfSumRoot(),
         "inverse_half_sum_root": congruence.InverseHalfSumRoot()}[kernel]
    x = distinct(seed=6) if point == "distinct" else repeated()
    v = L.sym(torch.randn(2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(5)))
    lam, u = torch.linalg.eigh(x)
    pair = 0.5 * (lam.unsqueeze(-1) + lam.unsqueeze(-2))
    weight = pair.sqrt() if kernel == "half_sum_root" else pair.rsqrt()
    expected = u @ (weight * (u.mT @ v @ u)) @ u.mT
    torch.testing.assert_close(congruence.kernel_congruence(x, v, k), expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: congruence.kernel_congruence(L.sym(a), L.sym(b), k),
                                    (x.clone().requires_grad_(), v.clone().requires_grad_()))


@pytest.mark.parametrize("shared", ["x", "v"])
def test_kernel_congruence_broadcasts_without_copies(shared):
    """A shared X is decomposed once (one eigh of its own shape); values and gradients equal
    those of the explicitly broadcast inputs."""
    from riemtorch.linalg import congruence

    k = congruence.InverseHalfSumRoot()
    g = torch.Generator().manual_seed(7)
    x = distinct(seed=8)[:1] if shared == "x" else distinct(seed=8)
    v = L.sym(torch.randn(3, 1, 4, 4, dtype=F64, generator=g))
    if shared == "v":
        v = v[0]
    out = congruence.kernel_congruence(x, v, k)
    xb, vb = torch.broadcast_tensors(x, v)
    torch.testing.assert_close(out, congruence.kernel_congruence(xb.clone(), vb.clone(), k),
                               rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: congruence.kernel_congruence(L.sym(a), L.sym(b), k),
                                    (x.clone().requires_grad_(), v.clone().requires_grad_()))


def test_batched_eigh_host_path_returns_lapack_results(monkeypatch):
    """The host route of linalg.batched (taken on CUDA for sizes 33-64) gives torch's results,
    eigenpairs and eigenvalues alike; on CPU tensors the copies are no-ops."""
    from riemtorch.linalg import batched

    x = random_spd(6, n=40, cond=50.0, seed=3)
    assert not batched._on_host(x)  # CPU input stays where it is
    monkeypatch.setattr(batched, "_on_host", lambda t: True)
    lam, u = batched.eigh(x)
    ref_lam, ref_u = torch.linalg.eigh(x)
    torch.testing.assert_close(lam, ref_lam, rtol=0, atol=0)
    torch.testing.assert_close(u.abs(), ref_u.abs(), rtol=0, atol=0)
    torch.testing.assert_close(batched.eigvalsh(x), ref_lam, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("restart", [20, 3])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_gmres_solves_nonsymmetric_matrix_systems(batch, restart):
    """Against a dense solve of the Kronecker form of X -> X - 0.9 A X B (not symmetric)."""
    from riemtorch.manifolds.spd.krylov import gmres

    n = 4
    g = torch.Generator().manual_seed(16)
    a = torch.randn(*batch, n, n, dtype=F64, generator=g) / n
    b = torch.randn(*batch, n, n, dtype=F64, generator=g) / n
    rhs = torch.randn(*batch, n, n, dtype=F64, generator=g)
    products = []

    def op(x):
        products.append(1)
        return x - 0.9 * (a @ x @ b)

    x = gmres(op, rhs, atol=1e-12, restart=restart)
    eye = torch.eye(n * n, dtype=F64)
    kron = torch.stack([torch.kron(p, q.mT.contiguous()) for p, q in
                        zip(a.reshape(-1, n, n), b.reshape(-1, n, n))]).reshape(*batch, n * n, n * n)
    expected = torch.linalg.solve(eye - 0.9 * kron, rhs.reshape(*batch, n * n, 1)).reshape(rhs.shape)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-11)
    assert len(products) <= (n * n + 1 if restart == 20 else 200)
    # a zero right-hand side takes no product; a product cap returns the last iterate
    products.clear()
    assert torch.equal(gmres(op, torch.zeros_like(rhs), atol=1e-12), torch.zeros_like(rhs))
    assert not products
    gmres(op, rhs, atol=1e-300, max_iter=5)
    assert len(products) <= 6
    if batch:
        # entries with a zero right-hand side (or converged early) stay finite and at zero
        # while the others iterate
        partly = rhs.clone()
        partly[1] = 0
        x = gmres(op, partly, atol=1e-12, restart=restart)
        assert torch.equal(x[1], torch.zeros_like(x[1]))
        torch.testing.assert_close(x[[0, 2]], expected[[0, 2]], rtol=0, atol=1e-11)


@pytest.mark.parametrize("rows", [3, 200_000])  # the product, and the contraction (>= 8 MiB)
def test_dot_matches_numpy_with_both_evaluations(rows):
    from riemtorch.linalg.vector import dot

    g = torch.Generator().manual_seed(0)
    a = torch.randn(rows, 7, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(rows, 7, dtype=torch.float64, generator=g)
    res = dot(a, b)
    assert res.shape == (rows, 1) and dot(a, b, keepdim=False).shape == (rows,)
    np.testing.assert_allclose(res.detach().numpy()[:, 0],
                               np.einsum("ij,ij->i", a.detach().numpy(), b.numpy()), rtol=0, atol=1e-13)
    res.sum().backward()
    assert torch.equal(a.grad, b)
    # broadcast operands take the product and sum
    assert torch.allclose(dot(a[:1], b), (a[:1] * b).sum(-1, keepdim=True))
