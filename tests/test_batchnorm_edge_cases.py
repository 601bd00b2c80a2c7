"""Riemannian batch norm at the edges: batches without spread, non-finite input, a geometry
that moves with a learnable curvature, and synchronised statistics over ranks of unequal
batch size."""

import math

import pytest
import torch

import riemtorch
from riemtorch.nn import SPDBatchNorm
from riemtorch.nn.batchnorm import GyroBatchNorm, RiemannianBatchNorm
from test_ddp import MODELS, check_ranks_equal_one_process

F64 = torch.float64
CLOSE = dict(rtol=1e-10, atol=1e-10)


def spd_batch(size, seed=0, n=4):
    return riemtorch.SPDAffineInvariant().random(size, n=n, cond=10.0, dtype=F64,
                                                 generator=torch.Generator().manual_seed(seed))


# ---- batches without spread ------------------------------------------------------------------
# (metric, power, gyro): the log-Euclidean metric and the power-0 limits of the others centre by
# differences of logarithms, which are zero up to rounding for identical samples
NO_SPREAD = [("lem", 1.0, False), ("lem", 1.0, True), ("aim", 0.0, False), ("aim", 0.0, True),
             ("lcm", 0.0, False), ("lcm", 0.0, True), ("bw", 0.0, False), ("gbw", 0.0, False),
             ("aim", 1.0, False), ("bw", 1.0, False)]


@pytest.mark.parametrize("metric, power, gyro", NO_SPREAD)
def test_identical_samples_are_all_moved_to_the_bias(metric, power, gyro):
    a = torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    point = a @ a.mT + 0.5 * torch.eye(4, dtype=F64)
    x = point.expand(3, 4, 4).clone()
    bn = SPDBatchNorm(4, metric=metric, power=power, gyro=gyro, dtype=F64)
    identity = torch.eye(4, dtype=F64).expand(3, 4, 4)
    torch.testing.assert_close(bn(x), identity, **CLOSE)
    # batch mean = the sample, batch variance 0
    m = bn.manifold
    torch.testing.assert_close(bn.running_mean, m.geodesic(identity[0], point, bn.momentum),
                               **CLOSE)
    torch.testing.assert_close(bn.running_var, torch.tensor(1 - bn.momentum, dtype=F64), **CLOSE)


@pytest.mark.parametrize("metric, power, gyro", NO_SPREAD)
def test_one_sample_in_eval_with_batch_statistics_raises_as_torch_does(metric, power, gyro):
    # its own statistics would map any single sample to the bias
    bn = SPDBatchNorm(4, metric=metric, power=power, gyro=gyro, track_running_stats=False,
                      dtype=F64).eval()
    with pytest.raises(ValueError, match="more than one sample per batch, got 1"):
        bn(spd_batch(1))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(3, track_running_stats=False).eval()(torch.randn(1, 3))
    assert bn(spd_batch(2)).shape == (2, 4, 4)


# ---- non-finite input --------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("metric", ["aim", "lem", "lcm", "bw", "gbw"])
def test_non_finite_input_raises_the_same_value_error_for_every_metric(metric, bad, training):
    bn = SPDBatchNorm(4, metric=metric, dtype=F64).train(training)
    x = spd_batch(6)
    x[0] = bad
    # training checks the batch before its mean; eval meets it in the centring
    with pytest.raises(ValueError, match=("input " if training else "") + "contains NaN or inf"):
        bn(x)
    # raised before the running statistics were touched
    assert torch.equal(bn.running_mean, torch.eye(4, dtype=F64))
    assert torch.equal(bn.running_var, torch.ones((), dtype=F64))


# ---- a learnable curvature ---------------------------------------------------------------------
CURVED = {
    "lorentz": (lambda: riemtorch.Lorentz(1.0, learnable=True), 4),
    "poincare": (lambda: riemtorch.PoincareBall(1.0, learnable=True), 3),
    "stereographic": (lambda: riemtorch.Stereographic(-1.0, learnable=True), 3),
}


def curved_batch(m, dim, gen):
    origin = m.origin_like(torch.zeros(8, dim, dtype=F64))
    with torch.no_grad():
        return m.expmap(origin, m.proju(origin, 0.5 * torch.randn(8, dim, dtype=F64,
                                                                  generator=gen)))


@pytest.mark.parametrize("learn_bias", [True, False], ids=["bias", "fixed_bias"])
@pytest.mark.parametrize("cls", [RiemannianBatchNorm, GyroBatchNorm])
@pytest.mark.parametrize("name", list(CURVED))
def test_running_mean_and_outputs_follow_a_learnable_curvature(name, cls, learn_bias):
    make, dim = CURVED[name]
    m = make()
    k0 = float(m.k.detach())
    bn = cls(m, (dim,), learn_bias=learn_bias, dtype=F64)
    opt = riemtorch.optim.RiemannianAdam(bn.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        opt.zero_grad()
        (bn(curved_batch(m, dim, gen))[..., 0] - 0.3).square().sum().backward()
        opt.step()
    assert abs(float(m.k.detach()) - k0) > 0.01  # the geometry did move
    bn.eval()
    y = bn(curved_batch(m, dim, gen))
    assert torch.isfinite(y).all()
    assert m.check_point(y.detach()) == (True, None)


def test_points_made_for_an_earlier_curvature_are_projected_onto_a_shrunk_ball():
    ball = riemtorch.PoincareBall(1.0, learnable=True)
    bn = RiemannianBatchNorm(ball, (3,), learn_bias=False, dtype=F64)
    mean, bias = (torch.tensor(p, dtype=F64) for p in ([0.95, 0.0, 0.0], [0.0, -0.9, 0.0]))
    with torch.no_grad():
        bn.running_mean.copy_(mean)
        bn.bias.copy_(bias)
        ball.log_abs_k.fill_(math.log(4.0))  # radius 1/2: both points are now outside
    x = ball.random(5, n=3, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = bn.eval()(x)
    assert torch.isfinite(y).all()
    assert ball.check_point(y.detach()) == (True, None)
    # = a layer on the fixed ball of radius 1/2 holding the projected points
    fixed = riemtorch.PoincareBall(4.0)
    ref = RiemannianBatchNorm(fixed, (3,), learn_bias=False, dtype=F64)
    with torch.no_grad():
        ref.running_mean.copy_(fixed.projx(mean))
        ref.bias.copy_(fixed.projx(bias))
    torch.testing.assert_close(y, ref.eval()(x), **CLOSE)


# ---- synchronised statistics with unequal local batches ---------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_a_rank_with_one_sample_joins_the_global_batch(name, tmp_path):
    check_ranks_equal_one_process(name, (1, 6), str(tmp_path / "result"))


def test_sync_layer_outside_a_process_group_still_needs_two_samples():
    bn = riemtorch.nn.convert_sync_batchnorm(SPDBatchNorm(4, dtype=F64))
    with pytest.raises(ValueError, match="more than one sample"):
        bn(spd_batch(1))


def test_a_dispersion_beyond_the_range_of_the_dtype_raises_instead_of_returning_nan():
    # unit variance is about 32 curvature radii at k = 1e-3, with samples out to 52: in
    # float32 the transport form's exponential map overflows (inf, then NaN)
    torch.manual_seed(0)
    manifold = riemtorch.Lorentz(1e-3)
    x32 = manifold.random(16, n=4, std=0.3 * 1e-3 ** 0.5)
    with pytest.raises(ValueError, match="normalised batch is not finite"):
        RiemannianBatchNorm(manifold, (4,))(x32)
    # the gyro form goes through the ball, which clips at the farthest point it resolves
    x = manifold.random(16, n=4, std=0.3 * 1e-3 ** 0.5, dtype=F64)
    out = GyroBatchNorm(manifold, (4,), dtype=F64)(x).detach()
    radius = manifold.dist(manifold.origin_like(out), out) / 1e-3 ** 0.5
    assert float(radius.max()) == pytest.approx(math.log(2 / torch.finfo(F64).eps), abs=0.1)
    # a target dispersion within range normalises the same batch
    y = GyroBatchNorm(manifold, (4,), dtype=F64, learn_scale=False)
    with torch.no_grad():
        y.scale.fill_(0.05)
    out = y(x)
    assert bool(torch.isfinite(out).all())
    ok, reason = manifold.check_point(out)
    assert ok, reason
