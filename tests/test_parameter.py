"""ManifoldParameter: identity of the manifold through copies, pickling, .to() and state_dict."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import riemtorch
from riemtorch import ManifoldParameter, Sphere


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.sphere = Sphere()
        self.direction = ManifoldParameter(self.sphere.random(3, n=4, dtype=torch.float64), self.sphere)
        self.linear = nn.Linear(4, 2, dtype=torch.float64)


def test_is_a_parameter_that_knows_its_manifold():
    model = Model()
    p = model.direction
    assert isinstance(p, nn.Parameter) and p.requires_grad
    assert p.manifold is model.sphere
    assert any(q is p for q in model.parameters())
    assert "ManifoldParameter on Sphere()" in repr(p)
    # Operations give plain tensors, as with nn.Parameter.
    assert type(p * 2) is torch.Tensor


def test_deepcopy_keeps_type_manifold_and_values():
    model = Model()
    clone = copy.deepcopy(model)
    assert isinstance(clone.direction, ManifoldParameter)
    assert clone.direction.manifold is clone.sphere  # shared manifold copied once
    assert torch.equal(clone.direction, model.direction)
    assert clone.direction.data_ptr() != model.direction.data_ptr()


def test_pickle_round_trip():
    p = ManifoldParameter(Sphere().random(2, n=3), Sphere(), requires_grad=False)
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, ManifoldParameter) and isinstance(q.manifold, Sphere)
    assert torch.equal(p, q) and not q.requires_grad
    buffer = io.BytesIO()
    torch.save(p, buffer)
    buffer.seek(0)
    r = torch.load(buffer, weights_only=False)
    assert isinstance(r, ManifoldParameter) and torch.equal(r, p)


def test_to_keeps_the_parameter_object():
    model = Model()
    p = model.direction
    model.to(torch.float32)
    assert model.direction is p
    assert p.dtype == torch.float32 and isinstance(p, ManifoldParameter)


def test_state_dict_loads_with_weights_only():
    model = Model()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = Model()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.direction, model.direction)
    assert isinstance(fresh.direction, ManifoldParameter)


def test_rejects_points_off_the_manifold_and_bad_arguments():
    with pytest.raises(ValueError, match="norm differs from 1"):
        ManifoldParameter(torch.ones(2, 3), Sphere())
    with pytest.raises(TypeError, match="Manifold"):
        ManifoldParameter(torch.ones(3), "sphere")
    with riemtorch.config.override(validate=False):
        ManifoldParameter(torch.ones(2, 3), Sphere())
