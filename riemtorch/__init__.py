"""riemtorch: deep learning on Riemannian manifolds with PyTorch.

Subpackages: :mod:`riemtorch.linalg` (matrix functions), :mod:`riemtorch.manifolds`,
:mod:`riemtorch.nn` (layers), :mod:`riemtorch.optim` (Riemannian optimizers);
:mod:`riemtorch.config` holds the validation switch and the numerical policy.
"""

from riemtorch import config, linalg
from riemtorch.manifolds import (
    Euclidean,
    Grassmann,
    Lorentz,
    Manifold,
    PoincareBall,
    SPDAffineInvariant,
    SPDBuresWasserstein,
    SPDGeneralizedBuresWasserstein,
    SPDLogCholesky,
    SPDLogEuclidean,
    Sphere,
    Stereographic,
    Stiefel,
)
from riemtorch.parameter import ManifoldParameter
from riemtorch import nn, optim  # noqa: E402  (they import the manifolds above)

__version__ = "0.1.0"

__all__ = [
    "config", "linalg", "nn", "optim", "Manifold", "ManifoldParameter",
    "Euclidean", "Sphere", "Stiefel", "Grassmann", "Stereographic", "PoincareBall", "Lorentz",
    "SPDAffineInvariant", "SPDLogEuclidean", "SPDLogCholesky", "SPDBuresWasserstein",
    "SPDGeneralizedBuresWasserstein",
]
