"""Sphere and Euclidean specifics beyond the generic axioms."""

import numpy as np
import torch

from riemtorch import Euclidean, Sphere

F64 = torch.float64


def test_sphere_distance_and_log_match_textbook_formulas():
    s = Sphere()
    g = torch.Generator().manual_seed(0)
    x, y = s.random(50, n=6, dtype=F64, generator=g), s.random(50, n=6, dtype=F64, generator=g)
    xn, yn = x.numpy(), y.numpy()
    cos = np.clip((xn * yn).sum(-1), -1, 1)
    theta = np.arccos(cos)
    np.testing.assert_allclose(s.dist(x, y).numpy(), theta, rtol=1e-10)
    direction = yn - cos[:, None] * xn
    expected = theta[:, None] * direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    np.testing.assert_allclose(s.logmap(x, y).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_sphere_distance_is_accurate_at_tiny_and_near_antipodal_angles():
    s = Sphere()
    x = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    for angle in (1e-9, np.pi - 1e-7):
        y = torch.tensor([np.cos(angle), np.sin(angle), 0.0], dtype=F64)
        assert abs(float(s.dist(x, y)) - angle) <= 1e-15 + 1e-9 * angle


def test_sphere_gradients_are_finite_at_equal_points():
    s = Sphere()
    x = s.random(3, n=4, dtype=F64).requires_grad_()
    s.dist(x, x.detach()).sum().backward()
    assert torch.isfinite(x.grad).all()
    x.grad = None
    s.logmap(x.detach(), x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_sphere_transport_moves_the_direction_of_travel_to_the_new_velocity():
    s = Sphere()
    g = torch.Generator().manual_seed(1)
    x = s.random(5, n=4, dtype=F64, generator=g)
    u = s.proju(x, 0.4 * torch.randn(5, 4, dtype=F64, generator=g))
    y = s.expmap(x, u)
    # The velocity of a geodesic is parallel: transporting it gives -Log_y(x).
    torch.testing.assert_close(s.transp(x, y, u), -s.logmap(y, x), rtol=1e-10, atol=1e-12)


def test_euclidean_mean_is_the_weighted_average():
    e = Euclidean(ndim=1)
    x = torch.randn(7, 2, 3, dtype=F64)
    w = torch.rand(7, dtype=F64)
    expected = (w[:, None, None] * x).sum(0) / w.sum()
    torch.testing.assert_close(e.frechet_mean(x, weights=w), expected)
    torch.testing.assert_close(e.frechet_mean(x.transpose(0, 1), weights=w, dim=1), expected)
