"""Hyperbolic operations against geoopt (and hypll when installed): Poincaré ball and Lorentz.

Batch of 100000 points of dimension 16 (Lorentz: ambient 17), float32 and float64; median
milliseconds and the ratio peer / riemtorch (above 1: riemtorch is faster). riemtorch runs with
validation off (``riemtorch.config``), as in ``spd.py``: geoopt does not validate either.

Run: ``python benchmarks/hyperbolic.py``
"""

import importlib.util
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import median_ms, print_table, setup  # noqa: E402

import riemtorch  # noqa: E402
from riemtorch import Lorentz, PoincareBall  # noqa: E402

BATCH, DIM = 100_000, 16


def _geoopt():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import geoopt
    return geoopt


def ball_ops(m, x, y, u):
    return {
        "mobius_add": lambda: m.gyroadd(x, y),
        "expmap": lambda: m.expmap(x, u),
        "logmap": lambda: m.logmap(x, y),
        "dist": lambda: m.dist(x, y),
        "transp": lambda: m.transp(x, y, u),
    }


def geoopt_ball_ops(m, x, y, u):
    return {
        "mobius_add": lambda: m.mobius_add(x, y),
        "expmap": lambda: m.expmap(x, u),
        "logmap": lambda: m.logmap(x, y),
        "dist": lambda: m.dist(x, y),
        "transp": lambda: m.transp(x, y, u),
    }


def hypll_ball_ops(dtype, x, y, u):
    """hypll's Poincaré ball on the same data, or ``{}`` when hypll is not installed."""
    if importlib.util.find_spec("hypll") is None:
        return {}
    from hypll.manifolds.poincare_ball import Curvature, PoincareBall as HPoincareBall
    from hypll.tensors import ManifoldTensor, TangentTensor

    m = HPoincareBall(c=Curvature(1.0)).to(dtype)
    hx, hy = ManifoldTensor(x, manifold=m), ManifoldTensor(y, manifold=m)
    hu = TangentTensor(u, manifold_points=hx, manifold=m)
    return {
        "mobius_add": lambda: m.mobius_add(hx, hy),
        "expmap": lambda: m.expmap(hu),
        "logmap": lambda: m.logmap(hx, hy),
        "dist": lambda: m.dist(hx, hy),
        "transp": lambda: m.transp(hu, hy),
    }


def lorentz_ops(m, x, y, u, gyro=True):
    ops = {
        "expmap": lambda: m.expmap(x, u),
        "logmap": lambda: m.logmap(x, y),
        "dist": lambda: m.dist(x, y),
        "transp": lambda: m.transp(x, y, u),
    }
    if gyro:
        ops["mobius_add"] = lambda: m.gyroadd(x, y)
    return ops


def time_pairs(ours, *peers):
    """Median ms of every operation, ours and the peers' timed back to back per operation so
    that drifting machine load affects both alike. A peer operation that raises is missing."""
    out = [{} for _ in (ours, *peers)]
    for name, fn in ours.items():
        out[0][name] = median_ms(fn)
        for i, peer in enumerate(peers, start=1):
            if name not in peer:
                continue
            try:
                out[i][name] = median_ms(peer[name])
            except Exception as err:  # a peer's failure must not stop the comparison
                print(f"peer {name} failed: {type(err).__name__}: {err}")
    return out


def ratio(peer, ours):
    return None if peer is None else peer / ours


def main():
    setup()
    geoopt = _geoopt()
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        ball = PoincareBall(1.0)
        x = ball.random(BATCH, n=DIM, dtype=dtype, generator=g)
        y = ball.random(BATCH, n=DIM, dtype=dtype, generator=g)
        u = 0.3 * torch.randn(BATCH, DIM, dtype=dtype, generator=g)
        ours, ref, hyp = time_pairs(
            ball_ops(ball, x, y, u),
            geoopt_ball_ops(geoopt.PoincareBall(torch.tensor(1.0, dtype=dtype)), x, y, u),
            hypll_ball_ops(dtype, x, y, u))
        columns = ["op", "riemtorch ms", "geoopt ms", "geoopt / riemtorch"]
        if hyp:
            columns += ["hypll ms", "hypll / riemtorch"]
        rows = []
        for name, t in ours.items():
            row = [name, t, ref.get(name), ratio(ref.get(name), t)]
            if hyp:
                row += [hyp.get(name), ratio(hyp.get(name), t)]
            rows.append(row)
        print_table(f"Poincaré ball (c = 1), {BATCH} x {DIM}, {str(dtype)[6:]}", columns, rows)

        lor = Lorentz(1.0)
        x = lor.random(BATCH, n=DIM + 1, dtype=dtype, generator=g)
        y = lor.random(BATCH, n=DIM + 1, dtype=dtype, generator=g)
        u = lor.proju(x, 0.3 * torch.randn(BATCH, DIM + 1, dtype=dtype, generator=g))
        ours, ref = time_pairs(
            lorentz_ops(lor, x, y, u),
            lorentz_ops(geoopt.Lorentz(torch.tensor(1.0, dtype=dtype)), x, y, u, gyro=False))
        rows = [[name, t, ref.get(name), ratio(ref.get(name), t)] for name, t in ours.items()]
        print_table(f"Lorentz (k = 1), {BATCH} x {DIM + 1}, {str(dtype)[6:]} "
                    "(geoopt has no gyroaddition on the hyperboloid)",
                    ["op", "riemtorch ms", "geoopt ms", "geoopt / riemtorch"], rows)


if __name__ == "__main__":
    with riemtorch.config.override(validate=False):
        main()
