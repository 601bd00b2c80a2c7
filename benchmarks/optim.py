"""Riemannian optimizer steps: riemtorch against geoopt on many small Stiefel parameters.

Times 50 optimizer steps (gradients fixed beforehand, so only the optimizer is measured) on
200 parameters of 64 x 16 and on a single one, float32, CPU, 2 threads. Both libraries use the
same geometry: the Euclidean metric with the QR retraction and the projection transport
(geoopt's ``EuclideanStiefel``). "riemtorch, unbatched" puts every parameter in its own param
group, which disables batching, to show what batching buys. riemtorch runs with validation off
(``riemtorch.config``), as in ``spd.py``: geoopt does not validate either (with it on, each
batch of parameters is checked once per step).

Run: ``python benchmarks/optim.py [threads]`` (default 2 threads).
"""

import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import median_ms, print_table, setup  # noqa: E402

import riemtorch  # noqa: E402
from riemtorch.optim import RiemannianAdam, RiemannianSGD  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import geoopt  # noqa: E402

N, P, STEPS, DTYPE = 64, 16, 50, torch.float32


def _points(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.linalg.qr(torch.randn(N, P, generator=g))[0].to(DTYPE) for _ in range(count)]


def _with_grads(params, seed=1):
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(N, P, generator=g).to(DTYPE)
    return params


def _riemtorch_params(count):
    stiefel = riemtorch.Stiefel(metric="euclidean", retraction="qr")
    return _with_grads([riemtorch.ManifoldParameter(x, stiefel) for x in _points(count)])


def _geoopt_params(count):
    stiefel = geoopt.EuclideanStiefel()
    return _with_grads([geoopt.ManifoldParameter(x, manifold=stiefel) for x in _points(count)])


def _steps(make_optimizer, params):
    def run():
        opt = make_optimizer(params)
        for _ in range(STEPS):
            opt.step()
    return run


def _rows(name, ours, theirs, count):
    geo = median_ms(_steps(theirs, _geoopt_params(count)), repeat=3, warmup=1)
    batched = median_ms(_steps(ours, _riemtorch_params(count)), repeat=3, warmup=1)
    rows = [(f"{name}, {count} x ({N}x{P})", "geoopt", geo, 1.0),
            ("", "riemtorch", batched, geo / batched)]
    if count > 1:
        unbatched = median_ms(_steps(lambda ps: ours([{"params": [p]} for p in ps]),
                                     _riemtorch_params(count)), repeat=3, warmup=1)
        rows.append(("", "riemtorch, unbatched", unbatched, geo / unbatched))
    return rows


def main():
    setup(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    with riemtorch.config.override(validate=False):
        rows = _all_rows()
    print_table(f"{STEPS} optimizer steps on Stiefel(64, 16), float32 (median ms)",
                ["workload", "library", "ms", "speed-up vs geoopt"], rows)


def _all_rows():
    rows = []
    for count in (200, 1):
        rows += _rows("RiemannianAdam", lambda ps: RiemannianAdam(ps, lr=1e-3),
                      lambda ps: geoopt.optim.RiemannianAdam(ps, lr=1e-3), count)
        rows += _rows("RiemannianSGD, momentum 0.9",
                      lambda ps: RiemannianSGD(ps, lr=1e-3, momentum=0.9),
                      lambda ps: geoopt.optim.RiemannianSGD(ps, lr=1e-3, momentum=0.9), count)
    return rows


if __name__ == "__main__":
    main()
