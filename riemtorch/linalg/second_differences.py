"""Second divided differences ``f[a, b, c]`` of the spectral functions, for second derivatives
of matrix functions.

The differential of a matrix function at ``X = U diag(lam) U^T`` is the Daleckii-Krein map
``V -> U (L o (U^T V U)) U^T`` with the first divided differences ``L`` (the Loewner matrix of
:mod:`riemtorch.linalg.spectral`). Its derivative with respect to ``X`` in a direction ``H``
is, in the same basis,

``(D^2 f(X)[H, V])_ab = sum_j f[a, b, j] ((U^T H U)_aj (U^T V U)_jb + (U^T V U)_aj (U^T H U)_jb)``

(Daleckii-Krein of second order), where ``f[a, b, j]`` is the second divided difference at the
eigenvalues ``lam_a, lam_b, lam_j``: ``f''(x) / 2`` when all three are ``x``. Through it,
gradients of expressions that carry tangent vectors through ``D f(X)`` stay finite where ``X``
has repeated eigenvalues, where differentiating ``eigh`` divides by zero.

Evaluation: with the three points sorted ``lo <= mid <= hi``,
``f[lo, mid, hi] = (f[mid, hi] - f[lo, mid]) / (hi - lo)`` from first divided differences that
are accurate at any gap; when all three lie within ``1e-2`` of each other (relative to ``lo``
for functions of positive numbers), a Taylor expansion at their mean ``m`` instead,

``f''(m) / 2 + f''''(m) p2 / 48 + f'''''(m) p3 / 360 + f''''''(m) (p2^2 + 2 p4) / 5760``

with ``p_k = sum_i (x_i - m)^k``: about ``1e-12`` relative error on either side of the switch.
"""

import math

import torch

from riemtorch.linalg import spectral

_CLOSE = 1e-2


def _rules(fn):
    """``(k-th derivative, relative closeness)`` of ``fn``."""
    if fn is spectral.LOG:
        return lambda m, k: (-1) ** (k - 1) * math.factorial(k - 1) * m.pow(-k), True
    if fn is spectral.EXP:
        return lambda m, k: torch.exp(m), False
    if isinstance(fn, spectral.Power) and not isinstance(fn.p, torch.Tensor):
        p = fn.p
        return lambda m, k: math.prod(p - i for i in range(k)) * m.pow(p - k), True
    raise TypeError(f"no second divided differences for {type(fn).__name__} "
                    "(available: LOG, EXP and Power with a number exponent)")


def second_divided_differences(fn: spectral.SpectralFunction, lam: torch.Tensor) -> torch.Tensor:
    """``f[lam_a, lam_b, lam_c]`` for all triples of the eigenvalues ``lam`` ``(..., n)``, shape
    ``(..., n, n, n)``; ``fn`` is :data:`~riemtorch.linalg.spectral.LOG`,
    :data:`~riemtorch.linalg.spectral.EXP` or a :class:`~riemtorch.linalg.spectral.Power` with a
    number exponent."""
    derivative, relative = _rules(fn)
    dd = fn.divided_difference
    a, b, c = lam[..., :, None, None], lam[..., None, :, None], lam[..., None, None, :]
    lo = torch.minimum(torch.minimum(a, b), c)
    hi = torch.maximum(torch.maximum(a, b), c)
    mid = torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))
    width = hi - lo
    direct = spectral._tie_ratio(dd(mid, hi) - dd(lo, mid), width, 0.0)
    m = (lo + mid + hi) / 3
    d = torch.stack((lo - m, mid - m, hi - m))
    p2, p3, p4 = d.square().sum(0), d.pow(3).sum(0), d.pow(4).sum(0)
    taylor = (derivative(m, 2) / 2 + derivative(m, 4) * p2 / 48 + derivative(m, 5) * p3 / 360
              + derivative(m, 6) * (p2.square() + 2 * p4) / 5760)
    close = width <= _CLOSE * (lo if relative else 1.0)
    return torch.where(close, taylor, direct)
