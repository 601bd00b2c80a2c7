"""The fused affine-invariant batch norm equals the generic composition of mean, centre, scale
and uncentre (RiemannianBatchNorm on SPDAffineInvariant), values and gradients."""

import pytest
import torch

import riemtorch
from riemtorch.manifolds.spd.eigenbases import EigenBases
from riemtorch.nn import RiemannianBatchNorm, SPDBatchNorm, aim_normalize

D = torch.float64


def _batch(gen, batch=10, channels=(), n=5, dtype=D):
    spd = riemtorch.SPDAffineInvariant()
    base = spd.random(*channels, n=n, cond=20.0, dtype=D, generator=gen)
    u = riemtorch.linalg.sym(0.5 * torch.randn(batch, *channels, n, n, dtype=D, generator=gen))
    return spd.expmap(base.expand(batch, *channels, n, n), u).to(dtype)


def _pair(channels=(), n=5, **kwargs):
    """The fused layer and the generic one, with the same random bias and scale."""
    gen = torch.Generator().manual_seed(3)
    fused = SPDBatchNorm(n, channels=channels, dtype=D, **kwargs)
    generic = RiemannianBatchNorm(riemtorch.SPDAffineInvariant(), tuple(channels) + (n, n),
                                  dtype=D, **kwargs)
    assert fused._fused() and not hasattr(generic, "_fused")
    with torch.no_grad():
        bias = riemtorch.SPDAffineInvariant().random(*channels, n=n, dtype=D, generator=gen)
        scale = 0.5 + torch.rand(channels, dtype=D, generator=gen)
        for layer in (fused, generic):
            layer.bias.copy_(bias)
            layer.scale.copy_(scale)
    return fused, generic


def _grads(layer, x, weight):
    x = x.detach().requires_grad_()
    out = layer(x)
    (out * weight).sum().backward()
    return out.detach(), x.grad, layer.bias.grad, layer.scale.grad


@pytest.mark.parametrize("channels", [(), (3,)])
@pytest.mark.parametrize("kwargs", [{"mean_iters": 1}, {"mean_iters": 3},
                                    {"mean_iters": 1, "normalize_variance": False},
                                    {"mean_iters": 1, "eps": 0.3},
                                    {"mean_iters": 1, "learn_bias": False}])
def test_fused_training_step_equals_the_generic_composition(channels, kwargs):
    gen = torch.Generator().manual_seed(0)
    x = _batch(gen, channels=channels)
    weight = torch.randn(x.shape, dtype=D, generator=gen)
    fused, generic = _pair(channels, **kwargs)
    got, want = _grads(fused, x, weight), _grads(generic, x, weight)
    names = ("output", "grad x", "grad bias", "grad scale")
    for name, a, b in zip(names, got, want):
        if b is None:
            assert a is None or name == "grad scale" and not kwargs.get("normalize_variance", 1)
            continue
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=name)
    torch.testing.assert_close(fused.running_mean, generic.running_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused.running_var, generic.running_var, rtol=1e-10, atol=1e-12)


def test_fused_eval_mode_equals_the_generic_composition():
    gen = torch.Generator().manual_seed(1)
    fused, generic = _pair((2,), mean_iters=2)
    for _ in range(3):  # move the running statistics away from (I, 1)
        x = _batch(gen, channels=(2,))
        fused(x), generic(x)
    fused.eval(), generic.eval()
    x = _batch(gen, channels=(2,))
    weight = torch.randn(x.shape, dtype=D, generator=gen)
    for a, b in zip(_grads(fused, x, weight), _grads(generic, x, weight)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_fused_layer_passes_gradcheck_for_samples_scale_and_bias():
    gen = torch.Generator().manual_seed(2)
    layer = SPDBatchNorm(3, dtype=D)
    with torch.no_grad():
        layer.scale.fill_(1.3)
    x = _batch(gen, batch=6, n=3).requires_grad_()
    scale = layer.scale.detach().clone().requires_grad_()
    bias = riemtorch.SPDAffineInvariant().random(n=3, dtype=D, generator=gen).requires_grad_()

    def run(x, scale, bias):
        # symmetric inputs: differentiate through the symmetric part, as the layer does
        sym = riemtorch.linalg.sym
        return torch.func.functional_call(layer, {"scale": scale, "bias": sym(bias)}, (sym(x),))

    with riemtorch.config.override(validate=False):
        assert torch.autograd.gradcheck(run, (x, scale, bias), atol=1e-6, rtol=1e-4)


def test_fused_float32_is_finite_at_repeated_eigenvalues_and_high_condition():
    gen = torch.Generator().manual_seed(4)
    spd = riemtorch.SPDAffineInvariant()
    x = torch.cat([spd.random(6, n=4, cond=1e6, dtype=D, generator=gen),
                   torch.eye(4, dtype=D).expand(2, 4, 4)]).float().requires_grad_()
    layer = SPDBatchNorm(4, mean_iters=1, dtype=torch.float32)
    out = layer(x)
    out.square().sum().backward()
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert torch.isfinite(layer.bias.grad).all() and torch.isfinite(layer.scale.grad).all()


def test_float32_gradients_match_float64_to_the_float32_solver_tolerance():
    """float32 input is decomposed in float64 but its implicit solve stops at ``1e3 eps`` of
    float32: the gradients stay within ``1e-3`` of the float64 ones, for the fused layer and
    for the Karcher mean."""
    gen = torch.Generator().manual_seed(6)
    x = _batch(gen, batch=12, n=6)
    weight = torch.randn(12, 6, 6, dtype=D, generator=gen)
    grads = {}
    for dtype in (D, torch.float32):
        layer = SPDBatchNorm(6, dtype=dtype)
        xin = x.clone().to(dtype).requires_grad_()
        (layer(xin) * weight.to(dtype)).sum().backward()
        mean_in = x.clone().to(dtype).requires_grad_()
        aim = riemtorch.SPDAffineInvariant()
        (aim.frechet_mean(mean_in) * weight[0].to(dtype)).sum().backward()
        grads[dtype] = (xin.grad.double(), mean_in.grad.double())
    for low, high in zip(grads[torch.float32], grads[D]):
        assert float((low - high).abs().max() / high.abs().max()) <= 1e-3


def test_fused_layer_rejects_non_spd_input():
    layer = SPDBatchNorm(3, dtype=D)
    x = torch.eye(3, dtype=D).repeat(4, 1, 1)
    x[0, 0, 1] = 5.0
    with pytest.raises(ValueError):
        layer(x)


def test_one_newton_step_gradient_is_the_exact_mean_gradient_to_the_step_residual(monkeypatch):
    # After one Newton step the mean is about ||F|| (relative) from the exact one; the backward
    # solves for the exact mean's derivative to that accuracy, not to ten digits.
    from riemtorch.manifolds.spd import karcher

    gen = torch.Generator().manual_seed(5)
    spd = riemtorch.SPDAffineInvariant()
    base = spd.random(n=6, cond=20.0, dtype=D, generator=gen)
    u = riemtorch.linalg.sym(0.2 * torch.randn(32, 6, 6, dtype=D, generator=gen))
    x = spd.expmap(base.expand(32, 6, 6), u)
    weight = torch.randn(x.shape, dtype=D, generator=gen)
    residual = karcher.karcher_iterations(x, riemtorch.manifolds.spd.common.uniform_weights(x),
                                         1e-8, 1)[4]
    assert 1e-6 < residual < 1e-3
    products = []
    original = EigenBases.hadamard_sandwich
    monkeypatch.setattr(EigenBases, "hadamard_sandwich",
                        lambda self, k, d: products.append(1) or original(self, k, d))

    def backward_products_and_grads(layer):
        xg = x.clone().requires_grad_()
        out = layer(xg)
        products.clear()
        (out * weight).sum().backward()
        return len(products), (xg.grad, layer.bias.grad, layer.scale.grad)

    one_products, one = backward_products_and_grads(_pair(n=6, mean_iters=1)[0])
    exact_products, exact = backward_products_and_grads(_pair(n=6)[0])
    assert one_products < exact_products
    for a, b in zip(one, exact):
        assert float((a - b).norm() / b.norm()) < 3 * residual


@pytest.mark.parametrize("channels", [(), (2,)])
def test_fused_running_mean_follows_the_geodesic_from_a_moved_running_mean(channels):
    # the fused layer steps the running mean from the batch mean's roots; after a first step
    # the running mean is no longer the identity, so the second update tests the formula
    gen = torch.Generator().manual_seed(5)
    fused, generic = _pair(channels, momentum=0.3)
    for _ in range(3):
        x = _batch(gen, channels=channels)
        fused(x), generic(x)
        torch.testing.assert_close(fused.running_mean, generic.running_mean, rtol=1e-10,
                                   atol=1e-12)
    aim = riemtorch.SPDAffineInvariant()
    running, mean = aim.random(2, *channels, n=5, cond=1e3, dtype=D, generator=gen)
    root = riemtorch.linalg.sqrtm(mean)
    step = aim_normalize.running_mean_step(running, root, torch.linalg.inv(root), 0.3)
    torch.testing.assert_close(step, aim.geodesic(running, mean, 0.3), rtol=1e-10, atol=1e-12)
