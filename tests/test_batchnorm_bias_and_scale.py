"""Batch normalisation with a bias away from the origin and a scale other than 1, and the
centring laws it rests on, in float64 (on the device of ``RIEMTORCH_TEST_DEVICE``).

With batch Fréchet mean ``mu``, variance ``v`` and ``t = s / sqrt(v + eps)``, the layer's
output ``y_i`` (module docstring of :mod:`riemtorch.nn.batchnorm`) is

* transport form: ``Exp_B(PT_{O->B}(t PT_{mu->O}(Log_mu x_i)))``;
* gyro form: ``B ⊕ (t ⊗ (⊖mu ⊕ x_i))``.

Both move each sample isometrically, so ``d(B, y_i) = t d(mu, x_i)``, the output's Fréchet
mean is ``B`` and its variance about ``B`` is ``t^2 v`` (``s^2`` for ``eps = 0``). In the gyro
form the left cancellation law ``⊖B ⊕ (B ⊕ z) = z`` gives back the scaled centred sample.
"""


import pytest
import torch

import riemtorch
from bn_cases import _gyro_batch, _spd_batch
from manifold_cases import CASES, DEVICE, build, draw
from riemtorch.nn import RiemannianBatchNorm, SPDBatchNorm

F64 = torch.float64
SCALE = 0.7
# the batch means of the layer and of the reference stop at a Karcher-flow tolerance of 1e-10
# to 1e-12 (relative); the laws hold to that accuracy, the deviations they detect are O(1)
TOL = 1e-8


def _spd_bias(n=4):
    return riemtorch.SPDAffineInvariant().random(n=n, cond=3.0, dtype=F64,
                                                 generator=torch.Generator().manual_seed(5))


def _gbw_matrix(dtype):
    g = torch.Generator().manual_seed(11)
    return riemtorch.SPDAffineInvariant().random(n=4, cond=4.0, dtype=dtype, generator=g)


def _spd_case(metric, power=1.0, gyro=False, **kwargs):
    name = f"spd-{metric}-power{power:g}-{'gyro' if gyro else 'transport'}"

    def build_layer(dtype):
        extra = dict(kwargs)
        if metric == "gbw":
            extra["metric_matrix"] = _gbw_matrix(dtype)
        return SPDBatchNorm(4, metric=metric, power=power, gyro=gyro, eps=0.0, dtype=dtype,
                            **extra)

    return name, build_layer, _spd_batch, lambda m: _spd_bias()


SPD_CASES = [
    _spd_case(metric, power, gyro)
    for metric, powers, gyros in [("aim", (1.0, 0.5), (False, True)),
                                  ("lem", (1.0,), (False, True)),
                                  ("lcm", (1.0, 0.5), (False, True)),
                                  ("bw", (1.0, 0.5), (False,)),
                                  ("gbw", (1.0, 0.5), (False,))]
    for power in powers for gyro in gyros
]


def _other_case(name, make, shape, random_kwargs, gyro):
    def build_layer(dtype):
        return RiemannianBatchNorm(make(), shape, eps=0.0, gyro=gyro, dtype=dtype)

    def bias(m):
        return m.random(dtype=F64, generator=torch.Generator().manual_seed(5), **random_kwargs)

    return (f"{name}-{'gyro' if gyro else 'transport'}", build_layer,
            _gyro_batch(make, **random_kwargs), bias)


OTHER_CASES = [
    _other_case(name, make, shape, kw, gyro)
    for name, make, shape, kw in [
        ("poincare", lambda: riemtorch.PoincareBall(1.0), (3,), {"n": 3}),
        ("stereographic-positive", lambda: riemtorch.Stereographic(0.5), (3,), {"n": 3}),
        ("lorentz", lambda: riemtorch.Lorentz(1.5), (4,), {"n": 4}),
        ("grassmann", lambda: riemtorch.Grassmann(), (5, 2), {"n": 5, "p": 2}),
    ]
    for gyro in (False, True)
]
BIAS_CASES = SPD_CASES + OTHER_CASES


@pytest.fixture(params=BIAS_CASES, ids=[c[0] for c in BIAS_CASES])
def case(request):
    return request.param


def normalised(case, seed=0):
    """The layer with a random bias and scale ``SCALE``, a batch ``x`` and its output ``y``."""
    _, build_layer, sample, draw_bias = case
    bn = build_layer(F64).to(DEVICE)
    m = bn.manifold
    bias = draw_bias(m).to(DEVICE)
    with torch.no_grad():
        bn.bias.copy_(bias)
        bn.scale.fill_(SCALE)
    x = sample(torch.Generator().manual_seed(seed), F64).to(DEVICE)
    with torch.no_grad():
        y = bn.train()(x)
    return bn, bias, x, y


def batch_statistics(m, x):
    """Fréchet mean and variance of ``x`` from the manifold, independently of the layer."""
    mean = m.frechet_mean(x, tol=1e-12, max_iter=200)
    return mean, m.frechet_variance(x, mean)


def point_gap(m, a, b):
    """Largest discrepancy between points (subspaces compared by their projectors)."""
    if hasattr(m, "projector_distance"):
        return float(m.projector_distance(a, b))
    return float((a - b).abs().amax())


def test_output_has_the_bias_as_mean_the_squared_scale_as_variance_and_scaled_distances(case):
    bn, bias, x, y = normalised(case)
    m = bn.manifold
    out_mean = m.frechet_mean(y, tol=1e-12, max_iter=200)
    assert point_gap(m, out_mean, bias) < TOL * max(1.0, float(bias.abs().amax()))
    out_var = m.frechet_variance(y, bias)
    torch.testing.assert_close(out_var, torch.full_like(out_var, SCALE ** 2), rtol=TOL, atol=0)
    # per sample: d(B, y_i) = t d(mu, x_i), with the statistics of the batch computed here
    mean, var = batch_statistics(m, x)
    t = SCALE / torch.sqrt(var + bn.eps)
    torch.testing.assert_close(m.dist(bias.expand_as(y), y), t * m.dist(mean.expand_as(x), x),
                               rtol=TOL, atol=TOL)
    if bn.gyro:  # left cancellation: ⊖B ⊕ y_i = t ⊗ (⊖mu ⊕ x_i)
        cancelled = m.gyroadd(m.gyroinv(bias).expand_as(y), y)
        expected = m.gyroscalarmul(float(t), m.gyroadd(m.gyroinv(mean).expand_as(x), x))
        assert point_gap(m, cancelled, expected) < TOL


# ---- the centring of the transport form --------------------------------------------------

SPD_MANIFOLDS = [
    (f"{name}-power{power:g}", (lambda name=name, power=power: getattr(riemtorch, name)(power)))
    for name in ("SPDAffineInvariant", "SPDLogCholesky", "SPDBuresWasserstein")
    for power in (1.0, 0.5, 0.0)
] + [
    ("SPDLogEuclidean", riemtorch.SPDLogEuclidean),
] + [
    (f"SPDGeneralizedBuresWasserstein-power{power:g}",
     (lambda power=power: riemtorch.SPDGeneralizedBuresWasserstein(_gbw_matrix(F64), power)))
    for power in (1.0, 0.5, 0.0)
]


@pytest.mark.parametrize("make", [c[1] for c in SPD_MANIFOLDS], ids=[c[0] for c in SPD_MANIFOLDS])
def test_spd_centring_is_an_isometry_to_the_identity_and_uncentring_inverts_it(make):
    # center(x, M) = PT_{M->I}(Log_M x): its norm at I is d(M, x); uncenter(u, B) =
    # Exp_B(PT_{I->B} u) is at distance |u|_I from B and inverts center
    m = make()
    g = torch.Generator().manual_seed(0)
    spd = riemtorch.SPDAffineInvariant()
    x = spd.random(5, n=4, cond=5.0, dtype=F64, generator=g)
    mean, bias = (spd.random(n=4, cond=3.0, dtype=F64, generator=g).expand_as(x) for _ in range(2))
    eye = m.origin_like(x)
    u = m.center(x, mean)
    torch.testing.assert_close(m.norm(eye, u), m.dist(mean, x), rtol=1e-9, atol=0)
    small = 0.3 * u / m.norm(eye, u, keepdim=True)  # inside the BW domain of Exp at the bias
    moved = m.uncenter(small, bias)
    torch.testing.assert_close(m.dist(bias, moved), m.norm(eye, small), rtol=1e-9, atol=0)
    torch.testing.assert_close(m.center(moved, bias), small, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(m.uncenter(u, mean), x, rtol=1e-9, atol=1e-12)


OTHER_MANIFOLDS = [c for c in CASES if c.parallel and not c.id.startswith("spd")]


@pytest.mark.parametrize("case", OTHER_MANIFOLDS, ids=[c.id for c in OTHER_MANIFOLDS])
def test_centring_is_an_isometry_to_the_origin_and_uncentring_inverts_it(case):
    m = build(case)
    g = torch.Generator().manual_seed(0)
    x, mean, bias = (draw(case, 5, dtype=F64, generator=g) for _ in range(3))
    origin = m.origin_like(x)
    u = m.center(x, mean)
    torch.testing.assert_close(m.norm(origin, u), m.dist(mean, x), rtol=1e-9, atol=1e-12)
    small = case.step * u / m.norm(origin, u, keepdim=True)
    moved = m.uncenter(small, bias)
    torch.testing.assert_close(m.dist(bias, moved), m.norm(origin, small), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", OTHER_MANIFOLDS, ids=[c.id for c in OTHER_MANIFOLDS])
def test_parallel_transport_of_the_geodesic_velocity(case):
    # parallel transport along the minimising geodesic from x to y takes its initial velocity
    # Log_x y to its final velocity -Log_y x
    m = build(case)
    g = torch.Generator().manual_seed(1)
    x, y = (draw(case, 5, dtype=F64, generator=g) for _ in range(2))
    torch.testing.assert_close(m.transp(x, y, m.logmap(x, y)), -m.logmap(y, x),
                               rtol=1e-9, atol=1e-10)
