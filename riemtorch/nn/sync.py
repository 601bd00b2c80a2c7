"""Batch statistics synchronised over ``torch.distributed`` (like ``torch.nn.SyncBatchNorm``).

Every rank gathers the samples of all ranks (a differentiable all-gather) and computes the
Fréchet statistics of the whole global batch, so ``N`` ranks with ``b`` samples each give the
outputs, running statistics and (DDP-averaged) gradients of one process with ``N * b`` samples.
Samples are small (matrices of a few hundred entries), so gathering them costs less than
reducing every iteration of an iterative mean, and it works for every mean solver unchanged.
As in ``torch.nn.SyncBatchNorm``, training needs more than one sample in the global batch, not
in each rank's: a rank may hold a single sample.
"""

import torch
import torch.distributed as dist


class _GatherBatches(torch.autograd.Function):
    """All-gather along dim 0 (sizes may differ per rank); backward sums the gradients that
    all ranks computed for this rank's slice."""

    @staticmethod
    def forward(ctx, x, group):
        world = dist.get_world_size(group)
        size = torch.tensor([x.shape[0]], device=x.device)
        sizes = [torch.zeros_like(size) for _ in range(world)]
        dist.all_gather(sizes, size, group=group)
        sizes = [int(s) for s in sizes]
        largest = max(sizes)
        padded = x.new_zeros((largest,) + x.shape[1:])
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous(), group=group)
        ctx.group, ctx.sizes, ctx.rank = group, sizes, dist.get_rank(group)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]], None


def gather_batch(x: torch.Tensor, group=None) -> torch.Tensor:
    """Concatenate the batches ``(b_r, ...)`` of all ranks of ``group`` in rank order,
    differentiably. Returns ``x`` unchanged outside an initialised process group of size > 1."""
    if not (dist.is_available() and dist.is_initialized()):
        return x
    if dist.get_world_size(group) == 1:
        return x
    return _GatherBatches.apply(x, group)


def convert_sync_batchnorm(module: torch.nn.Module, process_group=None) -> torch.nn.Module:
    """Make every Riemannian batch norm in ``module`` compute its training statistics over all
    ranks of ``process_group`` (default: the world). Returns ``module`` (changed in place, as
    the layers are; no parameters or buffers change).

    Examples
    --------
    >>> model = riemtorch.nn.convert_sync_batchnorm(model)   # doctest: +SKIP
    >>> model = torch.nn.parallel.DistributedDataParallel(model)   # doctest: +SKIP
    """
    from riemtorch.nn.batchnorm import RiemannianBatchNorm

    for layer in module.modules():
        if isinstance(layer, RiemannianBatchNorm):
            layer.sync = True
            layer.process_group = process_group
    return module
