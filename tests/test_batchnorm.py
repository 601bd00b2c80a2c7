"""Laws of the Riemannian batch-norm family, over bn_cases.BN_CASES (on the device of
``RIEMTORCH_TEST_DEVICE``, see manifold_cases)."""

import copy
import io

import pytest
import torch

import riemtorch
from bn_cases import BN_CASES
from manifold_cases import DEVICE
from riemtorch.nn import SPDBatchNorm

F64 = torch.float64


def layer(build):
    return build(F64).to(DEVICE)


def batch(sample, seed=None, gen=None):
    """A float64 training batch drawn on the CPU, on the test device."""
    return sample(gen if gen is not None else torch.Generator().manual_seed(seed), F64).to(DEVICE)


@pytest.fixture(params=BN_CASES, ids=[c[0] for c in BN_CASES])
def case(request):
    return request.param


def test_training_output_has_origin_mean_and_unit_variance(case):
    _, build, sample = case
    bn = layer(build)
    x = batch(sample, 0)
    y = bn(x)
    m = bn.manifold
    mean = m.frechet_mean(y, dim=0, tol=1e-12, max_iter=200)
    if hasattr(m, "projector_distance"):  # a subspace has many bases
        assert float(m.projector_distance(mean.detach(), m.origin_like(mean))) < 1e-7
    else:
        torch.testing.assert_close(mean, m.origin_like(mean), atol=1e-7, rtol=0)
    var = m.frechet_variance(y, mean.unsqueeze(0))
    torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)


def test_running_statistics_follow_the_geodesic_update_and_eval_uses_them(case):
    _, build, sample = case
    bn = layer(build)
    gen = torch.Generator().manual_seed(1)
    x1, x2 = batch(sample, gen=gen), batch(sample, gen=gen)
    m = bn.manifold
    start_mean, start_var = bn.running_mean.clone(), bn.running_var.clone()
    bn(x1)
    mean1, var1 = bn.batch_statistics(x1)
    torch.testing.assert_close(bn.running_mean, m.geodesic(start_mean, mean1, bn.momentum))
    torch.testing.assert_close(bn.running_var, (1 - bn.momentum) * start_var + bn.momentum * var1)
    bn.eval()
    out = bn(x2)
    torch.testing.assert_close(out, bn.normalize(x2, bn.running_mean, bn.running_var))
    before = bn.running_mean.clone()
    bn(x2)
    assert torch.equal(bn.running_mean, before)


def test_batch_variance_and_running_variance_are_the_frechet_variance_of_the_batch(case):
    # the reference is the manifold's own Fréchet mean and variance, not the layer's
    _, build, sample = case
    bn = layer(build)
    x = batch(sample, 4)
    m = bn.manifold
    var = m.frechet_variance(x, m.frechet_mean(x, tol=1e-12, max_iter=200))
    torch.testing.assert_close(bn.batch_statistics(x)[1], var, rtol=1e-9, atol=0)
    start = bn.running_var.clone()
    bn(x)
    torch.testing.assert_close(bn.running_var, (1 - bn.momentum) * start + bn.momentum * var,
                               rtol=1e-9, atol=0)


def test_gradients_are_finite_and_state_dict_round_trips(case):
    _, build, sample = case
    bn = layer(build)
    x = batch(sample, 2).requires_grad_()
    bn(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in bn.parameters() if p.grad is not None)
    buffer = io.BytesIO()
    torch.save(bn.state_dict(), buffer)
    buffer.seek(0)
    fresh = layer(build)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for (k, a), (_, b) in zip(bn.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k
    moved = copy.deepcopy(bn).to(torch.float32)
    assert moved.running_mean.dtype == torch.float32 and moved.bias.dtype == torch.float32
    assert torch.isfinite(moved(x.detach().float())).all()


def test_input_shape_is_checked(case):
    _, build, sample = case
    bn = layer(build)
    x = batch(sample, 3)
    with pytest.raises(ValueError, match="expected input of shape"):
        bn(x[..., :1])
    with pytest.raises(ValueError, match="more than one sample"):
        bn(x[:1])


# ---- float32 SPD input: the whole normalisation runs in the working dtype -------------------

F32_METRICS = ("aim", "lem", "lcm")


def ill_conditioned_spd(seed, batch=8, n=6):
    """Float32 SPD matrices of condition number 1e6, on the test device."""
    gen = torch.Generator().manual_seed(seed)
    spd = riemtorch.SPDAffineInvariant()
    return spd.random(batch, n=n, cond=1e6, dtype=torch.float32, generator=gen).to(DEVICE)


def spd_pair(metric, gyro, n=6):
    """The same SPD batch norm in float32 and in float64."""
    def build(dtype):
        return SPDBatchNorm(n, metric=metric, gyro=gyro, dtype=dtype).to(DEVICE)
    return build(torch.float32), build(F64)


def max_relative_error(a, reference):
    """Largest Frobenius error of ``a`` relative to ``reference`` over the leading dimensions."""
    a, reference = a.detach(), reference.detach()
    err = (a.to(F64) - reference).flatten(1).norm(dim=-1)
    return float((err / reference.flatten(1).norm(dim=-1)).max())


def test_float32_gyro_lcm_centres_ill_conditioned_samples_without_error():
    # One centred sample reaches condition number 2e13: rounded to float32 between the gyro
    # operations its smallest eigenvalue turned negative ("point is not positive definite").
    x = ill_conditioned_spd(0)
    single, double = spd_pair("lcm", gyro=True)
    y = single(x)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert max_relative_error(y, double(x.to(F64))) <= 1e-6


@pytest.mark.parametrize("gyro", [True, False], ids=["gyro", "transport"])
@pytest.mark.parametrize("metric", F32_METRICS)
@pytest.mark.parametrize("seed", [1, 2, 4])
def test_float32_spd_batchnorm_matches_float64_to_float32_rounding(metric, gyro, seed):
    x = ill_conditioned_spd(seed)
    single, double = spd_pair(metric, gyro)
    x32, x64 = x.clone().requires_grad_(), x.to(F64).requires_grad_()
    y32, y64 = single(x32), double(x64)
    assert y32.dtype == torch.float32
    assert max_relative_error(y32, y64) <= 1e-6
    torch.testing.assert_close(single.running_var.to(F64), double.running_var, rtol=1e-6, atol=0)
    assert max_relative_error(single.running_mean[None], double.running_mean[None]) <= 1e-6
    assert single.running_mean.dtype == single.running_var.dtype == torch.float32

    upstream = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(seed))
    (y32 * upstream.to(DEVICE, torch.float32)).sum().backward()
    (y64 * upstream.to(DEVICE)).sum().backward()
    for a, b in [(x32.grad, x64.grad), (single.bias.grad, double.bias.grad),
                 (single.scale.grad, double.scale.grad)]:
        assert a.dtype == torch.float32
        assert max_relative_error(a.reshape(1, -1), b.reshape(1, -1)) <= 5e-4

    single.eval(), double.eval()
    assert max_relative_error(single(x), double(x.to(F64))) <= 1e-6


@pytest.mark.parametrize("metric, gyro, power", [("aim", True, 1.0), ("aim", False, 0.5),
                                                  ("bw", False, 1.0), ("gbw", False, 1.0)])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_batch_mean_backward_solves_to_the_accuracy_of_the_input_dtype(metric, gyro, power,
                                                                       dtype, monkeypatch):
    # The layer computes in float64 for float32 input; the implicit backward of its batch mean
    # is still solved to float32's accuracy (riemtorch.config), as frechet_mean does.
    from riemtorch.manifolds.spd import common

    seen, rtol = [], common.implicit_rtol

    def recorded(kind):
        seen.append(kind)
        return rtol(kind)

    monkeypatch.setattr(common, "implicit_rtol", recorded)
    bn = SPDBatchNorm(4, metric=metric, gyro=gyro, power=power, dtype=dtype).to(DEVICE)
    x = riemtorch.SPDAffineInvariant().random(
        6, n=4, cond=10.0, dtype=dtype, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    bn(x.requires_grad_()).sum().backward()
    assert set(seen) == {dtype}


def test_batch_norm_on_a_learnable_curvature_copies_and_rejects_momentum_none():
    from riemtorch import Lorentz
    from riemtorch.nn import RiemannianBatchNorm

    lorentz = Lorentz(1.0, learnable=True)
    bn = RiemannianBatchNorm(lorentz, (4,), dtype=torch.float64)
    # the origin depends on k; the buffer must not hang on k's graph
    assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None
    twin = copy.deepcopy(bn)
    x = lorentz.random(8, n=4, dtype=torch.float64)
    torch.testing.assert_close(twin(x), bn(x))
    with pytest.raises(TypeError, match="cumulative average"):
        RiemannianBatchNorm(lorentz, (4,), momentum=None)


def test_float64_layer_on_float32_points_of_a_non_spd_manifold_stops_at_float32_tolerance():
    # the mean is a float32 Karcher flow there: asked for float64's 1e-10 it ran to max_iter
    ball = riemtorch.PoincareBall(1.0)
    bn = riemtorch.nn.RiemannianBatchNorm(ball, (3,), dtype=torch.float64)
    x = ball.random(16, n=3, generator=torch.Generator().manual_seed(0)).float()
    calls = []
    expmap = ball.expmap

    def counted(*args):
        calls.append(1)
        return expmap(*args)

    ball.expmap = counted
    bn(x)
    assert len(calls) < 30
