"""Property-based tests of riemtorch.linalg and the SPD metrics (hypothesis).

The fixed-seed tests (test_linalg.py, test_spd_numerics.py, test_spd_reference.py,
test_axioms.py) check well-conditioned random matrices. Here hypothesis searches the edges:
exactly repeated and clustered eigenvalues, spectra spread over many orders of magnitude,
tiny and huge scales, nearly singular matrices, ``n = 1`` and float32.

Every matrix is built as ``Q diag(lam) Q^T`` from drawn eigenvalues ``lam`` and a Haar
orthogonal ``Q`` from a drawn seed (or ``Q = I``), so ``Q f(lam) Q^T`` is an exact reference
up to the rounding of the matrix itself. Tolerances follow from first-order perturbation
theory: forming ``X`` and decomposing it (backward stable) perturbs it by about
``n eps max(lam)``, and a matrix function amplifies a perturbation by at most the largest
divided difference of ``f`` over the spectrum (``max |f'|`` on ``[min lam, max lam]`` for the
convex or concave functions here); each tolerance states its own bound.
"""

import math
import warnings

import mpmath
import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import riemtorch
from riemtorch import linalg as L

F64, F32 = torch.float64, torch.float32
EPS = torch.finfo(F64).eps
EPS32 = torch.finfo(F32).eps


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The matrices here are at most 6 x 6: torch's intra-op threads add only synchronisation,
    which on a busy two-core machine costs more than the work (this module ran 4x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PROPERTIES = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])
FEW = settings(PROPERTIES, max_examples=15)


# ---- drawing SPD matrices ------------------------------------------------------------------

def orthogonal(n, seed):
    """Haar orthogonal ``n x n`` matrix from ``seed`` (the identity for ``seed=None``)."""
    if seed is None:
        return torch.eye(n, dtype=F64)
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))
    return q * torch.sign(torch.diagonal(r))


def from_spectrum(q, values):
    """``Q diag(values) Q^T``, symmetrised."""
    return L.sym((q * values) @ q.T)


class Spectral:
    """A symmetric matrix given by its exact eigenvalues ``lam`` and eigenvectors ``q``
    (``basis`` names them in reports: the seed of :func:`orthogonal`)."""

    def __init__(self, lam, q, basis="given"):
        self.lam, self.q, self.basis = lam, q, basis
        self.n = lam.shape[0]

    def matrix(self, dtype=F64):
        return from_spectrum(self.q, self.lam).to(dtype)

    def apply(self, f):
        """``Q f(lam) Q^T``: the exact matrix function, rounded once."""
        return from_spectrum(self.q, f(self.lam))

    @property
    def low(self):
        return float(self.lam.min())

    @property
    def high(self):
        return float(self.lam.max())

    @property
    def top(self):
        return float(self.lam.abs().max())

    @property
    def cond(self):
        return self.high / self.low

    def __repr__(self):
        return f"Spectral(lam={self.lam.tolist()}, basis={self.basis!r})"


seeds = st.one_of(st.none(), st.integers(0, 2 ** 32 - 1))
# relative offsets that turn exact ties into near-ties (0: the tie stays exact)
NEAR_TIES = [0.0, 0.0, 1e-15, 1e-12, 1e-9, 1e-6]


@st.composite
def spectra(draw, sizes=(1, 6), log10_scale=(-100.0, 100.0), max_log10_cond=10.0, size=None):
    """SPD spectra: ``n`` eigenvalues log-uniform over a drawn condition number above a drawn
    scale, several of them picking the same level (exact ties) or a level nudged by a tiny
    relative offset (near-ties)."""
    n = size if size is not None else draw(st.integers(*sizes))
    low = draw(st.floats(*log10_scale))
    spread = draw(st.floats(0.0, max_log10_cond))
    levels = draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=n))
    picks = draw(st.lists(st.integers(0, len(levels) - 1), min_size=n, max_size=n))
    nudges = draw(st.lists(st.sampled_from(NEAR_TIES), min_size=n, max_size=n))
    lam = [10.0 ** (low + spread * levels[i]) * (1.0 + nudge) for i, nudge in zip(picks, nudges)]
    return torch.tensor(lam, dtype=F64)


haar_seeds = st.integers(0, 2 ** 32 - 1)


@st.composite
def spd(draw, bases=seeds, **kwargs):
    """A :class:`Spectral` SPD matrix with eigenvectors from ``bases`` (other keyword
    arguments: those of :func:`spectra`)."""
    lam = draw(spectra(**kwargs))
    seed = draw(bases)
    return Spectral(lam, orthogonal(lam.shape[0], seed), seed)


@st.composite
def symmetric(draw, sizes=(1, 6), bound=30.0):
    """A :class:`Spectral` symmetric matrix with eigenvalues in ``[-bound, bound]``, with ties."""
    n = draw(st.integers(*sizes))
    levels = draw(st.lists(st.floats(-bound, bound), min_size=1, max_size=n))
    picks = draw(st.lists(st.integers(0, len(levels) - 1), min_size=n, max_size=n))
    nudges = draw(st.lists(st.sampled_from(NEAR_TIES), min_size=n, max_size=n))
    lam = torch.tensor([levels[i] + nudge for i, nudge in zip(picks, nudges)], dtype=F64)
    seed = draw(seeds)
    return Spectral(lam, orthogonal(n, seed), seed)


def frobenius(a):
    return float(torch.linalg.matrix_norm(a))


def check_error(err, tol, what):
    assert err <= tol, f"{what}: error {err:.3g} > tolerance {tol:.3g}"


def assert_close_to(actual, expected, tol, what=""):
    """``||actual - expected||_F <= tol``, with the error and the bound in the message."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert bool(torch.isfinite(actual).all()), f"{what}: not finite: {actual}"
    check_error(frobenius(actual.double() - expected.double()), tol, what)


def assert_near(actual, expected, tol, what=""):
    """``|actual - expected| <= tol`` for numbers."""
    assert math.isfinite(actual), f"{what}: not finite: {actual}"
    check_error(abs(actual - expected), tol, what)


def random_direction(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=F64, generator=g)


# ---- the matrix functions and their exact forms ---------------------------------------------

class Function:
    """A matrix function of riemtorch.linalg (``ours``) with its scalar form ``f``, bounds
    ``d1``, ``d2`` of ``|f'|``, ``|f''|`` on an interval ``(low, high)``, and ``f``, ``f'`` in
    mpmath for divided differences; ``p`` is the exponent of a power."""

    def __init__(self, name, ours, f, d1, d2, mp_f, mp_df, p=None):
        self.name, self.ours, self.f = name, ours, f
        self.d1, self.d2 = d1, d2
        self.mp_f, self.mp_df = mp_f, mp_df
        self.p = p

    def __repr__(self):
        return self.name


def _endpoint_max(g):
    """``max |g|`` on ``[low, high]`` for a ``g`` whose modulus is monotone there."""
    return lambda low, high: max(abs(g(low)), abs(g(high)))


def power_function(p):
    return Function(
        f"powm({p:g})", lambda x: L.powm(x, p), lambda t: t.pow(p),
        _endpoint_max(lambda t: p * t ** (p - 1)),
        _endpoint_max(lambda t: p * (p - 1) * t ** (p - 2)),
        lambda t: t ** p, lambda t: p * t ** (p - 1), p=p)


SQRT = Function("sqrtm", L.sqrtm, torch.sqrt, _endpoint_max(lambda t: 0.5 * t ** -0.5),
                _endpoint_max(lambda t: 0.25 * t ** -1.5), mpmath.sqrt,
                lambda t: 0.5 / mpmath.sqrt(t))
INV_SQRT = Function("invsqrtm", L.invsqrtm, torch.rsqrt, _endpoint_max(lambda t: 0.5 * t ** -1.5),
                    _endpoint_max(lambda t: 0.75 * t ** -2.5), lambda t: 1 / mpmath.sqrt(t),
                    lambda t: -0.5 * t ** mpmath.mpf(-1.5))
LOG = Function("logm", L.logm, torch.log, _endpoint_max(lambda t: 1 / t),
               _endpoint_max(lambda t: t ** -2), mpmath.log, lambda t: 1 / t)
EXP = Function("expm", L.expm, torch.exp, _endpoint_max(math.exp), _endpoint_max(math.exp),
               mpmath.exp, mpmath.exp)
SPD_FUNCTIONS = [SQRT, INV_SQRT, LOG]
exponents = st.floats(-3.0, 3.0).filter(lambda p: p != 0.0)


def spd_functions():
    return st.one_of(st.sampled_from(SPD_FUNCTIONS), exponents.map(power_function))


def perturbation_tolerance(fn, a: Spectral, safety=20.0):
    """First-order bound on ``||f(X) - Q f(lam) Q^T||_F``: the matrix perturbed by
    ``n eps max|lam|`` (its rounding and the backward error of ``eigh``) times the largest
    divided difference of ``f``, plus the rounding of the result."""
    scale = max(abs(float(v)) for v in fn.f(a.lam))
    return safety * a.n * EPS * (a.top * fn.d1(a.low, a.high) + scale)


# ---- matrix functions: values ----------------------------------------------------------------

@PROPERTIES
@given(fn=spd_functions(), a=spd())
def test_spd_functions_equal_the_function_of_the_eigenvalues(fn, a):
    # scales 1e-100 to 1e100 and condition numbers up to 1e10 (all above the eigenvalue floor)
    if fn.p is not None:
        # keep x^p and its first two derivatives representable
        assume(max(abs(math.log10(a.low)), abs(math.log10(a.high))) * (abs(fn.p) + 2) < 300)
    out = fn.ours(a.matrix())
    assert out.dtype == F64
    assert_close_to(out, a.apply(fn.f), perturbation_tolerance(fn, a), fn.name)


@PROPERTIES
@given(a=spd())
def test_sqrtm_invsqrtm_is_the_pair_of_roots(a):
    root, inv_root = L.sqrtm_invsqrtm(a.matrix())
    assert_close_to(root, a.apply(torch.sqrt), perturbation_tolerance(SQRT, a), "sqrtm")
    assert_close_to(inv_root, a.apply(torch.rsqrt), perturbation_tolerance(INV_SQRT, a),
                    "invsqrtm")
    # one decomposition: the two roots are exact inverses up to the rounding of their product
    eye = torch.eye(a.n, dtype=F64)
    assert_close_to(root @ inv_root, eye, 20 * a.n * EPS * math.sqrt(a.cond), "root @ inv_root")


@PROPERTIES
@given(a=symmetric())
def test_expm_and_sym_funcm_equal_the_function_of_the_eigenvalues(a):
    # symmetric, indefinite input with ties: eigenvalues in [-30, 30]
    x = a.matrix()
    scale = math.exp(a.high)
    tol = 20 * a.n * EPS * (a.top * scale + scale)
    assert_close_to(L.expm(x), a.apply(torch.exp), tol, "expm")
    # a user function: the sine is 1-Lipschitz
    assert_close_to(L.sym_funcm(x, torch.sin, torch.cos), a.apply(torch.sin),
                    20 * a.n * EPS * (a.top + 1), "sym_funcm(sin)")


def scipy_reference(fn, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.as_tensor(np.real(fn(x.numpy())), dtype=F64)


SCIPY = {
    "sqrtm": (SQRT, scipy.linalg.sqrtm),
    "logm": (LOG, scipy.linalg.logm),
    "invsqrtm": (INV_SQRT, lambda a: scipy.linalg.fractional_matrix_power(a, -0.5)),
    "powm(0.3)": (power_function(0.3), lambda a: scipy.linalg.fractional_matrix_power(a, 0.3)),
    "powm(-1.7)": (power_function(-1.7),
                   lambda a: scipy.linalg.fractional_matrix_power(a, -1.7)),
}


@PROPERTIES
@given(name=st.sampled_from(sorted(SCIPY)), a=spd(log10_scale=(-3.0, 3.0), max_log10_cond=6.0))
def test_spd_functions_match_scipy(name, a):
    fn, reference = SCIPY[name]
    x = a.matrix()
    # scipy's Schur-based algorithms are backward stable too: twice the perturbation bound
    assert_close_to(fn.ours(x), scipy_reference(reference, x), 2 * perturbation_tolerance(fn, a),
                    name)


@PROPERTIES
@given(a=symmetric(bound=20.0))
def test_expm_matches_scipy(a):
    x = a.matrix()
    expected = scipy_reference(scipy.linalg.expm, x)
    # scaling and squaring squares its Pade error up: scipy is about 1e-12 relative off here
    # (e.g. 9e-13 at 4 I), where the eigendecomposition keeps n eps max|lam| relative
    assert_close_to(L.expm(x), expected, 1e-11 * frobenius(expected), "expm")


# ---- matrix functions: algebraic laws --------------------------------------------------------

@PROPERTIES
@given(fn=spd_functions(), a=spd(log10_scale=(-30.0, 30.0)))
def test_spd_functions_commute_with_their_argument(fn, a):
    # f(X) is built on the eigenvectors of X itself, so the commutator is rounding only,
    # ||f(X) X - X f(X)|| <= 2 ||f(X)|| ||E|| with ||E|| about n eps ||X||, however
    # ill-conditioned X or close its eigenvalues (eigenvectors of a cluster may rotate freely).
    x = a.matrix()
    fx = fn.ours(x)
    commutator = fx @ x - x @ fx
    tol = 40 * a.n * EPS * frobenius(fx) * frobenius(x)
    assert_close_to(commutator, torch.zeros_like(x), tol, f"[{fn.name}(X), X]")


@PROPERTIES
@given(a=spd())
def test_square_root_squares_back(a):
    x = a.matrix()
    root = L.sqrtm(x)
    # residual of a computed root: ||E|| (about n eps ||X||) plus the rounding of the product
    assert_close_to(root @ root, x, 20 * a.n * EPS * a.high, "sqrtm(X)^2")
    inv_root = L.invsqrtm(x)
    eye = torch.eye(a.n, dtype=F64)
    # X^-1/2 X X^-1/2: rounding of X (n eps max lam) magnified by ||X^-1/2||^2 = 1 / min lam
    assert_close_to(inv_root @ x @ inv_root, eye, 20 * a.n * EPS * a.cond, "X^-1/2 X X^-1/2")


@PROPERTIES
@given(a=spd())
def test_expm_inverts_logm(a):
    x = a.matrix()
    log = L.logm(x)
    # the logarithm is exact for the decomposition of X + E; its eigenvalues, recovered by a
    # second eigh to about n eps max|log lam|, come back through exp with relative error of
    # that size
    spread = max(1.0, abs(math.log(a.low)), abs(math.log(a.high)))
    assert_close_to(L.expm(log), x, 20 * a.n * EPS * spread * a.high, "expm(logm(X))")


@PROPERTIES
@given(a=symmetric(bound=15.0))
def test_logm_inverts_expm(a):
    s = a.matrix()
    # exp(S) has condition number exp(spread): the log of its rounding has error
    # n eps cond(exp(S))
    cond = math.exp(a.high - a.low)
    assert_close_to(L.logm(L.expm(s)), s, 20 * a.n * EPS * (cond + a.top), "logm(expm(S))")


@PROPERTIES
@given(a=spd(log10_scale=(-20.0, 20.0)), p=st.floats(-3.0, 3.0), q=st.floats(-3.0, 3.0))
def test_powers_multiply_by_adding_exponents(a, p, q):
    x = a.matrix()
    xp, xq, xpq = L.powm(x, p), L.powm(x, q), L.powm(x, p + q)
    # X^p and X^q come from the same decomposition: their product is X^(p+q) up to the
    # rounding of that decomposition (n eps, relative to ||X^p|| ||X^q||), plus the rounding
    # of X itself seen through the larger of |p|, |q|, |p+q| ...
    big = max(abs(p), abs(q), abs(p + q), 1.0)
    tol = 40 * a.n * EPS * (frobenius(xp) * frobenius(xq) + big * a.cond * frobenius(xpq))
    assert_close_to(xp @ xq, xpq, tol, f"X^{p:g} X^{q:g}")


@PROPERTIES
@given(a=spd(log10_scale=(-50.0, 50.0), max_log10_cond=8.0))
def test_special_powers(a):
    x = a.matrix()
    eye = torch.eye(a.n, dtype=F64)
    # U U^T for the computed eigenvectors: orthonormal to n eps
    assert_close_to(L.powm(x, 0.0), eye, 4 * a.n * EPS, "X^0")
    assert_close_to(L.powm(x, 1), x, 20 * a.n * EPS * a.high, "X^1")
    torch.testing.assert_close(L.powm(x, 0.5), L.sqrtm(x), rtol=1e-13, atol=1e-13 * a.high ** 0.5)
    torch.testing.assert_close(L.powm(x, -0.5), L.invsqrtm(x), rtol=1e-13,
                               atol=1e-13 * a.low ** -0.5)
    # the inverse, as far as it is determined by X: cond(X) n eps relative
    inverse = a.apply(torch.reciprocal)
    assert_close_to(L.powm(x, -1), inverse, 20 * a.n * EPS * a.cond / a.low, "X^-1")


@st.composite
def clamp_cases(draw):
    """A symmetric spectrum and a threshold below, among, at or above its eigenvalues."""
    a = draw(spd(log10_scale=(-10.0, 10.0), max_log10_cond=8.0))
    where = draw(st.sampled_from(["below", "among", "at", "above"]))
    values = sorted(a.lam.tolist())
    if where == "below":
        threshold = values[0] * draw(st.floats(1e-6, 0.999))
    elif where == "above":
        threshold = values[-1] * draw(st.floats(1.001, 1e6))
    elif where == "at":
        threshold = draw(st.sampled_from(values))
    else:
        threshold = values[0] * (values[-1] / values[0]) ** draw(st.floats(0.0, 1.0))
    return a, threshold


@PROPERTIES
@given(case=clamp_cases())
def test_clamp_eigenvalues_is_the_exact_rectification(case):
    a, threshold = case
    x = a.matrix()
    out = L.clamp_eigenvalues(x, threshold)
    # max(., t) is 1-Lipschitz: the perturbation of X passes through unamplified
    tol = 20 * a.n * EPS * max(a.high, threshold)
    assert_close_to(out, a.apply(lambda t: t.clamp_min(threshold)), tol, "clamp")
    assert float(torch.linalg.eigvalsh(out).min()) >= threshold - tol
    assert_close_to(L.clamp_eigenvalues(out, threshold), out, tol, "clamp twice")
    if a.low > threshold * (1 + 1e-6):
        # nothing to clamp: returned as it is (symmetrised), without a decomposition
        assert torch.equal(out, x)


@PROPERTIES
@given(a=spd(log10_scale=(-10.0, 10.0), max_log10_cond=0.0), dtype=st.sampled_from([F64, F32]),
       below=st.floats(0.3, 25.0))
def test_nearly_singular_input_is_floored_not_nan(a, dtype, below):
    # An eigenvalue (10^below times) below eps * max: the input is singular to working
    # precision. The numerical policy clamps it at eps * max, eps of the input dtype (or
    # raises ValueError for a clearly negative one); either way no NaN or infinity comes out.
    eps = riemtorch.config.eigenvalue_floor(dtype)
    lam = a.lam.clone()
    lam[0] = lam.max() * eps * 10.0 ** -below
    b = Spectral(lam, a.q)
    x = b.matrix(dtype)
    top = float(torch.linalg.eigvalsh(x.double()).max())
    floor = eps * top
    try:
        log, inv_root = L.logm(x), L.invsqrtm(x)
    except ValueError as err:
        assert "not positive definite" in str(err)
        # raised only for an eigenvalue below -n * floor
        assert float(torch.linalg.eigvalsh(x.double()).min()) < -b.n * floor * 0.5
        return
    assert log.dtype == dtype and inv_root.dtype == dtype
    assert bool(torch.isfinite(log).all()) and bool(torch.isfinite(inv_root).all())
    # nothing below the floor survives (up to the rounding of the results)
    slack = 10 * b.n * eps
    assert float(torch.linalg.eigvalsh(log.double()).min()) >= (
        math.log(floor) - slack * max(1.0, abs(math.log(floor))))
    assert float(torch.linalg.eigvalsh(inv_root.double()).max()) <= floor ** -0.5 * (1 + slack)


# ---- matrix functions: gradients ------------------------------------------------------------

def divided_difference(fn, a, b):
    """``(f(a) - f(b)) / (a - b)`` (``f'(a)`` for ``a == b``) of two floats, in as many digits
    as the cancellation takes: doubled from 40 until two precisions give the same nonzero
    value to 1e-20 (a difference that stays zero is zero: f is flat there)."""
    a, b = float(a), float(b)
    previous = None
    for dps in (40, 80, 160, 320, 640, 1280):
        with mpmath.workdps(dps):
            x, y = mpmath.mpf(a), mpmath.mpf(b)
            value = fn.mp_df(x) if a == b else (fn.mp_f(x) - fn.mp_f(y)) / (x - y)
            if previous is not None and value != 0 and abs(value - previous) <= 1e-20 * abs(value):
                break
            previous = value
    return float(value)


def divided_differences(fn, lam):
    """The divided differences of ``fn`` at all pairs of the exact eigenvalues ``lam``."""
    return torch.tensor([[divided_difference(fn, a, b) for b in lam.tolist()]
                         for a in lam.tolist()], dtype=F64)


def daleckii_krein(fn, a: Spectral, g):
    """The gradient of ``<f(X), G>`` at ``X = Q diag(lam) Q^T``: ``Q (L o (Q^T sym(G) Q)) Q^T``."""
    q = a.q
    return q @ (divided_differences(fn, a.lam) * (q.T @ L.sym(g) @ q)) @ q.T


def gradient_tolerance(fn, a: Spectral, g, safety=20.0):
    """The reference gradient is exact for the exact spectrum. The computed X is off by
    about n eps max|lam|, which moves the gradient by that times the second divided
    differences (at most max|f''| / 2 on the spectrum's interval), and the rounding of the
    result adds n eps max|f'|, both relative to ||G||."""
    return safety * a.n * EPS * frobenius(g) * (fn.d1(a.low, a.high)
                                                + a.top * fn.d2(a.low, a.high))


def gradient_of(function, x, g):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((function(x) * g).sum(), x)
    return grad


@PROPERTIES
@given(fn=spd_functions(), a=spd(log10_scale=(-6.0, 6.0), max_log10_cond=6.0),
       seed=st.integers(0, 2 ** 32 - 1))
def test_gradients_are_the_daleckii_krein_formula_at_ties_and_near_ties(fn, a, seed):
    # G need not be symmetric: the gradient is that of f(sym(X)), symmetric
    g = random_direction((a.n, a.n), seed)
    grad = gradient_of(fn.ours, a.matrix(), g)
    assert_close_to(grad, grad.T, 4 * a.n * EPS * frobenius(grad), "symmetry")
    assert_close_to(grad, daleckii_krein(fn, a, g), gradient_tolerance(fn, a, g), fn.name)


@PROPERTIES
@given(a=symmetric(bound=20.0), seed=st.integers(0, 2 ** 32 - 1))
def test_expm_and_sym_funcm_gradients_are_the_daleckii_krein_formula(a, seed):
    g = random_direction((a.n, a.n), seed)
    x = a.matrix()
    assert_close_to(gradient_of(L.expm, x, g), daleckii_krein(EXP, a, g),
                    gradient_tolerance(EXP, a, g), "expm")
    # sym_funcm divides differences of f (cancellation: 2 eps max|f| / gap, at most
    # 2 sqrt(eps)) except for two eigenvalues closer than sqrt(eps) max(|a|, |b|, 1), whose
    # mean derivative is off by |f'''| gap^2 / 12 at most
    sine = Function("sin", None, torch.sin, lambda lo, hi: 1.0, lambda lo, hi: 1.0,
                    mpmath.sin, mpmath.cos)
    gaps = (a.lam[:, None] - a.lam[None, :]).abs()
    scale = torch.maximum(a.lam.abs()[:, None], a.lam.abs()[None, :]).clamp_min(1.0)
    switch = EPS ** 0.5 * scale
    cancellation = torch.where(gaps > switch, 2 * EPS / gaps, EPS * switch ** 2 / 12)
    switch = 4 * float(cancellation.max()) * a.n * frobenius(g)
    assert_close_to(gradient_of(lambda t: L.sym_funcm(t, torch.sin, torch.cos), x, g),
                    daleckii_krein(sine, a, g), gradient_tolerance(sine, a, g) + switch,
                    "sym_funcm(sin)")


@PROPERTIES
@given(case=clamp_cases(), seed=st.integers(0, 2 ** 32 - 1))
def test_clamp_gradient_is_the_exact_divided_difference(case, seed):
    a, threshold = case
    # at an eigenvalue equal to the threshold the clamp has no derivative: keep them apart
    # by far more than the rounding of X
    gap = float((a.lam - threshold).abs().min())
    assume(gap > 1e-6 * a.high)
    clamp = Function("clamp", None, lambda t: t.clamp_min(threshold), lambda lo, hi: 1.0,
                     None, lambda t: max(t, threshold), lambda t: 1.0 if t > threshold else 0.0)
    g = random_direction((a.n, a.n), seed)
    grad = gradient_of(lambda t: L.clamp_eigenvalues(t, threshold), a.matrix(), g)
    # 1-Lipschitz divided differences, which change at the scale of the gap to the threshold
    tol = 20 * a.n * EPS * frobenius(g) * (1 + max(a.high, threshold) / gap)
    assert_close_to(grad, daleckii_krein(clamp, a, g), tol, "clamp")


@st.composite
def extreme_spreads(draw, low, high):
    """Eigenvalues ``(n,)``, ``n`` in 2..4, with largest ``0``, smallest in ``[-high, -low]``
    and the others between, with ties."""
    n = draw(st.integers(2, 4))
    bottom = -draw(st.floats(low, high))
    middle = draw(st.lists(st.sampled_from([0.0, bottom]) | st.floats(bottom, 0.0),
                           min_size=n - 2, max_size=n - 2))
    return torch.tensor([bottom, *middle, 0.0], dtype=F64)


@PROPERTIES
@given(logs=extreme_spreads(11 * math.log(10), 15 * math.log(10)), p=st.floats(30.0, 60.0),
       spread=extreme_spreads(710.0, 1600.0), seeds=st.tuples(seeds, seeds),
       seed=st.integers(0, 2 ** 32 - 1))
def test_gradients_stay_exact_at_extreme_spreads(logs, p, spread, seeds, seed):
    # X^p with p log(cond X) beyond log(max float) = 709.8 (the small eigenvalues of X^p
    # underflow; cond X from 1e11 to 1e15, above the eigenvalue floor) and exp(S) with
    # eigenvalues 710 to 1600 apart, both with largest eigenvalue 1: the divided differences
    # are at most of unit size although their factors over- and underflow
    a = Spectral(logs.exp(), orthogonal(logs.shape[0], seeds[0]), seeds[0])
    fn = power_function(p)
    g = random_direction((a.n, a.n), seed)
    grad = gradient_of(fn.ours, a.matrix(), g)
    assert_close_to(grad, daleckii_krein(fn, a, g), gradient_tolerance(fn, a, g), fn.name)
    s = Spectral(spread, orthogonal(spread.shape[0], seeds[1]), seeds[1])
    g = random_direction((s.n, s.n), seed)
    grad = gradient_of(L.expm, s.matrix(), g)
    assert_close_to(grad, daleckii_krein(EXP, s, g), gradient_tolerance(EXP, s, g), "expm")


GRADCHECK_FUNCTIONS = {
    "sqrtm": L.sqrtm,
    "invsqrtm": L.invsqrtm,
    "logm": L.logm,
    "expm": L.expm,
    "powm(0.7)": lambda x: L.powm(x, 0.7),
    "powm(-1.3)": lambda x: L.powm(x, -1.3),
    "sqrtm_invsqrtm": L.sqrtm_invsqrtm,
    "sym_funcm(tanh)": lambda x: L.sym_funcm(x, torch.tanh, lambda t: 1 - torch.tanh(t) ** 2),
}


@FEW
@given(name=st.sampled_from(sorted(GRADCHECK_FUNCTIONS)),
       a=spd(sizes=(1, 3), log10_scale=(-1.0, 1.0), max_log10_cond=2.0))
def test_gradcheck_at_random_spectra_with_ties(name, a):
    function = GRADCHECK_FUNCTIONS[name]
    x = a.matrix()
    # gradcheck's absolute tolerance (1e-5) assumes outputs of unit size: the finite
    # differences carry eps |f| / step, 5e-6 at expm(10 I), so large outputs are normalised;
    # eigenvalues stay far above the step 1e-6
    outputs = function(x)
    scale = max(1.0, *(float(t.abs().max()) for t in
                       (outputs if isinstance(outputs, tuple) else (outputs,))))

    def normalised(t):
        out = function(L.sym(t))
        return tuple(o / scale for o in out) if isinstance(out, tuple) else out / scale

    assert torch.autograd.gradcheck(normalised, (x.requires_grad_(True),))


# ---- float32 ---------------------------------------------------------------------------------

@PROPERTIES
@given(fn=st.sampled_from([SQRT, INV_SQRT, LOG, power_function(0.37), power_function(-1.5)]),
       a=spd(log10_scale=(-6.0, 6.0), max_log10_cond=6.0), seed=st.integers(0, 2 ** 32 - 1))
def test_float32_matrix_functions_are_the_float64_result_rounded(fn, a, seed):
    # float32 input is decomposed in float64 (numerical policy): at condition numbers up to
    # 1e6 the result is the float64 result for the same (rounded) input, rounded once to
    # float32 (eps32 / 2 per entry), and so is the gradient
    x32 = a.matrix(F32)
    out = fn.ours(x32)
    assert out.dtype == F32
    expected = fn.ours(x32.double())
    torch.testing.assert_close(out.double(), expected, rtol=EPS32, atol=0)
    g = random_direction((a.n, a.n), seed)
    grad = gradient_of(fn.ours, x32, g.float())
    assert grad.dtype == F32
    expected = gradient_of(fn.ours, x32.double(), g.float().double())
    torch.testing.assert_close(grad.double(), expected, rtol=EPS32, atol=0)


# ---- SPD metrics --------------------------------------------------------------------------------

METRICS = ["affine-invariant", "log-euclidean", "log-cholesky", "bures-wasserstein",
           "generalized-bures-wasserstein"]


def make_metric(name, m=None):
    """The metric ``name``; ``m`` is the SPD matrix of the generalized Bures-Wasserstein one."""
    if name == "affine-invariant":
        return riemtorch.SPDAffineInvariant()
    if name == "log-euclidean":
        return riemtorch.SPDLogEuclidean()
    if name == "log-cholesky":
        return riemtorch.SPDLogCholesky()
    if name == "bures-wasserstein":
        return riemtorch.SPDBuresWasserstein()
    return riemtorch.SPDGeneralizedBuresWasserstein(m)


@st.composite
def metric_cases(draw, count, metrics=METRICS, log10_scale=(-8.0, 8.0), max_log10_cond=6.0,
                 sizes=(1, 6), bases=seeds):
    """A metric name, its matrix ``M`` (generalized BW, else None) and ``count`` SPD matrices
    of one size, as :class:`Spectral` (eigenvectors from ``bases``)."""
    name = draw(st.sampled_from(metrics))
    n = draw(st.integers(*sizes))
    points = [draw(spd(size=n, log10_scale=log10_scale, max_log10_cond=max_log10_cond,
                       bases=bases)) for _ in range(count)]
    m = None
    if name == "generalized-bures-wasserstein":
        m = draw(spd(size=n, log10_scale=(-2.0, 2.0), max_log10_cond=3.0)).matrix()
    return name, m, points


def spectrum_of(x):
    lam = torch.linalg.eigvalsh(x)
    return float(lam.min()), float(lam.max()), float(lam.sum())


def bures_wasserstein_squared(x, y):
    """``tr X + tr Y - 2 tr (X^1/2 Y X^1/2)^1/2`` through numpy's ``eigh``."""
    lam, u = np.linalg.eigh(x.numpy())
    root = (u * np.sqrt(np.clip(lam, 0, None))) @ u.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ y.numpy() @ root), 0, None)).sum()
    return max(float(np.trace(x.numpy()) + np.trace(y.numpy()) - 2 * cross), 0.0)


def distance_rounding(name, x, y, m=None, safety=20.0):
    """Rounding error bound of a distance ``d(x, y)`` of float64 matrices.

    Log-based metrics (affine-invariant, log-Euclidean, log-Cholesky): a perturbation of
    ``n eps ||X||`` moves ``log`` of the smallest eigenvalue (or Cholesky diagonal) by
    ``n eps cond(X)``, and logarithms of size ``max |log lam|`` are rounded relative to it;
    the affine-invariant distance takes logarithms of the eigenvalues of ``X^-1 Y``, whose
    condition number can reach ``cond(X) cond(Y)``; log-Cholesky adds its strictly lower
    part, of size ``sqrt(max lam)``.
    Bures-Wasserstein: ``d^2 = tr X + tr Y - 2 sum sqrt(eig(C^T Y C))`` carries
    ``n eps (tr X + tr Y)`` from the traces and ``n eps ||X|| ||Y|| / sqrt(min eig)`` from the
    square roots of the eigenvalues of the product, whose condition number is at most
    ``cond(X) cond(Y)``; ``d`` then has ``min(err(d^2) / d, sqrt(err(d^2)))``. The generalized
    metric is that of ``M^-1/2 X M^-1/2``, formed with a relative error ``n eps cond(M)``.
    """
    n = x.shape[-1]
    cond_m = 1.0
    if name == "generalized-bures-wasserstein":
        lam, u = torch.linalg.eigh(m)
        inv_root = (u * lam.rsqrt()) @ u.T
        x, y = inv_root @ x @ inv_root, inv_root @ y @ inv_root
        cond_m = float(lam.max() / lam.min())
        name = "bures-wasserstein"
    (xl, xh, xt), (yl, yh, yt) = spectrum_of(x), spectrum_of(y)
    if name in ("affine-invariant", "log-euclidean", "log-cholesky"):
        logs = max(abs(math.log(v)) for v in (xl, xh, yl, yh))
        conds = xh / xl + yh / yl
        if name == "affine-invariant":
            # eigenvalues of L^-1 Y L^-T, of condition number up to cond(X) cond(Y)
            relative = scipy.linalg.eigh(y.numpy(), x.numpy(), eigvals_only=True)
            conds += float(relative.max() / relative.min())
        err = safety * n * EPS * (conds + logs)
        if name == "log-cholesky":
            err *= 1 + math.sqrt(max(xh, yh))
        return err
    products = n * math.sqrt(xh * yh * (xh / xl) * (yh / yl))
    err2 = safety * n * EPS * (cond_m * (xt + yt) + products)
    d = bures_wasserstein_squared(x, y) ** 0.5
    return min(err2 / d, err2 ** 0.5) if d > 0 else err2 ** 0.5


def distance(metric, x, y):
    return float(metric.dist(x, y))


@PROPERTIES
@given(case=metric_cases(3))
def test_distance_is_symmetric_zero_on_the_diagonal_and_satisfies_the_triangle_inequality(case):
    name, m, (a, b, c) = case
    metric = make_metric(name, m)
    x, y, z = a.matrix(), b.matrix(), c.matrix()
    dxy, dyx = distance(metric, x, y), distance(metric, y, x)
    dyz, dxz = distance(metric, y, z), distance(metric, x, z)
    exy, eyz, exz = (distance_rounding(name, p, q, m) for p, q in ((x, y), (y, z), (x, z)))
    assert_near(dxy, dyx, exy, "symmetry")
    check_error(dxz - dxy - dyz, exy + eyz + exz, "triangle inequality")
    assert_near(distance(metric, x, x), 0.0, distance_rounding(name, x, x, m), "d(x, x)")
    if name == "affine-invariant" and a.cond <= 4.0:
        # documented: below the rounding level of a well-conditioned point, exactly zero
        assert distance(metric, x, x) == 0.0


@st.composite
def invertible(draw, n, max_log10_cond=2.0):
    """A matrix ``U diag(s) V^T`` with a drawn scale and condition number at most 1e2."""
    s = draw(spectra(size=n, log10_scale=(-3.0, 3.0), max_log10_cond=max_log10_cond))
    return orthogonal(n, draw(haar_seeds)) * s @ orthogonal(n, draw(seeds)).T


@PROPERTIES
@given(case=metric_cases(2, metrics=["affine-invariant"], max_log10_cond=4.0), data=st.data())
def test_affine_invariant_distance_is_invariant_under_congruence_and_inversion(case, data):
    name, _, (a, b) = case
    metric = make_metric(name)
    x, y = a.matrix(), b.matrix()
    d = distance(metric, x, y)
    g = data.draw(invertible(a.n), label="A")
    gx, gy = L.sym(g @ x @ g.T), L.sym(g @ y @ g.T)
    # the congruence is formed in float64: its rounding is within the rounding bound of the
    # transformed points, whose condition numbers grow by up to cond(A)^2
    tol = distance_rounding(name, x, y) + distance_rounding(name, gx, gy)
    assert_near(distance(metric, gx, gy), d, tol, "congruence")
    inv_x, inv_y = a.apply(torch.reciprocal), b.apply(torch.reciprocal)
    assert_near(distance(metric, inv_x, inv_y), d, 2 * tol, "inversion")


@PROPERTIES
@given(case=metric_cases(2, metrics=["log-euclidean"], log10_scale=(-50.0, 50.0)),
       seed=st.integers(0, 2 ** 32 - 1), log10_c=st.floats(-50.0, 50.0))
def test_log_euclidean_distance_is_invariant_under_rotation_scaling_and_inversion(case, seed,
                                                                                    log10_c):
    name, _, (a, b) = case
    metric = make_metric(name)
    x, y = a.matrix(), b.matrix()
    d, err = distance(metric, x, y), distance_rounding(name, x, y)
    r = orthogonal(a.n, seed)
    rotated = [Spectral(p.lam, r @ p.q) for p in (a, b)]
    scaled = [Spectral(p.lam * 10.0 ** log10_c, p.q) for p in (a, b)]
    inverted = [Spectral(p.lam.reciprocal(), p.q) for p in (a, b)]
    for label, (p, q) in (("rotated", rotated), ("scaled", scaled), ("inverted", inverted)):
        px, qx = p.matrix(), q.matrix()
        assert_near(distance(metric, px, qx), d, err + distance_rounding(name, px, qx), label)
    # the distance itself, from the exact logarithms
    exact = frobenius(a.apply(torch.log) - b.apply(torch.log))
    assert_near(d, exact, err, "exact")


@PROPERTIES
@given(case=metric_cases(2, metrics=["bures-wasserstein"]), seed=st.integers(0, 2 ** 32 - 1),
       log10_c=st.floats(-8.0, 8.0))
def test_bures_wasserstein_distance_is_invariant_under_rotation_and_scales_by_the_root(
        case, seed, log10_c):
    name, _, (a, b) = case
    metric = make_metric(name)
    x, y = a.matrix(), b.matrix()
    d = distance(metric, x, y)
    tol = distance_rounding(name, x, y)
    r = orthogonal(a.n, seed)
    rx, ry = Spectral(a.lam, r @ a.q).matrix(), Spectral(b.lam, r @ b.q).matrix()
    assert_near(distance(metric, rx, ry), d, 2 * tol, "rotation")
    c = 10.0 ** log10_c
    sx, sy = Spectral(a.lam * c, a.q).matrix(), Spectral(b.lam * c, b.q).matrix()
    assert_near(distance(metric, sx, sy), math.sqrt(c) * d, math.sqrt(c) * 2 * tol, "scaling")


@PROPERTIES
@given(case=metric_cases(2, metrics=["generalized-bures-wasserstein"], max_log10_cond=4.0),
       data=st.data())
def test_generalized_bures_wasserstein_is_invariant_under_congruence_of_points_and_metric(
        case, data):
    # c(X) = M^-1/2 X M^-1/2 becomes an orthogonal conjugate of itself when X and M are
    # both replaced by A X A^T and A M A^T, and BW distances are rotation invariant
    name, m, (a, b) = case
    x, y = a.matrix(), b.matrix()
    d = distance(make_metric(name, m), x, y)
    g = data.draw(invertible(a.n), label="A")
    gm = L.sym(g @ m @ g.T)
    gx, gy = L.sym(g @ x @ g.T), L.sym(g @ y @ g.T)
    tol = distance_rounding(name, x, y, m) + distance_rounding(name, gx, gy, gm)
    assert_near(distance(make_metric(name, gm), gx, gy), d, tol, "congruence")
    # M = c I is the BW metric scaled by c^-1/2
    c = float(m.diagonal().mean())
    scaled = make_metric(name, c * torch.eye(a.n, dtype=F64))
    bw = distance(make_metric("bures-wasserstein"), x, y)
    assert_near(distance(scaled, x, y), bw / math.sqrt(c),
                2 * distance_rounding("bures-wasserstein", x, y) / math.sqrt(c), "M = c I")


HADAMARD = ["affine-invariant", "log-euclidean", "log-cholesky"]


def point_rounding(x, y, m=None, safety=20.0):
    """Rounding bound of a point computed from ``x`` and ``y`` by one of the maps (exp, log,
    geodesic) of the metrics, relative to the larger norm: ``n eps`` times the condition
    numbers (triangular solves with the Cholesky factor, logarithms of small eigenvalues) and
    the size of the logarithms of the spectra. The generalized Bures-Wasserstein maps act on
    ``M^-1/2 X M^-1/2`` and map back by ``M^1/2``: ``cond(M)`` more."""
    n = x.shape[-1]
    (xl, xh, _), (yl, yh, _) = spectrum_of(x), spectrum_of(y)
    logs = max(abs(math.log(v)) for v in (xl, xh, yl, yh))
    cond_m = 1.0 if m is None else spectrum_of(m)[1] / spectrum_of(m)[0]
    return (safety * n * EPS * (cond_m * (xh / xl + yh / yl) + logs) * cond_m * max(xh, yh)
            * math.sqrt(n))


@PROPERTIES
@given(case=metric_cases(2, log10_scale=(-4.0, 4.0), max_log10_cond=4.0),
       t=st.floats(0.0, 1.0))
def test_exp_inverts_log_along_geodesics_of_the_right_length(case, t):
    name, m, (a, b) = case
    metric = make_metric(name, m)
    x, y = a.matrix(), b.matrix()
    u = metric.logmap(x, y)
    d = distance(metric, x, y)
    assert_close_to(metric.expmap(x, u), y, point_rounding(x, y, m), "exp(x, log(x, y))")
    # the logarithm has the length of the geodesic
    err = distance_rounding(name, x, y, m)
    assert_near(float(metric.norm(x, u)), d, 2 * err, "|log(x, y)|")
    # points on the geodesic split the distance in proportion t : 1 - t
    z = metric.expmap(x, t * u)
    low, high, _ = spectrum_of(z)
    # log-Cholesky geodesics interpolate the strictly lower part of the Cholesky factors
    # linearly and the diagonal geometrically: between moderately conditioned points they
    # pass through matrices that are singular to working precision (condition number 1e22
    # between cond 1e4 and the identity), where no matrix function is determined
    assume(low > 0 and high / low < 1e10)
    assert_close_to(metric.geodesic(x, y, t), z, point_rounding(x, y, m), "geodesic")
    assert_near(distance(metric, x, z), t * d, 2 * err + 2 * distance_rounding(name, x, z, m),
                "d(x, z)")
    assert_near(distance(metric, z, y), (1 - t) * d,
                2 * err + 2 * distance_rounding(name, z, y, m), "d(z, y)")


@PROPERTIES
@given(case=metric_cases(1, metrics=HADAMARD, log10_scale=(-4.0, 4.0), max_log10_cond=4.0),
       seed=st.integers(0, 2 ** 32 - 1), length=st.floats(0.0, 5.0))
def test_hadamard_metrics_exp_has_the_length_of_its_vector(case, seed, length):
    # complete metrics of non-positive curvature: every geodesic minimises, so
    # d(x, exp(x, v)) = |v| for every tangent vector v, not only short ones
    name, _, (a,) = case
    metric = make_metric(name)
    x = a.matrix()
    v = L.sym(random_direction((a.n, a.n), seed))
    v = length * v / float(metric.norm(x, v))
    y = metric.expmap(x, v)
    assert_near(distance(metric, x, y), length, 2 * distance_rounding(name, x, y),
                "d(x, exp(x, v))")
    assert_close_to(metric.logmap(x, y), v, point_rounding(x, y), "log(x, exp(x, v))")


# ---- Frechet means ------------------------------------------------------------------------------

# solver tolerance on the norm of the Riemannian gradient: 1e-10 (float64), scale free (the
# whitened one of the affine-invariant mean, relative to ||S|| for the Bures-Wasserstein ones)
SOLVER = 1e-10


def assert_same_mean(metric, name, actual, expected, points, m=None, what="mean",
                     reference_error=0.0):
    """``d(actual, expected)`` within what a mean is determined to: the solver tolerance
    (tenfold: the criterion bounds a gradient, not the distance), the rounding of distances
    among the points (a mean moves with them), that of the distance compared, and the
    error of the reference itself.

    Bures-Wasserstein distances of nearly equal points carry the square root of the rounding
    of ``d^2`` (about 1e-8 relative), too coarse to compare means: those are compared in
    relative Frobenius norm, to the solver tolerance plus ``n eps`` times the condition
    numbers of the points (and of ``M``)."""
    if name in ("bures-wasserstein", "generalized-bures-wasserstein"):
        cond_m = 1.0 if m is None else spectrum_of(m)[1] / spectrum_of(m)[0]
        conds = max(spectrum_of(p)[1] / spectrum_of(p)[0] for p in list(points) + [expected])
        relative = 10 * SOLVER * cond_m + 20 * actual.shape[-1] * EPS * conds * cond_m ** 2
        assert_close_to(actual, expected, relative * frobenius(expected) + reference_error, what)
        return
    points = list(points) + [expected]
    worst = max(distance_rounding(name, p, q, m) for p in points for q in points)
    tol = (10 * SOLVER + 4 * worst + 2 * distance_rounding(name, actual, expected, m)
           + reference_error)
    assert_near(distance(metric, actual, expected), 0.0, tol, what)


@st.composite
def weights(draw, count):
    w = draw(st.lists(st.floats(0.0, 1.0), min_size=count, max_size=count))
    assume(sum(w) > 1e-3)
    return torch.tensor(w, dtype=F64)


@PROPERTIES
@given(case=metric_cases(1, log10_scale=(-2.0, 2.0)), copies=st.integers(1, 4), data=st.data())
def test_frechet_mean_of_copies_of_a_point_is_that_point(case, copies, data):
    name, m, (a,) = case
    metric = make_metric(name, m)
    x = a.matrix()
    w = data.draw(weights(copies), label="weights")
    mean = metric.frechet_mean(x.expand(copies, a.n, a.n), weights=w)
    assert_same_mean(metric, name, mean, x, [x], m)


@FEW
@given(case=metric_cases(4, log10_scale=(-2.0, 2.0), max_log10_cond=4.0), data=st.data())
def test_frechet_mean_is_invariant_under_permutations_and_weight_scaling(case, data):
    name, m, points = case
    metric = make_metric(name, m)
    xs = torch.stack([p.matrix() for p in points])
    w = data.draw(weights(4), label="weights")
    perm = torch.tensor(data.draw(st.permutations(range(4)), label="permutation"))
    scale = data.draw(st.floats(1e-3, 1e3), label="weight scale")
    mean = metric.frechet_mean(xs, weights=w)
    assert_same_mean(metric, name, metric.frechet_mean(xs[perm], weights=w[perm]), mean, xs, m,
                     "permuted")
    assert_same_mean(metric, name, metric.frechet_mean(xs, weights=scale * w), mean, xs, m,
                     "scaled weights")
    # a point of weight zero does not count
    w0 = w.clone()
    w0[0] = 0.0
    assume(float(w0.sum()) > 1e-3)
    assert_same_mean(metric, name, metric.frechet_mean(xs, weights=w0),
                     metric.frechet_mean(xs[1:], weights=w0[1:]), xs, m, "zero weight")


@pytest.mark.parametrize("metric_name", METRICS)
@PROPERTIES
@given(data=st.data(), log10_c=st.sampled_from([-12.0, -8.0, 8.0, 12.0]) | st.floats(-12.0, 12.0))
def test_frechet_means_are_scale_equivariant(metric_name, data, log10_c):
    # mean(c X_i) = c mean(X_i) for every metric here (covariances of size 1e-12 are common):
    # the solvers' stopping criteria are scale free. Points in general position (commuting
    # ones have closed-form means that the first iteration finds)
    case = data.draw(metric_cases(3, metrics=[metric_name], log10_scale=(-1.0, 1.0),
                                  max_log10_cond=4.0, sizes=(2, 6), bases=haar_seeds),
                     label="case")
    name, m, points = case
    metric = make_metric(name, m)
    xs = torch.stack([p.matrix() for p in points])
    w = data.draw(weights(3), label="weights")
    c = 10.0 ** log10_c
    mean = metric.frechet_mean(xs, weights=w)
    assert_same_mean(metric, name, metric.frechet_mean(c * xs, weights=w) / c, mean, xs, m,
                     "mean(c X) / c")


@st.composite
def commuting_samples(draw, count):
    """``count`` SPD matrices with common eigenvectors (ties and wide spectra allowed)."""
    n = draw(st.integers(1, 6))
    seed = draw(seeds)
    q = orthogonal(n, seed)
    return [Spectral(draw(spectra(size=n, log10_scale=(-4.0, 4.0), max_log10_cond=6.0)), q, seed)
            for _ in range(count)]


@PROPERTIES
@given(points=st.integers(1, 4).flatmap(commuting_samples), data=st.data())
def test_means_of_commuting_matrices_are_the_closed_forms(points, data):
    # commuting points: the affine-invariant and log-Euclidean means are exp(sum w log X) in
    # the common eigenbasis; log-Cholesky agrees for diagonal matrices. Condition numbers up
    # to 1e6.
    count = len(points)
    w = data.draw(weights(count), label="weights")
    wn = w / w.sum()
    q = points[0].q
    lam = torch.stack([p.lam for p in points])
    xs = torch.stack([p.matrix() for p in points])
    geometric = Spectral((wn[:, None] * lam.log()).sum(0).exp(), q)
    for name in ("affine-invariant", "log-euclidean"):
        metric = make_metric(name)
        assert_same_mean(metric, name, metric.frechet_mean(xs, weights=w), geometric.matrix(), xs,
                         what=name)
    if q.equal(torch.eye(q.shape[0], dtype=F64)):
        mean = make_metric("log-cholesky").frechet_mean(xs, weights=w)
        # closed form in the Cholesky diagonal: exact up to rounding of exp and log
        torch.testing.assert_close(mean.diagonal(), geometric.lam, rtol=1e-12, atol=0)
        assert bool((mean == torch.diag(mean.diagonal())).all())


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@PROPERTIES
@given(points=st.integers(2, 4).flatmap(commuting_samples), data=st.data())
def test_bures_wasserstein_mean_of_commuting_matrices_is_the_closed_form(dtype, points, data):
    # (sum w X^1/2)^2 in the common eigenbasis, for commuting points with condition numbers
    # up to 1e6 (float32: diagonal, so that the rounded points still commute). The solver
    # stops at ||sum_i w_i Log_S X_i||_F <= tol ||S||_F (1e-10 float64, 1e-5 float32), which
    # for commuting points is 2 ||S^1/2 (S*^1/2 - S^1/2)||_F: the mean is within about tol
    # of the barycenter S*, relative; its rounding adds n eps sqrt(cond) (solves with the
    # factor of S)
    if dtype == F32:
        points = [Spectral(p.lam.float().double(), torch.eye(p.n, dtype=F64), None)
                  for p in points]
    w = data.draw(weights(len(points)), label="weights")
    wn = w / w.sum()
    lam = torch.stack([p.lam for p in points])
    expected = Spectral((wn[:, None] * lam.sqrt()).sum(0).square(), points[0].q).matrix()
    mean = make_metric("bures-wasserstein").frechet_mean(
        torch.stack([p.matrix(dtype) for p in points]), weights=w.to(dtype))
    tol = SOLVER if dtype == F64 else 1e-5
    cond = max(p.cond for p in points)
    relative = 10 * tol + 20 * points[0].n * torch.finfo(dtype).eps * math.sqrt(cond)
    assert_close_to(mean, expected, relative * frobenius(expected), "(sum w X^1/2)^2")


@PROPERTIES
@given(case=metric_cases(3, metrics=["affine-invariant"], max_log10_cond=4.0), data=st.data())
def test_affine_invariant_mean_is_equivariant_under_congruence(case, data):
    name, _, points = case
    metric = make_metric(name)
    xs = torch.stack([p.matrix() for p in points])
    w = data.draw(weights(3), label="weights")
    g = data.draw(invertible(points[0].n), label="A")
    mean = metric.frechet_mean(xs, weights=w)
    moved = metric.frechet_mean(L.sym(g @ xs @ g.T), weights=w)
    assert_same_mean(metric, name, moved, L.sym(g @ mean @ g.T), L.sym(g @ xs @ g.T),
                     what="A mean A^T")
    # and under inversion: the mean of the inverses is the inverse of the mean
    inverses = torch.stack([p.apply(torch.reciprocal) for p in points])
    inverse_mean = metric.frechet_mean(inverses, weights=w)
    assert_same_mean(metric, name, inverse_mean, L.sym(torch.linalg.inv(mean)),
                     list(xs) + list(inverses), what="mean of inverses")


@PROPERTIES
@given(case=metric_cases(2, metrics=["affine-invariant"], max_log10_cond=5.0),
       t=st.floats(0.0, 1.0))
def test_two_point_affine_invariant_mean_is_the_geodesic_point(case, t):
    name, _, (a, b) = case
    metric = make_metric(name)
    x, y = a.matrix(), b.matrix()
    mean = metric.frechet_mean(torch.stack([x, y]), weights=torch.tensor([1 - t, t], dtype=F64))
    # the references are built on X^-1/2 Y X^-1/2 (or L^-1 Y L^-T), whose condition number
    # reaches cond(X) cond(Y): its small eigenvalues, and so the reference, are off by
    # n eps times that in the affine-invariant distance
    relative = scipy.linalg.eigh(y.numpy(), x.numpy(), eigvals_only=True)
    reference_error = 20 * a.n * EPS * float(relative.max() / relative.min())
    assert_same_mean(metric, name, mean, metric.geodesic(x, y, t), [x, y], what="weighted mean",
                     reference_error=reference_error)
    if t == 0.5:
        # the midpoint, also the matrix geometric mean X # Y = X^1/2 (X^-1/2 Y X^-1/2)^1/2 X^1/2
        root, inv_root = L.sqrtm_invsqrtm(x)
        expected = L.sym(root @ L.sqrtm(L.sym(inv_root @ y @ inv_root)) @ root)
        assert_same_mean(metric, name, mean, expected, [x, y], what="midpoint",
                         reference_error=reference_error)


@PROPERTIES
@given(case=metric_cases(3, metrics=["log-euclidean"], log10_scale=(-20.0, 20.0),
                         max_log10_cond=8.0), data=st.data())
def test_log_euclidean_mean_is_the_exponential_of_the_mean_logarithm(case, data):
    _, _, points = case
    w = data.draw(weights(3), label="weights")
    xs = torch.stack([p.matrix() for p in points])
    mean = make_metric("log-euclidean").frechet_mean(xs, weights=w)
    wn = (w / w.sum()).numpy()

    def logm(a):
        # scipy's eigh (LAPACK syevr; torch calls syevd), not the drawn spectra
        lam, u = scipy.linalg.eigh(a)
        return (u * np.log(lam)) @ u.T

    # independent: scipy's logarithms and its Pade expm
    log_mean = sum(wi * logm(x.numpy()) for wi, x in zip(wn, xs))
    expected = scipy_reference(scipy.linalg.expm, torch.as_tensor(log_mean))
    err = max(distance_rounding("log-euclidean", x, x) for x in xs)
    # a logarithm error e moves exp(.) by e relative; scipy's expm adds about 1e-12
    tol = (err + 1e-11) * frobenius(expected)
    assert_close_to(mean, expected, tol, "expm(sum w logm(X))")


# ---- the power deformation ----------------------------------------------------------------------

def make_powered(name, power, m=None):
    if name == "affine-invariant":
        return riemtorch.SPDAffineInvariant(power=power)
    if name == "log-cholesky":
        return riemtorch.SPDLogCholesky(power=power)
    if name == "bures-wasserstein":
        return riemtorch.SPDBuresWasserstein(power=power)
    return riemtorch.SPDGeneralizedBuresWasserstein(m, power=power)


def deformation_rounding(name, x, y, theta, limit, m=None, safety=20.0):
    """Rounding of ``d(X^theta, Y^theta) / theta`` for small ``theta``: the two points are
    within ``theta`` of each other near the identity. Log-based distances carry
    ``n eps max|log lam|`` absolute, divided by ``theta``; Bures-Wasserstein computes
    ``d^2 = tr + tr - 2 tr(...)^1/2``, whose cancellation leaves ``n eps (tr + tr)`` absolute
    in ``d^2``, a distance of about ``theta limit``: ``err(d^2) / (theta limit)`` (at most
    ``sqrt(err(d^2))``) in it, over ``theta`` in the result."""
    n = x.shape[-1]
    logs = max(abs(math.log(v)) for v in spectrum_of(x)[:2] + spectrum_of(y)[:2])
    if name in ("affine-invariant", "log-cholesky"):
        return safety * n * EPS * (1 + logs) / theta
    xt, yt = L.powm(x, theta), L.powm(y, theta)
    if m is not None:
        inv_m = torch.linalg.inv(m)
        xt, yt = inv_m @ xt, inv_m @ yt
    err2 = safety * n * EPS * float(xt.diagonal().sum() + yt.diagonal().sum())
    d = theta * limit
    return (min(err2 / d, err2 ** 0.5) if d > 0 else err2 ** 0.5) / theta


@PROPERTIES
@given(case=metric_cases(2, metrics=["affine-invariant", "log-cholesky", "bures-wasserstein",
                                     "generalized-bures-wasserstein"],
                         log10_scale=(-3.0, 3.0), max_log10_cond=6.0),
       log10_theta=st.floats(-4.0, -2.0))
def test_power_deformation_tends_to_its_log_euclidean_limit_at_first_order(case, log10_theta):
    # d_theta(X, Y) = d(X^theta, Y^theta) / theta -> d_0(X, Y), the distance of log X and
    # log Y in the metric's inner product at the identity; the deformation is smooth in
    # theta, so the gap shrinks (at least) linearly: tenfold per decade of theta
    name, m, (a, b) = case
    x, y = a.matrix(), b.matrix()
    theta = 10.0 ** log10_theta
    limit = distance(make_powered(name, 0.0, m), x, y)
    gaps = [abs(distance(make_powered(name, t, m), x, y) - limit) for t in (theta, theta / 10)]
    roundings = [deformation_rounding(name, x, y, t, limit, m) for t in (theta, theta / 10)]
    # first-order size: theta times the logarithms, relative to the scales in play (second-
    # order terms of X^theta = I + theta log X + theta^2 log(X)^2 / 2 against the first-order
    # distance, of size `limit`; the metric matrix M of the generalized metric weighs
    # directions differently, by up to cond(M))
    logs = frobenius(a.apply(torch.log)) + frobenius(b.apply(torch.log))
    cond_m = 1.0 if m is None else spectrum_of(m)[1] / spectrum_of(m)[0]
    assert_near(gaps[0], 0.0, theta * logs * (cond_m * logs + limit) + roundings[0],
                "gap at theta")
    check_error(gaps[1], 0.2 * gaps[0] + roundings[0] + roundings[1], "gap at theta / 10")
    if name == "affine-invariant":
        # the power-0 affine-invariant metric is the log-Euclidean one
        assert_near(limit, distance(make_metric("log-euclidean"), x, y),
                    distance_rounding("log-euclidean", x, y), "log-Euclidean")


# ---- float32 ------------------------------------------------------------------------------------

@PROPERTIES
@given(case=metric_cases(2, log10_scale=(-3.0, 3.0), max_log10_cond=6.0))
def test_float32_metrics_are_the_float64_result_rounded(case):
    # float32 points at condition numbers up to 1e6 are computed in float64 and rounded back
    # (numerical policy): compared with float64 on the same rounded input, distances,
    # logarithms, exponentials and distance gradients carry one or two float32 roundings
    name, m, (a, b) = case
    metric = make_metric(name, m if m is None else m.float())
    x32, y32 = a.matrix(F32), b.matrix(F32)
    x, y = x32.double(), y32.double()
    metric64 = make_metric(name, m if m is None else m.float().double())
    d32 = metric.dist(x32, y32)
    assert d32.dtype == F32
    # (at d = 0 the square root's floor, sqrt(tiny), differs between the dtypes)
    torch.testing.assert_close(d32.double(), metric64.dist(x, y), rtol=2 * EPS32,
                               atol=2 * torch.finfo(F32).tiny ** 0.5)
    # logarithms of nearly equal points are float64 rounding noise, which LAPACK need not
    # reproduce bitwise from one call to the next: that much absolute slack
    noise = point_rounding(x, y, m)
    u32 = metric.logmap(x32, y32)
    u = metric64.logmap(x, y)
    torch.testing.assert_close(u32.double(), u, rtol=EPS32,
                               atol=EPS32 * float(u.abs().max()) + noise)
    v = 0.5 * u / float(metric64.norm(x, u)) if float(metric64.norm(x, u)) > 0 else u
    e32 = metric.expmap(x32, v.float())
    e = metric64.expmap(x, v.float().double())
    torch.testing.assert_close(e32.double(), e, rtol=EPS32,
                               atol=EPS32 * float(e.abs().max()) + noise)
    g32 = gradient_of(lambda t: metric.dist(t, y32), x32, torch.tensor(1.0, dtype=F32))
    g = gradient_of(lambda t: metric64.dist(t, y), x, torch.tensor(1.0, dtype=F64))
    assert g32.dtype == F32 and bool(torch.isfinite(g32).all())
    # the gradient of d = sqrt(d^2) is that of d^2 over 2 d: its float64 rounding relative
    # to it is err(d) / d, a noise direction at coincident points
    d = float(metric64.dist(x, y))
    relative = distance_rounding(name, x, y, m) / d if d > 0 else math.inf
    if relative < 1e-3:
        torch.testing.assert_close(g32.double(), g, rtol=4 * EPS32,
                                   atol=(4 * EPS32 + relative) * float(g.abs().max()))


@PROPERTIES
@given(case=metric_cases(3, log10_scale=(-1.0, 1.0), max_log10_cond=6.0), data=st.data())
def test_float32_means_are_within_the_solver_tolerance_of_float64(case, data):
    # iterative means stop at a Riemannian gradient of norm 1e-5 in float32 (1e-10 in
    # float64): the means differ by about that, relative; closed forms by rounding only,
    # of the weights too (normalised in float32), which moves exp(sum w log X) by
    # eps32 max|log lam| relative
    name, m, points = case
    metric = make_metric(name, m if m is None else m.float())
    metric64 = make_metric(name, m if m is None else m.float().double())
    xs32 = torch.stack([p.matrix(F32) for p in points])
    w = data.draw(weights(3), label="weights")
    mean32 = metric.frechet_mean(xs32, weights=w.float())
    assert mean32.dtype == F32
    mean = metric64.frechet_mean(xs32.double(), weights=w.float().double())
    logs = max(float(p.lam.log().abs().max()) for p in points)
    tol = (1e-4 if name in ("affine-invariant", "bures-wasserstein",
                            "generalized-bures-wasserstein") else 4 * EPS32 * (1 + logs))
    assert_close_to(mean32, mean, tol * frobenius(mean), "float32 mean")


# ---- pyRiemann ----------------------------------------------------------------------------------

try:
    from pyriemann.geometry import distance as pyriemann_distance
    from pyriemann.geometry import mean as pyriemann_mean
except ImportError:
    pyriemann_distance = pyriemann_mean = None
needs_pyriemann = pytest.mark.skipif(pyriemann_distance is None, reason="needs pyRiemann")

PYRIEMANN = {
    "affine-invariant": ("distance_riemann", lambda x, w: pyriemann_mean.mean_riemann(
        x, tol=1e-13, maxiter=200, sample_weight=w)),
    "log-euclidean": ("distance_logeuclid", lambda x, w: pyriemann_mean.mean_logeuclid(
        x, sample_weight=w)),
    "log-cholesky": ("distance_logchol", lambda x, w: pyriemann_mean.mean_logchol(
        x, sample_weight=w)),
    "bures-wasserstein": ("distance_wasserstein", lambda x, w: pyriemann_mean.mean_wasserstein(
        x, tol=1e-13, maxiter=200, sample_weight=w)),
}


@needs_pyriemann
@PROPERTIES
@given(case=metric_cases(2, metrics=sorted(PYRIEMANN), max_log10_cond=6.0))
def test_distances_match_pyriemann(case):
    name, _, (a, b) = case
    x, y = a.matrix(), b.matrix()
    expected = float(getattr(pyriemann_distance, PYRIEMANN[name][0])(x.numpy(), y.numpy()))
    assert_near(distance(make_metric(name), x, y), expected, 2 * distance_rounding(name, x, y),
                name)


@needs_pyriemann
@FEW
@given(case=metric_cases(3, metrics=sorted(PYRIEMANN), log10_scale=(-1.0, 1.0),
                         max_log10_cond=4.0), data=st.data())
def test_means_match_pyriemann(case, data):
    name, _, points = case
    xs = torch.stack([p.matrix() for p in points])
    w = data.draw(weights(3), label="weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch.as_tensor(PYRIEMANN[name][1](xs.numpy(), (w / w.sum()).numpy()))
    metric = make_metric(name)
    mean = metric.frechet_mean(xs, weights=w, tol=1e-12)
    assert_same_mean(metric, name, mean, expected, xs, what=name)
