"""Gyrogroup and gyrovector-space laws, run over manifold_cases.GYRO_CASES x dtype x seed."""

import pytest
import torch

from manifold_cases import DEVICE, GYRO_CASES, build, draw

SEEDS = [0, 1, 2]

pytestmark = pytest.mark.skipif(not GYRO_CASES, reason="no gyro manifolds registered")


def close(a, b, dtype):
    if dtype == torch.float32:
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)
    else:
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7)


def close_points(case, m, a, b, dtype):
    """Compare points directly, or by ``case.same_point`` where points have several
    representations (e.g. bases of one subspace)."""
    if case.same_point is None:
        close(a, b, dtype)
    else:
        assert float(case.same_point(m, a, b)) < (2e-3 if dtype == torch.float32 else 1e-8)


@pytest.fixture(params=GYRO_CASES or [None], ids=[c.id for c in GYRO_CASES] or ["none"])
def case(request):
    return request.param


@pytest.fixture(params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


@pytest.fixture(params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def gen(request):
    return torch.Generator().manual_seed(request.param)


def three_points(case, m, dtype, gen):
    pts = [draw(case, 4, dtype=dtype, generator=gen) for _ in range(3)]
    return [m.gyroscalarmul(case.spread, p) for p in pts]


def test_left_identity_and_left_inverse(case, dtype, gen):
    m = build(case)
    x, _, _ = three_points(case, m, dtype, gen)
    e = m.origin(4, dtype=dtype, device=DEVICE, **case.random_kwargs)
    close(m.gyroadd(e, x), x, dtype)
    close(m.gyroadd(x, e), x, dtype)
    close(m.gyroadd(m.gyroinv(x), x), e, dtype)


def test_gyroassociativity(case, dtype, gen):
    m = build(case)
    a, b, c = three_points(case, m, dtype, gen)
    left = m.gyroadd(a, m.gyroadd(b, c))
    right = m.gyroadd(m.gyroadd(a, b), m.gyration(a, b, c))
    close(left, right, dtype)


def test_left_cancellation(case, dtype, gen):
    m = build(case)
    a, b, _ = three_points(case, m, dtype, gen)
    close(m.gyroadd(m.gyroinv(a), m.gyroadd(a, b)), b, dtype)


def test_gyrations_are_isometries(case, dtype, gen):
    m = build(case)
    a, b, c = three_points(case, m, dtype, gen)
    d = draw(case, 4, dtype=dtype, generator=gen)
    d = m.gyroscalarmul(case.spread, d)
    close(m.dist(m.gyration(a, b, c), m.gyration(a, b, d)), m.dist(c, d), dtype)
    e = m.origin(4, dtype=dtype, device=DEVICE, **case.random_kwargs)
    close_points(case, m, m.gyration(a, b, e), e, dtype)


def test_scalar_multiplication_distributes_over_scalars(case, dtype, gen):
    m = build(case)
    x, _, _ = three_points(case, m, dtype, gen)
    s, t = 0.7, -0.4
    close(m.gyroscalarmul(s + t, x), m.gyroadd(m.gyroscalarmul(s, x), m.gyroscalarmul(t, x)), dtype)
    close(m.gyroscalarmul(s * t, x), m.gyroscalarmul(s, m.gyroscalarmul(t, x)), dtype)
    close(m.gyroscalarmul(1.0, x), x, dtype)
    close(m.gyroscalarmul(-1.0, x), m.gyroinv(x), dtype)


def test_left_translation_is_an_isometry(case, dtype, gen):
    m = build(case)
    a, b, c = three_points(case, m, dtype, gen)
    close(m.dist(m.gyroadd(a, b), m.gyroadd(a, c)), m.dist(b, c), dtype)


def test_gyro_operations_return_new_tensors(case, dtype, gen):
    # even where an operation is the identity (the gyrations of commutative gyrogroups), its
    # result must not share memory with the user's input
    m = build(case)
    a, b, c = three_points(case, m, dtype, gen)
    for out, inputs in ((m.gyration(a, b, c), (a, b, c)), (m.gyroadd(a, b), (a, b)),
                        (m.gyroinv(a), (a,)), (m.gyroscalarmul(1.0, a), (a,))):
        assert all(out.untyped_storage().data_ptr() != t.untyped_storage().data_ptr()
                   for t in inputs)
