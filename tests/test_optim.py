"""Riemannian optimizers: parity with torch.optim on plain parameters, batching, state dicts,
schedulers, options and errors."""

import io
import math

import pytest
import torch
from torch import nn

import riemtorch
from riemtorch.optim import RiemannianAdam, RiemannianSGD

DT = torch.float64

SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
]
ADAM_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
    dict(lr=0.02, amsgrad=True),
    dict(lr=0.02, amsgrad=True, weight_decay=0.1),
]
PAIRS = ([(RiemannianSGD, torch.optim.SGD, c) for c in SGD_CONFIGS]
         + [(RiemannianAdam, torch.optim.Adam, c) for c in ADAM_CONFIGS])


def _plain_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)


def _plain_loss(model, step):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(8, 5, dtype=DT, generator=g)
    return model(x).square().sum()


@pytest.mark.parametrize("ours,theirs,config", PAIRS)
def test_plain_parameters_match_torch_exactly(ours, theirs, config):
    a, b = _plain_model(), _plain_model()
    opt_a, opt_b = ours(a.parameters(), **config), theirs(b.parameters(), **config)
    for step in range(15):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            _plain_loss(model, step).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
        for key, value in opt_b.state[pb].items():
            if value is None:  # torch 2.3 stores momentum_buffer = None without momentum
                continue
            assert torch.equal(opt_a.state[pa][key], value), key


class CountingSphere(riemtorch.Sphere):
    """Sphere that counts calls of its optimizer-facing verbs."""

    def __init__(self):
        super().__init__()
        self.calls = {"egrad2rgrad": 0, "retr_transp": 0, "expmap_transp": 0, "retr": 0,
                      "expmap": 0, "projx": 0}

    def _count(self, name):
        self.calls[name] += 1

    def egrad2rgrad(self, x, g):
        self._count("egrad2rgrad")
        return super().egrad2rgrad(x, g)

    def retr_transp(self, x, u, v):
        self._count("retr_transp")
        return super().retr_transp(x, u, v)

    def expmap_transp(self, x, u, v):
        self._count("expmap_transp")
        return super().expmap_transp(x, u, v)


def _sphere_params(manifolds, seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return [riemtorch.ManifoldParameter(
        riemtorch.Sphere().random(n=n, dtype=DT, generator=g), m) for m in manifolds]


def _sphere_loss(params, step=0):
    g = torch.Generator().manual_seed(step)
    total = 0
    for i, p in enumerate(params):
        a = torch.randn(p.shape[-1], p.shape[-1], dtype=DT, generator=g)
        total = total + ((p @ (a + a.T)) * p).sum() + (i + 1) * p[..., 0].sum()
    return total


def _run(opt_factory, params, steps=12):
    opt = opt_factory(params)
    for step in range(steps):
        opt.zero_grad()
        _sphere_loss(params, step).backward()
        opt.step()
    return opt


@pytest.mark.parametrize("factory", [
    lambda ps: RiemannianAdam(ps, lr=0.05, amsgrad=True, weight_decay=0.1),
    lambda ps: RiemannianSGD(ps, lr=0.05, momentum=0.9, nesterov=True),
])
def test_batched_step_equals_one_parameter_at_a_time(factory):
    sphere = CountingSphere()
    batched = _sphere_params([sphere] * 3 + [CountingSphere()] * 2)
    separate = _sphere_params([riemtorch.Sphere() for _ in range(5)])
    _run(factory, batched)
    # one param group per parameter: nothing is batched
    _run(lambda ps: factory([{"params": [p]} for p in ps]), separate)
    for a, b in zip(batched, separate):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
    # the three parameters on `sphere` are stepped together: one call per step
    assert sphere.calls["egrad2rgrad"] == 12
    assert sphere.calls["retr_transp"] == 12


def test_equal_config_manifolds_share_a_batch():
    calls = []

    class Tracing(riemtorch.Sphere):
        def egrad2rgrad(self, x, g):
            calls.append(x.shape)
            return super().egrad2rgrad(x, g)

    params = _sphere_params([Tracing() for _ in range(6)])
    params.append(riemtorch.ManifoldParameter(torch.ones(2, 4, dtype=DT) / 2, Tracing()))
    _run(lambda ps: RiemannianAdam(ps, lr=0.01), params, steps=1)
    assert sorted(calls) == [torch.Size([2, 4]), torch.Size([6, 4])]


def test_euclidean_manifolds_of_different_ndim_are_not_mixed():
    a = riemtorch.ManifoldParameter(torch.randn(3, 4, dtype=DT), riemtorch.Euclidean(1))
    b = riemtorch.ManifoldParameter(torch.randn(3, 4, dtype=DT), riemtorch.Euclidean(2))
    opt = RiemannianAdam([a, b], lr=0.1)
    (a.sum() + b.sum()).backward()
    opt.step()
    assert opt.state[a]["exp_avg_sq"].shape == (3, 1)
    assert opt.state[b]["exp_avg_sq"].shape == (1, 1)


def test_second_moment_is_one_scalar_per_point():
    # on Euclidean(ndim=0) the per-point scalar is per element: Adam itself
    a = riemtorch.ManifoldParameter(torch.randn(3, 4, dtype=DT), riemtorch.Euclidean(0))
    b = nn.Parameter(a.detach().clone())
    opt_a, opt_b = RiemannianAdam([a], lr=0.1), torch.optim.Adam([b], lr=0.1)
    for step in range(10):
        for p, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            (p.sin() * (step + 1)).sum().backward()
            opt.step()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # on the sphere it is the squared norm of the Riemannian gradient
    sphere = riemtorch.Sphere()
    x = riemtorch.ManifoldParameter(sphere.random(5, dtype=DT), sphere)
    opt = RiemannianAdam([x], lr=0.1, betas=(0.9, 0.5))
    x0 = x.detach().clone()
    (x @ torch.arange(3.0, dtype=DT)).sum().backward()
    rgrad = sphere.proju(x0, x.grad)
    opt.step()
    torch.testing.assert_close(opt.state[x]["exp_avg_sq"], 0.5 * rgrad.square().sum(-1, True))


def _round_trip(obj):
    """Save and load through bytes, as a checkpoint on disk would be."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _mixed_model(seed=0):
    torch.manual_seed(seed)
    model = nn.Module()
    model.lin = nn.Linear(4, 3).to(DT)
    sphere = riemtorch.Sphere()
    model.points = riemtorch.ManifoldParameter(sphere.random(3, n=4, dtype=DT), sphere)
    model.other = riemtorch.ManifoldParameter(sphere.random(n=4, dtype=DT), riemtorch.Sphere())
    model.flat = riemtorch.ManifoldParameter(torch.randn(2, 4, dtype=DT), riemtorch.Euclidean())
    return model


def _mixed_loss(model, step):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(6, 4, dtype=DT, generator=g)
    y = model.lin(x * model.other) + model.flat.sum()
    z = model.points @ x.T
    return y.square().mean() + (z @ y).tanh().sum() + (model.flat.sin() * x[:2]).sum()


def _mixed_optimizer(kind, model):
    groups = [{"params": [model.lin.weight, model.points]},
              {"params": [model.lin.bias, model.other, model.flat], "lr": 0.02}]
    if kind == "adam":
        opt = RiemannianAdam(groups, lr=0.05, amsgrad=True, weight_decay=1e-3, stabilize=3)
    else:
        opt = RiemannianSGD(groups, lr=0.05, momentum=0.9, nesterov=True, stabilize=4,
                            retraction="expmap")
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)


def _train(model, opt, sched, steps):
    for step in steps:
        opt.zero_grad()
        _mixed_loss(model, step).backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_resume_from_checkpoint_is_bit_exact(kind):
    total, half = 14, 7
    model = _mixed_model()
    opt, sched = _mixed_optimizer(kind, model)
    _train(model, opt, sched, range(total))

    first = _mixed_model()
    opt1, sched1 = _mixed_optimizer(kind, first)
    _train(first, opt1, sched1, range(half))
    checkpoint = _round_trip({"model": first.state_dict(), "opt": opt1.state_dict(),
                              "sched": sched1.state_dict()})

    resumed = _mixed_model(seed=1)
    resumed.load_state_dict(checkpoint["model"])
    opt2, sched2 = _mixed_optimizer(kind, resumed)
    opt2.load_state_dict(checkpoint["opt"])
    sched2.load_state_dict(checkpoint["sched"])
    _train(resumed, opt2, sched2, range(half, total))

    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    for a, b in zip(model.parameters(), resumed.parameters()):
        for key, value in opt.state[a].items():
            assert torch.equal(value, opt2.state[b][key]), key
            assert value.dtype == opt2.state[b][key].dtype
    assert opt2.param_groups[1]["lr"] == opt.param_groups[1]["lr"]


def test_step_counter_dtype_survives_state_dict_round_trip():
    sphere = riemtorch.Sphere()
    x = riemtorch.ManifoldParameter(sphere.random(2, dtype=torch.float32), sphere)
    opt = RiemannianAdam([x])
    x.sum().backward()
    opt.step()
    step = opt.state[x]["step"]
    opt2 = RiemannianAdam([x])
    opt2.load_state_dict(_round_trip(opt.state_dict()))
    assert opt2.state[x]["step"].dtype == step.dtype and float(opt2.state[x]["step"]) == 1.0


def test_torch_adam_state_dict_loads_into_riemannian_adam():
    a, b = _plain_model(), _plain_model()
    torch_opt = torch.optim.Adam(a.parameters(), lr=0.01)
    ours = RiemannianAdam(b.parameters(), lr=0.01)
    _plain_loss(a, 0).backward()
    torch_opt.step()
    b.load_state_dict(a.state_dict())
    ours.load_state_dict(_round_trip(torch_opt.state_dict()))
    assert ours.param_groups[0]["retraction"] == "retr"
    for model, opt in ((a, torch_opt), (b, ours)):
        opt.zero_grad()
        _plain_loss(model, 1).backward()
        opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def _spd_params(manifolds, seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    return [riemtorch.ManifoldParameter(
        riemtorch.SPDAffineInvariant().random(n=n, cond=3.0, dtype=DT, generator=g), m)
        for m in manifolds]


def _spd_loss(params, step=0):
    g = torch.Generator().manual_seed(step)
    total = 0
    for i, p in enumerate(params):
        a = torch.randn(p.shape[-1], p.shape[-1], dtype=DT, generator=g)
        total = total + 0.1 * ((p @ (a + a.T)) * p).sum() + (i + 1) * p.diagonal().sum()
    return total


@pytest.mark.parametrize("geometry", ["sphere", "spd"])
@pytest.mark.parametrize("make", [
    lambda ps, **kw: RiemannianAdam(ps, lr=0.05, **kw),
    lambda ps, **kw: RiemannianSGD(ps, lr=0.05, **kw),
    lambda ps, **kw: RiemannianSGD(ps, lr=0.05, momentum=0.9, **kw),
    lambda ps, **kw: RiemannianSGD(ps, lr=0.05, momentum=0.8, nesterov=True, **kw),
], ids=["adam", "sgd", "sgd-momentum", "sgd-nesterov"])
def test_maximize_equals_minimizing_the_negative(make, geometry):
    # maximising f and minimising -f see gradients that differ by an exact negation
    if geometry == "sphere":
        params, loss = lambda: _sphere_params([riemtorch.Sphere()] * 2), _sphere_loss
    else:
        params, loss = lambda: _spd_params([riemtorch.SPDAffineInvariant()] * 2), _spd_loss
    a, b = params(), params()
    opt_a = make(a, maximize=True)
    opt_b = make(b)
    for step in range(5):
        for ps, opt, sign in ((a, opt_a, 1), (b, opt_b, -1)):
            opt.zero_grad()
            (sign * loss(ps, step)).backward()
            opt.step()
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("retraction", ["retr", "expmap"])
def test_retraction_choice_is_honoured(retraction):
    sphere = CountingSphere()
    params = _sphere_params([sphere])
    _run(lambda ps: RiemannianSGD(ps, lr=0.1, momentum=0.5, retraction=retraction), params, 3)
    used = "retr_transp" if retraction == "retr" else "expmap_transp"
    unused = "expmap_transp" if retraction == "retr" else "retr_transp"
    assert sphere.calls[used] == 3 and sphere.calls[unused] == 0


def test_expmap_step_matches_closed_form():
    sphere = riemtorch.Sphere()
    x = riemtorch.ManifoldParameter(sphere.random(3, dtype=DT), sphere)
    x0 = x.detach().clone()
    opt = RiemannianSGD([x], lr=0.7, retraction="expmap")
    c = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    (x @ c).sum().backward()
    opt.step()
    u = -0.7 * (c - (x0 @ c)[:, None] * x0)
    n = u.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(x.detach(), torch.cos(n) * x0 + torch.sin(n) * u / n)


def test_stabilize_projects_every_n_steps():
    projections = []

    class Tracing(riemtorch.Euclidean):
        def projx(self, x):
            projections.append(len(steps))
            return x

    steps = []
    x = riemtorch.ManifoldParameter(torch.randn(4, dtype=DT), Tracing())
    opt = RiemannianAdam([x], lr=0.1, stabilize=3)
    for _ in range(7):
        steps.append(None)
        opt.zero_grad()
        x.square().sum().backward()
        opt.step()
    assert projections == [3, 6]


def test_stabilize_brings_drifted_point_back():
    sphere = riemtorch.Sphere()
    x = riemtorch.ManifoldParameter(sphere.random(4, dtype=DT), sphere)
    opt = RiemannianSGD([x], lr=0.1, momentum=0.9)
    x.sum().backward()
    opt.step()
    with torch.no_grad():
        x.mul_(1.01)
        opt.state[x]["momentum_buffer"].add_(x)
    opt.stabilize()
    assert sphere.check_point(x)[0]
    assert sphere.check_vector(x.detach(), opt.state[x]["momentum_buffer"])[0]


def test_add_param_group_and_zero_grad():
    sphere = riemtorch.Sphere()
    x = riemtorch.ManifoldParameter(sphere.random(dtype=DT), sphere)
    w = nn.Parameter(torch.randn(3, dtype=DT))
    opt = RiemannianAdam([w], lr=0.1)
    opt.add_param_group({"params": [x], "lr": 0.5, "retraction": "expmap"})
    assert opt.param_groups[1]["stabilize"] is None and opt.param_groups[1]["lr"] == 0.5
    (x @ w).backward()
    opt.step()
    opt.zero_grad()
    assert x.grad is None and w.grad is None
    assert sphere.check_point(x)[0]
    with pytest.raises(ValueError, match="retraction"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(2))], "retraction": "qr"})


def test_parameters_without_gradient_are_left_alone():
    params = _sphere_params([riemtorch.Sphere()] * 3)
    before = [p.detach().clone() for p in params]
    opt = RiemannianAdam(params, lr=0.1)
    _sphere_loss(params[:2]).backward()
    opt.step()
    assert torch.equal(params[2], before[2]) and not opt.state[params[2]]
    assert not torch.equal(params[0], before[0])


@pytest.mark.parametrize("make", [
    lambda p: RiemannianSGD(p, lr=-1.0),
    lambda p: RiemannianSGD(p, lr=0.1, momentum=-0.5),
    lambda p: RiemannianSGD(p, lr=0.1, nesterov=True),
    lambda p: RiemannianSGD(p, lr=0.1, weight_decay=-1),
    lambda p: RiemannianSGD(p, lr=0.1, stabilize=0),
    lambda p: RiemannianSGD(p, lr=0.1, stabilize=2.5),
    lambda p: RiemannianAdam(p, betas=(1.0, 0.9)),
    lambda p: RiemannianAdam(p, eps=-1.0),
    lambda p: RiemannianAdam(p, retraction="cayley"),
])
def test_invalid_options_raise(make):
    with pytest.raises(ValueError):
        make([nn.Parameter(torch.ones(2))])


def test_sparse_gradient_of_manifold_parameter_raises():
    sphere = riemtorch.Sphere()
    x = riemtorch.ManifoldParameter(sphere.random(5, dtype=DT), sphere)
    x.grad = torch.eye(5, 3, dtype=DT).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        RiemannianSGD([x], lr=0.1).step()


def test_adam_rejects_complex_manifold_parameters():
    # its second moment <g, g> is complex for complex g: the steps were wrong (and AMSGrad
    # failed in torch.maximum); plain complex parameters step as with torch.optim.Adam
    from riemtorch.manifolds import Euclidean

    x = riemtorch.ManifoldParameter(torch.ones(2, 2, dtype=torch.complex128), Euclidean(ndim=0))
    x.grad = torch.full((2, 2), 1 + 1j, dtype=torch.complex128)
    with pytest.raises(TypeError, match="complex manifold parameters"):
        RiemannianAdam([x], lr=0.1).step()
    plain = nn.Parameter(torch.ones(2, dtype=torch.complex128))
    twin = nn.Parameter(plain.detach().clone())
    plain.grad = twin.grad = torch.tensor([1 + 2j, -1j], dtype=torch.complex128)
    RiemannianAdam([plain], lr=0.1).step()
    torch.optim.Adam([twin], lr=0.1).step()
    torch.testing.assert_close(plain, twin, rtol=0, atol=0)


def test_closure_is_evaluated_with_grad_enabled():
    sphere = riemtorch.Sphere()
    x = riemtorch.ManifoldParameter(sphere.random(dtype=DT), sphere)
    opt = RiemannianSGD([x], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = x[0]
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.requires_grad and x.grad is not None


OPTIMIZERS = [lambda p: RiemannianSGD(p, lr=0.1), lambda p: RiemannianSGD(p, lr=0.1, momentum=0.9),
              lambda p: RiemannianAdam(p, lr=0.1)]


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_parameters_off_their_manifold_and_non_finite_gradients_raise_when_validating(make):
    stiefel = riemtorch.Stiefel()
    with riemtorch.config.override(validate=False):  # (the constructor checks too)
        off = riemtorch.ManifoldParameter(2 * stiefel.random(3, n=5, p=2, dtype=DT), stiefel)
    off.grad = torch.ones_like(off)
    with pytest.raises(ValueError, match="Stiefel.egrad2rgrad: x is not a point"):
        make([off]).step()
    on = riemtorch.ManifoldParameter(stiefel.random(3, n=5, p=2, dtype=DT), stiefel)
    on.grad = torch.full_like(on, float("nan"))
    before = on.detach().clone()
    with pytest.raises(ValueError, match="gradient of a parameter on Stiefel.* NaN"):
        make([on]).step()
    assert torch.equal(on.detach(), before)
    with riemtorch.config.override(validate=False):
        make([off]).step()  # no value checks
        make([on]).step()
    assert bool(on.isnan().all())


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_an_update_checks_its_points_once(make, monkeypatch):
    sphere = riemtorch.Sphere()
    params = [riemtorch.ManifoldParameter(sphere.random(4, n=3, dtype=DT), sphere)
              for _ in range(3)]
    calls = []
    original = riemtorch.Sphere._check_point_on_manifold
    monkeypatch.setattr(riemtorch.Sphere, "_check_point_on_manifold",
                        lambda self, x, atol, rtol: calls.append(x.shape) or original(self, x, atol, rtol))
    opt = make(params)
    for step in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, dtype=DT)
        opt.step()
        # one batch of three parameters: one check of the stacked points per step
        assert calls == [(3, 4, 3)] * (step + 1)
    assert sphere.check_point(torch.stack([p.detach() for p in params]))[0]


def _curvature_step_case(make, manifold, x, separate_groups):
    """A point on ``manifold`` with a gradient pushing it outwards, and a gradient of the
    curvature's parameter ``t = log|k|`` that scales ``k`` by 1.5 in one plain SGD step of rate
    0.1 (Adam moves ``t`` by its rate); in one param group or two. Returns the point, the
    groups and ``k`` after the step."""
    (t,) = manifold.parameters()
    point = riemtorch.ManifoldParameter(x, manifold)
    point.grad = -0.3 * x
    t.grad = torch.full_like(t, -math.log(1.5) / 0.1)
    expected = nn.Parameter(t.detach().clone())
    expected.grad = t.grad.clone()
    make([expected]).step()
    groups = ([{"params": [t]}, {"params": [point]}] if separate_groups
              else [{"params": [t, point]}])
    return point, groups, manifold.curvature_sign * expected.detach().exp()


@pytest.mark.parametrize("separate_groups", [False, True])
@pytest.mark.parametrize("make", OPTIMIZERS)
def test_points_follow_a_stepped_curvature(make, separate_groups):
    # The ball shrinks: a point near its boundary is stepped in the geometry of its gradient
    # (c = 1), then projected into the new ball; a point well inside is left as stepped.
    ball = riemtorch.PoincareBall(1.0, learnable=True, dtype=DT)
    x = torch.tensor([[0.95, 0.0], [0.1, 0.2]], dtype=DT)
    point, groups, new_k = _curvature_step_case(make, ball, x, separate_groups)
    old_ball = riemtorch.PoincareBall(1.0, dtype=DT)
    moved = riemtorch.ManifoldParameter(x.clone(), old_ball)
    moved.grad = point.grad.clone()
    make([moved]).step()
    make(groups).step()
    torch.testing.assert_close(ball.k.detach(), new_k, rtol=0, atol=0)
    radius = float(ball.c.detach()) ** -0.5
    assert float(moved.detach()[0].norm()) > radius  # outside the new ball before projection
    torch.testing.assert_close(point.detach(), ball.projx(moved.detach()), rtol=0, atol=1e-15)
    assert float(point.detach()[0].norm()) < radius
    torch.testing.assert_close(point.detach()[1], moved.detach()[1], rtol=0, atol=0)
    assert ball.check_point(point.detach())[0]


@pytest.mark.parametrize("make", OPTIMIZERS)
@pytest.mark.parametrize("manifold", ["ball", "lorentz"])
def test_points_without_a_gradient_follow_a_stepped_curvature(make, manifold):
    # a point that no loss reached in this step is not stepped, but the manifold it lies on
    # changed: it is projected onto the new one like the stepped points
    m = (riemtorch.PoincareBall(1.0, learnable=True, dtype=DT) if manifold == "ball"
         else riemtorch.Lorentz(1.0, learnable=True, dtype=DT))
    # the unused point is the far one: near the boundary of the ball, which shrinks
    tangent = ([[0.0, 0.3, -0.2], [0.0, 2.5, 0.4]] if manifold == "lorentz"
               else [[0.3, -0.2], [2.5, 0.4]])
    start = m.expmap0(torch.tensor(tangent, dtype=DT)).detach()
    used = riemtorch.ManifoldParameter(start[:1].clone(), m)
    unused = riemtorch.ManifoldParameter(start[1:].clone(), m)
    opt = make([used, unused, *m.parameters()])
    opt.zero_grad()
    (m.dist0(used).sum() - 10 * m.k.abs()).backward()
    assert unused.grad is None
    opt.step()
    assert float(m.k.detach().abs()) > 1.05  # the manifold changed
    for point in (used, unused):
        ok, reason = m.check_point(point.detach())
        assert ok, reason
    torch.testing.assert_close(unused.detach(), m.projx(start[1:]), rtol=0, atol=1e-15)


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_hyperboloid_points_follow_a_stepped_curvature(make):
    lorentz = riemtorch.Lorentz(1.0, learnable=True, dtype=DT)
    x = lorentz.expmap0(torch.tensor([[0.0, 0.5, -0.3], [0.0, 1.0, 0.2]], dtype=DT))
    point, groups, new_k = _curvature_step_case(make, lorentz, x, separate_groups=False)
    make(groups).step()
    torch.testing.assert_close(lorentz.k.detach(), new_k, rtol=0, atol=0)
    assert float(new_k) > 1.05
    assert lorentz.check_point(point.detach())[0]
    point.grad = torch.ones_like(point)
    make([point]).step()  # the projected point is a valid input
    assert lorentz.check_point(point.detach())[0]


@pytest.mark.parametrize("make", OPTIMIZERS)
@pytest.mark.parametrize("manifold", ["ball", "lorentz"])
def test_a_curvature_driven_towards_zero_keeps_its_sign(make, manifold):
    # Steps of 0.5 against the curvature's magnitude: a linear k would cross zero at the second
    # (then NaN); the log-parametrized one shrinks and the manifold stays valid.
    m = (riemtorch.PoincareBall(1.0, learnable=True, dtype=DT) if manifold == "ball"
         else riemtorch.Lorentz(1.0, learnable=True, dtype=DT))
    point = riemtorch.ManifoldParameter(m.expmap0(torch.tensor(
        [[0.0, 0.3, 0.2]] if manifold == "lorentz" else [[0.3, 0.2]], dtype=DT)).detach(), m)
    (t,) = m.parameters()
    opt = make([{"params": [t], "lr": 0.5}, {"params": [point]}])
    for _ in range(6):
        opt.zero_grad()
        (m.k.abs() + m.dist0(point).sum()).backward()
        opt.step()
        assert float(m.k.detach()) * m.curvature_sign > 0
        assert m.check_point(point.detach())[0]
    assert float(m.k.detach().abs()) < 0.5


def test_points_are_not_projected_when_the_curvature_is_fixed(monkeypatch):
    ball = riemtorch.PoincareBall(1.0, dtype=DT)
    point = riemtorch.ManifoldParameter(torch.tensor([[0.5, 0.1]], dtype=DT), ball)
    calls = []
    monkeypatch.setattr(riemtorch.PoincareBall, "projx", lambda self, x: calls.append(x) or x)
    point.grad = torch.ones_like(point)
    RiemannianAdam([point], lr=0.1).step()
    assert calls == []


class _PlainAffineInvariant(riemtorch.SPDAffineInvariant):
    """The same metric through the generic composition of egrad2rgrad, inner and
    expmap_transp (the optimizer's Cholesky-frame update is for SPDAffineInvariant itself)."""


@pytest.mark.parametrize("config", ADAM_CONFIGS + [dict(lr=0.05, maximize=True)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_adam_on_affine_invariant_spd_equals_the_generic_composition(config, dtype):
    g = torch.Generator().manual_seed(7)
    start = riemtorch.SPDAffineInvariant().random(3, n=4, cond=50.0, dtype=DT, generator=g)
    targets = riemtorch.SPDAffineInvariant().random(3, n=4, dtype=DT, generator=g)
    runs = []
    for manifold in (riemtorch.SPDAffineInvariant(), _PlainAffineInvariant()):
        # a batched parameter and a single one on the same manifold
        params = [riemtorch.ManifoldParameter(start.to(dtype).clone(), manifold),
                  riemtorch.ManifoldParameter(start[0].to(dtype).clone(), manifold)]
        opt = RiemannianAdam(params, **config)
        for step in range(6):
            opt.zero_grad()
            loss = (1.0 + step) * sum(((p - t.to(dtype)) ** 2).sum()
                                      for p, t in zip(params, (targets, targets[0])))
            loss.backward()
            opt.step()
        runs.append([p.detach().clone() for p in params]
                    + [opt.state[p][k] for p in params for k in sorted(opt.state[p])])
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for fast, generic in zip(*runs):
        assert fast.dtype == generic.dtype
        torch.testing.assert_close(fast, generic, **tol)
