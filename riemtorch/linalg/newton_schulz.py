"""Square root and inverse square root of SPD matrices by coupled Newton-Schulz iterations.

Matrix products only (no eigendecomposition), which is what makes it fast for large batches of
small matrices on GPUs, where batched ``eigh`` is slow ("Fast Differentiable Matrix Square
Root", Song et al., 2022). The input is scaled by its Frobenius norm so the spectrum lies in
``(0, 1]``; the iteration ``T = (3I - ZY)/2, Y <- YT, Z <- TZ`` then converges to
``(Y, Z) = (A^(1/2), A^(-1/2))`` up to that scale. The backward solves the Lyapunov equation
``S X + X S = G`` with the Newton-Schulz iteration of the matrix sign function of
``[[S, -G], [0, -S]]``, again by products only.

Accuracy: the smallest scaled eigenvalue ``1/cond`` grows by about 1.5x per iteration before
quadratic convergence sets in, so the iteration count must grow like ``log(cond)``. The default
(``iterations=None``) is :func:`default_iterations`: 20, measured to keep relative errors against
the ``eigh`` path below ``1e-10`` up to condition number ``1e4`` and below ``1e-5`` up to ``1e5``
(float64, sizes 16-64); at ``1e6`` about 22 are needed. Beyond that, raise ``iterations`` or use
the ``eigh`` path. Iterations do not check convergence (no host synchronisation).

Why not a Padé approximant (the other iteration-free option of Song et al.): after the same
scaling, ``A / ||A|| = I - Z`` and ``sqrt(1 - z)`` is approximated by a rational function of
``z``; near ``z = 1`` (the smallest eigenvalues) the approximant of degree ``[16/16]`` is off by
0.6 % at a scaled eigenvalue of ``1e-2`` and by a factor 2.5 at ``1e-4``, so it cannot give
``1e-5`` at condition number ``1e4``, where 20 Newton-Schulz iterations give ``1e-10``.
"""

import torch

from riemtorch import config
from riemtorch.linalg.checks import check_positive_int, check_symmetric_matrix
from riemtorch.linalg.first_order import first_order
from riemtorch.linalg.symmetric import sym, working_dtype


def default_iterations(dtype: torch.dtype) -> int:
    """20: below ``1e-10`` relative error up to condition number ``1e4`` and below ``1e-5`` up
    to ``1e5`` (float64, sizes 16-64); float32 is limited by its rounding (about ``1e-6``)."""
    return 20


def _coupled_iteration(a: torch.Tensor, iterations: int):
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    norm = torch.linalg.matrix_norm(a).unsqueeze(-1).unsqueeze(-1)
    y, z = a / norm, eye.expand_as(a)
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
    root = norm.sqrt()
    return sym(y) * root, sym(z) / root


def _lyapunov_sign_iteration(s: torch.Tensor, g: torch.Tensor, iterations: int) -> torch.Tensor:
    """Solve ``S X + X S = G`` for SPD ``S`` by the sign iteration on ``[[S, -G], [0, -S]]``."""
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
    scale = torch.linalg.matrix_norm(s).unsqueeze(-1).unsqueeze(-1)
    p, q = s / scale, -g / scale
    for _ in range(iterations):
        p2 = p @ p
        q = 0.5 * (3.0 * q - p2 @ q + p @ q @ p - q @ p2)
        p = 0.5 * p @ (3.0 * eye - p2)
    return -0.5 * q


class _NewtonSchulzSqrt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, iterations):
        root, inv_root = _coupled_iteration(a, iterations)
        ctx.save_for_backward(root, inv_root)
        ctx.iterations = iterations
        return root, inv_root

    @staticmethod
    @first_order
    def backward(ctx, grad_root, grad_inv):
        root, inv_root = ctx.saved_tensors
        g = torch.zeros_like(root) if grad_root is None else sym(grad_root)
        if grad_inv is not None:
            # d(S^-1) = -S^-1 dS S^-1: pull the inverse's gradient back to S first.
            g = g - inv_root @ sym(grad_inv) @ inv_root
        # A = S S gives dA = S dS + dS S, so the gradient in A solves S X + X S = g.
        return _lyapunov_sign_iteration(root, g, ctx.iterations), None


def _check_positive_definite(x: torch.Tensor) -> None:
    """With validation on, ``ValueError`` unless every matrix of ``x`` has a Cholesky factor
    (in the working dtype of the policy, as the SPD manifolds check their points)."""
    if not config.validating() or x.numel() == 0:
        return
    info = torch.linalg.cholesky_ex(sym(x.detach().to(working_dtype(x.dtype)))).info
    if bool((info != 0).any()):
        raise ValueError("input is not positive definite (Cholesky factorisation failed)")


def sqrtm_invsqrtm_newton_schulz(x: torch.Tensor, iterations: int = None):
    """``(X^(1/2), X^(-1/2))`` of SPD ``(..., n, n)`` by Newton-Schulz iterations.

    Parameters
    ----------
    x : torch.Tensor
        SPD matrices, float32 or float64.
    iterations : int, optional
        Iteration count of the forward and backward iterations (default
        :func:`default_iterations`); see the module docstring for the accuracy it buys.

    Returns
    -------
    tuple of torch.Tensor
        Square roots and inverse square roots, each ``(..., n, n)``.

    With validation on, ``ValueError`` for input that is not positive definite: the iteration
    has no fixed point there and returns NaN.
    """
    check_symmetric_matrix(x)
    if iterations is None:
        iterations = default_iterations(x.dtype)
    iterations = check_positive_int(iterations, "iterations")
    _check_positive_definite(x)
    return newton_schulz_roots(x, iterations)


def newton_schulz_roots(x: torch.Tensor, iterations: int):
    """:func:`sqrtm_invsqrtm_newton_schulz` without input checks, for callers that have checked
    their SPD matrices already (the Bures-Wasserstein maps and barycenter, every iteration)."""
    return _NewtonSchulzSqrt.apply(x, iterations)
