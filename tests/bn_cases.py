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
