"""One SPDNet training step against spd_learn: BiMap 40->20 -> ReEig -> batch norm (AIM) ->
LogEig -> Linear on a batch of 64, forward + backward + optimizer step, float64, CPU.

Both batch norms use one iteration for the batch mean (spd_learn's default ``n_iter=1``: one
Karcher flow step; riemtorch: one Newton step from the geometric mean of the arithmetic and
harmonic means, with the gradient of the exact mean); riemtorch is also timed with its default
(Newton steps to tolerance). Per step riemtorch's AIM batch norm takes two batched ``eigh``
(the Newton step and the centred samples) and none in the backward pass. riemtorch steps the
BiMap weight on the Stiefel manifold with RiemannianAdam; spd_learn parametrises it and uses
torch.optim.Adam (its recommended setup). Validation is off for riemtorch (riemtorch.config).

    python benchmarks/layers.py [--threads 2] [--batch 64]
"""

import argparse
import warnings

import torch

import riemtorch
from riemtorch import nn as rnn
from riemtorch.optim import RiemannianAdam

from common import median_ms, print_table, setup, synchronized

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


def timed(model, optimizer, x, y):
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    return median_ms(synchronized(step, x.device), repeat=15, warmup=3)


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
    rows = []
    with riemtorch.config.override(validate=False):
        ours_one = timed(*riemtorch_step(1), x, y)
        ours_tol = timed(*riemtorch_step(None), x, y)
    try:
        peer = timed(*spd_learn_step(), x, y)
    except ImportError:
        peer = None
    rows.append(["riemtorch, 1 Karcher iteration", ours_one, peer, peer / ours_one if peer else None])
    rows.append(["riemtorch, mean to tolerance", ours_tol, peer, peer / ours_tol if peer else None])
    print_table(f"SPDNet + AIM batch norm training step, batch {args.batch} of {N_IN}x{N_IN}, float64",
                ["riemtorch variant", "riemtorch ms", "spd_learn ms", "spd_learn / riemtorch"], rows)


if __name__ == "__main__":
    main()
