"""Layers on manifolds; stateless versions in :mod:`riemtorch.nn.functional`."""

from riemtorch.nn import functional
from riemtorch.nn.batchnorm import GyroBatchNorm, RiemannianBatchNorm
from riemtorch.nn.grassmann import Orthonormalize, Projector, SubspaceClassifier
from riemtorch.nn.hyperbolic import ExpMap0, LogMap0, LorentzLinear, PoincareMLR
from riemtorch.nn.spd_batchnorm import SPDBatchNorm
from riemtorch.nn.spd import BiMap, CovPool, ExpEig, LogEig, PowEig, ReEig, Vech
from riemtorch.nn.sync import convert_sync_batchnorm

__all__ = [
    "functional", "BiMap", "CovPool", "ExpEig", "LogEig", "PowEig", "ReEig", "Vech",
    "RiemannianBatchNorm", "GyroBatchNorm", "SPDBatchNorm", "convert_sync_batchnorm",
    "SubspaceClassifier", "Orthonormalize", "Projector",
    "ExpMap0", "LogMap0", "LorentzLinear", "PoincareMLR",
]
