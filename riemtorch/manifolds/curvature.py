"""Curvature as module state, shared by the constant-curvature manifolds."""

import numbers

import torch
from torch import nn

from riemtorch.manifolds.base import Manifold


def curvature_tensor(value, name: str, dtype):
    """A 0-dim curvature tensor of its own from a number or tensor (float64 unless ``dtype``
    says else): a tensor given is copied, so that training the manifold's curvature leaves it,
    and other manifolds made from it, unchanged."""
    # True is a number to Python (and a bool tensor casts to 1.0): never a curvature
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be a real number or a float tensor, got {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        t = value.detach().reshape(()).to(dtype or torch.float64, copy=True)
    elif isinstance(value, numbers.Real):
        t = torch.tensor(float(value), dtype=dtype or torch.float64)
    else:
        raise TypeError(f"{name} must be a real number or a tensor, got {type(value).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} needs a floating dtype, got {t.dtype}")
    if not bool(torch.isfinite(t)):
        raise ValueError(f"{name} must be finite, got {float(t)}")
    return t


class ConstantCurvature(Manifold):
    """A manifold with one curvature parameter ``k``: learnable or a buffer, stored in float64
    unless ``dtype`` says otherwise and cast to the dtype of the points at each use (so float64
    work sees the exact value).

    Where the model needs a fixed sign of ``k`` (``curvature_sign`` of the class), a learnable
    curvature is trained as ``log_abs_k``, the ``nn.Parameter`` ``log|k|``, and ``k`` reads
    ``sign * exp(log_abs_k)`` (a tensor with gradients): no optimizer step can reach ``k = 0``
    or cross it, and a step scales ``|k|``. Otherwise a learnable ``k`` is itself the
    ``nn.Parameter``.
    """

    # the ball's radius and the hyperboloid move with k: optimizers project the points after
    # stepping a learnable k (riemtorch.optim)
    points_follow_parameters = True
    # +1 or -1 where the model needs that sign of k, 0 where k may take any value
    curvature_sign = 0

    def __init__(self, k, learnable: bool = False, dtype=None):
        super().__init__()
        k = curvature_tensor(k, "k", dtype)
        if learnable and self.curvature_sign:
            self.log_abs_k = nn.Parameter((self.curvature_sign * k).log())
        elif learnable:
            self.k = nn.Parameter(k)
        else:
            self.register_buffer("k", k)
        self.learnable = learnable

    def __getattr__(self, name: str):
        if name == "k" and "log_abs_k" in self.__dict__.get("_parameters", ()):
            return self.curvature_sign * self._parameters["log_abs_k"].exp()
        return super().__getattr__(name)

    def extra_repr(self) -> str:
        return f"k={float(self.k.detach()):g}, learnable={self.learnable}"

    def _k(self, x: torch.Tensor) -> torch.Tensor:
        return self.k.to(dtype=x.dtype, device=x.device)
