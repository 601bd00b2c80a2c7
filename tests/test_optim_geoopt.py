"""Trajectories of the Riemannian optimizers against geoopt's (same manifold, retraction and
hyper-parameters), and geoopt parameters stepped by riemtorch's optimizers."""

import warnings

import pytest
import torch

import riemtorch
from riemtorch.optim import RiemannianAdam, RiemannianSGD

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    geoopt = pytest.importorskip("geoopt")

DT = torch.float64
STEPS = 30


def _targets(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(s[-1], s[-1], dtype=DT, generator=g),
             torch.randn(*s, dtype=DT, generator=g)) for s in shapes]


def _loss(params, targets):
    """A smooth non-convex objective: a quadratic form plus a linear term per parameter."""
    total = 0
    for p, (a, b) in zip(params, targets):
        total = total + ((p @ (a + a.T)) * p).sum() + (b * p).sum() + (p[..., 0] ** 3).sum()
    return total


def _trajectory(opt, params, targets, steps=STEPS):
    path = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(params, targets).backward()
        opt.step()
        path.append([p.detach().clone() for p in params])
    return path


def _assert_paths_close(ours, theirs, atol=1e-10):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for x, y in zip(a, b):
            err = (x - y).abs().max().item()
            assert err < atol, f"step {step}: max difference {err:.3g}"


def _points(shapes, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        x = torch.randn(*s, dtype=DT, generator=g)
        out.append(x / x.norm(dim=-1, keepdim=True))
    return out


SHAPES = [(4,), (3, 4), (4,), (2, 5)]


class ProjectionTransportSphere(riemtorch.Sphere):
    """riemtorch's sphere with geoopt's vector transport (projection onto the new tangent space)."""

    def transp(self, x, y, v):
        return self.proju(y, v)


ADAM = [dict(lr=0.05), dict(lr=0.05, amsgrad=True), dict(lr=0.03, amsgrad=True, weight_decay=0.2),
        dict(lr=0.05, betas=(0.5, 0.9), eps=1e-4, weight_decay=0.01)]


@pytest.mark.parametrize("config", ADAM)
def test_adam_on_sphere_matches_geoopt(config):
    targets = _targets(SHAPES)
    sphere = ProjectionTransportSphere()
    ours = [riemtorch.ManifoldParameter(x, sphere) for x in _points(SHAPES)]
    gsphere = geoopt.Sphere()
    theirs = [geoopt.ManifoldParameter(x, manifold=gsphere) for x in _points(SHAPES)]
    _assert_paths_close(_trajectory(RiemannianAdam(ours, **config), ours, targets),
                        _trajectory(geoopt.optim.RiemannianAdam(theirs, **config), theirs,
                                    targets))


@pytest.mark.parametrize("config", ADAM)
def test_geoopt_parameters_step_as_with_geoopt_adam(config):
    targets = _targets(SHAPES)
    gsphere = geoopt.Sphere()
    ours = [geoopt.ManifoldParameter(x, manifold=gsphere) for x in _points(SHAPES)]
    theirs = [geoopt.ManifoldParameter(x, manifold=gsphere) for x in _points(SHAPES)]
    _assert_paths_close(_trajectory(RiemannianAdam(ours, **config), ours, targets),
                        _trajectory(geoopt.optim.RiemannianAdam(theirs, **config), theirs,
                                    targets))


def test_adam_resumes_from_a_geoopt_checkpoint():
    # geoopt stores the step count as a Python int; the next step used to raise
    # AttributeError ('int' object has no attribute 'item' / 'fill_')
    import copy

    targets = _targets(SHAPES)
    gsphere = geoopt.Sphere()
    params = [geoopt.ManifoldParameter(x, manifold=gsphere) for x in _points(SHAPES)]
    plain = torch.nn.Parameter(torch.randn(3, dtype=DT, generator=torch.Generator().manual_seed(5)))
    theirs = geoopt.optim.RiemannianAdam(params + [plain], lr=0.05)
    _trajectory(theirs, params, targets, steps=3)
    resumed = [copy.deepcopy(p) for p in params]
    ours = RiemannianAdam(resumed + [copy.deepcopy(plain)], lr=0.05)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    _assert_paths_close(_trajectory(ours, resumed, targets, steps=3),
                        _trajectory(theirs, params, targets, steps=3))
    assert all(float(ours.state[p]["step"]) == 6 for p in resumed)


@pytest.mark.parametrize("exact", [False, True])
def test_sgd_without_momentum_matches_geoopt(exact):
    targets = _targets(SHAPES)
    sphere = riemtorch.Sphere()
    ours = [riemtorch.ManifoldParameter(x, sphere) for x in _points(SHAPES)]
    gsphere = geoopt.SphereExact() if exact else geoopt.Sphere()
    theirs = [geoopt.ManifoldParameter(x, manifold=gsphere) for x in _points(SHAPES)]
    config = dict(lr=0.02, weight_decay=0.1)
    opt = RiemannianSGD(ours, retraction="expmap" if exact else "retr", **config)
    _assert_paths_close(_trajectory(opt, ours, targets),
                        _trajectory(geoopt.optim.RiemannianSGD(theirs, **config), theirs,
                                    targets))


def _sgd_momentum_paths(ours, theirs, targets, config):
    """geoopt's first momentum step is (1 + momentum) times ours: take one step with ours, hand
    geoopt the resulting point and momentum, and compare from the second step on."""
    ours_opt = RiemannianSGD(ours, **config)
    _trajectory(ours_opt, ours, targets, steps=1)
    geoopt_opt = geoopt.optim.RiemannianSGD(theirs, **config)
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            b.copy_(a)
            geoopt_opt.state[b]["momentum_buffer"] = ours_opt.state[a]["momentum_buffer"].clone()
    geoopt_opt.param_groups[0]["step"] = 1
    return (_trajectory(ours_opt, ours, targets, STEPS - 1),
            _trajectory(geoopt_opt, theirs, targets, STEPS - 1))


MOMENTUM = [dict(lr=0.02, momentum=0.9), dict(lr=0.02, momentum=0.7, dampening=0.2),
            dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.05)]


@pytest.mark.parametrize("config", MOMENTUM)
def test_sgd_with_momentum_matches_geoopt_after_the_first_step(config):
    targets = _targets(SHAPES)
    sphere = ProjectionTransportSphere()
    ours = [riemtorch.ManifoldParameter(x, sphere) for x in _points(SHAPES)]
    gsphere = geoopt.Sphere()
    theirs = [geoopt.ManifoldParameter(x, manifold=gsphere) for x in _points(SHAPES)]
    _assert_paths_close(*_sgd_momentum_paths(ours, theirs, targets, config))


def test_first_momentum_step_is_tangent_unlike_geoopt():
    sphere = riemtorch.Sphere()
    x = riemtorch.ManifoldParameter(_points([(4,)])[0], sphere)
    opt = RiemannianSGD([x], lr=0.1, momentum=0.9)
    _trajectory(opt, [x], _targets([(4,)]), steps=1)
    assert sphere.check_vector(x.detach(), opt.state[x]["momentum_buffer"])[0]


def _need_riemtorch(name):
    manifold = getattr(riemtorch, name, None)
    if manifold is None:
        pytest.skip(f"riemtorch has no {name}")
    return manifold


def _stiefel_points(shapes, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.linalg.qr(torch.randn(*s, dtype=DT, generator=g))[0] for s in shapes]


STIEFEL_SHAPES = [(6, 3), (2, 6, 3), (6, 3), (5, 5)]


def _stiefel_case(metric, retraction, geoopt_manifold):
    stiefel = _need_riemtorch("Stiefel")(metric=metric, retraction=retraction)
    ours = [riemtorch.ManifoldParameter(x, stiefel) for x in _stiefel_points(STIEFEL_SHAPES)]
    theirs = [geoopt.ManifoldParameter(x, manifold=geoopt_manifold)
              for x in _stiefel_points(STIEFEL_SHAPES)]
    return ours, theirs, _targets(STIEFEL_SHAPES)


@pytest.mark.parametrize("config", ADAM[:3])
@pytest.mark.parametrize("exact", [False, True])
def test_adam_on_euclidean_stiefel_matches_geoopt(config, exact):
    # geoopt's EuclideanStiefel: QR retraction, projection transport; its Exact variant
    # moves by the exponential map of the Euclidean metric
    manifold = geoopt.EuclideanStiefelExact() if exact else geoopt.EuclideanStiefel()
    ours, theirs, targets = _stiefel_case("euclidean", "qr", manifold)
    opt = RiemannianAdam(ours, retraction="expmap" if exact else "retr", **config)
    _assert_paths_close(_trajectory(opt, ours, targets, 20),
                        _trajectory(geoopt.optim.RiemannianAdam(theirs, **config), theirs,
                                    targets, 20))


def test_sgd_with_momentum_on_euclidean_stiefel_matches_geoopt():
    ours, theirs, targets = _stiefel_case("euclidean", "qr", geoopt.EuclideanStiefel())
    _assert_paths_close(*_sgd_momentum_paths(ours, theirs, targets,
                                             dict(lr=0.01, momentum=0.9, nesterov=True)))



@pytest.mark.parametrize("optimizer", [RiemannianSGD, RiemannianAdam])
def test_steps_on_geoopt_manifolds_leave_the_gradient_alone(optimizer):
    # geoopt's Lorentz converts a gradient to the Riemannian one in place
    lorentz = geoopt.Lorentz(torch.tensor(1.0, dtype=torch.float64))
    p = geoopt.ManifoldParameter(lorentz.random_normal(2, 3), manifold=lorentz)
    grad = torch.arange(1.0, 7.0, dtype=torch.float64).reshape(2, 3)
    p.grad = grad.clone()
    optimizer([p], lr=0.01).step()
    assert torch.equal(p.grad, grad)
