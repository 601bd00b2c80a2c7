"""The benchmark report on a CUDA device, float32 and float64: riemtorch against the torch-based
peers (geoopt, spd_learn) on the same GPU, and the square-root paths of the Bures-Wasserstein
batch norm.

The workloads are those of the CPU scripts (``spd.py``, ``layers.py``, ``hyperbolic.py``,
``sqrtm_paths.py`` at its GPU size of 256 matrices of 64 x 64), built by the same functions; data
are generated on the CPU and moved to the device. Every timed call ends with
``torch.cuda.synchronize()``. pyRiemann, geomstats and pymanopt run on numpy and have no GPU
path, so they are not in this report (``BENCHMARKS.md`` compares them on the CPU).

    python benchmarks/gpu.py [--output BENCHMARKS_GPU.md] [--threads N]

``--threads`` is the host's thread count (riemtorch decomposes batches of 33 x 33 to 64 x 64
matrices on the host, see ``riemtorch.config.cuda_eigh_on_host``); default: all of torch's.
"""

import argparse
import contextlib
import os
import sys
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hyperbolic  # noqa: E402
import layers  # noqa: E402
import spd  # noqa: E402
import sqrtm_paths  # noqa: E402
from common import median_ms, print_table, synchronized  # noqa: E402

import riemtorch  # noqa: E402

DTYPES = (torch.float32, torch.float64)


def _name(dtype):
    return str(dtype)[6:]


def _on_device(fns, device):
    return {name: synchronized(fn, device) for name, fn in fns.items()}


def spd_section(device):
    workloads = [w for w in spd.WORKLOADS if w != spd.WORKLOADS[1]]  # the f32 row of the CPU run
    data = spd.make_data()
    for dtype in DTYPES:
        d = {k: v.to(device, dtype) for k, v in data.items()}
        timed = spd.time_workloads(d, [("geoopt", spd.geoopt_calls),
                                       ("spd_learn", spd.spd_learn_calls)], workloads, device)
        columns, rows = spd.comparison_table(timed, workloads)
        print_table(f"SPD geometry on {device}, {_name(dtype)}, median ms", columns, rows)


def layers_section(device, batch=64):
    rows = []
    g = torch.Generator().manual_seed(0)
    x64 = riemtorch.SPDAffineInvariant().random(batch, n=layers.N_IN, cond=100.0,
                                                dtype=torch.float64, generator=g)
    y = torch.randint(0, layers.CLASSES, (batch,), generator=g).to(device)
    for dtype in DTYPES:
        x = x64.to(device, dtype)
        with riemtorch.config.override(validate=False):
            flow = layers.timed(*layers.riemtorch_step(1, "flow", dtype, device), x, y)
            one = layers.timed(*layers.riemtorch_step(1, dtype=dtype, device=device), x, y)
            tol = layers.timed(*layers.riemtorch_step(None, dtype=dtype, device=device), x, y)
        try:
            peer = layers.timed(*layers.spd_learn_step(dtype, device), x, y)
        except ImportError:
            peer = None
        for label, ours in (("1 Karcher flow step", flow), ("1 Newton step", one),
                            ("mean to tolerance", tol)):
            rows.append([f"riemtorch, {label}, {_name(dtype)}", ours, peer,
                         peer / ours if peer else None])
    print_table(f"SPDNet + AIM batch norm training step on {device}, batch {batch} of "
                f"{layers.N_IN}x{layers.N_IN}",
                ["riemtorch variant", "riemtorch ms", "spd_learn ms", "spd_learn / riemtorch"],
                rows)


def hyperbolic_section(device):
    """Validation off for riemtorch (as in ``spd.py``; geoopt does not validate), curvatures on
    the device for both libraries. Each riemtorch operation is also timed under
    ``torch.compile`` (default inductor backend; the compilation happens in the untimed warm-up
    calls), which fuses its elementwise steps into a few kernels."""
    geoopt = hyperbolic._geoopt()
    g = torch.Generator().manual_seed(0)
    batch, dim = hyperbolic.BATCH, hyperbolic.DIM
    for dtype in DTYPES:
        ball, lor = riemtorch.PoincareBall(1.0), riemtorch.Lorentz(1.0)
        x, y = (ball.random(batch, n=dim, dtype=dtype, generator=g).to(device) for _ in range(2))
        u = (0.3 * torch.randn(batch, dim, dtype=dtype, generator=g)).to(device)
        lx, ly = (lor.random(batch, n=dim + 1, dtype=dtype, generator=g).to(device)
                  for _ in range(2))
        lu = torch.randn(batch, dim + 1, dtype=dtype, generator=g).to(device)
        ball, lor = ball.to(device), lor.to(device)
        lu = lor.proju(lx, 0.3 * lu)
        curvature = torch.tensor(1.0, dtype=dtype, device=device)
        rows = []
        for model, ours, peer in (
                ("Poincaré", hyperbolic.ball_ops(ball, x, y, u),
                 hyperbolic.geoopt_ball_ops(geoopt.PoincareBall(curvature), x, y, u)),
                ("Lorentz", hyperbolic.lorentz_ops(lor, lx, ly, lu),
                 hyperbolic.lorentz_ops(geoopt.Lorentz(curvature), lx, ly, lu, gyro=False))):
            compiled = {name: torch.compile(fn) for name, fn in ours.items()}
            with riemtorch.config.override(validate=False):
                eager, ref, fused = hyperbolic.time_pairs(
                    _on_device(ours, device), _on_device(peer, device),
                    _on_device(compiled, device))
            rows += [[f"{model} {name}", t, fused[name], ref.get(name),
                      hyperbolic.ratio(ref.get(name), t), hyperbolic.ratio(ref.get(name),
                                                                           fused[name])]
                     for name, t in eager.items()]
        print_table(f"Hyperbolic operations on {device}, {batch} x {dim} (Lorentz: ambient "
                    f"{dim + 1}), {_name(dtype)}, validation off",
                    ["op", "riemtorch ms", "riemtorch compiled ms", "geoopt ms",
                     "geoopt / riemtorch", "geoopt / riemtorch compiled"], rows)


def eigh_section(device):
    """riemtorch's batched ``eigh`` (host LAPACK for sizes 33-64) against ``torch.linalg.eigh``
    on the device (cuSOLVER: batched Jacobi up to 32 x 32, one matrix at a time above)."""
    from riemtorch.linalg.batched import eigh

    rows = []
    g = torch.Generator().manual_seed(0)
    for dtype in DTYPES:
        for n, batch in ((16, 1024), (32, 1024), (48, 256), (64, 256), (64, 1024), (128, 256)):
            a = torch.randn(batch, n, n, dtype=dtype, generator=g)
            x = (a @ a.mT / n + torch.eye(n, dtype=dtype)).to(device)
            ours = median_ms(synchronized(lambda: eigh(x), device), repeat=3, warmup=1)
            device_ms = median_ms(synchronized(lambda: torch.linalg.eigh(x), device), repeat=3,
                                  warmup=1)
            rows.append([f"{batch} x {n}x{n}, {_name(dtype)}", ours, device_ms, device_ms / ours])
    print_table(f"Batched eigh on {device} (median ms)",
                ["workload", "riemtorch", "torch.linalg.eigh", "torch / riemtorch"], rows)


def sqrtm_section(device, batch=256, n=64):
    g = torch.Generator().manual_seed(0)
    x64 = riemtorch.SPDAffineInvariant().random(batch, n=n, cond=100.0, dtype=torch.float64,
                                                generator=g)
    weight64 = torch.randn(x64.shape, dtype=torch.float64, generator=g)
    rows = []
    for dtype in DTYPES:
        x, weight = x64.to(device, dtype), weight64.to(device, dtype)
        with riemtorch.config.override(validate=False):
            runs = {m: sqrtm_paths.step(m, x, weight, torch.device(device), dtype)
                    for m in ("eigh", "newton_schulz")}
            (out_e, grad_e), (out_n, grad_n) = (run() for run in runs.values())
            times = {m: median_ms(run, repeat=5, warmup=1) for m, run in runs.items()}
        rows.append([f"{batch} x {n}x{n}, cond 100, {_name(dtype)}", times["eigh"],
                     times["newton_schulz"], times["eigh"] / times["newton_schulz"],
                     sqrtm_paths.relative(out_n, out_e), sqrtm_paths.relative(grad_n, grad_e)])
    print_table(f"Bures-Wasserstein batch norm forward + backward on {device} (median ms)",
                ["workload", "eigh", "Newton-Schulz", "eigh / Newton-Schulz",
                 "output rel. diff.", "gradient rel. diff."], rows)


SECTIONS = {"eigh": eigh_section, "spd": spd_section, "layers": layers_section, "hyperbolic": hyperbolic_section,
            "sqrtm": sqrtm_section}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(os.path.dirname(HERE),
                                                         "BENCHMARKS_GPU.md"))
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS))
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this report needs one (BENCHMARKS.md is the CPU one)")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    device = "cuda"
    with open(args.output, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        print("# Benchmarks on a GPU\n")
        print(f"Device: {torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA "
              f"{torch.version.cuda}), {torch.get_num_threads()} host threads. Generated by "
              "`python benchmarks/gpu.py`; times are medians in ms, each call followed by a "
              "device synchronisation; ratios are peer / riemtorch measured in the same run "
              "(above 1: riemtorch is faster).")
        for name in args.only or list(SECTIONS):
            print(f"section {name}", file=sys.stderr)
            SECTIONS[name](device)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
