"""Lyapunov equation ``P L + L P = V`` for SPD ``P``, Sylvester equation ``A X + X B = C`` for
symmetric ``A`` and ``B``, and generalized symmetric eigenvalues."""

import torch

from riemtorch import config
from riemtorch.linalg.batched import eigvalsh
from riemtorch.linalg.checks import check_float_tensor, check_square, check_symmetric_matrix
from riemtorch.linalg.first_order import first_order
from riemtorch.linalg.symmetric import (
    as_dtype,
    floor_eigenvalues,
    sym,
    working_dtype,
    working_eigh,
)


def lyapunov_in_eigenbasis(lam: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Solve ``P L + L P = V`` given ``P = U diag(lam) U^T``: ``L = U ((U^T V U) / (lam_i + lam_j)) U^T``.

    Differentiable by plain autograd in ``v`` (and in ``lam``, ``u``); for library code that
    already holds the eigendecomposition of ``P``.
    """
    return _sylvester_in_eigenbases(lam, u, lam, u, v)


def _check_matching(a: torch.Tensor, b: torch.Tensor, names) -> None:
    """``ValueError`` unless ``a`` and ``b`` (square) have one matrix size and batch shapes that
    broadcast together."""
    first, second = names
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{first} {tuple(a.shape)} and {second} {tuple(b.shape)} differ in "
                         "matrix size")
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(f"{first} {tuple(a.shape)} and {second} {tuple(b.shape)} have batch "
                         "shapes that do not broadcast") from None


class _Lyapunov(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, v):
        lam, u = working_eigh(p.to(torch.promote_types(p.dtype, v.dtype)))
        lam = floor_eigenvalues(lam, p.dtype)
        sol = lyapunov_in_eigenbasis(lam, u, v.to(lam.dtype))
        ctx.save_for_backward(lam, u, sol)
        ctx.dtypes = (p.dtype, v.dtype)
        return as_dtype(sol, torch.promote_types(p.dtype, v.dtype))

    @staticmethod
    @first_order
    def backward(ctx, grad):
        lam, u, sol = ctx.saved_tensors
        # The operator V -> L is self-adjoint; differentiating P L + L P = V in P gives
        # dL = -L_P[dP L + L dP], whose adjoint is -(W L^T + L^T W) with W = L_P[G].
        w = lyapunov_in_eigenbasis(lam, u, grad.to(lam.dtype))
        st = sol.transpose(-1, -2)
        grad_p = -sym(w @ st + st @ w)
        return grad_p.to(ctx.dtypes[0]), w.to(ctx.dtypes[1])


def solve_lyapunov(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Solve ``P L + L P = V`` for SPD ``P``.

    This is the operator ``L_P[V]`` of the Bures-Wasserstein metric. One ``eigh`` of ``P``; the
    backward reuses it and is finite at repeated eigenvalues of ``P``.

    Parameters
    ----------
    p : torch.Tensor
        SPD matrices, shape ``(..., n, n)``.
    v : torch.Tensor
        Right-hand sides, shape broadcastable with ``p``; need not be symmetric.

    Returns
    -------
    torch.Tensor
        ``L``, the broadcast shape of ``p`` and ``v``.

    Examples
    --------
    >>> import torch, riemtorch.linalg as L
    >>> p = 2 * torch.eye(2, dtype=torch.float64)
    >>> L.solve_lyapunov(p, torch.eye(2, dtype=torch.float64))
    tensor([[0.2500, 0.0000],
            [0.0000, 0.2500]], dtype=torch.float64)
    """
    check_symmetric_matrix(p, "P")
    check_float_tensor(v, "V")
    check_square(v, "V")
    _check_matching(p, v, ("P", "V"))
    return _Lyapunov.apply(p, v)


def _sylvester_in_eigenbases(lam, u, mu, w, c):
    """``X = U ((U^T C W) / (lam_i + mu_j)) W^T`` for ``A = U diag(lam) U^T``,
    ``B = W diag(mu) W^T``."""
    core = u.transpose(-1, -2) @ c @ w
    return u @ (core / (lam.unsqueeze(-1) + mu.unsqueeze(-2))) @ w.transpose(-1, -2)


class _Sylvester(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, c):
        dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), c.dtype)
        lam, u = working_eigh(a.to(dtype))  # one working dtype for all three
        mu, w = working_eigh(b.to(dtype))
        if config.validating():
            _check_solvable(lam, mu)
        sol = _sylvester_in_eigenbases(lam, u, mu, w, c.to(lam.dtype))
        ctx.save_for_backward(lam, u, mu, w, sol)
        ctx.dtypes = (a.dtype, b.dtype, c.dtype)
        return as_dtype(sol, dtype)

    @staticmethod
    @first_order
    def backward(ctx, grad):
        lam, u, mu, w, sol = ctx.saved_tensors
        # A dX + dX B = dC - dA X - X dB; the adjoint of C -> X (A, B symmetric) is the same
        # solve, so with Z = S[G]: grad C = Z, grad A = -sym(Z X^T), grad B = -sym(X^T Z).
        z = _sylvester_in_eigenbases(lam, u, mu, w, grad.to(lam.dtype))
        st = sol.transpose(-1, -2)
        return (-sym(z @ st)).to(ctx.dtypes[0]), (-sym(st @ z)).to(ctx.dtypes[1]), \
            z.to(ctx.dtypes[2])


def _check_solvable(lam, mu):
    """``ValueError`` where ``lam_i + mu_j`` is within rounding of 0 (``A`` and ``-B`` share an
    eigenvalue: no unique solution)."""
    if lam.numel() == 0 or mu.numel() == 0:
        return
    sums = (lam.unsqueeze(-1) + mu.unsqueeze(-2)).abs().flatten(-2).amin(-1)
    scale = torch.maximum(lam.abs().amax(-1), mu.abs().amax(-1))
    n = lam.shape[-1] + mu.shape[-1]
    if bool((sums <= n * torch.finfo(lam.dtype).eps * scale).any()):
        raise ValueError("A X + X B = C has no unique solution: an eigenvalue of A is, to "
                         "rounding, minus an eigenvalue of B")


def solve_sylvester(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Solve ``A X + X B = C`` for symmetric ``A`` ``(..., n, n)`` and ``B`` ``(..., m, m)``.

    With ``A = U diag(lam) U^T`` and ``B = W diag(mu) W^T`` (one ``eigh`` each),
    ``X = U ((U^T C W) / (lam_i + mu_j)) W^T``: unique where no ``lam_i + mu_j`` is 0, as for
    SPD ``A`` and ``B``. :func:`solve_lyapunov` is the case ``A = B = P``. The backward reuses
    both decompositions (one more solve). Float32 input is solved in float64 (see
    :mod:`riemtorch.config`).

    Parameters
    ----------
    a : torch.Tensor
        Symmetric matrices, shape ``(..., n, n)``.
    b : torch.Tensor
        Symmetric matrices, shape ``(..., m, m)``.
    c : torch.Tensor
        Right-hand sides, shape ``(..., n, m)``; batch shapes broadcast together.

    Returns
    -------
    torch.Tensor
        ``X``, shape ``(..., n, m)``.

    Raises
    ------
    ValueError
        With validation on, where some ``lam_i + mu_j`` is 0 to rounding (no unique solution;
        with validation off the result then has infinite or NaN entries).

    Examples
    --------
    >>> import torch, riemtorch.linalg as L
    >>> a = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
    >>> b = torch.tensor([[3.0]], dtype=torch.float64)
    >>> L.solve_sylvester(a, b, torch.ones(2, 1, dtype=torch.float64))
    tensor([[0.2500],
            [0.2000]], dtype=torch.float64)
    """
    check_symmetric_matrix(a, "A")
    check_symmetric_matrix(b, "B")
    check_float_tensor(c, "C")
    if c.dim() < 2 or c.shape[-2:] != (a.shape[-1], b.shape[-1]):
        raise ValueError(f"C must have shape (..., {a.shape[-1]}, {b.shape[-1]}) for A "
                         f"{tuple(a.shape)} and B {tuple(b.shape)}, got {tuple(c.shape)}")
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2], c.shape[:-2])
    except RuntimeError:
        raise ValueError(f"A {tuple(a.shape)}, B {tuple(b.shape)} and C {tuple(c.shape)} have "
                         "batch shapes that do not broadcast") from None
    return _Sylvester.apply(a, b, c)


def generalized_eigvalsh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eigenvalues ``w`` of ``A x = w B x`` for symmetric ``A`` and SPD ``B``, ascending.

    Computed as the eigenvalues of ``C^-1 A C^-T`` with ``B = C C^T`` (one Cholesky, two
    triangular solves, one ``eigvalsh``); differentiable, with gradients finite at repeated
    eigenvalues. Float32 input is solved in float64 (see :mod:`riemtorch.config`).

    Parameters
    ----------
    a, b : torch.Tensor
        Shapes ``(..., n, n)`` that broadcast together.

    Returns
    -------
    torch.Tensor
        Shape ``(..., n)``, the dtype of the inputs.
    """
    check_symmetric_matrix(a, "A")
    check_symmetric_matrix(b, "B")
    _check_matching(a, b, ("A", "B"))
    dtype = torch.promote_types(a.dtype, b.dtype)
    work = working_dtype(dtype)
    a, b = a.to(work), b.to(work)
    try:
        chol = torch.linalg.cholesky(b)
    except torch.linalg.LinAlgError as err:
        raise ValueError(f"B is not positive definite: {err}") from None
    a, chol = torch.broadcast_tensors(a, chol)
    half = torch.linalg.solve_triangular(chol, a, upper=False)
    whole = torch.linalg.solve_triangular(chol, half.transpose(-1, -2), upper=False)
    return eigvalsh(sym(whole)).to(dtype)
