"""Batch-norm configurations for test_batchnorm.py: (id, build layer, make input batch).

``build(dtype)`` returns a batch-norm module; ``sample(gen, dtype)`` a training batch. A new
geometry joins the batch-norm law tests by appending one line to BN_CASES.
"""

import torch

import riemtorch
from riemtorch.nn import GyroBatchNorm, RiemannianBatchNorm


def _sphere_batch(gen, dtype, batch=32, n=4):
    s = riemtorch.Sphere()
    o = s.origin(batch, n=n, dtype=dtype)
    return s.expmap(o, s.proju(o, 0.4 * torch.randn(batch, n, dtype=dtype, generator=gen) + 0.3))


BN_CASES = [
    ("euclidean", lambda dtype: RiemannianBatchNorm(riemtorch.Euclidean(1), (2, 3), eps=0.0, dtype=dtype),
     lambda gen, dtype: 3 * torch.randn(16, 2, 3, dtype=dtype, generator=gen) + 1),
    ("sphere", lambda dtype: RiemannianBatchNorm(riemtorch.Sphere(), (4,), eps=0.0, dtype=dtype),
     _sphere_batch),
]


def _spd_batch(gen, dtype, batch=12, n=4):
    spd = riemtorch.SPDAffineInvariant()
    base = spd.random(n=n, cond=5.0, dtype=dtype, generator=gen)
    u = riemtorch.linalg.sym(0.4 * torch.randn(batch, n, n, dtype=dtype, generator=gen))
    return spd.expmap(base.expand(batch, n, n), u)


def _spd_bn(metric, **kwargs):
    from riemtorch.nn import SPDBatchNorm

    return lambda dtype: SPDBatchNorm(4, metric=metric, eps=0.0, dtype=dtype, **kwargs)


BN_CASES += [
    (f"spd-{metric}", _spd_bn(metric), _spd_batch) for metric in ("aim", "lem", "lcm", "bw", "gbw")
]
BN_CASES += [
    ("spd-aim-power0.5", _spd_bn("aim", power=0.5), _spd_batch),
    ("spd-gbw-learned-M", _spd_bn("gbw", learn_metric=True, power=0.7), _spd_batch),
    ("spd-aim-gyro", _spd_bn("aim", gyro=True), _spd_batch),
    ("spd-lem-gyro", _spd_bn("lem", gyro=True), _spd_batch),
    ("spd-lcm-gyro", _spd_bn("lcm", gyro=True), _spd_batch),
]


def _gyro_batch(make, **random_kwargs):
    def sample(gen, dtype, batch=16):
        m = make()
        center = m.random(1, dtype=dtype, generator=gen, **random_kwargs)
        spread = m.random(batch, dtype=dtype, generator=gen, **random_kwargs)
        return m.gyroadd(center.expand_as(spread), m.gyroscalarmul(0.6, spread))
    return sample


def _gyro_bn(make, shape):
    return lambda dtype: GyroBatchNorm(make(), shape, eps=0.0, dtype=dtype)


_GYRO = [
    ("gyro-poincare", lambda: riemtorch.PoincareBall(1.0), (3,), {"n": 3}),
    ("gyro-stereographic-positive", lambda: riemtorch.Stereographic(0.5), (3,), {"n": 3}),
    ("gyro-lorentz", lambda: riemtorch.Lorentz(1.5), (4,), {"n": 4}),
    ("gyro-grassmann", lambda: riemtorch.Grassmann(), (5, 2), {"n": 5, "p": 2}),
]
BN_CASES += [(name, _gyro_bn(make, shape), _gyro_batch(make, **kw)) for name, make, shape, kw in _GYRO]
BN_CASES += [
    ("spd-bw-newton-schulz", _spd_bn("bw", sqrtm_method="newton_schulz"), _spd_batch),
    ("spd-aim-flow", _spd_bn("aim", mean_method="flow"), _spd_batch),
    ("spd-aim-flow-gyro", _spd_bn("aim", mean_method="flow", gyro=True), _spd_batch),
]
