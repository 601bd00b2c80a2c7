"""SPDNet layers (Huang & Van Gool 2017) and covariance pooling."""

import torch
from torch import nn

from riemtorch import linalg
from riemtorch.linalg.checks import (
    check_finite_number,
    check_nonnegative_number,
    check_positive_int,
)
from riemtorch.nn import functional as F
from riemtorch.parameter import ManifoldParameter


class BiMap(nn.Module):
    """``W^T X W``: maps SPD ``(..., n_in, n_in)`` to SPD ``(..., n_out, n_out)``.

    The weight is a :class:`~riemtorch.ManifoldParameter` on the Stiefel manifold (orthonormal
    columns, shape ``(n_in, n_out)``), so a Riemannian optimizer keeps it orthonormal and the
    output SPD. To increase the dimension (``n_out > n_in``) the weight is a square orthogonal
    ``(n_out, n_out)`` matrix and the input is embedded as ``blockdiag(X, I)``.

    Parameters
    ----------
    in_features, out_features : int
        Matrix sizes.
    dtype, device : optional
        Factory keyword arguments as in torch layers. Input of another float dtype is promoted
        with the weight to their common dtype, as in the other SPD layers.

    Examples
    --------
    >>> import torch, riemtorch
    >>> layer = riemtorch.nn.BiMap(8, 4, dtype=torch.float64)
    >>> layer(torch.eye(8, dtype=torch.float64).expand(3, 8, 8)).shape
    torch.Size([3, 4, 4])
    """

    def __init__(self, in_features: int, out_features: int, dtype=None, device=None):
        super().__init__()
        from riemtorch.manifolds import Stiefel

        in_features = check_positive_int(in_features, "in_features")
        out_features = check_positive_int(out_features, "out_features")
        self.in_features, self.out_features = in_features, out_features
        self.stiefel = Stiefel()
        rows = max(in_features, out_features)
        self.weight = ManifoldParameter(
            torch.empty(rows, out_features, dtype=dtype, device=device), self.stiefel, check=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniformly random orthonormal columns."""
        with torch.no_grad():
            self.weight.copy_(self.stiefel.random(n=self.weight.shape[0], p=self.weight.shape[1],
                                                  dtype=self.weight.dtype, device=self.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.in_features
        if x.dim() < 2 or tuple(x.shape[-2:]) != (n, n):
            raise ValueError(f"expected input of shape (batch..., {n}, {n}), got {tuple(x.shape)}")
        return F.bimap(x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class ReEig(nn.Module):
    """Eigenvalue rectification ``U max(Λ, threshold) U^T`` (gradient: Daleckii-Krein)."""

    def __init__(self, threshold: float = 1e-4):
        super().__init__()
        self.threshold = linalg.symmetric.check_threshold(threshold)

    def forward(self, x):
        return F.reeig(x, self.threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:g}"


class LogEig(nn.Module):
    """Matrix logarithm: SPD matrices to the flat space of symmetric matrices."""

    def forward(self, x):
        return F.logeig(x)


class ExpEig(nn.Module):
    """Matrix exponential: symmetric matrices to SPD matrices."""

    def forward(self, x):
        return F.expeig(x)


class PowEig(nn.Module):
    """Matrix power ``X^p`` of SPD matrices; ``p`` is a finite number."""

    def __init__(self, p: float):
        super().__init__()
        self.p = check_finite_number(p, "p")

    def forward(self, x):
        return F.poweig(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class CovPool(nn.Module):
    """Covariance pooling of signals ``(..., channels, time)`` to SPD ``(..., c, c)``.

    See :func:`riemtorch.nn.functional.covariance` for ``shrinkage``, ``trace_normalize`` and
    ``eps``.
    """

    def __init__(self, shrinkage=None, trace_normalize: bool = False, eps: float = 0.0):
        super().__init__()
        self.shrinkage, self.trace_normalize = shrinkage, trace_normalize
        self.eps = check_nonnegative_number(eps, "eps")

    def forward(self, signals):
        return F.covariance(signals, self.shrinkage, self.trace_normalize, self.eps)

    def extra_repr(self) -> str:
        return f"shrinkage={self.shrinkage!r}, trace_normalize={self.trace_normalize}, eps={self.eps:g}"


class Vech(nn.Module):
    """Symmetric ``(..., n, n)`` to ``(..., n(n+1)/2)`` with ``sqrt(2)``-scaled off-diagonals."""

    def forward(self, x):
        return F.vech(x)
