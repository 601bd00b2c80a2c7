"""riemtorch: deep learning on Riemannian manifolds with PyTorch."""

from riemtorch import config, linalg
from riemtorch.manifolds import Euclidean, Manifold, Sphere
from riemtorch.manifolds import Lorentz, PoincareBall, Stereographic
from riemtorch.manifolds import Grassmann, Stiefel
from riemtorch.manifolds import (SPDAffineInvariant, SPDBuresWasserstein,
                                  SPDGeneralizedBuresWasserstein, SPDLogCholesky, SPDLogEuclidean)
from riemtorch.parameter import ManifoldParameter
from riemtorch import optim

__version__ = "0.1.0"

__all__ = ["config", "linalg", "optim", "Manifold", "ManifoldParameter", "Euclidean", "Sphere",
           "Stiefel", "Grassmann"]
__all__ += ["Stereographic", "PoincareBall", "Lorentz"]
__all__ += ["SPDAffineInvariant", "SPDLogEuclidean", "SPDLogCholesky", "SPDBuresWasserstein",
            "SPDGeneralizedBuresWasserstein"]
