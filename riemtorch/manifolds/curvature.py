"""Curvature as module state, shared by the constant-curvature manifolds."""

import numbers

import torch
from torch import nn

from riemtorch.manifolds.base import Manifold


def curvature_tensor(value, name: str, dtype, learnable: bool):
    """A 0-dim curvature tensor from a number or tensor (float64 unless ``dtype`` says else)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        t = value.detach().reshape(()).to(dtype or (value.dtype if value.is_floating_point()
                                                    else torch.float64))
    elif isinstance(value, numbers.Real):
        t = torch.tensor(float(value), dtype=dtype or torch.float64)
    else:
        raise TypeError(f"{name} must be a real number or a tensor, got {type(value).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} needs a floating dtype, got {t.dtype}")
    if not bool(torch.isfinite(t)):
        raise ValueError(f"{name} must be finite, got {float(t)}")
    return nn.Parameter(t) if learnable else t


class ConstantCurvature(Manifold):
    """A manifold with one curvature parameter ``k``: an ``nn.Parameter`` when ``learnable``,
    else a buffer, stored in float64 unless ``dtype`` says otherwise and cast to the dtype of
    the points at each use (so float64 work sees the exact value)."""

    # the ball's radius and the hyperboloid move with k: optimizers project the points after
    # stepping a learnable k (riemtorch.optim)
    points_follow_parameters = True

    def __init__(self, k, learnable: bool = False, dtype=None):
        super().__init__()
        k = curvature_tensor(k, "k", dtype, learnable)
        if learnable:
            self.k = k
        else:
            self.register_buffer("k", k)
        self.learnable = learnable

    def extra_repr(self) -> str:
        return f"k={float(self.k.detach()):g}, learnable={self.learnable}"

    def _k(self, x: torch.Tensor) -> torch.Tensor:
        return self.k.to(dtype=x.dtype, device=x.device)
