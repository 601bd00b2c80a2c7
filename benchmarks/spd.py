"""SPD geometry: riemtorch against geoopt, spd_learn, pyRiemann and geomstats on the same data.

Run ``python benchmarks/spd.py [--threads N]`` (default 2 threads, for riemtorch and every peer
alike); float64 unless stated. riemtorch runs under ``riemtorch.config.override(validate=False)``
(validation reads values back to check symmetry and positive definiteness; the peers do not
validate either). The libraries are timed in interleaved rounds (an untimed and a timed call of
each per round, see :func:`interleaved_median_ms`), so a burst of load from other processes hits
all of them alike; the table reports medians and the one-minute load average seen at the
start. riemtorch's Bures-Wasserstein tolerance is relative to the barycenter's norm; it is given
``1e-8`` over the norm of the arithmetic mean, at least as strict as the peers' absolute ``1e-8``.
geomstats is timed in a separate process (importing it changes torch's default dtype for
the whole process), so its ratios are less robust.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median_ms as _median_ms, print_table, setup, synchronized  # noqa: E402

warnings.simplefilter("ignore")


def median_ms(fn, repeat=5):
    return _median_ms(fn, repeat=repeat, warmup=1)


# pause before every call: the BLAS threads of the previous call (numpy's OpenBLAS spins for
# about 0.1 s after a call, OpenMP teams for a while) go idle instead of competing with it
SETTLE_S = 0.2


def interleaved_median_ms(fns, repeat):
    """Median ms of each callable in ``fns`` (a dict), timed in interleaved rounds: in each
    round every callable runs after a pause of ``SETTLE_S``, once untimed and once timed. The
    untimed call wakes the cores that the pause let idle: on the 2-core machine of the reports,
    multithreaded work is up to a quarter slower right after 0.2 s of idleness (60 batched
    products of 1000 22 x 22 matrices: 170 ms back to back, 215 ms after a pause; a
    single-threaded ``eigh`` is unaffected), which would count against the libraries that use
    both threads and not against those that use one. A callable that raises on its first
    (warm-up) call is left out, with a message."""
    working = {}
    for name, fn in fns.items():
        try:
            fn()
        except Exception as err:  # a peer's failure must not stop the comparison
            print(f"{name} left out: {type(err).__name__}: {err}", file=sys.stderr)
        else:
            working[name] = fn
    times = {name: [] for name in working}
    for _ in range(repeat):
        for name, fn in working.items():
            time.sleep(SETTLE_S)
            fn()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


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


def riemtorch_calls(d):
    import riemtorch

    aim, bw = riemtorch.SPDAffineInvariant(), riemtorch.SPDBuresWasserstein()
    x32, y32 = d["x"].float(), d["y"].float()

    def quiet(fn):
        def call():
            with riemtorch.config.override(validate=False):
                return fn()
        return call

    return {
        WORKLOADS[0]: quiet(lambda: aim.dist(d["x"], d["y"])),
        WORKLOADS[1]: quiet(lambda: aim.dist(x32, y32)),
        WORKLOADS[2]: quiet(lambda: aim.expmap(d["x"], d["u"])),
        WORKLOADS[3]: quiet(lambda: aim.logmap(d["x"], d["y"])),
        WORKLOADS[4]: quiet(lambda: aim.frechet_mean(d["karcher"], tol=1e-8)),
        WORKLOADS[5]: quiet(lambda: bw.dist(d["bw_x"], d["bw_y"])),
        WORKLOADS[6]: quiet(lambda: bw.frechet_mean(d["bw_x"], tol=bw_tolerance(d["bw_x"]))),
    }


def bw_tolerance(x, absolute=1e-8):
    """riemtorch's relative BW stopping tolerance at least as strict as the peers' absolute
    ``absolute`` on ``||sum_i w_i Log_S X_i||``: divided by the norm of the arithmetic mean,
    which bounds that of the barycenter ``S`` from above."""
    return absolute / float(torch.linalg.matrix_norm(x.mean(0)))


def eigvalsh_calls(d):
    x32 = d["x"].float()
    return {
        WORKLOADS[0]: lambda: torch.linalg.eigvalsh(d["x"]),
        WORKLOADS[1]: lambda: torch.linalg.eigvalsh(x32),
    }


def geoopt_calls(d):
    import geoopt

    m = geoopt.SymmetricPositiveDefinite()
    x32, y32 = d["x"].float(), d["y"].float()
    return {
        WORKLOADS[0]: lambda: m.dist(d["x"], d["y"]),
        WORKLOADS[1]: lambda: m.dist(x32, y32),
        WORKLOADS[2]: lambda: m.expmap(d["x"], d["u"]),
        WORKLOADS[3]: lambda: m.logmap(d["x"], d["y"]),
    }


def spd_learn_calls(d):
    import spd_learn.functional as F

    x32, y32 = d["x"].float(), d["y"].float()
    return {
        WORKLOADS[0]: lambda: F.airm_distance(d["x"], d["y"]),
        WORKLOADS[1]: lambda: F.airm_distance(x32, y32),
        WORKLOADS[2]: lambda: F.exp_map_airm(d["x"], d["u"]),
        WORKLOADS[3]: lambda: F.log_map_airm(d["x"], d["y"]),
        WORKLOADS[4]: lambda: F.mean_riemann(d["karcher"], tol=1e-8),
        WORKLOADS[5]: lambda: F.bures_wasserstein_distance(d["bw_x"], d["bw_y"]),
        WORKLOADS[6]: lambda: F.bures_wasserstein_mean(d["bw_x"], tol=1e-8),
    }


def pyriemann_calls(d):
    from pyriemann.geometry import distance, mean, tangentspace

    x, y, u = d["x"].numpy(), d["y"].numpy(), d["u"].numpy()
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    k, bx, by = d["karcher"].numpy(), d["bw_x"].numpy(), d["bw_y"].numpy()
    return {
        WORKLOADS[0]: lambda: distance.distance_riemann(x, y),
        WORKLOADS[1]: lambda: distance.distance_riemann(x32, y32),
        WORKLOADS[2]: lambda: tangentspace.exp_map_riemann(u, x, Cm12=True),
        WORKLOADS[3]: lambda: tangentspace.log_map_riemann(y, x, C12=True),
        WORKLOADS[4]: lambda: mean.mean_riemann(k, tol=1e-8),
        WORKLOADS[5]: lambda: distance.distance_wasserstein(bx, by),
        WORKLOADS[6]: lambda: mean.mean_wasserstein(bx, tol=1e-8),
    }


def time_geomstats(path, threads):
    """Run in a subprocess: geomstats sets torch's default dtype on import."""
    os.environ["GEOMSTATS_BACKEND"] = "pytorch"
    import geomstats.backend  # noqa: F401
    from geomstats.geometry.spd_matrices import (SPDAffineMetric, SPDBuresWassersteinMetric,
                                                 SPDMatrices)
    from geomstats.learning.frechet_mean import FrechetMean

    setup(threads)
    d = torch.load(path)
    aim = SPDMatrices(16, equip=False)
    aim.equip_with_metric(SPDAffineMetric)
    aim22 = SPDMatrices(22, equip=False)
    aim22.equip_with_metric(SPDAffineMetric)
    bw = SPDMatrices(22, equip=False)
    bw.equip_with_metric(SPDBuresWassersteinMetric)
    x32, y32 = d["x"].float(), d["y"].float()
    karcher = FrechetMean(aim22)
    # geomstats stops once the squared norm of the Riemannian gradient is at most
    # epsilon * dim: this epsilon is the others' criterion, a gradient norm of 1e-8
    karcher.set(max_iter=100, epsilon=1e-16 / aim22.dim)
    return {
        WORKLOADS[0]: median_ms(lambda: aim.metric.dist(d["x"], d["y"])),
        WORKLOADS[1]: median_ms(lambda: aim.metric.dist(x32, y32)),
        WORKLOADS[2]: median_ms(lambda: aim.metric.exp(d["u"], d["x"])),
        WORKLOADS[3]: median_ms(lambda: aim.metric.log(d["y"], d["x"])),
        WORKLOADS[4]: median_ms(lambda: karcher.fit(d["karcher"]), repeat=3),
        WORKLOADS[5]: median_ms(lambda: bw.metric.dist(d["bw_x"], d["bw_y"])),
    }


def run_geomstats(d, threads):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.pt")
        torch.save(d, path)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--geomstats", path,
                              "--threads", str(threads)],
                             capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"geomstats skipped: {out.stderr.strip().splitlines()[-1:]}")
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def accuracy_rows(d):
    """Relative error of the tol=1e-8 means against pyRiemann's at tol=1e-13 (converged)."""
    import riemtorch
    from pyriemann.geometry import mean

    rows = []
    for label, ours, theirs, data in [
        ("Karcher mean", riemtorch.SPDAffineInvariant(), mean.mean_riemann, d["karcher"]),
        ("BW barycenter", riemtorch.SPDBuresWasserstein(), mean.mean_wasserstein, d["bw_x"]),
    ]:
        reference = torch.as_tensor(theirs(data.numpy(), tol=1e-13, maxiter=200))

        def error(m):
            return float((torch.as_tensor(m) - reference).abs().max() / reference.abs().max())

        tol = bw_tolerance(data) if label == "BW barycenter" else 1e-8
        rows.append([label, error(ours.frechet_mean(data, tol=tol)),
                     error(theirs(data.numpy(), tol=1e-8))])
    return rows


# Means take hundreds of ms per call: fewer rounds keep a run short.
REPEATS = {WORKLOADS[4]: 3, WORKLOADS[6]: 3}


def time_workloads(d, peers, workloads, device="cpu"):
    """``{library: {workload: median ms}}`` for riemtorch, one batched ``eigvalsh`` and each of
    ``peers`` (``(name, calls builder)`` pairs) that imports, each call followed by a device
    synchronisation on CUDA."""
    calls = {"riemtorch": riemtorch_calls(d), "one batched eigvalsh": eigvalsh_calls(d)}
    for name, fn in peers:
        try:
            calls[name] = fn(d)
        except ImportError as err:
            print(f"{name} skipped: {err}")
    timed = {name: {} for name in calls}
    for w in workloads:
        print(f"timing {w}", file=sys.stderr)
        fns = {name: synchronized(c[w], device) for name, c in calls.items() if w in c}
        for name, ms in interleaved_median_ms(fns, REPEATS.get(w, 5)).items():
            timed[name][w] = ms
    return timed


def comparison_table(timed, workloads):
    """Columns and rows: riemtorch, the peers, one ``eigvalsh``, then the ratios."""
    ours, eig = timed["riemtorch"], timed["one batched eigvalsh"]
    names = [n for n in timed if n not in ("riemtorch", "one batched eigvalsh")]
    columns = (["workload", "riemtorch"] + names + ["one batched eigvalsh"]
               + [f"{p} / riemtorch" for p in names] + ["riemtorch / eigvalsh"])
    rows = []
    for w in workloads:
        times = [timed[p].get(w) for p in names]
        base = eig.get(w)
        rows.append([w, ours[w]] + times + [base]
                    + [t / ours[w] if t else None for t in times]
                    + [ours[w] / base if base else None])
    return columns, rows


def main(threads):
    setup(threads)
    load = os.getloadavg()[0]
    d = make_data()
    timed = time_workloads(d, [("geoopt", geoopt_calls), ("spd_learn", spd_learn_calls),
                               ("pyRiemann", pyriemann_calls)], WORKLOADS)
    timed["geomstats"] = run_geomstats(d, threads)
    columns, rows = comparison_table(timed, WORKLOADS)
    print_table(f"SPD geometry, median ms (validation off; load average {load:.1f} at start)",
                columns, rows)
    try:
        print_table("Means at tol=1e-8: max relative error against pyRiemann at tol=1e-13",
                    ["mean", "riemtorch", "pyRiemann"], accuracy_rows(d))
    except ImportError as err:
        print(f"accuracy check skipped: {err}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--geomstats", metavar="DATA")
    args = parser.parse_args()
    if args.geomstats:
        print(json.dumps(time_geomstats(args.geomstats, args.threads)))
    else:
        main(args.threads)
