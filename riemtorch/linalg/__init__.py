"""Batched functions of symmetric matrices with exact, stable backward passes.

All functions take ``(..., n, n)`` tensors, float32 or float64, and follow the numerical policy
of :mod:`riemtorch.config`.
"""

from riemtorch.linalg.lyapunov import (
    generalized_eigvalsh,
    lyapunov_in_eigenbasis,
    solve_lyapunov,
    solve_sylvester,
)
from riemtorch.linalg.newton_schulz import sqrtm_invsqrtm_newton_schulz
from riemtorch.linalg.spectral import SpectralFunction
from riemtorch.linalg.symmetric import (
    apply_spectral,
    clamp_eigenvalues,
    eigh,
    expm,
    invsqrtm,
    logm,
    powm,
    sqrtm,
    sqrtm_invsqrtm,
    sym,
    sym_funcm,
)

__all__ = [
    "SpectralFunction",
    "apply_spectral",
    "clamp_eigenvalues",
    "eigh",
    "expm",
    "generalized_eigvalsh",
    "invsqrtm",
    "logm",
    "lyapunov_in_eigenbasis",
    "powm",
    "solve_lyapunov",
    "solve_sylvester",
    "sqrtm",
    "sqrtm_invsqrtm",
    "sqrtm_invsqrtm_newton_schulz",
    "sym",
    "sym_funcm",
]
