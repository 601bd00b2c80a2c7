"""Layers on manifolds; stateless versions in :mod:`riemtorch.nn.functional`."""

from riemtorch.nn import functional
from riemtorch.nn.spd import BiMap, CovPool, ExpEig, LogEig, PowEig, ReEig, Vech

__all__ = ["functional", "BiMap", "CovPool", "ExpEig", "LogEig", "PowEig", "ReEig", "Vech"]
