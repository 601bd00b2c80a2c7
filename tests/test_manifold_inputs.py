"""Input checks of the public methods of the manifolds other than SPD (whose verbs check
symmetric matrices, tests in test_spd_numerics.py): types and shapes always, finiteness and
membership when validation is on."""

import inspect

import pytest
import torch

import riemtorch
from riemtorch.manifolds.base import input_tolerance

F64 = torch.float64


def _scaled(factor):
    return lambda m, x: factor * x


def _lower_sheet(m, x):
    return torch.cat((-x[..., :1], x[..., 1:]), dim=-1)


# id, manifold, random keyword arguments, a map from valid points to points off the manifold
# (None: every tensor of the right shape is a point), a tensor of the wrong shape
CASES = [
    ("sphere", riemtorch.Sphere, {"n": 4}, _scaled(2.0), torch.ones(3, 1)),
    ("stiefel", lambda: riemtorch.Stiefel(), {"n": 5, "p": 2}, _scaled(1.5), torch.ones(3, 2, 5)),
    ("grassmann", riemtorch.Grassmann, {"n": 5, "p": 2}, _scaled(1.5), torch.ones(3, 2, 5)),
    ("poincare", lambda: riemtorch.PoincareBall(2.0), {"n": 3}, _scaled(4.0), torch.ones(())),
    ("stereographic-k0.7", lambda: riemtorch.Stereographic(0.7), {"n": 3}, None, torch.ones(())),
    ("lorentz", lambda: riemtorch.Lorentz(1.5), {"n": 4}, _lower_sheet, torch.ones(3, 1)),
    ("euclidean", lambda: riemtorch.Euclidean(ndim=2), {"shape": (3, 2)}, None, torch.ones(3)),
]
IDS = [case[0] for case in CASES]


def checked_methods(manifold):
    """``{name: {argument: role}}`` of the methods that declare their inputs."""
    found = {}
    for name, member in inspect.getmembers(type(manifold), inspect.isfunction):
        roles = getattr(member, "input_roles", None)
        if roles is not None:
            found[name] = roles
    return found


def arguments(manifold, roles, x, g):
    """Valid arguments for ``roles``: points ``x`` (a second point: a nearby one), tangent
    vectors at ``x``, ambient tensors and the number 0.5."""
    y = manifold.expmap(x, 0.3 * manifold.proju(x, torch.randn(x.shape, dtype=F64, generator=g)))
    values = {"point": iter([x, y, x]), "tangent vector": None, "ambient": None}
    out = []
    for role in roles.values():
        if role == "point":
            out.append(next(values["point"]))
        elif role in ("tangent vector", "ambient"):
            out.append(manifold.proju(x, torch.randn(x.shape, dtype=F64, generator=g)))
        else:
            out.append(0.5)
    return out


def setup(case, seed=0):
    _, make, kwargs, bad, wrong_shape = case
    g = torch.Generator().manual_seed(seed)
    m = make()
    x = m.random(3, dtype=F64, generator=g, **kwargs)
    return m, x, g, bad, wrong_shape


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_public_verb_declares_its_inputs(case):
    m, *_ = setup(case)
    methods = checked_methods(m)
    api = {"projx", "proju", "inner", "expmap", "logmap", "transp"}
    assert api <= set(methods), api - set(methods)
    if hasattr(m, "gyroadd"):
        assert {"gyroadd", "gyroinv", "gyroscalarmul", "gyration"} <= set(methods)
    for name in ("dist", "dist2", "norm", "retr", "egrad2rgrad"):
        # either declared here or the generic version calls declared methods
        assert name in methods or getattr(type(m), name) is getattr(riemtorch.Manifold, name)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_integer_and_non_tensor_inputs_raise_type_error_even_without_validation(case):
    m, x, g, _, _ = setup(case)
    with riemtorch.config.override(validate=False):
        for name, roles in checked_methods(m).items():
            args = arguments(m, roles, x, g)
            for i, (arg, role) in enumerate(zip(roles, roles.values())):
                if role is None:
                    continue
                for wrong, what in ((args[i].round().long(), "floating-point dtype"),
                                    (args[i].tolist(), "torch.Tensor")):
                    bad_args = args[:i] + [wrong] + args[i + 1:]
                    with pytest.raises(TypeError, match=f"{type(m).__name__}.{name}: {arg} .*{what}"):
                        getattr(m, name)(*bad_args)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_wrong_shapes_raise_value_error_even_without_validation(case):
    m, x, g, _, wrong_shape = case[1](), *setup(case)[1:4], case[4]
    with riemtorch.config.override(validate=False):
        for name, roles in checked_methods(m).items():
            args = arguments(m, roles, x, g)
            i = next(i for i, role in enumerate(roles.values()) if role is not None)
            with pytest.raises(ValueError, match=f"{type(m).__name__}.{name}: .*shape"):
                getattr(m, name)(*args[:i], wrong_shape.to(F64), *args[i + 1:])


@pytest.mark.parametrize("case", [c for c in CASES if c[3] is not None],
                         ids=[c[0] for c in CASES if c[3] is not None])
def test_points_off_the_manifold_raise_when_validating(case):
    m, x, g, bad, _ = setup(case)
    off = bad(m, x)
    assert not m.check_point(off)[0]
    for name, roles in checked_methods(m).items():
        args = arguments(m, roles, x, g)
        for i, (arg, role) in enumerate(zip(roles, roles.values())):
            if role != "point":
                continue
            bad_args = args[:i] + [off] + args[i + 1:]
            with pytest.raises(ValueError, match=f"{type(m).__name__}.{name}: {arg} is not a point"):
                getattr(m, name)(*bad_args)


def test_without_validation_values_are_not_checked():
    m = riemtorch.PoincareBall()
    x = torch.tensor([[0.5, 0.0], [2.0, 0.0]], dtype=F64)
    with pytest.raises(ValueError, match="PoincareBall.dist0: x is not a point"):
        m.dist0(x)
    with riemtorch.config.override(validate=False):
        d = m.dist0(x)  # outside the ball: meaningless, but computed without a host read
    torch.testing.assert_close(d[0], 2 * torch.atanh(torch.tensor(0.5, dtype=F64)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_non_finite_points_and_vectors_raise_when_validating(case):
    m, x, g, _, _ = setup(case)
    for name, roles in checked_methods(m).items():
        args = arguments(m, roles, x, g)
        for i, (arg, role) in enumerate(zip(roles, roles.values())):
            if role not in ("point", "tangent vector"):
                continue
            broken = args[i].clone(memory_format=torch.contiguous_format)
            broken.view(-1)[0] = float("nan")
            with pytest.raises(ValueError, match=f"{name}: {arg} contains NaN"):
                getattr(m, name)(*args[:i], broken, *args[i + 1:])


def test_keyword_arguments_are_checked():
    m = riemtorch.Sphere()
    x = m.random(2, n=3, dtype=F64)
    with pytest.raises(ValueError, match="Sphere.logmap: y is not a point"):
        m.logmap(x, y=2 * x)
    with pytest.raises(ValueError, match="Sphere.inner: v contains NaN"):
        m.inner(x, torch.zeros_like(x), v=torch.full_like(x, float("nan")))


@pytest.mark.parametrize("case", [c for c in CASES if c[3] is not None],
                         ids=[c[0] for c in CASES if c[3] is not None])
def test_rounding_of_a_lower_precision_and_finite_difference_steps_pass(case):
    m, x, g, _, _ = setup(case)
    y = m.expmap(x, 0.3 * m.proju(x, torch.randn(x.shape, dtype=F64, generator=g)))
    rounded = x.float().double()
    stepped = x.clone(memory_format=torch.contiguous_format)
    stepped.view(-1)[0] += 1e-6  # gradcheck's default step
    for point in (rounded, stepped):
        assert torch.isfinite(m.dist(point, y)).all()
        assert torch.isfinite(m.logmap(y, point)).all()


def test_membership_tolerance_is_looser_than_check_point():
    for dtype in (torch.float32, F64):
        assert input_tolerance(dtype) >= 10 * riemtorch.manifolds.base.default_tolerance(dtype)
    m = riemtorch.Stiefel()
    x = m.random(n=4, p=2, dtype=F64)
    near = x * (1 + 1e-6)
    assert not m.check_point(near)[0]  # strict: X^T X off by 2e-6
    assert torch.isfinite(m.inner(near, torch.zeros_like(x)))
    far = x * (1 + 1e-4)
    with pytest.raises(ValueError, match="Stiefel.inner: x is not a point"):
        m.inner(far, torch.zeros_like(x))
