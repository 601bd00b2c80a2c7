"""Synchronised batch statistics: 2 gloo processes with half batches = 1 process, whole batch."""

import gc
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import riemtorch
from riemtorch.nn.batchnorm import RiemannianBatchNorm

F64 = torch.float64
BATCH = 8


def sphere_model():
    m = riemtorch.Sphere()
    return torch.nn.Sequential(torch.nn.Linear(5, 5, dtype=F64), _Normalize(),
                               RiemannianBatchNorm(m, (5,), dtype=F64), torch.nn.Linear(5, 2, dtype=F64))


def spd_model():
    from riemtorch.nn import BiMap, LogEig, ReEig, SPDBatchNorm, Vech

    return torch.nn.Sequential(BiMap(6, 4, dtype=F64), SPDBatchNorm(4, metric="aim", dtype=F64),
                               ReEig(), LogEig(), Vech(), torch.nn.Linear(10, 2, dtype=F64))


def spd_flow_model():
    from riemtorch.nn import BiMap, LogEig, ReEig, SPDBatchNorm, Vech

    return torch.nn.Sequential(BiMap(6, 4, dtype=F64),
                               SPDBatchNorm(4, metric="aim", mean_method="flow", dtype=F64),
                               ReEig(), LogEig(), Vech(), torch.nn.Linear(10, 2, dtype=F64))


def sphere_input(gen):
    return torch.randn(BATCH, 5, dtype=F64, generator=gen)


def spd_input(gen):
    a = torch.randn(BATCH, 6, 12, dtype=F64, generator=gen)
    return a @ a.mT / 12 + 0.1 * torch.eye(6, dtype=F64)


class _Normalize(torch.nn.Module):
    def forward(self, x):
        return x / x.norm(dim=-1, keepdim=True)


MODELS = {"sphere": (sphere_model, sphere_input), "spd": (spd_model, spd_input),
          "spd-flow": (spd_flow_model, spd_input)}


def run(name, x, world=1, total=None):
    """Outputs, running statistics and gradients of the model on ``x``, one rank's part of a
    global batch of ``total`` samples (default: ``x`` is the whole batch). The loss is the
    global batch's mean square: DDP averages the ranks' gradients, so each rank weighs its
    samples by ``world / total``."""
    build, _ = MODELS[name]
    torch.manual_seed(0)
    model = build()
    if world > 1:
        riemtorch.nn.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(model)
    out = model(x)
    total = x.shape[0] if total is None else total
    (out.square().mean() * (out.shape[0] * world / total)).backward()
    core = model.module if world > 1 else model
    bn = next(m for m in core.modules() if isinstance(m, RiemannianBatchNorm))
    return {"out": out.detach(), "running_mean": bn.running_mean.clone(),
            "running_var": bn.running_var.clone(),
            "grads": [p.grad.clone() for p in core.parameters() if p.grad is not None]}


def _worker(rank, sizes, port, name, path):
    world = len(sizes)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x = MODELS[name][1](torch.Generator().manual_seed(1))
        start = sum(sizes[:rank])
        torch.save(run(name, x[start:start + sizes[rank]], world, sum(sizes)), f"{path}.{rank}")
        # the DDP wrapper (held in reference cycles) goes before the group it uses, and both
        # ranks are done before either tears the group down (gloo can abort a process whose
        # peer closed the connection first)
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_ranks_equal_one_process(name, sizes, path):
    """Ranks with local batches of ``sizes`` give the outputs, running statistics and
    gradients of one process with the whole batch (float64, 1e-10)."""
    mp.spawn(_worker, args=(tuple(sizes), free_port(), name, path), nprocs=len(sizes),
             join=True)
    ranks = [torch.load(f"{path}.{r}", weights_only=True) for r in range(len(sizes))]
    whole = run(name, MODELS[name][1](torch.Generator().manual_seed(1))[:sum(sizes)])
    close = dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), whole["out"], **close)
    for r in ranks:
        torch.testing.assert_close(r["running_mean"], whole["running_mean"], **close)
        torch.testing.assert_close(r["running_var"], whole["running_var"], **close)
        assert len(r["grads"]) == len(whole["grads"])
        for g, h in zip(r["grads"], whole["grads"]):
            torch.testing.assert_close(g, h, **close)


@pytest.mark.parametrize("name", list(MODELS))
def test_two_ranks_equal_one_process_with_the_whole_batch(name, tmp_path):
    check_ranks_equal_one_process(name, (BATCH // 2, BATCH // 2), str(tmp_path / "result"))


def test_without_process_group_sync_is_a_no_op():
    torch.manual_seed(0)
    model = riemtorch.nn.convert_sync_batchnorm(sphere_model())
    x = sphere_input(torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(x), run("sphere", x)["out"])
