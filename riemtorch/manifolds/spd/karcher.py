"""Affine-invariant (Karcher) mean by Riemannian Newton steps, differentiated implicitly.

In the frame of the current estimate ``M = L L^T`` the samples are ``W_i = L^-1 X_i L^-T`` and
the mean solves ``F(M) = sum_i w_i log W_i = 0``. Moving the estimate to ``L (I + D) L^T``
changes ``F`` by ``-H[D]`` to first order, with the Hessian

``H[D] = sum_i w_i U_i (K_i o (U_i^T D U_i)) U_i^T``,
``K_i[a, b] = (l_a + l_b) / 2 * (log l_a - log l_b) / (l_a - l_b)``

for ``W_i = U_i diag(l) U_i^T``. ``K >= 1`` entrywise, so ``H`` is symmetric positive definite
with all eigenvalues at least 1 and, for moderately spread data, close to 1: conjugate
gradients solve ``H[V] = F`` in a few matrix products, and the Newton step ``M <- L exp(V) L^T``
converges quadratically. Every iteration costs one batched ``eigh`` of the samples (the logs
and ``H`` come from the same decomposition); started from the geometric mean of the
arithmetic and harmonic means (no eigendecomposition of the samples), two iterations typically
reach ``||F|| < 1e-8``, where the Karcher flow ``M <- L exp(F) L^T`` needs five or more.

The backward is the implicit function theorem at the solution: ``dM = L H^-1[R] L^T`` with
``R = sum_i dw_i log W_i + w_i Dlog_{W_i}[L^-1 dX_i L^-T]``, so a loss gradient ``G`` pulls back
through one more ``eigh`` and one conjugate-gradient solve ``H[Z] = L^T G L``:
``grad X_i = w_i L^-T Dlog_{W_i}[Z] L^-1`` and ``grad w_i = <Z, log W_i>``. Both are finite at
repeated eigenvalues (the divided differences of ``log`` are evaluated without cancellation).
They are the derivatives of the exact mean: when ``max_iter`` stops the iteration before
convergence, the value returned is the last Newton iterate (on the benchmark's Wishart samples
one step takes the gradient norm from ``3e-2`` to ``1.5e-9``) while the gradient remains that
of the mean.
"""

import torch

from riemtorch.linalg import spectral
from riemtorch.linalg.batched import map_batch_chunks
from riemtorch.linalg.symmetric import floor_eigenvalues, sym
from riemtorch.manifolds.spd import common


def _inner(a, b):
    return (a * b).sum(dim=(-1, -2))


def _whitened_spectrum(xs, chol, input_dtype):
    """Eigenvalues and eigenvectors of ``L^-1 X_i L^-T`` (``eigh`` reads one triangle)."""
    eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device)
    inv = torch.linalg.solve_triangular(chol, eye, upper=False)
    lam, u = map_batch_chunks(torch.linalg.eigh, common.congruence_shared(inv, xs))
    return floor_eigenvalues(lam, input_dtype), u, inv


def _weighted_sum_in_eigenbasis(u, b):
    """``sum_i U_i B_i U_i^T`` for per-sample ``B_i`` (weights already applied)."""
    return sym(common.sum_of_products(u @ b, u))


def _log_sum(loglam, u, w):
    """``sum_i w_i log W_i`` from the logarithms of the eigenvalues."""
    return sym(common.sum_of_products(u * (w.squeeze(-1) * loglam).unsqueeze(-2), u))


def _fast_log_divided_differences(lam, loglam):
    """``(log a - log b) / (a - b)`` to about ``1e-10`` relative, ``2 / (a + b)`` for pairs
    closer than ``1e-5`` relative (where the quotient loses digits); enough for Newton steps,
    whose fixed point does not depend on the Hessian."""
    a, b = lam.unsqueeze(-1), lam.unsqueeze(-2)
    d = a - b
    close = d.abs() <= 1e-5 * torch.maximum(a, b)
    quotient = (loglam.unsqueeze(-1) - loglam.unsqueeze(-2)) / torch.where(close, 1.0, d)
    return torch.where(close, 2.0 / (a + b), quotient)


class _Hessian:
    """``D -> sum_i w_i U_i (K_i o (U_i^T D U_i)) U_i^T`` from the spectra of the samples."""

    def __init__(self, lam, u, w, dlog):
        self.u, self.dlog = u, dlog
        self.kernel = w * 0.5 * (lam.unsqueeze(-1) + lam.unsqueeze(-2)) * dlog

    def __call__(self, d):
        u = self.u
        rotated = u.transpose(-1, -2) @ common.left_shared(d, u)
        return _weighted_sum_in_eigenbasis(u, self.kernel * rotated)


def _conjugate_gradient(op, b, atol, max_iter=30):
    """Solve ``op(x) = b`` for symmetric positive definite ``op`` on ``(..., n, n)`` matrices,
    batched over leading dimensions, until every residual norm is at most ``atol``."""
    x = torch.zeros_like(b)
    r, p = b, b
    rr = _inner(r, r)
    for _ in range(max_iter):
        if bool((rr.sqrt() <= atol).all()):
            break
        hp = op(p)
        php = _inner(p, hp)
        alpha = torch.where(php > 0, rr / torch.where(php > 0, php, 1.0), 0.0)[..., None, None]
        x = x + alpha * p
        r = r - alpha * hp
        rr_new = _inner(r, r)
        beta = torch.where(rr > 0, rr_new / torch.where(rr > 0, rr, 1.0), 0.0)[..., None, None]
        p = r + beta * p
        rr = rr_new
    return x


def arithmetic_harmonic_start(xs, w):
    """Geometric mean ``A # H`` of the weighted arithmetic and harmonic means, ``(..., n, n)``.

    Exact for two equally weighted commuting samples and a close start in general (about
    ``6e-3`` relative on the Wishart samples of the benchmark, where the log-Euclidean mean is
    ``5e-4`` off but costs a batched ``eigh``); it needs Cholesky factors, no
    eigendecomposition of the samples.
    """
    arith = (w * xs).sum(0)
    inverse_mean = (w * torch.cholesky_inverse(common.cholesky(xs))).sum(0)
    chol = common.cholesky(arith)
    # A # H = L (I # L^-1 H L^-T) L^T, and L^-1 H L^-T = (L^T H^-1 L)^-1.
    whitened_inverse = sym(chol.transpose(-1, -2) @ inverse_mean @ chol)
    return common.unwhiten(chol, common.powm(whitened_inverse, -0.5))


def newton_karcher_mean(xs, w, tol, max_iter, input_dtype):
    """Newton iterations for the weighted Karcher mean (no autograd; see the module docstring).

    The step is damped by ``nu`` (halved whenever ``||F||`` fails to decrease, doubled back up
    to 1 otherwise). It stops after the step taken from an estimate with ``||F|| <= tol``, so
    the returned mean is one (quadratically convergent) step past the last one checked.
    """
    mean = arithmetic_harmonic_start(xs, w)
    nu = torch.ones(mean.shape[:-2], dtype=xs.dtype, device=xs.device)
    previous = torch.full_like(nu, float("inf"))
    for _ in range(max_iter):
        chol = common.cholesky(mean)
        lam, u, _ = _whitened_spectrum(xs, chol, input_dtype)
        loglam = lam.log()
        grad = _log_sum(loglam, u, w)
        crit = torch.linalg.matrix_norm(grad)
        nu = torch.where(crit >= previous, 0.5 * nu, (2.0 * nu).clamp_max(1.0))
        previous = crit
        hessian = _Hessian(lam, u, w, _fast_log_divided_differences(lam, loglam))
        step = _conjugate_gradient(hessian, grad, atol=0.1 * tol)
        mean = common.unwhiten(chol, common.expm(nu[..., None, None] * sym(step)))
        if bool(crit.amax() <= tol):
            break
    return mean


class _KarcherMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, w, tol, max_iter, input_dtype):
        mean = newton_karcher_mean(xs, w, tol, max_iter, input_dtype)
        ctx.save_for_backward(xs, w, mean)
        ctx.input_dtype = input_dtype
        return mean

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        xs, w, mean = ctx.saved_tensors
        chol = common.cholesky(mean)
        lam, u, inv = _whitened_spectrum(xs, chol, ctx.input_dtype)
        hessian = _Hessian(lam, u, w, spectral.LOG.loewner(lam))
        rhs = sym(chol.transpose(-1, -2) @ grad @ chol)
        scale = torch.linalg.matrix_norm(rhs).amax()
        z = _conjugate_gradient(hessian, rhs, atol=float(scale) * 1e3 * torch.finfo(xs.dtype).eps,
                                max_iter=100)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            ut = u.transpose(-1, -2)
            dlog_z = u @ (hessian.dlog * (ut @ common.left_shared(z, u))) @ ut
            grad_x = sym(w * common.congruence_shared(inv.transpose(-1, -2), dlog_z))
        if ctx.needs_input_grad[1]:
            # <Z, U diag(log l) U^T> = sum_a log(l_a) (U^T Z U)_aa
            rotated = u.transpose(-1, -2) @ common.left_shared(z, u)
            rotated = torch.diagonal(rotated, dim1=-2, dim2=-1)
            grad_w = (rotated * lam.log()).sum(-1)[..., None, None]
        return grad_x, grad_w, None, None, None


def karcher_mean(xs, w, tol, max_iter, input_dtype=None):
    """Weighted affine-invariant mean of ``xs`` ``(N, ..., n, n)``, weights ``(N, ..., 1, 1)``
    summing to one; differentiable in both by the implicit backward of the module docstring.

    Parameters
    ----------
    xs : torch.Tensor
        SPD samples, shape ``(N, ..., n, n)``, in the working dtype.
    w : torch.Tensor
        Weights, shape ``(N, ..., 1, 1)``.
    tol : float
        Stop once the Frobenius norm of ``sum_i w_i log W_i`` (the Riemannian gradient) is at
        most ``tol`` (then one more Newton step is taken).
    max_iter : int
        Iteration cap.
    input_dtype : torch.dtype, optional
        Dtype of the user's input, for the eigenvalue floor of :mod:`riemtorch.config`.

    Returns
    -------
    torch.Tensor
        The mean, shape ``(..., n, n)``.
    """
    return _KarcherMean.apply(xs, w, float(tol), int(max_iter), input_dtype or xs.dtype)
