"""Manifolds: each answers the same verbs (see :class:`riemtorch.manifolds.Manifold`)."""

from riemtorch.manifolds.base import Manifold
from riemtorch.manifolds.euclidean import Euclidean
from riemtorch.manifolds.grassmann import Grassmann
from riemtorch.manifolds.lorentz import Lorentz
from riemtorch.manifolds.spd import (
    SPDAffineInvariant,
    SPDBuresWasserstein,
    SPDGeneralizedBuresWasserstein,
    SPDLogCholesky,
    SPDLogEuclidean,
)
from riemtorch.manifolds.sphere import Sphere
from riemtorch.manifolds.stereographic import PoincareBall, Stereographic
from riemtorch.manifolds.stiefel import Stiefel

__all__ = [
    "Manifold", "Euclidean", "Sphere", "Stiefel", "Grassmann", "Stereographic", "PoincareBall",
    "Lorentz", "SPDAffineInvariant", "SPDLogEuclidean", "SPDLogCholesky", "SPDBuresWasserstein",
    "SPDGeneralizedBuresWasserstein",
]
