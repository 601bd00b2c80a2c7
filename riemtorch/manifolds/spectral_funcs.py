"""Scalar functions of eigenvalues used by the Stiefel and Grassmann formulas.

Each is a :class:`riemtorch.linalg.SpectralFunction` (value and derivative), so that
``apply_spectral`` evaluates it from one ``eigh`` with a Daleckii-Krein backward that stays
finite at repeated eigenvalues (e.g. at ``x = y``, where every principal angle is zero).

Functions of ``lam >= 0`` (eigenvalues of ``U^T U``, ``r = sqrt(lam)``): ``cos r``,
``sin r / r`` and ``(1 - cos r) / lam``, all entire in ``lam``. Functions of
``s = sin^2 theta`` in ``[0, 1)``: ``theta^2`` and ``theta / (sin theta cos theta)``, smooth at
``s = 0``. A function of ``c = cos theta`` in ``(-1, 1]``: ``theta / sin theta``. Arguments are
clamped to the domain, so rounding (``lam = -1e-17``) never produces NaN.
"""

import torch

from riemtorch.linalg.spectral import SpectralFunction

__all__ = ["COS_SQRT", "SINC_SQRT", "VERSINE_SQRT", "ASIN_SQ", "LOG_FACTOR", "ACOS_OVER_SIN"]


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


def _asin_ratio(s: torch.Tensor) -> torch.Tensor:
    """``asin(sqrt s) / sqrt s`` for ``s`` in ``[0, 1]`` (1 at 0)."""
    w = _root(s)
    safe = torch.where(w == 0, torch.ones_like(w), w)
    return torch.where(w == 0, torch.ones_like(w), torch.asin(safe.clamp_max(1)) / safe)


def _log_factor(s: torch.Tensor) -> torch.Tensor:
    s = s.clamp(0, 1)
    return _asin_ratio(s) / (1 - s).sqrt()


def _log_factor_slope(s: torch.Tensor) -> torch.Tensor:
    s = s.clamp(0, 1)
    series = 2.0 / 3 + 16.0 / 15 * s + 48.0 / 35 * s * s
    safe = torch.where(s < 1e-3, torch.full_like(s, 0.5), s)
    wv = (safe * (1 - safe)).sqrt()
    direct = (wv - torch.asin(safe.sqrt()) * (1 - 2 * safe)) / (2 * wv**3)
    return torch.where(s < 1e-3, series, direct)


def _asin_sq(s: torch.Tensor) -> torch.Tensor:
    # Series near 0 so that autograd through this function is finite at s = 0.
    s = s.clamp(0, 1)
    small = s < 1e-6
    safe = torch.where(small, torch.full_like(s, 0.5), s)
    return torch.where(small, s + s * s / 3, torch.asin(safe.sqrt()) ** 2)


ASIN_SQ = SpectralFunction(_asin_sq, _log_factor)
"""``theta^2 = asin(sqrt(s))^2``: squared principal angle from ``s = sin^2 theta``."""

LOG_FACTOR = SpectralFunction(_log_factor, _log_factor_slope)
"""``theta / (sin theta cos theta) = asin(sqrt s) / sqrt(s (1 - s))`` (1 at ``s = 0``)."""


def _angle(c: torch.Tensor) -> torch.Tensor:
    # A rotation by pi has no principal logarithm; the cap keeps the factor finite there
    # (callers detect that their iteration then fails to converge).
    return torch.acos(c.clamp(-1 + 1e-12, 1))


def _acos_over_sin(c: torch.Tensor) -> torch.Tensor:
    return 1.0 / _sinc(_angle(c))


def _acos_over_sin_slope(c: torch.Tensor) -> torch.Tensor:
    theta = _angle(c)
    return _sinc_slope(theta) / _sinc(theta) ** 3


ACOS_OVER_SIN = SpectralFunction(_acos_over_sin, _acos_over_sin_slope)
"""``theta / sin theta`` as a function of ``c = cos theta`` (1 at ``c = 1``; capped near
``c = -1``)."""
