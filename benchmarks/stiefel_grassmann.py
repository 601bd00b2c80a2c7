"""Stiefel and Grassmann operations: riemtorch against geoopt and pymanopt.

A batch of 1024 points of size 64 x 16, float64, CPU, 2 threads. geoopt is batched torch;
pymanopt is numpy and unbatched, so it is timed the way it is used: a Python loop over the
batch. The same maps in every row (geoopt's ``EuclideanStiefel`` for the Euclidean metric,
pymanopt's ``Stiefel`` and ``Grassmann``) except the Cayley one: geoopt's
``CanonicalStiefel.retr`` solves an ``n x n`` system for the Cayley transform of
``W = u x^T - x u^T``, whose curve starts along ``u - x u^T x``, not along a tangent ``u`` with
``x^T u != 0``; riemtorch's Cayley retraction transforms ``W = P u x^T - x u^T P``
(``P = I - x x^T / 2``, a curve starting along ``u``) by a ``2p x 2p`` system. That row compares
the cost of two Cayley transforms of the same size, not equal results.
Ratios are peer time / riemtorch time (above 1: riemtorch is faster). riemtorch runs with
validation off (``riemtorch.config``), as in ``spd.py``: the peers do not validate either.

Run: ``python benchmarks/stiefel_grassmann.py``
"""

import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import median_ms, print_table, setup  # noqa: E402

import riemtorch  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import geoopt  # noqa: E402
    from pymanopt.manifolds import Grassmann as PyGrassmann  # noqa: E402
    from pymanopt.manifolds import Stiefel as PyStiefel  # noqa: E402

BATCH, N, P, DTYPE = 1024, 64, 16, torch.float64


def _loop(fn, *arrays):
    return lambda: [fn(*items) for items in zip(*arrays)]


def main():
    setup()
    gen = torch.Generator().manual_seed(0)
    st_e = riemtorch.Stiefel("euclidean", retraction="qr")
    st_c = riemtorch.Stiefel("canonical", retraction="cayley")
    st_p = riemtorch.Stiefel("euclidean", retraction="polar")
    gr = riemtorch.Grassmann()
    x = st_e.random(BATCH, n=N, p=P, dtype=DTYPE, generator=gen)
    g = torch.randn(x.shape, dtype=DTYPE, generator=gen)
    u = st_e.proju(x, g)
    u = 0.5 * u / st_e.norm(x, u, keepdim=True)
    y = st_c.expmap(x, u)
    h = gr.proju(x, g)
    h = 0.5 * h / gr.norm(x, h, keepdim=True)
    z = gr.random(BATCH, n=N, p=P, dtype=DTYPE, generator=gen)

    geo_e, geo_c = geoopt.EuclideanStiefel(), geoopt.CanonicalStiefel()
    py_st_qr, py_st_polar = PyStiefel(N, P), PyStiefel(N, P, retraction="polar")
    py_gr = PyGrassmann(N, P)
    xn, un, yn, hn, zn = (t.numpy() for t in (x, u, y, h, z))

    rows = [
        ("Stiefel proju", lambda: st_e.proju(x, g), lambda: geo_e.proju(x, g),
         _loop(py_st_qr.projection, xn, g.numpy())),
        ("Stiefel retr QR", lambda: st_e.retr(x, u), lambda: geo_e.retr(x, u),
         _loop(py_st_qr.retraction, xn, un)),
        ("Stiefel retr polar", lambda: st_p.retr(x, u), None,
         _loop(py_st_polar.retraction, xn, un)),
        ("Stiefel retr Cayley", lambda: st_c.retr(x, u), lambda: geo_c.retr(x, u), None),
        ("Stiefel expmap (Euclidean)", lambda: st_e.expmap(x, u), lambda: geo_e.expmap(x, u),
         _loop(py_st_qr.exp, xn, un)),
        ("Stiefel expmap (canonical)", lambda: st_c.expmap(x, u), None, None),
        ("Stiefel logmap (canonical)", lambda: st_c.logmap(x, y), None, None),
        ("Grassmann expmap", lambda: gr.expmap(x, h), None, _loop(py_gr.exp, xn, hn)),
        ("Grassmann logmap", lambda: gr.logmap(x, z), None, _loop(py_gr.log, xn, zn)),
        ("Grassmann dist", lambda: gr.dist(x, z), None, _loop(py_gr.dist, xn, zn)),
        ("Grassmann transp (parallel)", lambda: gr.transp(x, z, h), None, None),
        ("Grassmann gyroadd", lambda: gr.gyroadd(x, z), None, None),
    ]
    table = []
    for name, ours, geo, py in rows:
        t_ours = median_ms(ours, repeat=5, warmup=1)
        t_geo = median_ms(geo, repeat=5, warmup=1) if geo else None
        t_py = median_ms(py, repeat=3, warmup=1) if py else None
        table.append((name, t_ours, t_geo, t_py, t_geo / t_ours if t_geo else None,
                      t_py / t_ours if t_py else None))
    print_table(
        f"Stiefel / Grassmann, batch {BATCH} of {N}x{P}, float64 (median ms)",
        ["operation", "riemtorch", "geoopt", "pymanopt (loop)", "geoopt / riemtorch",
         "pymanopt / riemtorch"],
        table,
    )


if __name__ == "__main__":
    with riemtorch.config.override(validate=False):
        main()
