"""Elementary functions with gradients that stay finite where the plain ones blow up."""

import torch


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(x, tiny))``: equal to ``sqrt(x)`` for ``x >= tiny``, and its gradient at 0 is
    0 instead of infinity (so ``d(x, y)`` has a finite gradient at ``x = y``)."""
    return x.clamp_min(torch.finfo(x.dtype).tiny).sqrt()


def safe_norm(x: torch.Tensor, dim=-1, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm over ``dim`` with the finite gradient of :func:`safe_sqrt` at zero."""
    return safe_sqrt(x.square().sum(dim=dim, keepdim=keepdim))
