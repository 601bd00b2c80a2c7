"""The differential of a spectral map ``phi`` at an SPD point, differentiable in the point.

The power deformation of the SPD metrics carries tangent vectors at ``X`` through
``d phi_X`` and its inverse (``phi(X) = X^theta``, or ``log X`` for ``theta = 0``). With
``X = U diag(lam) U^T`` both are Daleckii-Krein maps ``V -> U (K o (U^T V U)) U^T``, with the
Loewner matrix ``K = L`` of ``phi`` (push) or ``K = 1 / L`` (pull, the Loewner matrix of
``phi^-1`` at ``phi(lam)``). Differentiating them through ``eigh`` divides by eigenvalue gaps
and gives NaN at repeated eigenvalues (at the identity, for instance); here the derivative with
respect to ``X`` is the second-order Daleckii-Krein formula of
:mod:`riemtorch.linalg.second_differences`, finite everywhere. For the pull, the formula is
applied to ``phi^-1`` at ``Y = phi(X)`` and the result pulled back to ``X`` through
``d phi_X`` (self-adjoint).
"""

import torch

from riemtorch.linalg import spectral
from riemtorch.linalg.batched import eigh
from riemtorch.linalg.first_order import first_order
from riemtorch.linalg.second_differences import second_divided_differences
from riemtorch.linalg.symmetric import _reconstruct, floor_eigenvalues, sym, sym_out_of_place


def _inverse(fn: spectral.SpectralFunction) -> spectral.SpectralFunction:
    if fn is spectral.LOG:
        return spectral.EXP
    if isinstance(fn, spectral.Power):
        return spectral.Power(1.0 / fn.p)
    raise TypeError(f"no inverse known for {type(fn).__name__}")


def _rotate(u, a):
    return u.transpose(-1, -2) @ a @ u


def _unrotate(u, a):
    return sym_out_of_place(u @ a @ u.transpose(-1, -2))


def _second_order(fn, lam, g, v):
    """``T + T^T`` with ``T_ab = sum_j f[a, b, j] g_aj v_bj``: the gradient, in the eigenbasis,
    of ``<g, D^2 f[H, v]>`` with respect to ``H`` (all in the eigenbasis)."""
    t = torch.einsum("...abj,...aj,...bj->...ab", second_divided_differences(fn, lam), g, v)
    return t + t.transpose(-1, -2)


class _Point(torch.autograd.Function):
    """``phi(X)`` from the frame's decomposition; the usual first-order backward."""

    @staticmethod
    def forward(ctx, x, frame):
        ctx.frame = frame
        return sym_out_of_place(_reconstruct(frame.u, frame.fn.f(frame.lam)))

    @staticmethod
    @first_order
    def backward(ctx, grad):
        f = ctx.frame
        return _unrotate(f.u, f.loewner * _rotate(f.u, sym(grad))), None


class _Differential(torch.autograd.Function):
    """``U (K o (U^T V U)) U^T`` with ``K = L`` (push) or ``1 / L`` (pull)."""

    @staticmethod
    def forward(ctx, x, v, frame, inverse):
        rotated = _rotate(frame.u, v)
        ctx.save_for_backward(rotated)
        ctx.frame, ctx.inverse = frame, inverse
        kernel = 1.0 / frame.loewner if inverse else frame.loewner
        return _unrotate(frame.u, kernel * rotated)

    @staticmethod
    @first_order
    def backward(ctx, grad):
        (rotated,) = ctx.saved_tensors
        f = ctx.frame
        g = _rotate(f.u, sym(grad))
        kernel = 1.0 / f.loewner if ctx.inverse else f.loewner
        grad_x = grad_v = None
        if ctx.needs_input_grad[1]:
            grad_v = _unrotate(f.u, kernel * g)
        if ctx.needs_input_grad[0]:
            if ctx.inverse:  # phi^-1 at Y = phi(X), then back through d phi_X
                t = f.loewner * _second_order(_inverse(f.fn), f.fn.f(f.lam), g, rotated)
            else:
                t = _second_order(f.fn, f.lam, g, rotated)
            grad_x = _unrotate(f.u, t)
        return grad_x, grad_v, None, None


class Frame:
    """Eigendecomposition of SPD ``X`` with a spectral map ``phi`` and its differential.

    ``point`` is ``phi(X)``; :meth:`push` is ``d phi_X`` and :meth:`pull` its inverse. One
    ``eigh`` of ``X`` serves all three; their gradients with respect to ``X`` (and to the
    vectors) are exact and finite at repeated eigenvalues (module docstring).

    Parameters
    ----------
    x : torch.Tensor
        SPD matrices ``(..., n, n)`` in the working dtype.
    fn : riemtorch.linalg.spectral.SpectralFunction
        :data:`~riemtorch.linalg.spectral.LOG` or a
        :class:`~riemtorch.linalg.spectral.Power` with a number exponent.
    """

    def __init__(self, x: torch.Tensor, fn: spectral.SpectralFunction):
        with torch.no_grad():
            lam, self.u = eigh(x)
            self.lam = floor_eigenvalues(lam, x.dtype)
            self.loewner = fn.loewner(self.lam)
        self.x, self.fn = x, fn
        self.point = _Point.apply(x, self)

    def push(self, v: torch.Tensor) -> torch.Tensor:
        """``d phi_X [v]``."""
        return _Differential.apply(self.x, v, self, False)

    def pull(self, w: torch.Tensor) -> torch.Tensor:
        """``(d phi_X)^-1 [w]``."""
        return _Differential.apply(self.x, w, self, True)
