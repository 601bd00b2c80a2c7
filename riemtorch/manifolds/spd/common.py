"""Helpers shared by the SPD metrics: input checks, working precision, random points.

Every SPD metric computes in the *working dtype* of :mod:`riemtorch.config`: float32 input is
promoted to float64 (``config.eigh_in_float64``), the whole computation (Cholesky factors,
eigendecompositions, triangular solves) runs there and the result is cast back. At condition
number 1e6 a float32 Cholesky or ``eigh`` loses the smallest eigenvalues to rounding; in float64
the only error left is the rounding of the float32 input itself.
"""

from typing import Sequence, Tuple

import torch

from riemtorch import config
from riemtorch.linalg import spectral
from riemtorch.linalg.batched import eigh
from riemtorch.linalg.checks import check_float_tensor, check_square, check_symmetric_matrix
from riemtorch.linalg.symmetric import apply_spectral, sym, working_dtype


def promote(*tensors: torch.Tensor) -> Tuple[torch.dtype, Sequence[torch.Tensor]]:
    """Common dtype of ``tensors`` and the tensors cast to its working dtype."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    work = working_dtype(dtype)
    return dtype, [t.to(work) for t in tensors]


def check_matrices(x, name: str) -> None:
    """Type, dtype and shape always; symmetry and finiteness when validation is on."""
    check_symmetric_matrix(x, name)


def check_ambient(g, name: str) -> None:
    """A float tensor of shape ``(..., n, n)`` that need not be symmetric."""
    check_float_tensor(g, name)
    check_square(g, name)


def cholesky(x: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor; ``ValueError`` (not a LAPACK error) for non-SPD input."""
    if not config.validate:
        return torch.linalg.cholesky_ex(x)[0]
    try:
        return torch.linalg.cholesky(x)
    except torch.linalg.LinAlgError as err:
        raise ValueError(f"point is not positive definite: {err}") from None


def _negative_eigenvalue(xs: torch.Tensor) -> torch.Tensor:
    """Per matrix of ``xs`` ``(..., n, n)``, whether it has an eigenvalue below ``-n eps tr(X)``
    (at most ``-n eps`` times its largest one: clearly negative, beyond rounding), found by a
    Cholesky factorisation of the matrix shifted by that much (no autograd)."""
    n = xs.shape[-1]
    with torch.no_grad():
        trace = torch.diagonal(xs, dim1=-2, dim2=-1).sum(-1)
        shift = (n * torch.finfo(xs.dtype).eps) * trace.clamp_min(torch.finfo(xs.dtype).tiny)
        eye = torch.eye(n, dtype=xs.dtype, device=xs.device)
        return torch.linalg.cholesky_ex(xs + shift[..., None, None] * eye).info != 0


def check_positive_samples(xs: torch.Tensor) -> None:
    """With validation on, ``ValueError`` naming the first sample of ``xs`` ``(N, ..., n, n)``
    with a clearly negative eigenvalue, for solvers that would otherwise take such a sample's
    square root as that of its positive part."""
    if not config.validating():
        return
    failed = _negative_eigenvalue(xs)
    failed = failed.reshape(failed.shape[0], -1).any(-1)
    if bool(failed.any()):
        raise ValueError(f"point is not positive definite: sample {int(failed.nonzero()[0])} "
                         "of the batch has a negative eigenvalue")


def check_positive_point(y: torch.Tensor, name: str = "the second point") -> None:
    """With validation on, ``ValueError`` where a matrix of ``y`` has a clearly negative
    eigenvalue (for the maps that take only a Cholesky factor of the first point)."""
    if config.validating() and bool(_negative_eigenvalue(y).any()):
        raise ValueError(f"point is not positive definite: {name} has a negative eigenvalue")


def whiten(chol: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``L^-1 U L^-T`` for lower triangular ``L`` and symmetric ``U`` (two triangular solves)."""
    half = torch.linalg.solve_triangular(chol, u, upper=False)
    return sym(torch.linalg.solve_triangular(chol, half.transpose(-1, -2), upper=False))


def unwhiten(chol: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``L A L^T``, the inverse of :func:`whiten` (for any factor ``L`` of the point, not only
    its Cholesky factor)."""
    return sym(chol @ a @ chol.transpose(-1, -2))


def uniform_weights(xs: torch.Tensor) -> torch.Tensor:
    """Equal weights ``1 / N`` for samples ``xs`` ``(N, ..., n, n)``, shape ``(N, 1, ..., 1)``
    (broadcasting against ``xs``), in its dtype and on its device."""
    count = xs.shape[0]
    return torch.full((count,) + (1,) * (xs.dim() - 1), 1.0 / count, dtype=xs.dtype,
                      device=xs.device)


def weighted_sum(w: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i X_i`` over the first dimension for weights ``w`` ``(N, ..., 1, 1)``; weights
    shared by the batch dimensions need no ``(N, ..., n, n)`` temporary."""
    if all(size == 1 for size in w.shape[1:]):
        return torch.tensordot(w.reshape(-1), xs, dims=1)
    return (w * xs).sum(0)


def implicit_rtol(dtype: torch.dtype) -> float:
    """Relative accuracy to which the implicit backward passes of the means solve their
    linear systems: about ten digits in float64 (a mean is only as accurate as its solver's
    tolerance), the rounding floor ``1e3 eps`` in lower precision."""
    return 1e-10 if dtype == torch.float64 else 1e3 * torch.finfo(dtype).eps


def expand_samples(xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Samples ``xs`` ``(N, ..., n, n)`` expanded (a view) to the batch shape they share with
    the weights ``w`` ``(N, ..., 1, 1)``: samples shared by channels then have the shape of the
    per-channel results computed from them."""
    return xs.expand(*torch.broadcast_shapes(xs.shape[:-2], w.shape[:-2]), *xs.shape[-2:])


def congruence_shared(a: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """``a X_i a^T`` for ``a`` ``(..., n, n)`` and samples ``xs`` ``(N, ..., n, n)`` (not
    symmetrised): ``X_i a^T`` for all samples is one large matrix product."""
    t = xs.movedim(0, -3)
    right = (t.flatten(-3, -2) @ a.mT).unflatten(-2, t.shape[-3:-1])
    return (a.unsqueeze(-3) @ right).movedim(-3, 0)


def identity(n: int, batch=(), dtype=None, device=None) -> torch.Tensor:
    """Identity matrices of shape ``(*batch, n, n)`` (a fresh, writable tensor)."""
    return torch.eye(n, dtype=dtype, device=device).expand(*batch, n, n).clone()


def matrix_inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Frobenius inner product over the two trailing dimensions."""
    return (a * b).sum(dim=(-1, -2))


def funcm(x: torch.Tensor, fn: spectral.SpectralFunction) -> torch.Tensor:
    """``f(X)`` through the finite-gradient backward of :mod:`riemtorch.linalg`."""
    return apply_spectral(x, (fn,))[0]


def logm(x):
    return funcm(x, spectral.LOG)


def expm(x):
    return funcm(x, spectral.EXP)


def sqrtm(x):
    return funcm(x, spectral.SQRT)


def powm(x, p: float):
    return funcm(x, spectral.Power(p))


def scaled_expm_of_log(x: torch.Tensor, t) -> torch.Tensor:
    """``X^t`` for a number or a tensor ``t`` of shape ``(..., 1, 1)``."""
    if isinstance(t, (int, float)):
        return powm(x, float(t))
    return expm(t * logm(x))


def project_spd(x: torch.Tensor) -> torch.Tensor:
    """Symmetric part with eigenvalues floored at ``10 n eps`` times the largest one."""
    dtype, (y,) = promote(x)
    lam, u = eigh(sym(y))
    n = x.shape[-1]
    floor = 10 * n * torch.finfo(dtype).eps
    top = lam.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    lam = torch.maximum(lam, floor * top)
    return ((u * lam.unsqueeze(-2)) @ u.transpose(-1, -2)).to(dtype)


def random_spd(*size, n: int = 3, cond=None, dtype=None, device=None, generator=None):
    """Random SPD matrices ``Q diag(lam) Q^T`` with Haar-distributed ``Q``.

    Parameters
    ----------
    size : int
        Batch shape.
    n : int
        Matrix size.
    cond : float, optional
        Condition number ``max(lam) / min(lam)``: the eigenvalues are log-uniform in
        ``[cond^-1/2, cond^1/2]`` with both ends attained. Without it, ``log(lam)`` is normal
        with standard deviation ``1/2``. Rounding the matrix to ``dtype`` moves its
        eigenvalues by about ``sqrt(n) eps / 2`` times the largest, so ``cond`` must stay below
        ``2 / (sqrt(n) eps)`` (float32: about ``1e7 / sqrt(n)``); ``n = 1`` takes only
        ``cond = 1``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    work = working_dtype(dtype)
    batch = tuple(size)
    g = torch.randn(*batch, n, n, dtype=work, device=device, generator=generator)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    if cond is None:
        loglam = 0.5 * torch.randn(*batch, n, dtype=work, device=device, generator=generator)
    else:
        cond = float(cond)
        if not 1 <= cond < float("inf"):
            raise ValueError(f"cond must be a finite number >= 1, got {cond!r}")
        if n == 1 and cond != 1:
            raise ValueError(f"a 1 x 1 matrix has condition number 1, got cond={cond!r}")
        limit = 2 / (n ** 0.5 * torch.finfo(dtype).eps)
        if cond >= limit:
            raise ValueError(f"cond={cond:g} is beyond what {dtype} represents for n={n}: "
                             f"rounding moves the eigenvalues by about the smallest one; use "
                             f"cond < {limit:.3g} or float64")
        half = 0.5 * torch.log(torch.tensor(cond, dtype=work)).item()
        unit = torch.rand(*batch, n, dtype=work, device=device, generator=generator)
        loglam = half * (2 * unit - 1)
        if n >= 2:
            loglam[..., 0] = -half
            loglam[..., -1] = half
    x = (q * loglam.exp().unsqueeze(-2)) @ q.transpose(-1, -2)
    return sym(x).to(dtype)
