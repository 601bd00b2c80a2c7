"""Manifolds: each answers the same verbs (see :class:`riemtorch.manifolds.Manifold`)."""

from riemtorch.manifolds.base import Manifold
from riemtorch.manifolds.euclidean import Euclidean
from riemtorch.manifolds.sphere import Sphere
from riemtorch.manifolds.stereographic import PoincareBall, Stereographic
from riemtorch.manifolds.lorentz import Lorentz
from riemtorch.manifolds.stiefel import Stiefel
from riemtorch.manifolds.grassmann import Grassmann

__all__ = ["Manifold", "Euclidean", "Sphere", "Stiefel", "Grassmann"]
__all__ += ["Stereographic", "PoincareBall", "Lorentz"]
from riemtorch.manifolds.spd import (
    SPDAffineInvariant,
    SPDBuresWasserstein,
    SPDGeneralizedBuresWasserstein,
    SPDLogCholesky,
    SPDLogEuclidean,
)

__all__ += ["SPDAffineInvariant", "SPDLogEuclidean", "SPDLogCholesky", "SPDBuresWasserstein",
            "SPDGeneralizedBuresWasserstein"]
