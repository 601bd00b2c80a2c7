"""SPD geometry: riemtorch against geoopt, spd_learn, pyRiemann and geomstats on the same data.

Run ``python benchmarks/spd.py``. CPU, 2 threads; float64 unless stated. riemtorch runs under
``riemtorch.config.override(validate=False)`` (validation reads values back to check symmetry
and positive definiteness; the peers do not validate either). geomstats is timed in a
subprocess, because importing it changes torch's default dtype for the whole process.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median_ms as _median_ms, print_table, setup  # noqa: E402

warnings.simplefilter("ignore")


def median_ms(fn, repeat=5):
    return _median_ms(fn, repeat=repeat, warmup=1)


def covariances(count, n, samples, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(count, n, samples, dtype=torch.float64, generator=g)
    return z @ z.transpose(-1, -2) / samples


def make_data():
    import riemtorch

    g = torch.Generator().manual_seed(0)
    spd = riemtorch.SPDAffineInvariant()
    x = spd.random(4096, n=16, cond=1e3, dtype=torch.float64, generator=g)
    y = spd.random(4096, n=16, cond=1e3, dtype=torch.float64, generator=g)
    u = spd.logmap(x, y)
    return {
        "x": x, "y": y, "u": 0.5 * u / spd.norm(x, u, keepdim=True),
        "karcher": covariances(1000, 22, 100, 1),
        "bw_x": covariances(500, 22, 100, 2), "bw_y": covariances(500, 22, 100, 3),
    }


WORKLOADS = [
    "AIM distance, 4096 pairs 16x16",
    "AIM distance, f32",
    "AIM expmap",
    "AIM logmap",
    "Karcher mean 1000x22x22 to 1e-8",
    "BW distance, 500 pairs 22x22",
    "BW barycenter of 500 22x22 to 1e-8",
]


def time_riemtorch(d):
    import riemtorch

    aim, bw = riemtorch.SPDAffineInvariant(), riemtorch.SPDBuresWasserstein()
    x32, y32 = d["x"].float(), d["y"].float()
    with riemtorch.config.override(validate=False):
        return {
            WORKLOADS[0]: median_ms(lambda: aim.dist(d["x"], d["y"])),
            WORKLOADS[1]: median_ms(lambda: aim.dist(x32, y32)),
            WORKLOADS[2]: median_ms(lambda: aim.expmap(d["x"], d["u"])),
            WORKLOADS[3]: median_ms(lambda: aim.logmap(d["x"], d["y"])),
            WORKLOADS[4]: median_ms(lambda: aim.frechet_mean(d["karcher"], tol=1e-8), repeat=5),
            WORKLOADS[5]: median_ms(lambda: bw.dist(d["bw_x"], d["bw_y"])),
            WORKLOADS[6]: median_ms(lambda: bw.frechet_mean(d["bw_x"], tol=1e-8), repeat=5),
        }


def time_eigvalsh(d):
    x32 = d["x"].float()
    return {
        WORKLOADS[0]: median_ms(lambda: torch.linalg.eigvalsh(d["x"])),
        WORKLOADS[1]: median_ms(lambda: torch.linalg.eigvalsh(x32)),
    }


def time_geoopt(d):
    import geoopt

    m = geoopt.SymmetricPositiveDefinite()
    x32, y32 = d["x"].float(), d["y"].float()
    return {
        WORKLOADS[0]: median_ms(lambda: m.dist(d["x"], d["y"])),
        WORKLOADS[1]: median_ms(lambda: m.dist(x32, y32)),
        WORKLOADS[2]: median_ms(lambda: m.expmap(d["x"], d["u"])),
        WORKLOADS[3]: median_ms(lambda: m.logmap(d["x"], d["y"])),
    }


def time_spd_learn(d):
    import spd_learn.functional as F

    x32, y32 = d["x"].float(), d["y"].float()
    return {
        WORKLOADS[0]: median_ms(lambda: F.airm_distance(d["x"], d["y"])),
        WORKLOADS[1]: median_ms(lambda: F.airm_distance(x32, y32)),
        WORKLOADS[2]: median_ms(lambda: F.exp_map_airm(d["x"], d["u"])),
        WORKLOADS[3]: median_ms(lambda: F.log_map_airm(d["x"], d["y"])),
        WORKLOADS[4]: median_ms(lambda: F.mean_riemann(d["karcher"], tol=1e-8), repeat=3),
        WORKLOADS[5]: median_ms(lambda: F.bures_wasserstein_distance(d["bw_x"], d["bw_y"])),
        WORKLOADS[6]: median_ms(lambda: F.bures_wasserstein_mean(d["bw_x"], tol=1e-8), repeat=3),
    }


def time_pyriemann(d):
    from pyriemann.geometry import distance, mean, tangentspace

    x, y, u = d["x"].numpy(), d["y"].numpy(), d["u"].numpy()
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    k, bx, by = d["karcher"].numpy(), d["bw_x"].numpy(), d["bw_y"].numpy()
    return {
        WORKLOADS[0]: median_ms(lambda: distance.distance_riemann(x, y)),
        WORKLOADS[1]: median_ms(lambda: distance.distance_riemann(x32, y32)),
        WORKLOADS[2]: median_ms(lambda: tangentspace.exp_map_riemann(u, x, Cm12=True)),
        WORKLOADS[3]: median_ms(lambda: tangentspace.log_map_riemann(y, x, C12=True)),
        WORKLOADS[4]: median_ms(lambda: mean.mean_riemann(k, tol=1e-8), repeat=3),
        WORKLOADS[5]: median_ms(lambda: distance.distance_wasserstein(bx, by)),
        WORKLOADS[6]: median_ms(lambda: mean.mean_wasserstein(bx, tol=1e-8), repeat=3),
    }


def time_geomstats(path):
    """Run in a subprocess: geomstats sets torch's default dtype on import."""
    os.environ["GEOMSTATS_BACKEND"] = "pytorch"
    import geomstats.backend  # noqa: F401
    from geomstats.geometry.spd_matrices import (SPDAffineMetric, SPDBuresWassersteinMetric,
                                                 SPDMatrices)
    from geomstats.learning.frechet_mean import FrechetMean

    setup()
    d = torch.load(path)
    aim = SPDMatrices(16, equip=False)
    aim.equip_with_metric(SPDAffineMetric)
    aim22 = SPDMatrices(22, equip=False)
    aim22.equip_with_metric(SPDAffineMetric)
    bw = SPDMatrices(22, equip=False)
    bw.equip_with_metric(SPDBuresWassersteinMetric)
    x32, y32 = d["x"].float(), d["y"].float()
    karcher = FrechetMean(aim22)
    karcher.set(max_iter=100, epsilon=1e-8)
    return {
        WORKLOADS[0]: median_ms(lambda: aim.metric.dist(d["x"], d["y"])),
        WORKLOADS[1]: median_ms(lambda: aim.metric.dist(x32, y32)),
        WORKLOADS[2]: median_ms(lambda: aim.metric.exp(d["u"], d["x"])),
        WORKLOADS[3]: median_ms(lambda: aim.metric.log(d["y"], d["x"])),
        WORKLOADS[4]: median_ms(lambda: karcher.fit(d["karcher"]), repeat=3),
        WORKLOADS[5]: median_ms(lambda: bw.metric.dist(d["bw_x"], d["bw_y"])),
    }


def run_geomstats(d):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.pt")
        torch.save(d, path)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--geomstats", path],
                             capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"geomstats skipped: {out.stderr.strip().splitlines()[-1:]}")
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    setup()
    d = make_data()
    peers = {}
    for name, fn in [("geoopt", time_geoopt), ("spd_learn", time_spd_learn),
                     ("pyRiemann", time_pyriemann)]:
        print(f"timing {name}", file=sys.stderr)
        try:
            peers[name] = fn(d)
        except ImportError as err:
            print(f"{name} skipped: {err}")
    peers["geomstats"] = run_geomstats(d)
    ours = time_riemtorch(d)
    eig = time_eigvalsh(d)
    names = list(peers)
    columns = (["workload", "riemtorch"] + names + ["one batched eigvalsh"]
               + [f"{p} / riemtorch" for p in names] + ["riemtorch / eigvalsh"])
    rows = []
    for w in WORKLOADS:
        times = [peers[p].get(w) for p in names]
        base = eig.get(w)
        rows.append([w, ours[w]] + times + [base]
                    + [t / ours[w] if t else None for t in times]
                    + [ours[w] / base if base else None])
    print_table("SPD geometry, median ms (validation off)", columns, rows)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--geomstats":
        print(json.dumps(time_geomstats(sys.argv[2])))
    else:
        main()
