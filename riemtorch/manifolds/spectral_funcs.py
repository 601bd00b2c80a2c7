"""Scalar functions of eigenvalues and of principal angles used by the Stiefel and Grassmann
formulas.

Each function of eigenvalues is a :class:`riemtorch.linalg.SpectralFunction` (value and
derivative), so that ``apply_spectral`` evaluates it from one ``eigh`` with a Daleckii-Krein
backward that stays finite at repeated eigenvalues (e.g. at ``x = y``, where every principal
angle is zero).

Functions of ``lam >= 0`` (eigenvalues of ``U^T U``, ``r = sqrt(lam)``): ``cos r``,
``sin r / r`` and ``(1 - cos r) / lam``, all entire in ``lam``. A function of ``c = cos theta``
in ``(-1, 1]``, continued analytically above 1: ``theta / sin theta``, accurate up to ``c = 0``
(``theta = pi / 2``), where a function of ``s = sin^2 theta`` could not be evaluated (``1 - s``
cancels: at ``cos theta = 1e-9``, ``s`` rounds to 1 in float64). Arguments are clamped to the
domain, so rounding (``lam = -1e-17``) never produces NaN. :func:`angle_over_sine` takes an
angle as the pair ``(sin, cos)``.
"""

import torch

from riemtorch.linalg.spectral import SpectralFunction

__all__ = [
    "COS_SQRT",
    "SINC_SQRT",
    "VERSINE_SQRT",
    "ACOS_OVER_SIN",
    "angle_over_sine",
]


def _sinc(r: torch.Tensor) -> torch.Tensor:
    """``sin r / r`` (1 at 0)."""
    return torch.sinc(r / torch.pi)


def _sinc_slope(q: torch.Tensor) -> torch.Tensor:
    """``(q cos q - sin q) / q^3``, by its Taylor series where the direct form cancels."""
    q2 = q * q
    series = -1.0 / 3 + q2 / 30 - q2 * q2 / 840 + q2 * q2 * q2 / 45360
    safe = torch.where(q < 0.1, torch.ones_like(q), q)
    direct = (safe * torch.cos(safe) - torch.sin(safe)) / safe**3
    return torch.where(q < 0.1, series, direct)


def _root(lam: torch.Tensor) -> torch.Tensor:
    return lam.clamp_min(0).sqrt()


COS_SQRT = SpectralFunction(
    lambda lam: torch.cos(_root(lam)),
    lambda lam: -0.5 * _sinc(_root(lam)),
)
"""``cos(sqrt(lam))``."""

SINC_SQRT = SpectralFunction(
    lambda lam: _sinc(_root(lam)),
    lambda lam: 0.5 * _sinc_slope(_root(lam)),
)
"""``sin(sqrt(lam)) / sqrt(lam)``."""

VERSINE_SQRT = SpectralFunction(
    lambda lam: 0.5 * _sinc(0.5 * _root(lam)) ** 2,
    lambda lam: _sinc(0.5 * _root(lam)) * _sinc_slope(0.5 * _root(lam)) / 8,
)
"""``(1 - cos(sqrt(lam))) / lam`` (``1/2`` at 0), written as ``sinc(r/2)^2 / 2``."""


def angle_over_sine(sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """``theta / sin theta`` with ``theta = atan2(sin, cos)``, for ``sin >= 0``, ``cos >= 0``.

    Written ``atan2(sin, cos) / sin``, which is homogeneous of degree -1 in the pair, so an
    unnormalised pair gives ``theta / sin``; ``1 / cos`` at ``sin = 0``.
    """
    zero = sin == 0
    safe = torch.where(zero, torch.ones_like(sin), sin)
    return torch.where(zero, 1.0 / cos, torch.atan2(safe, cos) / safe)


def _angle(c: torch.Tensor) -> torch.Tensor:
    # A rotation by pi has no principal logarithm; the cap keeps the factor finite there
    # (callers detect that their iteration then fails to converge).
    return torch.acos(c.clamp(-1 + 1e-12, 1))


def _sinhc(phi: torch.Tensor) -> torch.Tensor:
    """``sinh phi / phi`` (1 at 0)."""
    zero = phi == 0
    safe = torch.where(zero, torch.ones_like(phi), phi)
    return torch.where(zero, torch.ones_like(phi), torch.sinh(safe) / safe)


def _sinhc_slope(phi: torch.Tensor) -> torch.Tensor:
    """``(phi cosh phi - sinh phi) / phi^3``, by its Taylor series where the direct form
    cancels."""
    p2 = phi * phi
    series = 1.0 / 3 + p2 / 30 + p2 * p2 / 840 + p2 * p2 * p2 / 45360
    safe = torch.where(phi < 0.1, torch.ones_like(phi), phi)
    direct = (safe * torch.cosh(safe) - torch.sinh(safe)) / safe**3
    return torch.where(phi < 0.1, series, direct)


# Above c = 1 (rounding, or an input perturbed off the manifold) theta / sin theta continues
# analytically as phi / sinh phi with phi = acosh c, so value and slope are smooth across 1.
def _acos_over_sin(c: torch.Tensor) -> torch.Tensor:
    phi = torch.acosh(c.clamp_min(1))
    return torch.where(c > 1, 1.0 / _sinhc(phi), 1.0 / _sinc(_angle(c)))


def _acos_over_sin_slope(c: torch.Tensor) -> torch.Tensor:
    phi = torch.acosh(c.clamp_min(1))
    theta = _angle(c)
    return torch.where(c > 1, -_sinhc_slope(phi) / _sinhc(phi) ** 3,
                       _sinc_slope(theta) / _sinc(theta) ** 3)


ACOS_OVER_SIN = SpectralFunction(_acos_over_sin, _acos_over_sin_slope)
"""``theta / sin theta`` as a function of ``c = cos theta`` (1 at ``c = 1``; above 1 its
analytic continuation ``acosh(c) / sqrt(c^2 - 1)``; capped near ``c = -1``)."""
