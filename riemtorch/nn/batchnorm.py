"""Riemannian batch normalisation: one algorithm for every geometry.

Training: ``mu`` = Fréchet mean of the batch, ``v`` = Fréchet variance around ``mu``. Each sample
is centred at the origin, its dispersion scaled by ``s / sqrt(v + eps)``, and moved to the
learnable bias ``B``:

* transport form (default): ``y = Exp_B(PT_{O->B}(t * PT_{mu->O}(Log_mu x)))`` using the
  manifold's :meth:`~riemtorch.manifolds.Manifold.center` / ``uncenter``;
* gyro form (``gyro=True``): ``y = B ⊕ (t ⊗ (⊖mu ⊕ x))`` on a gyrogroup (GyroBN).

Running statistics: ``mu_run <- geodesic(mu_run, mu, momentum)``,
``v_run <- (1 - momentum) v_run + momentum v``; registered buffers, used in eval mode.

With validation on (:mod:`riemtorch.config`), the manifold operations check the input samples;
the steps that see only values the layer made (the centred samples, the statistics, the bias)
run without value checks. Those would compare rounding with rounding where a batch has no
spread: the centred samples of identical matrices are zero up to rounding, so the relative
symmetry check of a tangent vector fails on them.

On a manifold whose points move with its learnable parameters (a learnable curvature, see
:attr:`~riemtorch.manifolds.Manifold.points_follow_parameters`), the running mean, and the bias
when it is not learned, are projected onto the current manifold (``projx``) where they are used:
they were made for the geometry of an earlier step. A learned bias is projected by the
optimizers of :mod:`riemtorch.optim` after they step the geometry.

On SPD manifolds the whole normalisation (statistics, centring, scaling, moving to the bias)
runs in the working dtype of the numerical policy (:mod:`riemtorch.config`; float64 for float32
input) and is rounded once at the end. The manifolds compute each operation in that dtype
anyway; rounding between the operations would lose the small eigenvalues of the centred samples
(their condition number reaches the product of those of the samples and the mean).
"""

import contextlib
import functools
import math
import numbers
from typing import Optional, Sequence

import torch
from torch import nn

from riemtorch import config
from riemtorch.linalg.checks import check_floating_tensor, check_positive_int
from riemtorch.manifolds.base import Manifold, default_mean_tolerance
from riemtorch.manifolds.spd import common as spd_common
from riemtorch.manifolds.spd.base import SPDManifold
from riemtorch.nn.sync import gather_batch
from riemtorch.parameter import ManifoldParameter


def _outside_compiled_graphs(fn):
    """``fn`` run eagerly under ``torch.compile`` (``torch.compiler.disable``), with the disabled
    version made on the first compiled call: the decorator imports ``torch._dynamo``, which
    takes about a second, a cost that eager users should not pay when importing riemtorch."""
    disabled = []

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not config.compiling():
            return fn(*args, **kwargs)
        if not disabled:
            disabled.append(torch.compiler.disable(fn))
        return disabled[0](*args, **kwargs)

    return call


def _unchecked():
    """Context in which manifold operations skip their value checks, for the steps of a forward
    pass that see only values the layer made (a no-op where checks are off anyway)."""
    if not config.validating():
        return contextlib.nullcontext()
    return config.override(validate=False)


class RiemannianBatchNorm(nn.Module):
    """Batch normalisation of manifold-valued samples.

    Parameters
    ----------
    manifold : Manifold
        The geometry (registered as a submodule, so learnable metric parameters train with the
        layer and move with ``.to()``).
    shape : sequence of int
        Shape of one sample: optional channel dimensions followed by the point shape, e.g.
        ``(n, n)`` or ``(channels, n, n)`` (ints >= 1). Statistics are per channel.
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
        Iteration cap of the batch Fréchet mean, an int >= 1 (``None``: the solver's default,
        run to tolerance); 1 gives the one-step approximations of the literature. Under the
        affine-invariant metric one step is a Newton step (a Karcher flow step with the
        manifold's ``mean_method="flow"``), and the gradient is that of the exact mean,
        evaluated at the estimate and solved to the estimate's own accuracy.
    track_running_stats : bool
        As in ``torch.nn.BatchNorm``: when ``False`` batch statistics are used in eval mode too.
    """

    def __init__(self, manifold: Manifold, shape: Sequence[int], momentum: float = 0.1,
                 eps: float = 1e-5, normalize_variance: bool = True, learn_scale: bool = True,
                 learn_bias: bool = True, gyro: bool = False, mean_iters: Optional[int] = None,
                 track_running_stats: bool = True, dtype=None, device=None):
        super().__init__()
        if momentum is None or isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise TypeError(f"momentum must be a number in [0, 1], got {momentum!r} (the cumulative "
                            "average that torch's batch norms take for None is not supported)")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= eps < math.inf:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        if gyro and not hasattr(manifold, "gyroadd"):
            raise ValueError(f"{manifold!r} has no gyro structure; use gyro=False")
        if mean_iters is not None:
            mean_iters = check_positive_int(mean_iters, "mean_iters")
        self.manifold = manifold
        self.shape = tuple(check_positive_int(s, f"shape[{i}]") for i, s in enumerate(shape))
        if len(self.shape) < manifold.ndim:
            raise ValueError(f"shape {self.shape} has fewer than {manifold.ndim} point dimensions")
        self.channels = self.shape[: len(self.shape) - manifold.ndim]
        self.momentum, self.eps = float(momentum), float(eps)
        self.normalize_variance, self.gyro = normalize_variance, gyro
        self.mean_iters, self.track_running_stats = mean_iters, track_running_stats
        # Set by riemtorch.nn.convert_sync_batchnorm: statistics over all ranks in training.
        self.sync, self.process_group = False, None
        # detached: the origin of a manifold with a learnable curvature depends on it, and a
        # buffer attached to that graph cannot be deep-copied
        origin = manifold.origin_like(torch.zeros(self.shape, dtype=dtype, device=device)).detach()
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
        check_floating_tensor(x)
        dtype, (xs,) = self._promote(x)
        mean = self._batch_mean(xs, dtype)
        return mean.to(dtype), self._variance(self._centre(xs, mean)).to(dtype)

    def normalize(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` with given statistics (the common step of train and eval)."""
        check_floating_tensor(x)
        dtype, (xs, mean, var) = self._promote(x, mean, var)
        return self._finish(self._centre(xs, mean), var).to(dtype)

    def _promote(self, *tensors: torch.Tensor):
        """The dtype of the result (that of ``tensors`` and the parameters) and ``tensors`` in
        the dtype the layer computes in: the working dtype on SPD manifolds (see the module
        docstring), unchanged elsewhere."""
        if isinstance(self.manifold, SPDManifold):
            dtype, promoted = spd_common.promote(self.scale, *tensors)
            return dtype, promoted[1:]
        return functools.reduce(torch.promote_types, [t.dtype for t in tensors],
                                self.scale.dtype), list(tensors)

    def _batch_mean(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Batch mean of ``x``: on SPD manifolds (``x`` promoted) to the tolerance of the
        result's ``dtype``, with the implicit backward solved to that dtype's accuracy,
        elsewhere to the tolerance of ``x`` itself (a float32 iteration cannot reach float64's
        tolerance)."""
        max_iter = 100 if self.mean_iters is None else self.mean_iters
        if isinstance(self.manifold, SPDManifold):
            return self.manifold.working_mean(x, spd_common.uniform_weights(x),
                                              default_mean_tolerance(dtype), max_iter, dtype)
        return self.manifold.frechet_mean(x, dim=0, max_iter=max_iter)

    def _centre(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Samples moved to the origin: points ``⊖mu ⊕ x`` (gyro) or tangent vectors at the
        origin (transport)."""
        m, mean = self.manifold, mean.unsqueeze(0)
        if self.gyro:
            return m.gyroadd(m.gyroinv(mean), x)
        return m.center(x, mean)

    def _variance(self, centred: torch.Tensor) -> torch.Tensor:
        """Fréchet variance from the centred samples. Centring is an isometry (a left gyro
        translation, or parallel transport), so squared distances to the mean are squared
        distances (gyro) or squared norms (transport) at the origin: no second pass over the
        batch is needed."""
        m = self.manifold
        with _unchecked():
            origin = m.origin_like(centred)
            sq = m.dist2(origin, centred) if self.gyro else m.inner(origin, centred)
        return sq.mean(0)

    def _finish(self, centred: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Scale the dispersion and move to the bias; with validation on, ``ValueError`` where
        that leaves the range of the dtype (a dispersion scaled far beyond the manifold's
        curvature radius)."""
        m = self.manifold
        scale = self.scale.to(centred.dtype)
        bias = self.bias if self.bias.requires_grad else self._on_manifold(self.bias)
        bias = bias.to(centred.dtype)
        factor = scale / (var + self.eps).sqrt() if self.normalize_variance else None
        with _unchecked():
            if self.gyro:
                if factor is not None:
                    batch = centred.shape[: centred.dim() - m.ndim]
                    centred = m.gyroscalarmul(factor.expand(batch), centred)
                out = m.gyroadd(bias, centred)
            else:
                if factor is not None:
                    centred = m.scale_tangent(factor, centred)
                out = m.uncenter(centred, bias)
        if config.validating() and not bool(torch.isfinite(out).all()):
            wider = ", or work in float64" if out.dtype != torch.float64 else ""
            raise ValueError(
                f"the normalised batch is not finite in {out.dtype} on {m!r}: the target "
                f"dispersion (scale) is too large for the curvature; lower the scale or the "
                f"curvature's magnitude{wider}")
        return out

    def _on_manifold(self, point: torch.Tensor) -> torch.Tensor:
        """``point`` (the running mean, a bias that is not learned) projected onto the manifold
        as it is now, where its points move with learnable parameters; ``point`` itself
        elsewhere."""
        m = self.manifold
        if not (m.points_follow_parameters and any(q.requires_grad for q in m.parameters())):
            return point
        with _unchecked():
            return m.projx(point)

    # Kept out of compiled graphs: AOT autograd (torch 2.13) drops the batch-variance term of
    # this in-place buffer update, leaving running_var at (1 - momentum) * running_var.
    @_outside_compiled_graphs
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, hint=None) -> None:
        with torch.no_grad(), _unchecked():
            self.running_mean.copy_(self._running_mean_step(mean, hint))
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)

    def _running_mean_step(self, mean: torch.Tensor, hint) -> torch.Tensor:
        """The running mean moved toward the batch ``mean`` by ``momentum`` along their
        geodesic; ``hint`` is what a subclass's normalisation passed along to make that cheaper
        (unused here)."""
        return self.manifold.geodesic(self._on_manifold(self.running_mean), mean, self.momentum)

    def _uses_batch_statistics(self, x: torch.Tensor) -> bool:
        """Check the input's type (floating point under every metric and manifold: some would
        compute on integers, others fail deep inside; half precision is promoted with the
        parameters, as under autocast) and shape; whether this call normalises with batch
        statistics."""
        check_floating_tensor(x)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected input of shape (batch, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")
        if not (self.training or not self.track_running_stats):
            return False
        if not (self.training and self.sync):
            self._check_batch_size(x.shape[0])
        return True

    def _check_batch_size(self, size: int) -> None:
        """Batch statistics need two samples or more per batch (in training, and in eval mode
        without running statistics, as ``torch.nn.BatchNorm``): in this process, or over all
        ranks when the statistics are synchronised (as ``torch.nn.SyncBatchNorm``; every rank
        sees the same global size, so all of them raise together)."""
        if size < 2:
            where = "over all ranks" if self.sync and self.training else "per batch"
            raise ValueError(f"batch normalisation with batch statistics needs more than one "
                             f"sample {where}, got {size}")

    def _check_batch(self, x: torch.Tensor) -> None:
        """Value checks of the samples whose batch mean is about to be taken; none here: the
        manifold's Fréchet mean checks its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._uses_batch_statistics(x):
            return self.normalize(x, self._on_manifold(self.running_mean), self.running_var)
        dtype, (xs,) = self._promote(x)
        sync = self.sync and self.training
        batch = gather_batch(xs, self.process_group) if sync else xs
        if sync:
            self._check_batch_size(batch.shape[0])
        # after gathering: every rank sees the same samples and raises with the others
        self._check_batch(batch)
        mean = self._batch_mean(batch, dtype)
        centred = self._centre(batch, mean)
        var = self._variance(centred)
        if sync:  # the statistics are global; normalise this rank's samples only
            centred = self._centre(xs, mean)
        if self.training and self.track_running_stats:
            self._update_running(mean.detach(), var.detach())
        return self._finish(centred, var).to(dtype)


class GyroBatchNorm(RiemannianBatchNorm):
    """GyroBN (Chen et al., 2025): :class:`RiemannianBatchNorm` with ``gyro=True``, for any
    manifold with a gyro structure (stereographic / Poincaré, Lorentz, Grassmann, SPD under the
    affine-invariant, log-Euclidean and log-Cholesky metrics).

    On the hyperbolic manifolds the gyro addition clips at the farthest point the dtype
    resolves, in curvature radii from the origin: the Poincaré ball at its margin (about 12 in
    float32, 24 in float64), the hyperboloid at about 17 and 37. A target dispersion
    ``scale`` that carries samples beyond is not reached; keep ``scale`` well inside that
    radius, or work in float64."""

    def __init__(self, manifold: Manifold, shape: Sequence[int], **kwargs):
        super().__init__(manifold, shape, gyro=True, **kwargs)
