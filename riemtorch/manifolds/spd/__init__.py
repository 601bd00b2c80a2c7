"""SPD matrices with five Riemannian metrics.

=====================================  ============================================
:class:`SPDAffineInvariant`            affine-invariant (AIM); gyro; ``power``
:class:`SPDLogEuclidean`               log-Euclidean (LEM); gyro
:class:`SPDLogCholesky`                log-Cholesky (LCM); gyro; ``power``
:class:`SPDBuresWasserstein`           Bures-Wasserstein (BWM); ``power``
:class:`SPDGeneralizedBuresWasserstein`  generalized BW with SPD ``M``; ``power``
=====================================  ============================================

The power deformation and its log-Euclidean limit are described in
:mod:`riemtorch.manifolds.spd.base`; float32 handling in :mod:`riemtorch.manifolds.spd.common`.
"""

from riemtorch.manifolds.spd.aim import SPDAffineInvariant
from riemtorch.manifolds.spd.base import GyroSPDManifold, SPDManifold
from riemtorch.manifolds.spd.bw import SPDBuresWasserstein
from riemtorch.manifolds.spd.gbw import SPDGeneralizedBuresWasserstein
from riemtorch.manifolds.spd.lcm import SPDLogCholesky
from riemtorch.manifolds.spd.lem import SPDLogEuclidean

__all__ = [
    "GyroSPDManifold",
    "SPDAffineInvariant",
    "SPDBuresWasserstein",
    "SPDGeneralizedBuresWasserstein",
    "SPDLogCholesky",
    "SPDLogEuclidean",
    "SPDManifold",
]
