"""Input checks shared by the public functions (see :mod:`riemtorch.config` for the switch)."""

import math
import numbers

import torch

from riemtorch import config

_FLOATS = (torch.float32, torch.float64)


def check_float_tensor(x, name: str = "input") -> None:
    """Raise ``TypeError`` unless ``x`` is a float32 or float64 tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")


def check_floating_tensor(x, name: str = "input") -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor of any precision (half
    precision included, as under autocast)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor, got {kind}")


def check_square(x: torch.Tensor, name: str = "input") -> None:
    """Raise ``ValueError`` unless ``x`` has shape ``(..., n, n)``."""
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name} must have shape (..., n, n), got {tuple(x.shape)}")


def _unwrap(value):
    """A 0-dim tensor as its Python number (``bool`` tensors stay tensors, and fail the checks
    as ``bool`` does): a scalar read off a model or a config may come as one."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.dtype != torch.bool:
        return value.item()
    return value


def _real_number(value, name: str, accept, requirement: str) -> float:
    """``value`` as a float where it is a finite number that ``accept`` takes, else
    ``ValueError`` naming the ``requirement`` (``TypeError`` for a non-number, ``bool``
    included)."""
    value = _unwrap(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and accept(value)):
        raise ValueError(f"{name} must be a finite {requirement}number, got {value}")
    return float(value)


def check_nonnegative_number(value, name: str) -> float:
    """``value`` as a float: a finite number ``>= 0`` (see :func:`_real_number`)."""
    return _real_number(value, name, lambda v: v >= 0, "non-negative ")


def check_finite_number(value, name: str) -> float:
    """``value`` as a float: a finite number (see :func:`_real_number`)."""
    return _real_number(value, name, lambda v: True, "")


def check_positive_number(value, name: str) -> float:
    """``value`` as a float: a finite number ``> 0`` (see :func:`_real_number`)."""
    return _real_number(value, name, lambda v: v > 0, "positive ")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int: an integer ``>= minimum``, else ``ValueError`` (``TypeError`` for a
    non-integer, ``bool`` included: ``True`` is an int to Python, never a size or a count)."""
    value = _unwrap(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_finite(x: torch.Tensor, name: str = "input") -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity (only when validation is on)."""
    if config.validating() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_symmetric_matrix(x, name: str = "input") -> None:
    """Check a batch of symmetric matrices: type, dtype and shape always; symmetry and
    finiteness when validation is on (tolerance: :func:`riemtorch.config.symmetry_tolerance`)."""
    check_float_tensor(x, name)
    check_square(x, name)
    if not config.validating():
        return
    check_finite(x, name)
    if x.numel() == 0:
        return
    x = x.detach()  # values only: no autograd history to build or to warn about
    asym = (x - x.transpose(-1, -2)).abs().amax()
    scale = x.abs().amax().clamp_min(torch.finfo(x.dtype).tiny)
    if bool(asym > config.symmetry_tolerance(x.dtype) * scale):
        raise ValueError(f"{name} is not symmetric: max |X - X^T| = {float(asym):.3g}")
