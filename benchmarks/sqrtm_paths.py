"""Square roots by eigh or by Newton-Schulz iterations: Bures-Wasserstein batch norm forward +
backward on a batch of SPD matrices, time and agreement of the two paths.

``SPDBatchNorm(metric="bw", sqrtm_method=...)`` takes every matrix square root of the layer (the
barycenter's fixed point, the centring maps and their backward passes) either from a batched
``eigh`` or from coupled Newton-Schulz iterations (matrix products only). The table gives the
median time of one training step of the layer, the ratio, and the largest relative difference
between the two paths in the output and in the gradient of the input.

    python benchmarks/sqrtm_paths.py [--device cpu|cuda] [--dtype float64|float32]
                                     [--batch 256] [--n 64] [--threads 2]
"""

import argparse

import torch

import riemtorch
from riemtorch.nn import SPDBatchNorm

from common import median_ms, print_table, setup, synchronized


def step(method, x, weight, device, dtype):
    layer = SPDBatchNorm(x.shape[-1], metric="bw", sqrtm_method=method, dtype=dtype,
                         device=device)
    leaf = x.clone().requires_grad_()

    def run():
        leaf.grad = None
        out = layer(leaf)
        (out * weight).sum().backward()
        return out.detach(), leaf.grad

    return synchronized(run, device)


def relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--cond", type=float, default=100.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    setup(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    spd = riemtorch.SPDAffineInvariant()
    x = spd.random(args.batch, n=args.n, cond=args.cond, dtype=torch.float64, generator=g)
    weight = torch.randn(x.shape, dtype=torch.float64, generator=g)
    x, weight = x.to(device, dtype), weight.to(device, dtype)
    with riemtorch.config.override(validate=False):
        runs = {m: step(m, x, weight, device, dtype) for m in ("eigh", "newton_schulz")}
        results = {m: run() for m, run in runs.items()}
        times = {m: median_ms(run, repeat=5, warmup=1) for m, run in runs.items()}
    (out_e, grad_e), (out_n, grad_n) = results["eigh"], results["newton_schulz"]
    rows = [[f"{args.batch} x {args.n}x{args.n}, cond {args.cond:g}, {args.dtype}, {device}",
             times["eigh"], times["newton_schulz"], times["eigh"] / times["newton_schulz"],
             relative(out_n, out_e), relative(grad_n, grad_e)]]
    print_table("Bures-Wasserstein batch norm, one forward + backward (median ms)",
                ["workload", "eigh", "Newton-Schulz", "eigh / Newton-Schulz",
                 "output rel. diff.", "gradient rel. diff."], rows)


if __name__ == "__main__":
    main()
