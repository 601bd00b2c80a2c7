"""Laws of the Riemannian batch-norm family, over bn_cases.BN_CASES (on the device of
``RIEMTORCH_TEST_DEVICE``, see manifold_cases)."""

import copy
import io

import pytest
import torch

from bn_cases import BN_CASES
from manifold_cases import DEVICE

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
