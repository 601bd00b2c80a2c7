"""Manifolds: each answers the same verbs (see :class:`riemtorch.manifolds.Manifold`)."""

from riemtorch.manifolds.base import Manifold
from riemtorch.manifolds.euclidean import Euclidean
from riemtorch.manifolds.sphere import Sphere

__all__ = ["Manifold", "Euclidean", "Sphere"]
