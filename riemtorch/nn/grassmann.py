"""Grassmann layers: class subspaces as a classification head, and the orthonormalisation and
projection maps of GrNet (Huang et al., 2018)."""

import math

import torch
from torch import nn

from riemtorch.linalg.checks import check_positive_int, check_positive_number
from riemtorch.nn import functional as F
from riemtorch.parameter import ManifoldParameter


class SubspaceClassifier(nn.Module):
    """Logit of class ``k``: ``scale * |S_k^T x / |x||``, the cosine of the angle between the
    feature ``x`` and a learnable subspace ``span(S_k)``.

    Each ``S_k`` is an orthonormal ``(in_features, subspace_dim)`` basis, a point of the
    Grassmann manifold (stored as one :class:`~riemtorch.ManifoldParameter` of shape
    ``(num_classes, in_features, subspace_dim)``), so the logit depends only on the subspace.

    Parameters
    ----------
    in_features, num_classes, subspace_dim : int
    scale : float
        Initial ``scale`` (a temperature, finite and positive; cosines lie in ``[0, 1]``).
    learn_scale : bool
    """

    def __init__(self, in_features: int, num_classes: int, subspace_dim: int = 1,
                 scale: float = 10.0, learn_scale: bool = True, dtype=None, device=None):
        super().__init__()
        from riemtorch.manifolds import Grassmann

        in_features = check_positive_int(in_features, "in_features")
        num_classes = check_positive_int(num_classes, "num_classes")
        subspace_dim = check_positive_int(subspace_dim, "subspace_dim")
        if subspace_dim > in_features:
            raise ValueError(f"subspace_dim must be in [1, {in_features}], got {subspace_dim}")
        scale = check_positive_number(scale, "scale")
        self.grassmann = Grassmann()
        self.subspaces = ManifoldParameter(
            torch.empty(num_classes, in_features, subspace_dim, dtype=dtype, device=device),
            self.grassmann, check=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale), dtype=dtype, device=device),
                                      requires_grad=learn_scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniformly random subspaces."""
        k, n, p = self.subspaces.shape
        with torch.no_grad():
            self.subspaces.copy_(self.grassmann.random(k, n=n, p=p, dtype=self.subspaces.dtype,
                                                       device=self.subspaces.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(..., num_classes)`` of features ``(..., in_features)``."""
        if x.shape[-1] != self.subspaces.shape[1]:
            raise ValueError(f"expected features of size {self.subspaces.shape[1]}, "
                             f"got input of shape {tuple(x.shape)}")
        return F.subspace_logits(x, self.subspaces, self.log_scale.exp())


class Orthonormalize(nn.Module):
    """Orthonormal basis ``Q`` of the column space of ``(..., n, p)`` full-rank matrices, from a
    QR decomposition with the signs fixed so ``R`` has a positive diagonal (the ReOrth layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.orthonormalize(x)


class Projector(nn.Module):
    """Orthonormal bases ``(..., n, p)`` to projection matrices ``X X^T`` (the ProjMap layer),
    the embedding in which a Grassmann point has a unique representation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.projector(x)
