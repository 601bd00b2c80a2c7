"""Scalar functions applied to eigenvalues, each with its Loewner (divided-difference) matrix.

A :class:`SpectralFunction` knows ``f`` and the matrix ``L_ij = (f(a_i) - f(a_j)) / (a_i - a_j)``
(``f'(a_i)`` on ties) that the Daleckii-Krein formula needs. The built-in functions evaluate
``L`` in a closed form free of cancellation, so gradients are exact at repeated eigenvalues.
"""

import torch


def _pairs(lam: torch.Tensor):
    """Broadcast eigenvalues ``(..., n)`` to the ordered pair ``(lo, hi)`` of shape ``(..., n, n)``."""
    a = lam.unsqueeze(-1)
    b = lam.unsqueeze(-2)
    return torch.minimum(a, b), torch.maximum(a, b)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor, at_zero: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den != 0``, else ``at_zero`` (no NaN in either branch)."""
    zero = den == 0
    return torch.where(zero, at_zero, num / torch.where(zero, torch.ones_like(den), den))


def _outer(values: torch.Tensor):
    """``values`` ``(..., n)`` as the pair ``(v_a, v_b)`` of shapes ``(..., n, 1)`` and
    ``(..., 1, n)``, which broadcast to all pairs ``(..., n, n)``."""
    return values.unsqueeze(-1), values.unsqueeze(-2)


def _tie_ratio(num: torch.Tensor, den: torch.Tensor, at_tie) -> torch.Tensor:
    """``num / den``, and ``at_tie`` where ``den == 0`` (where ``num`` is zero too), by arithmetic
    (cheaper than ``torch.where`` on CPU) with no division by zero, so autograd through it
    stays finite."""
    tie = (den == 0).to(den.dtype)
    return num / (den + tie) + at_tie * tie


class SpectralFunction:
    """A scalar function of eigenvalues.

    Parameters
    ----------
    f : callable
        Applied elementwise to eigenvalues.
    f_prime : callable
        Its derivative.
    needs_positive : bool
        Whether eigenvalues are clamped at the floor of the numerical policy before ``f``
        (see :mod:`riemtorch.config`).
    """

    def __init__(self, f, f_prime, needs_positive: bool = False):
        self.f = f
        self.f_prime = f_prime
        self.needs_positive = needs_positive

    def loewner(self, lam: torch.Tensor) -> torch.Tensor:
        """Divided differences of ``f`` at all eigenvalue pairs, shape ``(..., n, n)``."""
        a = lam.unsqueeze(-1)
        b = lam.unsqueeze(-2)
        fa, fb = self.f(a), self.f(b)
        d = a - b
        scale = torch.maximum(torch.maximum(a.abs(), b.abs()), torch.ones_like(d))
        close = d.abs() <= torch.finfo(lam.dtype).eps ** 0.5 * scale
        average = 0.5 * (self.f_prime(a) + self.f_prime(b))
        safe_d = torch.where(close, torch.ones_like(d), d)
        return torch.where(close, average, (fa - fb) / safe_d)


class _Sqrt(SpectralFunction):
    def __init__(self):
        super().__init__(torch.sqrt, lambda x: 0.5 / torch.sqrt(x), needs_positive=True)

    def loewner(self, lam):
        s = lam.sqrt()
        return 1.0 / (s.unsqueeze(-1) + s.unsqueeze(-2))


class _InvSqrt(SpectralFunction):
    def __init__(self):
        super().__init__(torch.rsqrt, lambda x: -0.5 * x.pow(-1.5), needs_positive=True)

    def loewner(self, lam):
        s = lam.sqrt()
        sa, sb = s.unsqueeze(-1), s.unsqueeze(-2)
        return -1.0 / (sa * sb * (sa + sb))


class _Log(SpectralFunction):
    def __init__(self):
        super().__init__(torch.log, torch.reciprocal, needs_positive=True)

    def divided_difference(self, a, b):
        """``(log a - log b) / (a - b)`` elementwise for broadcastable ``a``, ``b``."""
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        d = hi - lo
        return _safe_ratio(torch.log1p(d / lo), d, 1.0 / lo)

    def loewner(self, lam):
        if torch.is_grad_enabled() and lam.requires_grad:
            return self.divided_difference(*_outer(lam))
        # the same values in fewer work tensors, updated in place (backward passes call this)
        gap, den, tie = _log_gaps(lam)
        return gap.div_(den).addcmul_(tie, lam.reciprocal().unsqueeze(-1))


class _Exp(SpectralFunction):
    def __init__(self):
        super().__init__(torch.exp, torch.exp)

    def divided_difference(self, a, b):
        """``(exp a - exp b) / (a - b)`` elementwise for broadcastable ``a``, ``b``, as
        ``exp(hi) (1 - exp(-d)) / d`` (``d = hi - lo``): no factor overflows while the value is
        finite, where ``exp(lo) expm1(d)`` is ``0 * inf`` once ``d`` passes the exponent range."""
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        d = hi - lo
        return torch.exp(hi) * _safe_ratio(-torch.expm1(-d), d, torch.ones_like(d))

    def loewner(self, lam):
        return self.divided_difference(*_outer(lam))


class _HalfExp(SpectralFunction):
    """``exp(x / 2)``, the square root of :data:`EXP` from the same eigenvalues."""

    def __init__(self):
        super().__init__(lambda x: torch.exp(0.5 * x), lambda x: 0.5 * torch.exp(0.5 * x))

    def loewner(self, lam):
        lo, hi = _pairs(lam)
        d = hi - lo
        e = torch.exp(0.5 * hi)  # the form of EXP's divided difference, for the same reason
        return e * _safe_ratio(-torch.expm1(-0.5 * d), d, torch.full_like(d, 0.5))


class Power(SpectralFunction):
    """``x ** p`` for a real ``p`` on positive eigenvalues; ``p`` is a number or a tensor that
    broadcasts against the eigenvalues (in ``f``) and their pairs (in ``loewner``)."""

    def __init__(self, p):
        self.p = p if isinstance(p, torch.Tensor) else float(p)
        super().__init__(
            lambda x: x.pow(self.p), lambda x: self.p * x.pow(self.p - 1.0), needs_positive=True
        )

    def loewner(self, lam):
        """``(a^p - b^p) / (a - b) = lo^(p-1) expm1(p d) / expm1(d)`` with ``lo = min(a, b)``
        and ``d = |log a - log b|``. The ratio's relative sensitivity to ``d`` is bounded (by
        ``|p - 1|``), so the rounding of the logarithms, about ``eps |log lam|``, costs no more
        than that relative accuracy however close the eigenvalues; ``pow`` on the pairs would
        cost twice the rest."""
        return self._from_logs(*_outer(lam.log()))

    def divided_difference(self, a, b):
        """``(a^p - b^p) / (a - b)`` elementwise for broadcastable positive ``a``, ``b``."""
        return self._from_logs(a.log(), b.log())

    def _from_logs(self, log_a, log_b):
        # lo^(p-1) expm1(p d) with the factor exp(max(p d, 0)) moved from the second factor
        # to the first: neither overflows while the value is finite (the plain product is
        # 0 * inf once p d passes the exponent range, e.g. p = 25 at eigenvalues 1e-13 and 1)
        low, high = torch.minimum(log_a, log_b), torch.maximum(log_a, log_b)
        gap = high - low
        spread = self.p * gap
        scaled = -torch.expm1(-spread.abs()) * torch.sign(spread)  # expm1(p d) exp(-max(p d, 0))
        # (p - 1) lo + max(p d, 0), formed without cancelling large terms
        exponent = torch.where(spread > 0, self.p * high - low, (self.p - 1.0) * low)
        return torch.exp(exponent) * _tie_ratio(scaled, torch.expm1(gap), self.p)


class ClampBelow(SpectralFunction):
    """``max(x, threshold)``: the rectification of ReEig (derivative 0 below the threshold)."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)
        super().__init__(
            lambda x: x.clamp_min(self.threshold), lambda x: (x > self.threshold).to(x.dtype)
        )

    def loewner(self, lam):
        # exact: 1 for two eigenvalues above the threshold, 0 for two below, a ratio in between
        a, b = _outer(lam)
        fa, fb = _outer(self.f(lam))
        return _tie_ratio(fa - fb, a - b, self.f_prime(a))


def _log_gaps(lam: torch.Tensor):
    """For all pairs of positive ``lam`` (``..., n``): ``g = log(hi / lo)`` as
    ``log1p(d / lo)`` (no cancellation however close the pair), ``d = |a - b|`` with ties
    replaced by 1, and the ties as a 0/1 mask in ``lam``'s dtype; three new ``(..., n, n)``
    tensors, no more. At a tie ``g = 0``, so ``g / d`` is zero there and a derivative is put in
    by adding it times the mask (cheaper than ``torch.where`` on CPU)."""
    a, b = _outer(lam)
    lo = torch.minimum(a, b)
    d = torch.sub(a, b).abs_()
    gap = torch.div(d, lo, out=lo).log1p_()
    tie = (d == 0).to(d.dtype)
    return gap, d.add_(tie), tie


def log_and_power_loewner(lam: torch.Tensor, p, powered: torch.Tensor):
    """Loewner matrices of ``log`` and of ``x^p`` at positive eigenvalues ``lam`` (``..., n``),
    given ``powered = lam^p``; ``p`` is a number or a tensor broadcasting against the pairs.

    Both come from the pairs' ``d = |a - b|`` and ``g = log(hi / lo) = log1p(d / lo)`` (no
    cancellation however close the pair): ``g / d`` for ``log`` and, since ``x^p`` is
    monotone, ``(a^p - b^p) / (a - b) = -sign(p) max(a^p, b^p) expm1(-|p| g) / d``, a factor of
    at most one times the larger power (no overflow while the powers are finite). Ties take
    the derivatives ``1 / lam`` and ``p lam^p / lam``. Two transcendental functions per pair
    where the separate :meth:`_Log.loewner` and :meth:`Power.loewner` take four, and work
    tensors reused in place (this runs once per step of the affine-invariant batch norm: four
    work tensors of the pairs' size, where every step taking a new one took seven), so not
    differentiable: for backward passes and solvers.
    """
    gap, den, tie = _log_gaps(lam)
    inv_lam = lam.reciprocal().unsqueeze(-1)
    d_log = torch.div(gap, den).addcmul_(tie, inv_lam)
    if isinstance(p, torch.Tensor):
        shrink, sign = -p.abs(), -p.sign()
    else:
        shrink, sign = -abs(p), -float((p > 0) - (p < 0))
    d_power = gap.mul_(shrink).expm1_().div_(den)
    top = torch.maximum(*_outer(powered), out=den)  # d is no longer needed
    d_power.mul_(top).mul_(sign)
    return d_log, d_power.addcmul_(tie, inv_lam.mul_(powered.unsqueeze(-1)).mul_(p))


SQRT = _Sqrt()
INV_SQRT = _InvSqrt()
LOG = _Log()
EXP = _Exp()
HALF_EXP = _HalfExp()
