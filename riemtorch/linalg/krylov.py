"""GMRES for batched linear systems whose unknowns are matrices ``(..., n, n)``.

Used by implicit backward passes whose operator is not symmetric (the adjoint of a fixed-point
map), where conjugate gradients do not apply. Every batch entry has its own Krylov basis and
Hessenberg matrix; inner products are Frobenius products over the last two dimensions, and the
iteration stops once every entry's residual norm is at most ``atol``.
"""

from typing import Callable

import torch


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum((-2, -1))


def gmres(op: Callable, b: torch.Tensor, atol: float, restart: int = 20,
          max_iter: int = 200) -> torch.Tensor:
    """Solve ``op(x) = b`` for ``x`` shaped like ``b`` ``(..., n, n)``.

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
    batch = b.shape[:-2]
    x, r, products = torch.zeros_like(b), b, 0
    while True:
        beta = _inner(r, r).sqrt()
        if bool((beta <= atol).all()) or products >= max_iter:
            return x
        basis = [r / beta.clamp_min(tiny)[..., None, None]]
        hessenberg = b.new_zeros(*batch, restart + 1, restart)
        target = b.new_zeros(*batch, restart + 1, 1)
        target[..., 0, 0] = beta
        for j in range(restart):
            w = op(basis[j])
            products += 1
            for i, v in enumerate(basis):  # modified Gram-Schmidt
                hessenberg[..., i, j] = _inner(w, v)
                w = w - hessenberg[..., i, j, None, None] * v
            hessenberg[..., j + 1, j] = _inner(w, w).sqrt()
            basis.append(w / hessenberg[..., j + 1, j].clamp_min(tiny)[..., None, None])
            h, t = hessenberg[..., : j + 2, : j + 1], target[..., : j + 2, :]
            y = torch.linalg.lstsq(h, t).solution
            residual = torch.linalg.vector_norm(t - h @ y, dim=(-2, -1))
            converged = bool((residual <= atol).all())
            if converged or products >= max_iter:
                break
        x = x + sum(y[..., i, :, None] * basis[i] for i in range(y.shape[-2]))
        if converged or products >= max_iter:
            return x
        r = b - op(x)
        products += 1
