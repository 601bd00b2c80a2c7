"""The affine-invariant mean by Karcher flow steps (``mean_method="flow"``): one step against a
scipy evaluation of its formula, convergence to the Newton mean, the implicit gradient, and
the batch norm that uses it (fused and generic paths, one-step reference)."""

import numpy as np
import pytest
import scipy.linalg as sla
import torch

import riemtorch
from riemtorch.manifolds.spd import common, karcher
from riemtorch.nn import SPDBatchNorm

F64 = torch.float64
AIM = riemtorch.SPDAffineInvariant()
FLOW = riemtorch.SPDAffineInvariant(mean_method="flow")


def _concentrated(gen, batch=10, n=4, spread=0.3):
    base = AIM.random(n=n, cond=5.0, dtype=F64, generator=gen)
    u = riemtorch.linalg.sym(spread * torch.randn(batch, n, n, dtype=F64, generator=gen))
    return AIM.expmap(base.expand(batch, n, n), u)


def _spread(gen, batch=6, n=4, cond=1e4):
    return AIM.random(batch, n=n, cond=cond, dtype=F64, generator=gen)


def _powm(a, p):
    lam, u = np.linalg.eigh(a)
    return (u * lam ** p) @ u.T


def _one_flow_step(xs, w):
    """Independent evaluation: ``S = A # H`` (arithmetic and harmonic means), the step length
    (1 where ``k = sum_i w_i max K_i < 2``, else ``2 / (1 + k)``, with ``K`` the ratio of the
    arithmetic to the logarithmic mean of the extreme eigenvalues of the whitened samples)
    and ``S^1/2 expm(a sum_i w_i logm(S^-1/2 X_i S^-1/2)) S^1/2``."""
    arith = sum(wi * x for wi, x in zip(w, xs))
    harm = np.linalg.inv(sum(wi * np.linalg.inv(x) for wi, x in zip(w, xs)))
    ra, ria = _powm(arith, 0.5), _powm(arith, -0.5)
    start = ra @ _powm(ria @ harm @ ria, 0.5) @ ra
    root, inv_root = _powm(start, 0.5), _powm(start, -0.5)
    whitened = [inv_root @ x @ inv_root for x in xs]
    k = 0.0
    for wi, x in zip(w, whitened):
        lo, hi = np.linalg.eigvalsh(x)[[0, -1]]
        k += wi * max(1.0, 0.5 * (hi + lo) * np.log(hi / lo) / (hi - lo))
    step = 1.0 if k < 2 else 2 / (1 + k)
    grad = sum(wi * np.real(sla.logm(x)) for wi, x in zip(w, whitened))
    return root @ sla.expm(step * grad) @ root, k


@pytest.mark.parametrize("kind", ["concentrated", "spread"])
@pytest.mark.parametrize("weighted", [False, True])
def test_one_flow_step_against_scipy(kind, weighted):
    gen = torch.Generator().manual_seed(3)
    xs = _concentrated(gen) if kind == "concentrated" else _spread(gen)
    w = torch.rand(xs.shape[0], dtype=F64, generator=gen) + 0.2 if weighted else None
    got = FLOW.frechet_mean(xs, weights=w, max_iter=1)
    wn = np.full(xs.shape[0], 1 / xs.shape[0]) if w is None else (w / w.sum()).numpy()
    expected, k = _one_flow_step(xs.numpy(), wn)
    assert (k < 2) == (kind == "concentrated")  # both step lengths are exercised
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-10, atol=1e-10)


def test_flow_and_newton_reach_the_same_mean():
    gen = torch.Generator().manual_seed(4)
    for xs in (_concentrated(gen), _spread(gen, cond=1e2), _spread(gen, cond=1e4)):
        newton = AIM.frechet_mean(xs, tol=1e-12)
        flow = FLOW.frechet_mean(xs, tol=1e-11)
        assert float(AIM.dist(flow, newton)) < 1e-9


def test_flow_mean_against_pyriemann():
    pyriemann = pytest.importorskip("pyriemann.utils.mean")
    gen = torch.Generator().manual_seed(5)
    xs = _spread(gen, batch=8, n=5, cond=1e3)
    expected = pyriemann.mean_riemann(xs.numpy(), tol=1e-12, maxiter=500)
    torch.testing.assert_close(FLOW.frechet_mean(xs), torch.from_numpy(expected), rtol=1e-8,
                               atol=1e-8)


def test_flow_step_formula_with_damping():
    """``B expm(nu a F) B^T`` for a halved step, first (unit length where ``k < 2``) or later
    (the rate ``2 / (1 + k)``), against numpy."""
    gen = torch.Generator().manual_seed(11)
    xs = _concentrated(gen, batch=6)
    w = common.uniform_weights(xs)
    factor = torch.linalg.cholesky(AIM.random(n=4, cond=3.0, dtype=F64, generator=gen))
    whitened = torch.linalg.solve_triangular(
        factor, torch.linalg.solve_triangular(factor, xs, upper=False).mT, upper=False)
    lam, u = torch.linalg.eigh(whitened)
    grad = sum(np.real(sla.logm(x)) for x in whitened.numpy()) / xs.shape[0]
    k = sum(max(1.0, 0.5 * (hi + lo) * np.log(hi / lo) / (hi - lo))
            for lo, hi in lam[:, [0, -1]].numpy()) / xs.shape[0]
    assert k < 2
    for first, length in ((True, 1.0), (False, 2 / (1 + k))):
        got = karcher.flow_step(factor, lam, torch.from_numpy(grad), w, torch.tensor(0.5, dtype=F64),
                                first)
        expected = factor.numpy() @ sla.expm(0.5 * length * grad) @ factor.numpy().T
        torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spread,seed", [(0.8, 4), (0.9, 0), (0.9, 2)])
def test_flow_converges_at_the_unit_step_limit(spread, seed):
    """Where ``k`` nears 2 (1.81-1.97 here), unit steps after the first would contract by
    almost nothing in the worst case (35 or more steps to 1e-10); the rate takes about 16."""
    xs = _concentrated(torch.Generator().manual_seed(seed), batch=8, spread=spread)
    w = common.uniform_weights(xs)
    residual = karcher.karcher_iterations(xs, w, 1e-10, 25, method="flow")[4]
    assert residual <= 1e-10


def test_flow_steps_shrink_the_distance_on_spread_samples():
    """Where the unit step would overshoot (the first unit step raises ``||F||`` on these), the
    shortened steps still bring every iterate closer."""
    gen = torch.Generator().manual_seed(0)
    xs = _spread(gen, cond=1e6)
    w = common.uniform_weights(xs)
    mean, factor, inv_factor = karcher.arithmetic_harmonic_start(xs, w)
    lam, bases = karcher._whitened(xs, inv_factor)
    crit = karcher.karcher_gradient(lam, bases, w)[2]
    unit = common.unwhiten(factor, common.expm(karcher.karcher_gradient(lam, bases, w)[1]))
    assert float(karcher.karcher_gradient(*karcher.whitened_spectrum(xs, unit)[1:], w)[2]) > crit
    exact = AIM.frechet_mean(xs, tol=1e-12)
    distances = [float(AIM.dist(FLOW.frechet_mean(xs, max_iter=k), exact)) for k in (1, 3, 9, 27)]
    assert all(b < a for a, b in zip(distances, distances[1:]))


def test_flow_mean_gradient_is_the_implicit_one():
    """Run to tolerance, both methods differentiate the same mean."""
    gen = torch.Generator().manual_seed(6)
    xs = _concentrated(gen, batch=6, n=3)
    probe = riemtorch.linalg.sym(torch.randn(3, 3, dtype=F64, generator=gen))
    grads = []
    for m in (AIM, FLOW):
        x = xs.clone().requires_grad_()
        (m.frechet_mean(x, tol=1e-12) * probe).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-7, atol=1e-9)
    x = xs[:4].clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a: FLOW.frechet_mean(riemtorch.linalg.sym(a), tol=1e-12), (x,))


def _bn_reference(xs, mean, eps):
    """The batch norm's train output with ``B = I`` and ``s = 1`` at the given mean (numpy)."""
    inv_root = _powm(mean, -0.5)
    logs = [np.real(sla.logm(inv_root @ x @ inv_root)) for x in xs]
    var = np.mean([np.sum(g * g) for g in logs])
    return np.stack([sla.expm(g / np.sqrt(var + eps)) for g in logs])


def test_one_step_flow_batchnorm_against_reference():
    gen = torch.Generator().manual_seed(7)
    xs = _concentrated(gen, batch=12)
    bn = SPDBatchNorm(4, mean_method="flow", mean_iters=1, dtype=F64).train()
    y = bn(xs)
    mean1 = _one_flow_step(xs.numpy(), np.full(xs.shape[0], 1 / xs.shape[0]))[0]
    torch.testing.assert_close(y, torch.from_numpy(_bn_reference(xs.numpy(), mean1, bn.eps)),
                               rtol=1e-9, atol=1e-9)
    # the Newton step lands elsewhere: the option reaches the fused layer
    newton = SPDBatchNorm(4, mean_iters=1, dtype=F64).train()(xs)
    assert float((newton - y).detach().abs().max()) > 1e-6


class _Generic(SPDBatchNorm):
    def _fused(self):
        return False


@pytest.mark.parametrize("mean_iters", [1, 2, None])
def test_fused_flow_batchnorm_equals_the_generic_composition(mean_iters):
    gen = torch.Generator().manual_seed(8)
    xs = _concentrated(gen, batch=10, n=3)
    outs, grads = [], []
    for cls in (SPDBatchNorm, _Generic):
        torch.manual_seed(0)
        bn = cls(3, mean_method="flow", mean_iters=mean_iters, dtype=F64).train()
        with torch.no_grad():
            bn.bias.copy_(AIM.random(n=3, dtype=F64, generator=torch.Generator().manual_seed(1)))
            bn.scale.fill_(0.7)
        x = xs.clone().requires_grad_()
        y = bn(x)
        (y * torch.arange(9, dtype=F64).reshape(3, 3)).sum().backward()
        outs.append((y.detach(), bn.running_mean.clone(), bn.running_var.clone()))
        grads.append((x.grad, bn.scale.grad, bn.bias.grad))
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_flow_batchnorm_float32_input():
    gen = torch.Generator().manual_seed(9)
    xs = _concentrated(gen, batch=16)
    y64 = SPDBatchNorm(4, mean_method="flow", mean_iters=1, dtype=F64)(xs)
    x32 = xs.float().requires_grad_()
    bn32 = SPDBatchNorm(4, mean_method="flow", mean_iters=1)
    y32 = bn32(x32)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)
    y32.square().sum().backward()
    assert torch.isfinite(x32.grad).all() and torch.isfinite(bn32.bias.grad).all()


def test_mean_method_is_checked_and_shown():
    with pytest.raises(ValueError, match="mean_method"):
        riemtorch.SPDAffineInvariant(mean_method="gradient")
    with pytest.raises(ValueError, match="mean_method applies to metric='aim' only"):
        SPDBatchNorm(4, metric="lem", mean_method="flow")
    with pytest.raises(ValueError, match="power=0"):
        SPDBatchNorm(4, power=0.0, mean_method="flow")
    with pytest.raises(ValueError, match="mean_method"):
        karcher.karcher_iterations(*(lambda x: (x, common.uniform_weights(x)))(
            _concentrated(torch.Generator().manual_seed(0))), 1e-10, 3, method="Flow")
    assert "mean_method='flow'" in repr(FLOW)
    assert "mean_method='newton'" in repr(AIM)
    assert SPDBatchNorm(4, mean_method="flow").manifold.mean_method == "flow"
    # positional dtype still lands on dtype
    assert SPDBatchNorm(4, "aim", 1.0, (), None, False, "eigh", F64).bias.dtype == F64


def test_manifold_pickled_without_the_option_uses_newton():
    state = dict(FLOW.__dict__)
    del state["mean_method"]
    old = riemtorch.SPDAffineInvariant.__new__(riemtorch.SPDAffineInvariant)
    old.__dict__.update(state)
    assert old.mean_method == "newton"


def test_gradcheck_flow_batchnorm_in_train_and_eval():
    """Run to tolerance, the flow's implicit gradient is the derivative of the layer."""
    bn = SPDBatchNorm(3, mean_method="flow", dtype=F64)
    with torch.no_grad():  # a bias away from the identity exercises the general transport
        bn.bias.copy_(AIM.random(n=3, cond=4.0, dtype=F64,
                                 generator=torch.Generator().manual_seed(5)))
    x = AIM.random(4, n=3, cond=5.0, dtype=F64, generator=torch.Generator().manual_seed(0))
    sym = riemtorch.linalg.sym
    assert torch.autograd.gradcheck(lambda a: bn(sym(a)), (x.clone().requires_grad_(),))
    bn.eval()
    assert torch.autograd.gradcheck(lambda a: bn(sym(a)), (x.clone().requires_grad_(),))

