"""Batch normalisation of SPD matrices under the five metrics of :mod:`riemtorch.manifolds.spd`."""

from typing import Optional, Sequence

import torch

from riemtorch.linalg.checks import check_positive_int
from riemtorch.manifolds.base import default_mean_tolerance
from riemtorch.manifolds.spd import (
    SPDAffineInvariant,
    SPDBuresWasserstein,
    SPDGeneralizedBuresWasserstein,
    SPDLogCholesky,
    SPDLogEuclidean,
)
from riemtorch.manifolds.spd import common
from riemtorch.nn.aim_normalize import aim_normalize, running_mean_step
from riemtorch.nn.batchnorm import RiemannianBatchNorm

METRICS = ("aim", "lem", "lcm", "bw", "gbw")


def spd_metric(metric: str, n: int, power: float = 1.0, metric_matrix=None,
               learn_metric: bool = False, sqrtm_method: str = "eigh", dtype=None, device=None,
               mean_method: str = "newton"):
    """The SPD manifold for a metric name: ``"aim"``, ``"lem"``, ``"lcm"``, ``"bw"`` or ``"gbw"``
    (``metric_matrix`` is the GBW matrix ``M``, the identity by default; ``sqrtm_method``
    chooses how BW and GBW take matrix square roots, ``mean_method`` the steps of the AIM
    mean)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if metric != "gbw" and (metric_matrix is not None or learn_metric):
        raise ValueError("metric_matrix and learn_metric apply to metric='gbw' only")
    if metric not in ("bw", "gbw") and sqrtm_method != "eigh":
        raise ValueError("sqrtm_method applies to metric='bw' and metric='gbw' only")
    if metric != "aim" and mean_method != "newton":
        raise ValueError("mean_method applies to metric='aim' only")
    if metric == "lem":
        if power != 1.0:
            raise ValueError("the log-Euclidean metric has no power deformation (it is the limit)")
        return SPDLogEuclidean()
    if metric == "gbw":
        if metric_matrix is None:
            metric_matrix = torch.eye(n, dtype=dtype or torch.get_default_dtype(), device=device)
        return SPDGeneralizedBuresWasserstein(metric_matrix, power=power, learnable=learn_metric,
                                              sqrtm_method=sqrtm_method)
    if metric == "bw":
        return SPDBuresWasserstein(power, sqrtm_method=sqrtm_method)
    if metric == "aim":
        return SPDAffineInvariant(power, mean_method=mean_method)
    return SPDLogCholesky(power)


class SPDBatchNorm(RiemannianBatchNorm):
    """Riemannian batch normalisation of SPD matrices ``(batch, *channels, n, n)``.

    The algorithm is :class:`~riemtorch.nn.RiemannianBatchNorm` on the chosen metric: the batch
    Fréchet mean ``mu`` and variance ``v`` (around ``mu``), centring at the identity, scaling by
    ``s / sqrt(v + eps)`` and moving to the learnable SPD bias ``B``.

    Published variants reached by options:

    * SPDNetBN (Brooks et al., 2019): ``metric="aim", normalize_variance=False``;
    * SPDDSMBN (Kobler et al., 2022): ``metric="aim"`` (one layer per domain);
    * LieBN (Chen et al., 2024): ``metric`` in ``"aim"``, ``"lem"``, ``"lcm"`` with ``power``
      (``gyro=True`` gives the group translations; under AIM and LCM they give the same
      statistics and outputs as the transport form up to rounding);
    * GBWBN (Wang et al., 2025): ``metric="gbw", learn_metric=True`` with ``power``; unlike
      the published code, the variance is measured around the batch mean.

    Under BW and GBW the exponential map inverts the logarithm only inside a domain: at the
    identity, ``Exp_I(V) = (I + V/2)^2`` gives back the sample whose ``Log_I`` is ``V`` only
    while ``I + V/2`` is positive definite. Scaling by ``t = s / sqrt(v + eps) > 1`` can carry a
    centred sample's ``V`` out of that domain (a sample much smaller than the mean, in some
    direction, with a batch variance below ``s^2``); the output is still SPD, but the batch's
    mean is then not exactly ``B`` nor its variance ``s^2`` (16 samples of 4 x 4 at unit
    scale: off by up to 5e-2). AIM, LEM and LCM are geodesically complete and have no such
    limit.

    Parameters
    ----------
    n : int
        Matrix size.
    metric : {"aim", "lem", "lcm", "bw", "gbw"}
    power : float
        Power deformation ``theta`` (``X -> X^theta``, distances divided by ``theta``; 0 is the
        log-Euclidean limit) for AIM, LCM, BW and GBW.
    channels : sequence of int
        Channel dimensions between batch and matrix; statistics are per channel.
    metric_matrix : torch.Tensor, optional
        GBW's SPD matrix ``M`` (default identity).
    learn_metric : bool
        Learn ``M`` (a manifold parameter under the affine-invariant metric).
    sqrtm_method : {"eigh", "newton_schulz"}
        For BW and GBW: matrix square roots by ``eigh`` or by Newton-Schulz iterations (matrix
        products only; accuracy in :mod:`riemtorch.linalg.newton_schulz`). ``eigh`` is
        faster on CPUs, and also in the GPU benchmark of a BW batch norm on an H100 (256
        matrices of 64 x 64, forward + backward: Newton-Schulz takes 1.07x the time of
        ``eigh`` in float32, 1.54x in float64; ``BENCHMARKS_GPU.md``).
    mean_method : {"newton", "flow"}
        For AIM: the batch mean by Riemannian Newton steps or by Karcher flow steps (see
        :class:`~riemtorch.SPDAffineInvariant`). With ``mean_iters=1`` a flow step skips the
        Newton step's Hessian solve (on 64 matrices of 20 x 20, about 7 % of an SPDNet training
        step) and lands about ``1e-2`` from the mean instead of ``6e-6`` (``benchmarks/layers.py``).
    **kwargs
        ``momentum``, ``eps``, ``normalize_variance``, ``learn_scale``, ``learn_bias``, ``gyro``,
        ``mean_iters``, ``track_running_stats``, ``dtype``, ``device`` as in
        :class:`~riemtorch.nn.RiemannianBatchNorm`.

    Examples
    --------
    >>> import torch, riemtorch
    >>> bn = riemtorch.nn.SPDBatchNorm(4, metric="bw", dtype=torch.float64)
    >>> x = riemtorch.SPDAffineInvariant().random(16, n=4, dtype=torch.float64)
    >>> bn(x).shape
    torch.Size([16, 4, 4])
    """

    def __init__(self, n: int, metric: str = "aim", power: float = 1.0,
                 channels: Sequence[int] = (), metric_matrix: Optional[torch.Tensor] = None,
                 learn_metric: bool = False, sqrtm_method: str = "eigh", dtype=None, device=None,
                 mean_method: str = "newton", **kwargs):
        n = check_positive_int(n, "n")  # before the manifold, whose GBW matrix has size n
        channels = tuple(check_positive_int(c, f"channels[{i}]") for i, c in enumerate(channels))
        manifold = spd_metric(metric, n, power, metric_matrix, learn_metric, sqrtm_method, dtype,
                              device, mean_method)
        super().__init__(manifold, channels + (n, n), dtype=dtype, device=device, **kwargs)
        self.metric = metric

    def extra_repr(self) -> str:
        return f"metric={self.metric!r}, " + super().extra_repr()

    def _fused(self) -> bool:
        """Whether the affine-invariant transport form runs fused
        (:mod:`riemtorch.nn.aim_normalize`): same outputs, one ``eigh`` of the centred samples
        instead of three, no ``eigh`` in the backward pass."""
        return (self.metric == "aim" and self.manifold.power == 1 and not self.gyro
                and not (self.sync and self.training))

    def _running_mean_step(self, mean: torch.Tensor, hint) -> torch.Tensor:
        """With the roots of the batch mean from the fused affine-invariant normalisation
        (``hint``), :func:`~riemtorch.nn.aim_normalize.running_mean_step`."""
        if hint is None:
            return super()._running_mean_step(mean, hint)
        root, inv_root = hint
        running = self.running_mean.to(root.dtype)
        return running_mean_step(running, root, inv_root, self.momentum).to(mean.dtype)

    def _check_batch(self, x: torch.Tensor) -> None:
        """With validation on, ``ValueError`` unless ``x`` holds symmetric matrices with finite
        entries: the batch means take their samples unchecked, and a NaN would reach ``eigh``
        as a LAPACK error. The same check for every metric (the fused form also runs it on
        its input in eval mode)."""
        common.check_matrices(x, "input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fused():
            return super().forward(x)
        batch_stats = self._uses_batch_statistics(x)
        if x.shape[0] == 0:
            # (eval mode with running statistics: batch statistics need two samples) the
            # generic form maps an empty batch to an empty output; the fused one would divide
            # by its size
            return super().forward(x)
        self._check_batch(x)
        dtype, (xs, scale) = common.promote(x, self.scale)
        options = dict(eps=self.eps, tol=default_mean_tolerance(dtype),
                       max_iter=100 if self.mean_iters is None else self.mean_iters,
                       normalize=self.normalize_variance, input_dtype=x.dtype,
                       method=self.manifold.mean_method)
        root = common.sqrtm(self.bias.to(xs.dtype))
        if batch_stats:
            y, mean, var, *mean_roots = aim_normalize(xs, scale, root, **options)
            if self.training and self.track_running_stats:
                self._update_running(mean.to(dtype), var.to(dtype), mean_roots)
        else:
            y = aim_normalize(xs, scale, root, self.running_mean.to(xs.dtype),
                              self.running_var.to(xs.dtype), **options)[0]
        return y.to(dtype)
