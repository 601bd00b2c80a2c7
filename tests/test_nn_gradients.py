"""Gradients through every layer: gradcheck in float64, finite in float32 on hard inputs, and a
model holding all layers round-trips through state_dict and .to()."""

import copy
import io

import pytest
import torch

import riemtorch
from riemtorch import linalg as L
from riemtorch import nn as rnn

F64 = torch.float64
BN_METRICS = ["aim", "lem", "lcm", "bw", "gbw"]


def spd_batch(batch=4, n=3, seed=0, dtype=F64):
    return riemtorch.SPDAffineInvariant().random(batch, n=n, cond=5.0, dtype=dtype,
                                                 generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("metric", BN_METRICS)
def test_gradcheck_spd_batchnorm_in_train_and_eval(metric):
    torch.manual_seed(0)
    bn = rnn.SPDBatchNorm(3, metric=metric, mean_iters=3, learn_metric=(metric == "gbw"), dtype=F64)
    with torch.no_grad():  # a bias away from the identity exercises the general transport
        bn.bias.copy_(spd_batch(1, seed=5)[0])
    x = spd_batch()
    assert torch.autograd.gradcheck(lambda a: bn(L.sym(a)), (x.clone().requires_grad_(),))
    bn.eval()
    assert torch.autograd.gradcheck(lambda a: bn(L.sym(a)), (x.clone().requires_grad_(),))


def test_gradcheck_with_respect_to_bias_scale_and_metric_matrix():
    torch.manual_seed(1)
    bn = rnn.SPDBatchNorm(3, metric="gbw", mean_iters=3, learn_metric=True, power=0.5, dtype=F64)
    x = spd_batch()
    bias, m = spd_batch(1, seed=3)[0], spd_batch(1, seed=4)[0]

    def run(b, s, metric_matrix):
        clone = copy.deepcopy(bn)
        del clone.bias, clone.scale, clone.manifold.M
        clone.bias, clone.scale, clone.manifold.M = L.sym(b), s, L.sym(metric_matrix)
        return clone(x)

    inputs = (bias.clone().requires_grad_(), torch.tensor([1.3], dtype=F64, requires_grad=True)[0],
              m.clone().requires_grad_())
    assert torch.autograd.gradcheck(run, inputs)


@pytest.mark.parametrize("manifold,shape,kwargs", [
    (riemtorch.PoincareBall(1.0), (3,), {"n": 3}),
    (riemtorch.Lorentz(1.0), (3,), {"n": 3}),
    (riemtorch.SPDLogCholesky(), (3, 3), {"n": 3}),
], ids=["poincare", "lorentz", "spd-lcm"])
def test_gradcheck_gyro_batchnorm(manifold, shape, kwargs):
    bn = rnn.GyroBatchNorm(manifold, shape, mean_iters=3, dtype=F64)
    x = manifold.random(4, dtype=F64, generator=torch.Generator().manual_seed(2), **kwargs)
    proj = manifold.projx
    assert torch.autograd.gradcheck(lambda a: bn(proj(a)), (x.clone().requires_grad_(),))


def test_gradcheck_heads_and_pooling():
    torch.manual_seed(3)
    ball = riemtorch.PoincareBall(0.7)
    mlr = rnn.PoincareMLR(ball, 3, 4, dtype=F64)
    x = ball.random(5, n=3, dtype=F64)
    assert torch.autograd.gradcheck(mlr, (x.clone().requires_grad_(),))
    head = rnn.SubspaceClassifier(5, 3, subspace_dim=2, dtype=F64)
    assert torch.autograd.gradcheck(head, (torch.randn(4, 5, dtype=F64, requires_grad=True),))
    signals = torch.randn(2, 4, 6, dtype=F64, requires_grad=True)
    for pool in (rnn.CovPool(), rnn.CovPool(shrinkage="oas", trace_normalize=True)):
        assert torch.autograd.gradcheck(pool, (signals,))


FLOAT32_BN_CASES = {metric: {"metric": metric, "learn_metric": metric == "gbw"}
                    for metric in BN_METRICS}
FLOAT32_BN_CASES.update({  # Karcher flow steps for the affine-invariant mean
    "aim-flow-1-step": {"metric": "aim", "mean_method": "flow", "mean_iters": 1},
    "aim-flow": {"metric": "aim", "mean_method": "flow"},
})


@pytest.mark.parametrize("case", list(FLOAT32_BN_CASES))
def test_float32_spdnet_gradients_are_finite_at_condition_1e6_and_repeated_eigenvalues(case):
    torch.manual_seed(4)
    model = torch.nn.Sequential(
        rnn.BiMap(8, 6), rnn.SPDBatchNorm(6, **FLOAT32_BN_CASES[case]),
        rnn.ReEig(1e-4), rnn.LogEig(), rnn.Vech(), torch.nn.Linear(21, 2))
    hard = riemtorch.SPDAffineInvariant().random(6, n=8, cond=1e6, dtype=torch.float32)
    repeated = torch.stack([torch.eye(8), 2 * torch.eye(8)])
    x = torch.cat([hard, repeated]).requires_grad_()
    out = model(x)
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


class EveryLayer(torch.nn.Module):
    def __init__(self, dtype=F64):
        super().__init__()
        self.pool = rnn.CovPool(shrinkage="oas")
        self.bimap = rnn.BiMap(5, 4, dtype=dtype)
        self.spd_bn = torch.nn.ModuleList(
            rnn.SPDBatchNorm(4, metric=m, learn_metric=(m == "gbw"), dtype=dtype) for m in BN_METRICS)
        self.reeig, self.logeig, self.vech = rnn.ReEig(), rnn.LogEig(), rnn.Vech()
        self.expeig, self.poweig = rnn.ExpEig(), rnn.PowEig(0.5)
        self.lorentz = riemtorch.Lorentz(1.0)
        self.to_lorentz = rnn.ExpMap0(self.lorentz)
        self.lorentz_linear = rnn.LorentzLinear(self.lorentz, 11, 4, dtype=dtype)
        self.gyro_bn = rnn.GyroBatchNorm(self.lorentz, (4,), dtype=dtype)
        self.ball = riemtorch.PoincareBall(1.0)
        self.mlr = rnn.PoincareMLR(self.ball, 3, 2, dtype=dtype)
        self.subspace = rnn.SubspaceClassifier(10, 2, dtype=dtype)

    def forward(self, signals):
        x = self.bimap(self.pool(signals))
        for bn in self.spd_bn:
            x = bn(x)
        x = self.poweig(self.expeig(self.logeig(self.reeig(x))))
        feats = self.vech(self.logeig(x))
        h = self.gyro_bn(self.lorentz_linear(self.to_lorentz(feats)))
        ball = self.lorentz.lorentz_to_poincare(h)
        return self.mlr(ball) + self.subspace(feats)


def test_model_with_every_layer_round_trips_and_moves():
    torch.manual_seed(5)
    model = EveryLayer()
    signals = torch.randn(6, 5, 20, dtype=F64)
    model(signals).sum().backward()
    model.eval()
    reference = model(signals)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = EveryLayer()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh.eval()
    torch.testing.assert_close(fresh(signals), reference)
    moved = copy.deepcopy(model).to(torch.float32)
    assert all(t.dtype == torch.float32 for t in moved.state_dict().values() if t.is_floating_point())
    torch.testing.assert_close(moved(signals.float()), reference.float(), rtol=1e-3, atol=1e-3)
