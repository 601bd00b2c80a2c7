"""GMRES for batched linear systems whose unknowns are matrices ``(..., n, n)``.

Used by implicit backward passes whose operator is not symmetric (the adjoint of a fixed-point
map), where conjugate gradients do not apply. Every batch entry has its own Krylov basis and
Hessenberg matrix; inner products are Frobenius products over the last two dimensions, and the
iteration stops once every entry's residual norm is at most ``atol``.
"""

from typing import Callable

import torch

from riemtorch.manifolds.spd.common import matrix_inner


def _back_substitute(columns, g):
    """Solve the upper-triangular ``R y = g`` with ``R`` given by its columns (lists of batch
    tensors, ``columns[j][i] = R_ij``). A zero ``R_ii`` belongs to a batch entry whose
    residual was already zero (its Krylov vectors are zero, and so is its ``g``): ``y_i = 0``
    there instead of ``0 / 0``."""
    k = len(columns)
    y = [None] * k
    for i in reversed(range(k)):
        acc = g[i]
        for j in range(i + 1, k):
            acc = acc - columns[j][i] * y[j]
        pivot = columns[i][i]
        nonzero = pivot != 0
        y[i] = torch.where(nonzero, acc / torch.where(nonzero, pivot, torch.ones_like(pivot)),
                           torch.zeros_like(acc))
    return y


def gmres(op: Callable, b: torch.Tensor, atol: float, restart: int = 20,
          max_iter: int = 200) -> torch.Tensor:
    """Solve ``op(x) = b`` for ``x`` shaped like ``b`` ``(..., n, n)``.

    The least-squares problems of the Hessenberg matrices are solved by Givens rotations with
    elementwise operations, so that repeated solves give bitwise equal results (LAPACK's
    least-squares routines can round differently from call to call).

    Parameters
    ----------
    op : callable
        A linear map of ``(..., n, n)`` tensors, batched over the leading dimensions.
    b : torch.Tensor
        Right-hand sides ``(..., n, n)``.
    atol : float
        Stop when every residual ``||b - op(x)||_F`` is at most this.
    restart : int
        Krylov basis size before a restart from the current solution.
    max_iter : int
        Largest number of products with ``op``.

    Returns
    -------
    torch.Tensor
        The solution (the last iterate if ``max_iter`` products did not reach ``atol``).
    """
    tiny = torch.finfo(b.dtype).tiny
    x, r, products = torch.zeros_like(b), b, 0
    while True:
        beta = matrix_inner(r, r).sqrt()
        if bool((beta <= atol).all()) or products >= max_iter:
            return x
        basis = [r / beta.clamp_min(tiny)[..., None, None]]
        columns, rotations, g = [], [], [beta, torch.zeros_like(beta)]
        for j in range(restart):
            w = op(basis[j])
            products += 1
            column = []
            for v in basis:  # modified Gram-Schmidt
                column.append(matrix_inner(w, v))
                w = w - column[-1][..., None, None] * v
            below = matrix_inner(w, w).sqrt()
            basis.append(w / below.clamp_min(tiny)[..., None, None])
            for i, (c, s) in enumerate(rotations):  # earlier rotations on the new column
                column[i], column[i + 1] = c * column[i] + s * column[i + 1], \
                    c * column[i + 1] - s * column[i]
            top = column[j]
            radius = torch.hypot(top, below)
            safe = radius.clamp_min(tiny)
            c = torch.where(radius > 0, top / safe, torch.ones_like(top))
            s = torch.where(radius > 0, below / safe, torch.zeros_like(top))
            rotations.append((c, s))
            column[j] = radius
            columns.append(column[: j + 1])
            g[j], g_next = c * g[j], -s * g[j]
            g.append(torch.zeros_like(beta))
            g[j + 1] = g_next
            converged = bool((g_next.abs() <= atol).all())
            if converged or products >= max_iter:
                break
        y = _back_substitute(columns, g)
        x = x + sum(coef[..., None, None] * v for coef, v in zip(y, basis))
        if converged or products >= max_iter:
            return x
        r = b - op(x)
        products += 1
