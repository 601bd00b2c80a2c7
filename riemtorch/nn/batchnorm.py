"""Riemannian batch normalisation: one algorithm for every geometry.

Training: ``mu`` = Fréchet mean of the batch, ``v`` = Fréchet variance around ``mu``. Each sample
is centred at the origin, its dispersion scaled by ``s / sqrt(v + eps)``, and moved to the
learnable bias ``B``:

* transport form (default): ``y = Exp_B(PT_{O->B}(t * PT_{mu->O}(Log_mu x)))`` using the
  manifold's :meth:`~riemtorch.manifolds.Manifold.center` / ``uncenter``;
* gyro form (``gyro=True``): ``y = B ⊕ (t ⊗ (⊖mu ⊕ x))`` on a gyrogroup (GyroBN).

Running statistics: ``mu_run <- geodesic(mu_run, mu, momentum)``,
``v_run <- (1 - momentum) v_run + momentum v``; registered buffers, used in eval mode.
"""

from typing import Optional, Sequence

import torch
from torch import nn

from riemtorch.manifolds.base import Manifold
from riemtorch.nn.sync import gather_batch
from riemtorch.parameter import ManifoldParameter


class RiemannianBatchNorm(nn.Module):
    """Batch normalisation of manifold-valued samples.

    Parameters
    ----------
    manifold : Manifold
        The geometry (registered as a submodule, so learnable metric parameters train with the
        layer and move with ``.to()``).
    shape : sequence of int
        Shape of one sample: optional channel dimensions followed by the point shape, e.g.
        ``(n, n)`` or ``(channels, n, n)``. Statistics are per channel.
    momentum : float
        Weight of the batch statistics in the running statistics.
    eps : float
        Added to the variance before the square root.
    normalize_variance : bool
        Scale the dispersion to ``s`` (``False``: centre and bias only, as Brooks et al.'s
        SPDNetBN).
    learn_scale, learn_bias : bool
        Whether ``s`` (a positive scalar per channel, stored as its value) and ``B`` are learned.
    gyro : bool
        Use the gyro operations of the manifold instead of transport.
    mean_iters : int, optional
        Iteration cap of the batch Fréchet mean (``None``: the solver's default, run to
        tolerance); 1 gives the one-step approximations of the literature.
    track_running_stats : bool
        As in ``torch.nn.BatchNorm``: when ``False`` batch statistics are used in eval mode too.
    """

    def __init__(self, manifold: Manifold, shape: Sequence[int], momentum: float = 0.1,
                 eps: float = 1e-5, normalize_variance: bool = True, learn_scale: bool = True,
                 learn_bias: bool = True, gyro: bool = False, mean_iters: Optional[int] = None,
                 track_running_stats: bool = True, dtype=None, device=None):
        super().__init__()
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if gyro and not hasattr(manifold, "gyroadd"):
            raise ValueError(f"{manifold!r} has no gyro structure; use gyro=False")
        self.manifold = manifold
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) < manifold.ndim:
            raise ValueError(f"shape {self.shape} has fewer than {manifold.ndim} point dimensions")
        self.channels = self.shape[: len(self.shape) - manifold.ndim]
        self.momentum, self.eps = float(momentum), float(eps)
        self.normalize_variance, self.gyro = normalize_variance, gyro
        self.mean_iters, self.track_running_stats = mean_iters, track_running_stats
        # Set by riemtorch.nn.convert_sync_batchnorm: statistics over all ranks in training.
        self.sync, self.process_group = False, None
        origin = manifold.origin_like(torch.zeros(self.shape, dtype=dtype, device=device))
        self.bias = ManifoldParameter(origin.clone(), manifold, requires_grad=learn_bias, check=False)
        self.scale = nn.Parameter(torch.ones(self.channels, dtype=origin.dtype, device=origin.device),
                                  requires_grad=learn_scale)
        self.register_buffer("running_mean", origin.clone())
        self.register_buffer("running_var", torch.ones(self.channels, dtype=origin.dtype,
                                                       device=origin.device))

    def reset_parameters(self) -> None:
        """Bias at the origin, scale 1, running statistics at (origin, 1)."""
        with torch.no_grad():
            origin = self.manifold.origin_like(self.running_mean)
            self.bias.copy_(origin)
            self.scale.fill_(1.0)
            self.running_mean.copy_(origin)
            self.running_var.fill_(1.0)

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, momentum={self.momentum}, eps={self.eps}, "
                f"normalize_variance={self.normalize_variance}, gyro={self.gyro}")

    def batch_statistics(self, x: torch.Tensor):
        """Fréchet mean (without the batch dimension) and variance of a batch ``x``."""
        kwargs = {} if self.mean_iters is None else {"max_iter": self.mean_iters}
        mean = self.manifold.frechet_mean(x, dim=0, **kwargs)
        return mean, self.manifold.frechet_variance(x, mean.unsqueeze(0), dim=0)

    def _update_running(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        with torch.no_grad():
            self.running_mean.copy_(self.manifold.geodesic(self.running_mean, mean, self.momentum))
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)

    def normalize(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` with given statistics (the common step of train and eval)."""
        m = self.manifold
        mean = mean.unsqueeze(0)
        factor = self.scale / (var + self.eps).sqrt() if self.normalize_variance else None
        if self.gyro:
            y = m.gyroadd(m.gyroinv(mean), x)
            if factor is not None:
                y = m.gyroscalarmul(factor.expand(x.shape[: x.dim() - m.ndim]), y)
            return m.gyroadd(self.bias, y)
        u = m.center(x, mean)
        if factor is not None:
            u = m.scale_tangent(factor, u)
        return m.uncenter(u, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected input of shape (batch, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")
        if self.training or not self.track_running_stats:
            if x.shape[0] < 2 and self.training:
                raise ValueError("batch normalisation needs more than one sample per batch in training")
            mean, var = self.batch_statistics(
                gather_batch(x, self.process_group) if self.sync and self.training else x)
            if self.training and self.track_running_stats:
                self._update_running(mean.detach(), var.detach())
        else:
            mean, var = self.running_mean, self.running_var
        return self.normalize(x, mean, var)


class GyroBatchNorm(RiemannianBatchNorm):
    """GyroBN (Chen et al., 2025): :class:`RiemannianBatchNorm` with ``gyro=True``, for any
    manifold with a gyro structure (stereographic / Poincaré, Lorentz, Grassmann, SPD under the
    affine-invariant, log-Euclidean and log-Cholesky metrics)."""

    def __init__(self, manifold: Manifold, shape: Sequence[int], **kwargs):
        super().__init__(manifold, shape, gyro=True, **kwargs)
