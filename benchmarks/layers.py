"""One SPDNet training step against spd_learn: BiMap 40->20 -> ReEig -> batch norm (AIM) ->
LogEig -> Linear on a batch of 64, forward + backward + optimizer step, float64, CPU.

Both batch norms use one iteration for the batch mean (spd_learn's default ``n_iter=1``: one
Karcher flow step; riemtorch: one Newton step from the geometric mean of the arithmetic and
harmonic means, with the gradient of the exact mean); riemtorch is also timed with its default
(Newton steps to tolerance). Per step riemtorch's AIM batch norm takes two batched ``eigh``
(the Newton step and the centred samples) and none in the backward pass. riemtorch steps the
BiMap weight on the Stiefel manifold with RiemannianAdam; spd_learn parametrises it and uses
torch.optim.Adam (its recommended setup). Validation is off for riemtorch (riemtorch.config).
The steps are timed in alternating rounds of back-to-back calls (:func:`blocked_median_ms`).

    python benchmarks/layers.py [--threads 2] [--batch 64]
"""

import argparse
import statistics
import time
import warnings

import torch

import riemtorch
from riemtorch import nn as rnn
from riemtorch.optim import RiemannianAdam

from common import print_table, setup, synchronized

N_IN, N_OUT, CLASSES = 40, 20, 4


def riemtorch_step(mean_iters, dtype=torch.float64, device="cpu"):
    model = torch.nn.Sequential(
        rnn.BiMap(N_IN, N_OUT, dtype=dtype), rnn.ReEig(1e-4),
        rnn.SPDBatchNorm(N_OUT, metric="aim", mean_iters=mean_iters, dtype=dtype),
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


def training_step(model, optimizer, x, y):
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    return synchronized(step, x.device)


def blocked_median_ms(steps, rounds=5, per_round=3):
    """Median ms of each training step in ``steps`` (a dict): in every round each step runs one
    untimed call, then ``per_round`` timed ones back to back, as in a training loop. Rounds
    alternate between the steps, so slow drifts of the machine reach all of them alike."""
    for step in steps.values():
        for _ in range(3):
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            step()
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    setup(args.threads)
    warnings.filterwarnings("ignore")
    g = torch.Generator().manual_seed(0)
    x = riemtorch.SPDAffineInvariant().random(args.batch, n=N_IN, cond=100.0, dtype=torch.float64,
                                              generator=g)
    y = torch.randint(0, CLASSES, (args.batch,), generator=g)
    steps = {"1 Karcher iteration": training_step(*riemtorch_step(1), x, y),
             "mean to tolerance": training_step(*riemtorch_step(None), x, y)}
    try:
        steps["spd_learn"] = training_step(*spd_learn_step(), x, y)
    except ImportError:
        pass
    with riemtorch.config.override(validate=False):
        times = blocked_median_ms(steps)
    peer = times.get("spd_learn")
    rows = [[f"riemtorch, {name}", times[name], peer, peer / times[name] if peer else None]
            for name in ("1 Karcher iteration", "mean to tolerance")]
    print_table(f"SPDNet + AIM batch norm training step, batch {args.batch} of {N_IN}x{N_IN}, float64",
                ["riemtorch variant", "riemtorch ms", "spd_learn ms", "spd_learn / riemtorch"], rows)


if __name__ == "__main__":
    main()
