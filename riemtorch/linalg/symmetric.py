"""Functions of symmetric matrices through one ``eigh``, with a Daleckii-Krein backward.

For ``X = U diag(a) U^T`` and a scalar ``f``, ``f(X) = U diag(f(a)) U^T`` and the gradient of a
loss with upstream gradient ``G`` is ``U (L o (U^T sym(G) U)) U^T`` with the Loewner matrix
``L_ij = (f(a_i) - f(a_j)) / (a_i - a_j)`` (``f'(a_i)`` on ties). Plain autograd through
``torch.linalg.eigh`` divides by ``a_i - a_j`` and returns NaN at repeated eigenvalues, e.g. at
the identity; this backward does not.

Gradients are returned as symmetric matrices: they are gradients with respect to the symmetric
input ``X`` (equivalently of ``f((X + X^T) / 2)``). Float32 input is decomposed in float64 and
eigenvalues of SPD input are floored as stated in :mod:`riemtorch.config`.
"""

import math
from typing import Callable, Sequence, Tuple

import torch

from riemtorch import config
from riemtorch.linalg import batched, spectral
from riemtorch.linalg.checks import (
    check_finite_number,
    check_positive_number,
    check_square,
    check_symmetric_matrix,
)
from riemtorch.linalg.first_order import first_order


def sym(x: torch.Tensor) -> torch.Tensor:
    """Symmetric part ``(X + X^T) / 2`` of ``(..., n, n)`` matrices (one new tensor: the halving
    is done in place on the sum, which autograd allows, as ``mul_`` by a number does not need
    its input; integer input gives floats, as ``0.5 * (X + X^T)`` does). ``ValueError`` for a
    shape other than ``(..., n, n)``, which ``X + X^T`` would broadcast or reject obscurely."""
    check_square(x)
    total = torch.add(x, x.transpose(-1, -2))
    return total.mul_(0.5) if total.is_floating_point() else 0.5 * total


def sym_out_of_place(x: torch.Tensor) -> torch.Tensor:
    """:func:`sym` without the in-place halving, for tensors that a custom autograd Function's
    forward returns: under ``torch.compile``, torch 2.11 sends the gradient of an output that
    an in-place operation wrote to the wrong slot (zero gradients)."""
    return 0.5 * torch.add(x, x.transpose(-1, -2))


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype in which eigenproblems of ``dtype`` input are solved (numerical policy)."""
    if dtype == torch.float32 and config.eigh_in_float64:
        return torch.float64
    return dtype


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype``, ``t`` itself when it has it already.

    The forward passes of the custom autograd Functions return through this, not through
    ``Tensor.to``: under ``torch.compile``, torch 2.11 sends the gradient of an output that is a
    same-dtype ``to`` of an intermediate (an alias of it) to the wrong slot, and the gradients
    come out zero or wrong.
    """
    return t if t.dtype == dtype else t.to(dtype)


def working_eigh(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` in the working dtype of the policy (results in that dtype), without
    input checks (for library internals; :func:`eigh` is the public form)."""
    return batched.eigh(x.to(working_dtype(x.dtype)))


def eigh(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of symmetric matrices ``(..., n, n)``:
    ``torch.linalg.eigh`` in the working dtype of the policy (results in that dtype), with the
    checks of :func:`logm` (dtype and shape always; symmetry and finiteness when validation is
    on)."""
    check_symmetric_matrix(x, "input")
    return working_eigh(x)


def floor_eigenvalues(lam: torch.Tensor, input_dtype: torch.dtype) -> torch.Tensor:
    """Clamp eigenvalues ``(..., n)`` of SPD input at the relative floor of the policy.

    With validation on, raise ``ValueError`` for a clearly negative eigenvalue.
    """
    if lam.shape[-1] == 0:  # 0 x 0 matrices: nothing to clamp (and no maximum to take)
        return lam
    floor = config.eigenvalue_floor(input_dtype)
    top = lam.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(lam.dtype).tiny)
    if config.validating() and lam.numel() > 0:
        worst = (lam / top).amin()
        if bool(worst < -lam.shape[-1] * floor):
            raise ValueError(
                "input is not positive definite: smallest eigenvalue / largest = "
                f"{float(worst):.3g}"
            )
    return torch.maximum(lam, floor * top)


def check_exp_range(lam: torch.Tensor, dtype: torch.dtype) -> None:
    """With validation on, ``ValueError`` where ``exp`` of the eigenvalues ``lam`` overflows
    ``dtype`` (the result would hold infinities and NaN)."""
    if not config.validating() or lam.numel() == 0:
        return
    top, limit = float(lam.amax()), math.log(torch.finfo(dtype).max)
    if top > limit:
        raise ValueError(f"the matrix exponential overflows {dtype}: largest eigenvalue {top:.6g} "
                         f"exceeds log(finfo.max) = {limit:.6g}")


def _reconstruct(u: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return (u * values.unsqueeze(-2)) @ u.transpose(-1, -2)


class _SymmetricFunctions(torch.autograd.Function):
    """Several spectral functions of one symmetric matrix from a single ``eigh``."""

    @staticmethod
    def forward(ctx, x, functions):
        lam, u = batched.split_eigh(x.to(working_dtype(x.dtype)))
        if any(fn.needs_positive for fn in functions):
            lam = floor_eigenvalues(lam, x.dtype)
        if any(fn is spectral.EXP for fn in functions):
            check_exp_range(lam, x.dtype)
        ctx.functions = functions
        ctx.input_dtype = x.dtype
        ctx.save_for_backward(lam, u)
        return tuple(as_dtype(_reconstruct(u, fn.f(lam)), x.dtype) for fn in functions)

    @staticmethod
    @first_order
    def backward(ctx, *grads):
        lam, u = ctx.saved_tensors
        ut = u.transpose(-1, -2)
        inner = None
        for fn, g in zip(ctx.functions, grads):
            if g is None:
                continue
            term = (ut @ sym(g.to(u.dtype)) @ u).mul_(fn.loewner(lam))
            inner = term if inner is None else inner + term
        if inner is None:
            return None, None
        return (u @ inner @ ut).to(ctx.input_dtype), None


def apply_spectral(x: torch.Tensor, functions: Sequence[spectral.SpectralFunction]):
    """Apply several :class:`~riemtorch.linalg.spectral.SpectralFunction` to ``x`` from one
    eigendecomposition, without input checks (for library internals). Returns a tuple."""
    return _SymmetricFunctions.apply(x, tuple(functions))


def _public(x, functions, name="input"):
    check_symmetric_matrix(x, name)
    return apply_spectral(x, functions)


def sqrtm(x: torch.Tensor) -> torch.Tensor:
    """Principal square root of SPD matrices.

    Parameters
    ----------
    x : torch.Tensor
        SPD matrices, shape ``(..., n, n)``, float32 or float64.

    Returns
    -------
    torch.Tensor
        ``X^(1/2)``, shape ``(..., n, n)``.

    Examples
    --------
    >>> import torch, riemtorch.linalg as L
    >>> L.sqrtm(4 * torch.eye(2, dtype=torch.float64))
    tensor([[2., 0.],
            [0., 2.]], dtype=torch.float64)
    """
    return _public(x, (spectral.SQRT,))[0]


def invsqrtm(x: torch.Tensor) -> torch.Tensor:
    """Inverse principal square root ``X^(-1/2)`` of SPD matrices ``(..., n, n)``."""
    return _public(x, (spectral.INV_SQRT,))[0]


def sqrtm_invsqrtm(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(X^(1/2), X^(-1/2))`` of SPD matrices ``(..., n, n)`` from one eigendecomposition."""
    return _public(x, (spectral.SQRT, spectral.INV_SQRT))


def logm(x: torch.Tensor) -> torch.Tensor:
    """Principal logarithm of SPD matrices ``(..., n, n)``."""
    return _public(x, (spectral.LOG,))[0]


def expm(x: torch.Tensor) -> torch.Tensor:
    """Exponential of symmetric matrices ``(..., n, n)`` (an SPD result)."""
    return _public(x, (spectral.EXP,))[0]


def powm(x: torch.Tensor, p: float) -> torch.Tensor:
    """Real power ``X^p`` of SPD matrices ``(..., n, n)``; ``p`` is a finite Python number."""
    return _public(x, (spectral.Power(check_finite_number(p, "p")),))[0]


def check_threshold(threshold) -> float:
    """A rectification threshold as a float: a finite positive number, else ``ValueError``
    (``TypeError`` for a non-number)."""
    return check_positive_number(threshold, "threshold")


def rectify(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``U max(Λ, threshold) U^T`` of symmetric ``(..., n, n)`` ``x``, without input checks
    (for library internals; :func:`clamp_eigenvalues` is the public form).

    A matrix whose eigenvalues all exceed ``threshold`` is left as it is (symmetrised), with
    gradient ``sym(G)``: the Loewner matrix of the rectification is all ones there. One batched
    Cholesky factorisation of ``X - threshold I`` finds those matrices (it succeeds exactly when
    ``X - threshold I`` is positive definite, up to rounding at the threshold, where both
    branches agree); only the others are decomposed. At the usual threshold ``1e-4`` that is
    often every matrix (in the JapaneseVowels and MAMEM-SSVEP examples, with or without batch
    norm, ReEig clamps none), and the layer then costs a Cholesky factorisation instead of an
    ``eigh`` and its backward.
    """
    n = x.shape[-1]
    # both branches see the symmetric part (a Cholesky factorisation reads one triangle)
    flat = sym(x.reshape(x.shape[:-2].numel(), n, n))
    work = flat.detach().to(working_dtype(x.dtype))
    shifted = work - threshold * torch.eye(n, dtype=work.dtype, device=work.device)
    clamped = torch.linalg.cholesky_ex(shifted).info != 0
    clamp = (spectral.ClampBelow(threshold),)
    if bool(clamped.all()):
        out = apply_spectral(flat, clamp)[0]
    else:
        out = flat
        if bool(clamped.any()):
            index = clamped.nonzero().squeeze(-1)
            out = out.index_copy(0, index, apply_spectral(flat.index_select(0, index), clamp)[0])
    return out.reshape(x.shape)


def clamp_eigenvalues(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Replace eigenvalues below ``threshold`` by ``threshold`` (the ReEig rectification).

    The gradient is zero in the clamped eigen-directions, as in Ionescu et al.'s matrix
    backpropagation. Matrices with no eigenvalue below ``threshold`` are returned symmetrised,
    without an eigendecomposition (:func:`rectify`).
    """
    check_symmetric_matrix(x, "input")
    return rectify(x, check_threshold(threshold))


def sym_funcm(
    x: torch.Tensor,
    f: Callable[[torch.Tensor], torch.Tensor],
    f_prime: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``f(X)`` for symmetric ``X`` ``(..., n, n)`` and an elementwise torch function ``f``.

    ``f_prime`` is the derivative of ``f``; the backward uses divided differences and switches
    to ``(f'(a) + f'(b)) / 2`` for nearly equal eigenvalues (see :mod:`riemtorch.config`).
    Eigenvalues are not clamped: ``f`` must be defined on the whole spectrum.

    Examples
    --------
    >>> import torch, riemtorch.linalg as L
    >>> x = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    >>> L.sym_funcm(x, torch.sqrt, lambda t: 0.5 / t.sqrt()).diagonal()
    tensor([1., 2.], dtype=torch.float64)
    """
    return _public(x, (spectral.SpectralFunction(f, f_prime),))[0]
