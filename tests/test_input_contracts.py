"""Input contracts of public functions, layers and manifolds: wrong arguments raise a named
``TypeError`` or ``ValueError`` (not a raw torch error, nor a silently wrong result), and
edge cases that are valid (empty batches, 0 x 0 matrices, mixed float dtypes) give results."""

import math
import warnings

import pytest
import torch

import riemtorch
from riemtorch import config
from riemtorch import linalg as L
from riemtorch import nn as rnn
from riemtorch.linalg.checks import check_positive_int
from riemtorch.manifolds import (
    Euclidean,
    Grassmann,
    Lorentz,
    PoincareBall,
    SPDAffineInvariant,
    SPDBuresWasserstein,
    SPDGeneralizedBuresWasserstein,
    SPDLogCholesky,
    SPDLogEuclidean,
    Sphere,
    Stereographic,
    Stiefel,
)
from riemtorch.nn import functional as F

F64, F32 = torch.float64, torch.float32


@pytest.fixture(autouse=True)
def _validating():
    with config.override(validate=True):
        yield


def _spd(*batch, n=3, dtype=F64, seed=0):
    return SPDAffineInvariant().random(*batch, n=n, dtype=dtype,
                                       generator=torch.Generator().manual_seed(seed))


# ---- the shared size check -------------------------------------------------------------------
@pytest.mark.parametrize("value, minimum, error, message", [
    (True, 1, TypeError, "n must be an int, got bool"),
    (2.0, 1, TypeError, "n must be an int, got float"),
    ("3", 1, TypeError, "n must be an int, got str"),
    (0, 1, ValueError, "n must be an int >= 1, got 0"),
    (1, 2, ValueError, "n must be an int >= 2, got 1"),
])
def test_check_positive_int_rejects(value, minimum, error, message):
    with pytest.raises(error, match=message):
        check_positive_int(value, "n", minimum)


def test_check_positive_int_accepts_integral_numbers():
    assert check_positive_int(3, "n") == 3
    assert check_positive_int(0, "n", minimum=0) == 0
    np = pytest.importorskip("numpy")
    value = check_positive_int(np.int64(4), "n")
    assert value == 4 and type(value) is int


# ---- batch normalisation -----------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["aim", "lem", "lcm", "bw", "gbw"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_spd_batch_norm_maps_an_empty_eval_batch_to_an_empty_output(metric, dtype):
    bn = rnn.SPDBatchNorm(3, metric=metric, dtype=F64).eval()
    out = bn(torch.empty(0, 3, 3, dtype=dtype))
    assert out.shape == (0, 3, 3) and out.dtype == F64
    bn.train()
    with pytest.raises(ValueError, match="needs more than one sample"):
        bn(torch.empty(0, 3, 3, dtype=dtype))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(mean_iters=-1), ValueError, "mean_iters must be an int >= 1, got -1"),
    (dict(mean_iters=0), ValueError, "mean_iters must be an int >= 1, got 0"),
    (dict(mean_iters=True), TypeError, "mean_iters must be an int, got bool"),
    (dict(mean_iters=1.5), TypeError, "mean_iters must be an int, got float"),
    (dict(n=2.5), TypeError, "n must be an int, got float"),
    (dict(n=-3), ValueError, "n must be an int >= 1, got -3"),
    (dict(n=True), TypeError, "n must be an int, got bool"),
    (dict(channels=(2, 0)), ValueError, r"channels\[1\] must be an int >= 1, got 0"),
    (dict(channels=(2.0,)), TypeError, r"channels\[0\] must be an int, got float"),
])
def test_spd_batch_norm_rejects_bad_sizes_and_iteration_caps(kwargs, error, message):
    kwargs = dict(dict(n=3), **kwargs)
    with pytest.raises(error, match=message):
        rnn.SPDBatchNorm(**kwargs)


@pytest.mark.parametrize("shape, error, message", [
    ((4, 2.0), TypeError, r"shape\[1\] must be an int, got float"),
    ((0, 4, 2), ValueError, r"shape\[0\] must be an int >= 1, got 0"),
    ((True, 4, 2), TypeError, r"shape\[0\] must be an int, got bool"),
])
def test_riemannian_batch_norm_rejects_bad_shapes(shape, error, message):
    with pytest.raises(error, match=message):
        rnn.RiemannianBatchNorm(Grassmann(), shape)


@pytest.mark.parametrize("metric", ["aim", "lem", "lcm", "bw", "gbw"])
@pytest.mark.parametrize("training", [True, False])
def test_spd_batch_norm_rejects_integer_input_under_every_metric(metric, training):
    bn = rnn.SPDBatchNorm(3, metric=metric, dtype=F64).train(training)
    with pytest.raises(TypeError, match="must be a floating-point tensor, got torch.int64"):
        bn(torch.eye(3, dtype=torch.int64).expand(4, 3, 3))


def test_riemannian_batch_norm_rejects_integer_input_on_other_manifolds():
    bn = rnn.RiemannianBatchNorm(PoincareBall(), (2,), dtype=F64)
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        bn(torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        bn.batch_statistics(torch.zeros(4, 2, dtype=torch.int64))


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("make, shape", [(PoincareBall, (3,)), (SPDLogEuclidean, (3, 3))],
                         ids=["ball", "spd-lem"])
def test_batch_norm_promotes_half_precision_input_with_its_parameters(make, shape, low):
    # as under autocast: half-precision features meet a float32 layer
    m = make()
    x = m.random(8, n=3, dtype=F32, generator=torch.Generator().manual_seed(0)).to(low)
    bn = rnn.RiemannianBatchNorm(m, shape, dtype=F32)
    y = bn(x)
    assert y.dtype == F32
    # computed at the input's precision where the manifold keeps its dtype
    tol = 20 * torch.finfo(low).eps
    torch.testing.assert_close(y, bn(x.to(F32)), rtol=tol, atol=tol)


@pytest.mark.parametrize("training", [True, False])
def test_grassmann_batch_norm_promotes_float32_input_like_the_spd_one(training):
    gr = Grassmann()
    x = gr.random(6, n=4, p=2, dtype=F32, generator=torch.Generator().manual_seed(0))
    for bn in (rnn.RiemannianBatchNorm(gr, (4, 2), dtype=F64),
               rnn.SPDBatchNorm(3, dtype=F64)):
        sample = x if bn.manifold is gr else _spd(6, dtype=F32)
        out = bn.train(training)(sample)
        assert out.dtype == F64 and bool(torch.isfinite(out).all())


# ---- mixed dtypes on Stiefel and Grassmann -----------------------------------------------------
def _mixed_calls():
    gen = torch.Generator().manual_seed(1)
    st, gr = Stiefel(), Grassmann()
    a = st.random(n=5, p=2, dtype=F64, generator=gen)
    u = st.proju(a, torch.randn(5, 2, dtype=F64, generator=gen))
    b = st.expmap(a, 0.3 * u)  # near a: the Stiefel logarithm converges
    h = gr.proju(a, u)
    return {
        "Stiefel.dist": (lambda x, y: st.dist(x, y), a, b),
        "Stiefel.proju": (lambda x, v: st.proju(x, v), a, u),
        "Stiefel.expmap": (lambda x, v: st.expmap(x, v), a, 0.1 * u),
        "Stiefel.retr": (lambda x, v: st.retr(x, v), a, 0.1 * u),
        "Stiefel.inner": (lambda x, v: st.inner(x, v), a, u),
        "Grassmann.dist": (lambda x, y: gr.dist(x, y), a, b),
        "Grassmann.proju": (lambda x, v: gr.proju(x, v), a, u),
        "Grassmann.expmap": (lambda x, v: gr.expmap(x, v), a, 0.1 * h),
        "Grassmann.logmap": (lambda x, y: gr.logmap(x, y), a, b),
        "Grassmann.transp": (lambda x, y: gr.transp(x, b, y), a, h),
        "Grassmann.gyroadd": (lambda x, y: gr.gyroadd(x, y), a, b),
    }


@pytest.mark.parametrize("name", list(_mixed_calls()))
@pytest.mark.parametrize("low_first", [True, False])
def test_stiefel_and_grassmann_promote_mixed_float_dtypes(name, low_first):
    fn, x, y = _mixed_calls()[name]
    want = fn(x, y)
    got = fn(x.float(), y) if low_first else fn(x, y.float())
    assert got.dtype == F64
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ---- matrix functions --------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [L.expm, F.expeig, rnn.ExpEig()])
@pytest.mark.parametrize("dtype, top", [(F64, 800.0), (F32, 100.0)])
def test_matrix_exponential_rejects_overflow(fn, dtype, top):
    x = torch.diag(torch.tensor([top, 1.0], dtype=dtype))
    with pytest.raises(ValueError, match=f"exponential overflows {dtype}: largest eigenvalue"):
        fn(x)
    fine = torch.diag(torch.tensor([top / 10, 1.0], dtype=dtype))
    assert bool(torch.isfinite(fn(fine)).all())
    with config.override(validate=False):
        fn(x)  # unchecked: the value check is off


@pytest.mark.parametrize("fn", [lambda x, p: L.powm(x, p), lambda x, p: F.poweig(x, p),
                                lambda x, p: rnn.PowEig(p)(x)])
@pytest.mark.parametrize("p, error, message", [
    (math.nan, ValueError, "p must be a finite number, got nan"),
    (math.inf, ValueError, "p must be a finite number, got inf"),
    (True, TypeError, "p must be a number, got bool"),
    (torch.tensor([0.5]), TypeError, "p must be a number, got Tensor"),
])
def test_matrix_powers_reject_non_finite_and_non_number_exponents(fn, p, error, message):
    with pytest.raises(error, match=message):
        fn(torch.eye(2, dtype=F64), p)


@pytest.mark.parametrize("x", [-torch.eye(2, dtype=F64), torch.zeros(2, 2, dtype=F64),
                               torch.diag(torch.tensor([1.0, -1.0], dtype=F64))])
def test_newton_schulz_rejects_matrices_that_are_not_positive_definite(x):
    with pytest.raises(ValueError, match="not positive definite"):
        L.sqrtm_invsqrtm_newton_schulz(x)


@pytest.mark.parametrize("iterations, error, message", [
    (True, TypeError, "iterations must be an int, got bool"),
    (2.7, TypeError, "iterations must be an int, got float"),
    (0, ValueError, "iterations must be an int >= 1, got 0"),
])
def test_newton_schulz_rejects_bad_iteration_counts(iterations, error, message):
    with pytest.raises(error, match=message):
        L.sqrtm_invsqrtm_newton_schulz(torch.eye(2, dtype=F64), iterations)


@pytest.mark.parametrize("fn", [L.logm, L.sqrtm, L.invsqrtm, L.expm, lambda x: L.powm(x, 0.3),
                                rnn.LogEig(), lambda x: L.sqrtm_invsqrtm(x)[1]])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_matrix_functions_of_0x0_matrices_are_empty(fn, batch):
    out = fn(torch.empty(*batch, 0, 0, dtype=F64))
    assert out.shape == (*batch, 0, 0) and out.dtype == F64


def test_eigh_checks_its_input_like_logm():
    with pytest.raises(TypeError, match="float32 or float64"):
        L.eigh(torch.eye(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, n\), got \(2, 3\)"):
        L.eigh(torch.ones(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="not symmetric"):
        L.eigh(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=F64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        L.eigh(torch.full((2, 2), math.nan, dtype=F64))
    lam, u = L.eigh(torch.diag(torch.tensor([3.0, 1.0], dtype=F32)))
    assert lam.tolist() == [1.0, 3.0] and u.shape == (2, 2)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (4, 2, 3), (1, 3)])
def test_sym_rejects_non_square_input(shape):
    with pytest.raises(ValueError, match=r"input must have shape \(\.\.\., n, n\)"):
        L.sym(torch.ones(shape))


@pytest.mark.parametrize("a, b, message", [
    ((3, 3), (2, 2), r"A \(3, 3\) and B \(2, 2\) differ in matrix size"),
    ((2, 3, 3), (3, 3, 3), "batch shapes that do not broadcast"),
])
def test_generalized_eigvalsh_rejects_mismatched_shapes(a, b, message):
    with pytest.raises(ValueError, match=message):
        L.generalized_eigvalsh(torch.eye(a[-1], dtype=F64).expand(a),
                               torch.eye(b[-1], dtype=F64).expand(b))


def test_solve_lyapunov_rejects_mismatched_batch_shapes():
    with pytest.raises(ValueError, match=r"P \(2, 3, 3\) and V \(3, 3, 3\) have batch shapes"):
        L.solve_lyapunov(torch.eye(3, dtype=F64).expand(2, 3, 3),
                         torch.eye(3, dtype=F64).expand(3, 3, 3))
    # broadcasting batch shapes are fine
    out = L.solve_lyapunov(2 * torch.eye(3, dtype=F64).expand(2, 1, 3, 3),
                           torch.eye(3, dtype=F64).expand(4, 3, 3))
    assert out.shape == (2, 4, 3, 3)


# ---- SPD network layers ------------------------------------------------------------------------
@pytest.mark.parametrize("trace_normalize, eps", [(True, 0.0), (True, 1e-3)])
def test_covariance_rejects_trace_normalising_constant_signals(trace_normalize, eps):
    with pytest.raises(ValueError, match="zero trace"):
        rnn.CovPool(trace_normalize=trace_normalize, eps=eps)(torch.ones(2, 3, 10, dtype=F64))
    with pytest.raises(ValueError, match="zero trace"):
        F.covariance(torch.ones(3, 10, dtype=F64), shrinkage=0.5, trace_normalize=True)
    # without the normalisation, eps makes the covariance of constant signals positive definite
    out = rnn.CovPool(eps=1e-3)(torch.ones(3, 10, dtype=F64))
    torch.testing.assert_close(out, 1e-3 * torch.eye(3, dtype=F64))


@pytest.mark.parametrize("args, error, message", [
    ((True, 2), TypeError, "in_features must be an int, got bool"),
    ((3.5, 2), TypeError, "in_features must be an int, got float"),
    ((3, 0), ValueError, "out_features must be an int >= 1, got 0"),
])
def test_bimap_rejects_bad_sizes(args, error, message):
    with pytest.raises(error, match=message):
        rnn.BiMap(*args)


def test_bimap_promotes_input_and_names_the_expected_shape():
    layer = rnn.BiMap(3, 2, dtype=F64)
    x = _spd(4)
    torch.testing.assert_close(layer(x.float()), layer(x), rtol=1e-6, atol=1e-6)
    assert layer(x.float()).dtype == F64
    for bad in (torch.ones(3, dtype=F64), torch.ones(2, 3, 4, dtype=F64)):
        with pytest.raises(ValueError, match=r"expected input of shape \(batch\.\.\., 3, 3\)"):
            layer(bad)
    with pytest.raises(ValueError, match=r"\(batch\.\.\., n_in, n_in\) with n_in <= 3"):
        F.bimap(torch.ones(3, 4, 5, dtype=F64), layer.weight)
    with pytest.raises(ValueError, match=r"n_in <= 3 \(the rows of the weight\), got \(5, 5\)"):
        F.bimap(torch.eye(5, dtype=F64), layer.weight)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.bimap(torch.eye(3, dtype=torch.int64), layer.weight)


@pytest.mark.parametrize("layer", [rnn.ReEig(), rnn.LogEig(), rnn.ExpEig(), rnn.PowEig(0.5)])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_eig_layers_reject_non_finite_input(layer, bad):
    x = torch.eye(3, dtype=F64).repeat(2, 1, 1)
    x[1, 0, 0] = bad
    with pytest.raises(ValueError, match="input contains NaN or infinite values"):
        layer(x)


# ---- hyperbolic and Grassmann layers -----------------------------------------------------------
@pytest.mark.parametrize("c", [1.0, 0.25])
def test_poincare_mlr_rejects_points_outside_the_ball(c):
    mlr = rnn.PoincareMLR(PoincareBall(c), 2, 3, dtype=F64)
    radius = c ** -0.5
    with pytest.raises(ValueError, match="PoincareMLR: input is not a point of PoincareBall.*"
                                         "outside the ball"):
        mlr(torch.tensor([[0.5 * radius, 0.0], [2 * radius, 0.0]], dtype=F64))
    assert mlr(torch.tensor([0.5 * radius, 0.0], dtype=F64)).shape == (3,)


@pytest.mark.parametrize("scale, error, message", [
    (math.inf, ValueError, "must be a finite positive number"),
    (math.nan, ValueError, "must be a finite positive number"),
    (-1.0, ValueError, "must be a finite positive number"),
    (True, TypeError, "must be a number, got bool"),
])
def test_subspace_classifier_rejects_bad_scales(scale, error, message):
    with pytest.raises(error, match=message):
        rnn.SubspaceClassifier(4, 3, scale=scale)


@pytest.mark.parametrize("make, error, message", [
    (lambda: rnn.PoincareMLR(PoincareBall(), 0, 3), ValueError,
     "in_features must be an int >= 1, got 0"),
    (lambda: rnn.PoincareMLR(PoincareBall(), 2, -1), ValueError,
     "num_classes must be an int >= 1, got -1"),
    (lambda: rnn.PoincareMLR(PoincareBall(), 2.0, 3), TypeError, "in_features must be an int"),
    (lambda: rnn.SubspaceClassifier(4, -1), ValueError, "num_classes must be an int >= 1, got -1"),
    (lambda: rnn.SubspaceClassifier(4.0, 2), TypeError, "in_features must be an int"),
    (lambda: rnn.SubspaceClassifier(4, 2, 5), ValueError, r"subspace_dim must be in \[1, 4\]"),
    (lambda: rnn.LorentzLinear(Lorentz(), 3.5, 3), TypeError, "in_features must be an int"),
    (lambda: rnn.LorentzLinear(Lorentz(), 3, 1), ValueError, "out_features must be an int >= 2"),
    (lambda: rnn.ExpMap0("ball"), TypeError, "ExpMap0 needs a manifold with expmap0.*got str"),
    (lambda: rnn.ExpMap0(Sphere()), TypeError, "ExpMap0 needs a manifold with expmap0.*Sphere"),
    (lambda: rnn.LogMap0(Sphere()), TypeError, "LogMap0 needs a manifold with logmap0.*Sphere"),
    (lambda: Euclidean(True), TypeError, "ndim must be an int, got bool"),
    (lambda: Euclidean(-1), ValueError, "ndim must be an int >= 0, got -1"),
    (lambda: PoincareBall(True), TypeError, "c must be a real number"),
    (lambda: Stereographic(False), TypeError, "k must be a real number"),
    (lambda: Lorentz(torch.tensor(True)), TypeError, "k must be a real number"),
])
def test_constructors_reject_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("manifold", [PoincareBall(), Stereographic(0.5), Lorentz()])
def test_origin_maps_accept_the_manifolds_that_have_them(manifold):
    x = torch.tensor([[0.1, -0.2]], dtype=F64)
    torch.testing.assert_close(rnn.LogMap0(manifold)(rnn.ExpMap0(manifold)(x)), x)


# ---- Fréchet means -----------------------------------------------------------------------------
_SPD_METRICS = [SPDAffineInvariant(), SPDLogEuclidean(), SPDLogCholesky(), SPDBuresWasserstein(),
                SPDGeneralizedBuresWasserstein(torch.eye(3, dtype=F64))]


@pytest.mark.parametrize("manifold", _SPD_METRICS + [Sphere(), Euclidean(2)],
                         ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("tol, error, message", [
    (-1.0, ValueError, "tol must be a finite non-negative number, got -1.0"),
    (math.nan, ValueError, "tol must be a finite non-negative number, got nan"),
    (math.inf, ValueError, "tol must be a finite non-negative number, got inf"),
    ("1e-8", TypeError, "tol must be a number, got str"),
])
def test_frechet_mean_rejects_bad_tolerances(manifold, tol, error, message):
    x = _spd(4) if not isinstance(manifold, Sphere) else Sphere().random(4, n=3, dtype=F64)
    with pytest.raises(error, match=message):
        manifold.frechet_mean(x, tol=tol)


@pytest.mark.parametrize("manifold", [SPDAffineInvariant(), Sphere()],
                         ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("shape", [(5, 2), (4,), (2, 4, 1), ()])
def test_frechet_mean_names_the_expected_weight_shape(manifold, shape):
    x = _spd(4, 2) if isinstance(manifold, SPDAffineInvariant) else Sphere().random(4, 2, n=3,
                                                                                    dtype=F64)
    weights = torch.ones(shape, dtype=F64)
    if shape == (4,):  # one weight per sample: the valid 1-D form
        assert manifold.frechet_mean(x, weights=weights).shape == x.shape[1:]
        return
    with pytest.raises(ValueError, match=r"weights .* must have shape \(4,\) or the batch shape "
                                         r"\(4, 2\) of x"):
        manifold.frechet_mean(x, weights=weights)
    # the batch shape itself, and shapes that broadcast to it, are accepted
    assert manifold.frechet_mean(x, weights=torch.ones(4, 2, dtype=F64)).shape == x.shape[1:]
    assert manifold.frechet_mean(x, weights=torch.ones(4, 1, dtype=F64)).shape == x.shape[1:]


@pytest.mark.parametrize("dtype, size", [(F32, 2e19), (F64, 1e155)], ids=["f32", "f64"])
@pytest.mark.parametrize("call", ["ball expmap0", "ball expmap", "sphere expmap"])
def test_tangent_vectors_whose_squared_norm_overflows_raise(call, dtype, size):
    # their norms would be infinite: the ball's expmap0 returned the origin, the others NaN
    u = torch.tensor([size, 0.0, 0.0], dtype=dtype)
    x = torch.tensor([0.1, 0.2, 0.0], dtype=dtype)
    fns = {"ball expmap0": lambda: PoincareBall().expmap0(u),
           "ball expmap": lambda: PoincareBall().expmap(x, u),
           "sphere expmap": lambda: Sphere().expmap(x / x.norm(), u)}
    with pytest.raises(ValueError, match="too large: its squared norm overflows"):
        fns[call]()
    # a tenth of it is fine: the ball's step ends at its boundary margin, along u
    small = PoincareBall().expmap0(u / 10)
    assert torch.isfinite(small).all() and small[0] > 0.99


def test_zero_dim_tensors_are_accepted_where_numbers_are():
    x = _spd(4)
    torch.testing.assert_close(rnn.PowEig(torch.tensor(0.5))(x), L.powm(x, 0.5))
    torch.testing.assert_close(F.poweig(x, torch.tensor(0.5)), L.powm(x, 0.5))
    m = SPDAffineInvariant()
    torch.testing.assert_close(m.frechet_mean(x, tol=torch.tensor(1e-8)),
                               m.frechet_mean(x, tol=1e-8))
    assert rnn.SPDBatchNorm(torch.tensor(3)).shape == (3, 3)
    assert rnn.SPDBatchNorm(3, channels=torch.tensor([2])).shape == (2, 3, 3)
    assert rnn.BiMap(torch.tensor(3), 2).weight.shape == (3, 2)
    with pytest.raises(TypeError, match="must be an int"):
        rnn.BiMap(torch.tensor(3.0), 2)
    with pytest.raises(TypeError, match="must be a number"):
        rnn.PowEig(torch.tensor(True))


def test_origin_maps_accept_geoopt_manifolds():
    geoopt = pytest.importorskip("geoopt")
    ball = geoopt.PoincareBall()
    x = torch.randn(5, 3, dtype=F64) * 0.3
    torch.testing.assert_close(rnn.LogMap0(ball)(rnn.ExpMap0(ball)(x)), x)


def test_tangent_vector_check_is_per_vector():
    # a batch of moderate vectors passes whatever its size; the squared norm of the whole
    # batch may leave the dtype's range
    u = torch.full((200, 3), 1e18, dtype=F32)
    x = torch.zeros(200, 3, dtype=F32)
    assert torch.isfinite(Euclidean().expmap(x, u)).all()
    v = torch.randn(4096, 64, dtype=torch.float16)
    assert rnn.ExpMap0(PoincareBall())(v).dtype == torch.float16


@pytest.mark.parametrize("manifold,kwargs", [
    (riemtorch.SPDAffineInvariant(), {"n": 3}), (riemtorch.SPDBuresWasserstein(), {"n": 3}),
    (riemtorch.Lorentz(), {"n": 3}), (riemtorch.PoincareBall(), {"n": 3}),
    (riemtorch.Stiefel(), {"n": 4, "p": 2}), (riemtorch.Grassmann(), {"n": 4, "p": 2}),
], ids=["aim", "bw", "lorentz", "poincare", "stiefel", "grassmann"])
def test_checking_a_parameter_gives_no_autograd_warning(manifold, kwargs):
    p = riemtorch.ManifoldParameter(manifold.random(2, dtype=torch.float64, **kwargs), manifold)
    u = manifold.proju(p, torch.randn_like(p)).detach()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert manifold.check_point(p) == (True, None)
        assert manifold.check_vector(p, u.requires_grad_()) == (True, None)
