"""One SPDNet training step against spd_learn: BiMap 40->20 -> ReEig -> batch norm (AIM) ->
LogEig -> Linear on a batch of 64, forward + backward + optimizer step, float64, CPU.

Both batch norms use one iteration for the batch mean. spd_learn's default ``n_iter=1`` is one
Karcher flow step from the arithmetic mean. riemtorch takes one Karcher flow step
(``mean_method="flow"``, the same algorithm) or one Newton step (its default method) from the
geometric mean of the arithmetic and harmonic means, both with the gradient of the exact mean;
it is also timed with its default mean (Newton steps to tolerance). A last table gives how far
each one-iteration mean is from the Karcher mean. Per step riemtorch's AIM batch norm takes two
batched ``eigh`` (the step and the centred samples) and none in the backward pass; the Newton
step adds a Hessian solve to the flow step. riemtorch steps the BiMap weight on the
Stiefel manifold with RiemannianAdam; spd_learn parametrises it and uses torch.optim.Adam (its
recommended setup). Validation is off for riemtorch (riemtorch.config).

Every variant runs in processes of its own: libraries sharing a process change each other's
timings (their OpenMP and BLAS threads, the allocator's state). Measured on 2 cores: with
both in one process, riemtorch's step took about 2 ms less and spd_learn's about 2.5 ms more
than alone. Processes running the same code differ too (six riemtorch processes, heap kept as
below: median steps from 8.8 to 9.4 ms), so each variant runs in three, and its figure is the
median over all their steps. The processes are timed in alternating rounds
(:func:`alternating_median_ms`), so slow drifts of the machine reach all of them alike.

A second table repeats the timing with glibc told to keep 64 MiB at the top of its heap
(``MALLOC_TOP_PAD_``, in every process). By default glibc returns the freed top of its heap to
the system once it passes a threshold that grows with the largest block the process has
freed; in these small fresh processes that threshold stays near the 2 MB that a riemtorch
step allocates and frees (saved tensors and backward work tensors of 200 KB each). Where the
step's memory passes it, every step maps that memory anew: about 300 page faults and 1 ms of
system time per step (2 cores), against a few for spd_learn. Whether a process does
depends on what it allocated before (in 8 fresh processes, 2 did; in 4 others, 3 made 180 to
420 faults per step). A process that has freed a block of 2 MB or more (a data pipeline, a
larger model; measured: one fault per step in 6 processes that had), or a heap kept as in
the second table, has none.

    python benchmarks/layers.py [--threads 2] [--batch 64]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, setup, synchronized  # noqa: E402

N_IN, N_OUT, CLASSES = 40, 20, 4
# pause between rounds: the OpenMP threads of the process that just ran spin-wait for a while
# after its last step and would take cores from the next one
SETTLE_S = 0.2
VARIANTS = ("riemtorch, 1 Karcher flow step", "riemtorch, 1 Newton step",
            "riemtorch, mean to tolerance", "spd_learn")
# the second table's environment: glibc keeps 64 MiB at the top of its heap instead of
# returning it to the system (see the module docstring)
KEPT_HEAP = {"MALLOC_TOP_PAD_": str(64 << 20)}


def riemtorch_step(mean_iters, mean_method="newton", dtype=torch.float64, device="cpu"):
    from riemtorch import nn as rnn
    from riemtorch.optim import RiemannianAdam

    model = torch.nn.Sequential(
        rnn.BiMap(N_IN, N_OUT, dtype=dtype), rnn.ReEig(1e-4),
        rnn.SPDBatchNorm(N_OUT, metric="aim", mean_iters=mean_iters, mean_method=mean_method,
                         dtype=dtype),
        rnn.LogEig(), rnn.Vech(), torch.nn.Linear(N_OUT * (N_OUT + 1) // 2, CLASSES, dtype=dtype))
    model.to(device)
    return model, RiemannianAdam(model.parameters(), lr=1e-3)


def spd_learn_step(dtype=torch.float64, device="cpu"):
    from spd_learn import modules as M

    model = torch.nn.Sequential(
        M.BiMap(N_IN, N_OUT, dtype=dtype), M.ReEig(),
        M.SPDBatchNormMeanVar(N_OUT, n_iter=1, dtype=dtype), M.LogEig(upper=True, flatten=True),
        torch.nn.Linear(N_OUT * (N_OUT + 1) // 2, CLASSES, dtype=dtype))
    model.to(device)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def build(variant):
    """Model and optimizer of a variant; riemtorch's validation is switched off in this process."""
    if variant.startswith("riemtorch"):
        import riemtorch

        riemtorch.config.validate = False
    if variant == VARIANTS[0]:
        return riemtorch_step(1, "flow")
    if variant == VARIANTS[1]:
        return riemtorch_step(1)
    if variant == VARIANTS[2]:
        return riemtorch_step(None)
    return spd_learn_step()


def training_step(model, optimizer, x, y):
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    return synchronized(step, x.device)


def timed_round(step, count):
    """One untimed training step, then ``count`` timed ones back to back (as in a training
    loop); their times in ms."""
    step()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def timed(model, optimizer, x, y, rounds=5, per_round=3):
    """Median ms of a training step in this process, over ``rounds`` of :func:`timed_round`
    (the GPU report, where the device does the work)."""
    step = training_step(model, optimizer, x, y)
    for _ in range(3):
        step()
    return statistics.median(t for _ in range(rounds) for t in timed_round(step, per_round))


def batch(size):
    """The input batch: SPD 40 x 40 at condition number 100 and labels (seeded)."""
    import riemtorch

    g = torch.Generator().manual_seed(0)
    x = riemtorch.SPDAffineInvariant().random(size, n=N_IN, cond=100.0, dtype=torch.float64,
                                              generator=g)
    return x, torch.randint(0, CLASSES, (size,), generator=g)


def worker(variant, threads, size):
    """Serve timing requests on stdin: for each line ``k``, :func:`timed_round` of ``k`` steps,
    answered as a JSON list of ms."""
    setup(threads)
    warnings.filterwarnings("ignore")
    try:
        step = training_step(*build(variant), *batch(size))
        for _ in range(3):
            step()
    except ImportError as err:
        print(json.dumps({"error": str(err)}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(timed_round(step, int(line))), flush=True)


def _start_worker(variant, threads, size, env):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", variant,
           "--threads", str(threads), "--batch", str(size)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def alternating_median_ms(threads, size, env=None, rounds=5, per_round=10, processes=3):
    """Median ms of a training step for each variant over the steps of ``processes`` processes
    of its own (with the variables ``env`` added to their environment): in every round each
    process runs one untimed and ``per_round`` timed steps in turn, after a pause of
    ``SETTLE_S`` (the others wait, idle)."""
    starting = [(variant, _start_worker(variant, threads, size, env))
                for _ in range(processes) for variant in VARIANTS]
    procs = []
    for variant, proc in starting:
        answer = json.loads(proc.stdout.readline() or '{"error": "no answer"}')
        if "error" in answer:
            print(f"{variant} left out: {answer['error']}", file=sys.stderr)
            proc.stdin.close()
            proc.wait()
            continue
        procs.append((variant, proc))
    times = {variant: [] for variant, _ in procs}
    try:
        for _ in range(rounds):
            for variant, proc in procs:
                time.sleep(SETTLE_S)
                proc.stdin.write(f"{per_round}\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
                if not answer:
                    raise RuntimeError(f"the {variant!r} worker stopped "
                                       f"(exit status {proc.wait()}; its error is above)")
                times[variant] += json.loads(answer)
    finally:
        for _, proc in procs:
            proc.stdin.close()
            proc.wait()
    return {variant: statistics.median(t) for variant, t in times.items()}


def mean_accuracy(size):
    """Affine-invariant distance from each variant's batch mean to the Karcher mean (to
    ``1e-12``), on the benchmark's input after a fixed (seeded) BiMap 40 -> 20: what one
    iteration buys in each library."""
    import riemtorch

    x, _ = batch(size)
    g = torch.Generator().manual_seed(1)
    w = torch.linalg.qr(torch.randn(N_IN, N_OUT, dtype=torch.float64, generator=g))[0]
    xs = w.T @ x @ w
    aim = riemtorch.SPDAffineInvariant()
    exact = aim.frechet_mean(xs, tol=1e-12)
    flow = riemtorch.SPDAffineInvariant(mean_method="flow")
    means = {VARIANTS[0]: flow.frechet_mean(xs, max_iter=1),
             VARIANTS[1]: aim.frechet_mean(xs, max_iter=1), VARIANTS[2]: aim.frechet_mean(xs)}
    try:
        from spd_learn.functional.batchnorm import frechet_mean

        means["spd_learn"] = frechet_mean(xs, max_iter=1)[0]
    except ImportError:
        pass
    return {name: float(aim.dist(m, exact)) for name, m in means.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.threads, args.batch)
        return
    setup(args.threads)
    for heading, env in (("", None), (", glibc heap kept (MALLOC_TOP_PAD_=64 MiB)", KEPT_HEAP)):
        times = alternating_median_ms(args.threads, args.batch, env)
        peer = times.get("spd_learn")
        rows = [[name, times[name], peer, peer / times[name] if peer else None]
                for name in VARIANTS[:3]]
        print_table(f"SPDNet + AIM batch norm training step, batch {args.batch} of "
                    f"{N_IN}x{N_IN}, float64, each variant in three processes of its own{heading}",
                    ["riemtorch variant", "riemtorch ms", "spd_learn ms",
                     "spd_learn / riemtorch"], rows)
    error = mean_accuracy(args.batch)
    print_table("Batch mean: affine-invariant distance to the Karcher mean (to 1e-12)",
                ["variant", "distance"], [[name, d] for name, d in error.items()])


if __name__ == "__main__":
    main()
