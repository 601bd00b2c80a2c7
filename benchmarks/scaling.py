"""How the time of core riemtorch operations grows with batch size and matrix size.

Each workload is timed over a log-spaced sweep of batch sizes (matrix size fixed) and over matrix
sizes (batch fixed), validation off, float64; one PNG per workload (two panels) is written by
:func:`plot`. Run on its own to print the tables:

    python benchmarks/scaling.py [--quick] [--threads 2]
"""

import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import riemtorch  # noqa: E402
from common import median_ms, print_table, setup  # noqa: E402

DTYPE = torch.float64
FIXED_N, FIXED_BATCH = 16, 64
FULL = dict(batches=(1, 4, 16, 64, 256, 1024, 4096, 8192), sizes=(8, 16, 32, 64, 128), repeat=5)
QUICK = dict(batches=(1, 32, 1024, 8192), sizes=(8, 32, 128), repeat=3)


def _spd_pair(batch, n, gen):
    spd = riemtorch.SPDAffineInvariant()
    return (spd.random(batch, n=n, cond=100.0, dtype=DTYPE, generator=gen),
            spd.random(batch, n=n, cond=100.0, dtype=DTYPE, generator=gen))


def _aim_dist(batch, n, gen):
    x, y = _spd_pair(batch, n, gen)
    return lambda: riemtorch.SPDAffineInvariant().dist(x, y)


def _aim_expmap(batch, n, gen):
    x, _ = _spd_pair(batch, n, gen)
    u = torch.randn(batch, n, n, dtype=DTYPE, generator=gen)
    u = 0.1 * (u + u.transpose(-1, -2))
    return lambda: riemtorch.SPDAffineInvariant().expmap(x, u)


def _bw_dist(batch, n, gen):
    x, y = _spd_pair(batch, n, gen)
    return lambda: riemtorch.SPDBuresWasserstein().dist(x, y)


def _spd_batchnorm(batch, n, gen):
    x, _ = _spd_pair(max(batch, 2), n, gen)  # training batch norm needs two samples
    bn = riemtorch.nn.SPDBatchNorm(n, metric="aim", mean_iters=1, dtype=DTYPE)
    x.requires_grad_()

    def step():
        bn(x).sum().backward()
    return step


def _lorentz_dist(batch, n, gen):
    lor = riemtorch.Lorentz(1.0)
    x = lor.random(batch, n=n + 1, dtype=DTYPE, generator=gen)
    y = lor.random(batch, n=n + 1, dtype=DTYPE, generator=gen)
    return lambda: lor.dist(x, y)


# name -> (factory(batch, n, generator) returning a callable, what "n" means)
WORKLOADS = {
    "AIM distance": (_aim_dist, "matrix size n"),
    "AIM expmap": (_aim_expmap, "matrix size n"),
    "BW distance": (_bw_dist, "matrix size n"),
    "SPD batch norm (AIM) forward + backward": (_spd_batchnorm, "matrix size n"),
    "Lorentz distance": (_lorentz_dist, "dimension n"),
}


def sweep(quick: bool = False):
    """Time every workload; returns ``{name: {"batch": [(b, ms)], "size": [(n, ms)]}}``."""
    cfg = QUICK if quick else FULL
    gen = torch.Generator().manual_seed(0)
    results = {}
    with riemtorch.config.override(validate=False):
        for name, (factory, _) in WORKLOADS.items():
            print(f"scaling: {name}", file=sys.stderr)
            by_batch = [(b, median_ms(factory(b, FIXED_N, gen), repeat=cfg["repeat"], warmup=1))
                        for b in cfg["batches"]]
            by_size = [(n, median_ms(factory(FIXED_BATCH, n, gen), repeat=cfg["repeat"], warmup=1))
                       for n in cfg["sizes"]]
            results[name] = {"batch": by_batch, "size": by_size}
    return results


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def plot(name, result, directory):
    """Save a two-panel log-log plot of one workload; returns the file path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, xlabel in ((left, "batch", f"batch size (n = {FIXED_N})"),
                            (right, "size", f"{WORKLOADS[name][1]} (batch {FIXED_BATCH})")):
        xs, ys = zip(*result[key])
        ax.loglog(xs, ys, "o-", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median ms")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"riemtorch: {name}, float64")
    fig.tight_layout()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"scaling_{slug(name)}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_tables(results) -> None:
    for name, result in results.items():
        print_table(f"{name} vs batch size (n = {FIXED_N}), float64",
                    ["batch", "riemtorch ms", "ms per sample"],
                    [[b, t, t / b] for b, t in result["batch"]])
        print_table(f"{name} vs {WORKLOADS[name][1]} (batch {FIXED_BATCH}), float64",
                    ["n", "riemtorch ms"], [[n, t] for n, t in result["size"]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = parser.parse_args()
    setup(args.threads)
    print_tables(sweep(args.quick))


if __name__ == "__main__":
    main()
