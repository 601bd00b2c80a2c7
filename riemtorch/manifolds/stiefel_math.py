"""Formulas of the Stiefel manifold ``St(n, p) = {X in R^(n x p) : X^T X = I}``.

Plain functions on batched ``(..., n, p)`` tensors; :class:`riemtorch.manifolds.Stiefel` and
:class:`riemtorch.manifolds.Grassmann` delegate to them. Tangent vectors at ``X`` are written
``U = X A + Q B`` with ``A = X^T U`` skew-symmetric and ``Q B`` the QR factorisation of
``(I - X X^T) U`` (Edelman, Arias & Smith 1998).

The metrics are the Euclidean one, ``<U, V> = tr(U^T V)``, and the canonical one,
``<U, V> = tr(U^T (I - X X^T / 2) V)``. Zimmermann & Hueper (2022) write both as the
``beta``-metrics ``<U, V> = beta tr(A_U^T A_V) + tr(B_U^T B_V)`` with ``beta = 1`` (Euclidean)
and ``beta = 1/2`` (canonical); the geodesics are

``Exp_X(U) = [X, Q] expm([[2 beta A, -B^T], [B, 0]]) [I; 0] expm((1 - 2 beta) A)``.
"""

import warnings

import torch

from riemtorch.linalg import spectral
from riemtorch.linalg.symmetric import apply_spectral, sym, working_dtype
from riemtorch.manifolds.spectral_funcs import ACOS_OVER_SIN

__all__ = [
    "skew",
    "polar",
    "qr_orthonormal",
    "cayley_transform",
    "stiefel_expmap",
    "stiefel_logmap",
    "skew_logm",
]


def skew(a: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric part ``(A - A^T) / 2`` of ``(..., p, p)`` matrices."""
    return 0.5 * (a - a.transpose(-1, -2))


def _eye_like(x: torch.Tensor, p: int) -> torch.Tensor:
    return torch.eye(p, dtype=x.dtype, device=x.device)


def polar(y: torch.Tensor) -> torch.Tensor:
    """Orthonormal polar factor ``Y (Y^T Y)^(-1/2)`` of full-rank ``(..., n, p)`` matrices.

    It is the nearest matrix with orthonormal columns (in Frobenius norm), spans the same
    subspace as ``Y`` and is the identity map on orthonormal input. One ``eigh`` of ``p x p``.
    """
    gram = y.transpose(-1, -2) @ y
    (inv_sqrt,) = apply_spectral(sym(gram), (spectral.INV_SQRT,))
    return y @ inv_sqrt


def projection_polar(y: torch.Tensor) -> torch.Tensor:
    """The polar factor of arbitrary full-rank ``(..., n, p)`` matrices, orthonormal to rounding.

    :func:`polar` squares the condition number in its Gram matrix: its result departs from
    orthonormality by about ``eps cond(Y)^2`` (float64: ``3e-5`` at ``1e6``; float32 Gram
    products: ``5e-3`` at ``1e3``). Both passes here run in the working dtype, and the second,
    on the nearly orthonormal first result, takes that departure to rounding (measured at
    condition numbers up to ``1e8``: ``|Q^T Q - I| <= 3e-15`` in float64, and within
    ``7e-9`` of the polar factor from an SVD); on orthonormal input both are the identity map.
    """
    work = working_dtype(y.dtype)
    return polar(polar(y.to(work))).to(y.dtype)


def qr_orthonormal(y: torch.Tensor) -> torch.Tensor:
    """The ``Q`` factor of ``Y = Q R`` with ``diag(R) >= 0``, for ``(..., n, p)`` matrices.

    The sign convention makes the factorisation unique, so that ``Q`` of a Gaussian matrix is
    uniformly (Haar) distributed and ``Q = Y`` for orthonormal ``Y``.
    """
    q, r = torch.linalg.qr(y)
    d = r.diagonal(dim1=-2, dim2=-1)
    sign = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    return q * sign.unsqueeze(-2)


def cayley_transform(x: torch.Tensor, w_left: torch.Tensor, w_right: torch.Tensor,
                     u: torch.Tensor) -> torch.Tensor:
    """``X + (I - W/2)^(-1) U`` for the skew ``W = L R^T`` of rank ``2p`` (Woodbury form).

    With ``W X = U`` this is the Cayley transform ``(I - W/2)^(-1) (I + W/2) X`` (Wen & Yin
    2013); only a ``2p x 2p`` system is solved. ``x, u``: ``(..., n, p)``; ``w_left, w_right``:
    ``(..., n, 2p)``.
    """
    k = w_left.shape[-1]
    small = _eye_like(x, k) - 0.5 * (w_right.transpose(-1, -2) @ w_left)
    rhs = w_right.transpose(-1, -2) @ u
    return x + u + 0.5 * (w_left @ torch.linalg.solve(small, rhs))


def _block(a, b, c, d):
    return torch.cat((torch.cat((a, b), -1), torch.cat((c, d), -1)), -2)


def _normal_qr(x, u):
    """``(A, Q, B, moved)`` with ``A = X^T U``, ``Q B = (I - X X^T) U`` (reduced QR) and
    ``moved`` the zero tensor that carries the derivative of ``(I - X X^T) U`` out of span(Q).

    The exponential and logarithm depend on the normal part ``Z = (I - X X^T) U`` only through
    ``Q B = Z G`` with a gain ``G(A, Z^T Z)`` that is smooth at rank-deficient ``Z`` (``U = 0``,
    ``X = Y``, or ``Y`` turning only some columns of ``X``), but QR's backward divides by
    ``diag(B)`` and is NaN there. So ``Q`` takes no gradient: ``B = Q^T Z`` carries the motion of
    ``Z`` inside span(Q) (a rotation of ``Q`` inside its span changes nothing), and the callers
    add ``moved`` times their gain (zero in value) for the motion out of it. Values are exactly
    those of the QR; ``moved`` is ``None`` when nothing needs a gradient.
    """
    a = x.transpose(-1, -2) @ u
    normal = u - x @ a
    with torch.no_grad():
        q, b = torch.linalg.qr(normal)
    if not (torch.is_grad_enabled() and normal.requires_grad):
        return a, q, b, None
    delta = normal - normal.detach()  # zero, with the derivative of normal
    b = b + q.transpose(-1, -2) @ delta
    moved = delta - q @ (q.transpose(-1, -2) @ delta)
    return a, q, b, moved


def _phi_corner(gen: torch.Tensor, p: int) -> torch.Tensor:
    """Leading ``p x p`` block of ``phi(gen) = sum_k gen^k / (k + 1)!``, without gradient.

    For ``gen = [[2 beta A, -B^T], [B, 0]]`` the lower-left block of ``expm(gen)`` is
    ``B phi(gen)[:p, :p]`` (every power of ``gen`` enters the second block row through ``B``):
    the gain between ``B`` and the normal block of a geodesic. Read off one augmented
    exponential ``expm([[gen, [I; 0]], [0, 0]])``.
    """
    k = gen.shape[-1]
    with torch.no_grad():
        aug = torch.zeros(gen.shape[:-2] + (k + p, k + p), dtype=gen.dtype, device=gen.device)
        aug[..., :k, :k] = gen
        aug[..., :p, k:] = _eye_like(gen, p)
        return torch.linalg.matrix_exp(aug)[..., :p, k:]


def _euclidean_expmap(x, u):
    """Edelman et al.'s form ``[X, U] expm([[A, -U^T U], [I, A]]) [expm(-A); 0]``: no QR."""
    p = x.shape[-1]
    a = skew(x.transpose(-1, -2) @ u)
    eye = torch.eye(p, dtype=x.dtype, device=x.device).expand_as(a)
    gen = _block(a, -(u.transpose(-1, -2) @ u), eye, a)
    first = torch.linalg.matrix_exp(gen)[..., :p] @ torch.linalg.matrix_exp(-a)
    return x @ first[..., :p, :] + u @ first[..., p:, :]


def stiefel_expmap(x: torch.Tensor, u: torch.Tensor, beta: float) -> torch.Tensor:
    """Exponential map of the ``beta``-metric (1: Euclidean, 1/2: canonical).

    Parameters
    ----------
    x : torch.Tensor
        Points, shape ``(..., n, p)``.
    u : torch.Tensor
        Tangent vectors at ``x``, shape ``(..., n, p)``.
    beta : float
        Metric parameter.

    Returns
    -------
    torch.Tensor
        ``Exp_x(u)``, shape ``(..., n, p)``.
    """
    x, u = torch.broadcast_tensors(x, u)
    p = x.shape[-1]
    if beta == 1.0:
        return _euclidean_expmap(x, u)
    a, q, b, moved = _normal_qr(x, u)
    a = skew(a)
    k = b.shape[-2]
    gen = _block(2 * beta * a, -b.transpose(-1, -2), b, torch.zeros_like(b[..., :k]))
    first = torch.linalg.matrix_exp(gen)[..., :p]
    y = x @ first[..., :p, :] + q @ first[..., p:, :]
    if moved is not None:
        y = y + moved @ _phi_corner(gen, p)
    if beta != 0.5:
        y = y @ torch.linalg.matrix_exp((1 - 2 * beta) * a)
    return y


def skew_logm(v: torch.Tensor) -> torch.Tensor:
    """Principal real logarithm of rotations ``V`` in ``SO(m)``, shape ``(..., m, m)``.

    ``V`` is normal, so its symmetric part ``S = cos(L)`` and skew part ``K = sin(L)`` commute
    and ``log V = (theta / sin theta)(S) K`` with ``theta = arccos``: one symmetric ``eigh``
    (with the finite Daleckii-Krein backward of :mod:`riemtorch.linalg`) and no complex
    arithmetic. Valid while no eigenvalue of ``V`` is ``-1`` (rotation angles below ``pi``).
    """
    s = sym(v)
    k = skew(v)
    (factor,) = apply_spectral(s, (ACOS_OVER_SIN,))
    return skew(factor @ k)


def _orthogonal_completion(w: torch.Tensor) -> torch.Tensor:
    """Columns completing orthonormal ``(..., m, p)`` ``W`` to a rotation ``[W, W_perp]``.

    The direction is taken from a complete QR without gradient; the completion is then
    re-derived from ``W`` by projection and QR so that autograd sees its dependence on ``W``.
    """
    m, p = w.shape[-2:]
    with torch.no_grad():
        seed = torch.linalg.qr(w, mode="complete")[0][..., p:]
    perp = seed - w @ (w.transpose(-1, -2) @ seed)
    perp = qr_orthonormal(perp)
    full = torch.cat((w, perp), -1)
    flip = torch.linalg.det(full) < 0
    last = torch.where(flip[..., None], -perp[..., -1], perp[..., -1])
    return torch.cat((perp[..., :-1], last.unsqueeze(-1)), -1)


def _nearest_rotation(a: torch.Tensor) -> torch.Tensor:
    """Rotation ``R`` in ``SO(k)`` maximising ``tr(R^T A)`` (Kabsch), for ``(..., k, k)``."""
    u, _, vh = torch.linalg.svd(a)
    d = torch.ones(a.shape[:-1], dtype=a.dtype, device=a.device)
    d[..., -1] = torch.linalg.det(u @ vh)
    return (u * d.unsqueeze(-2)) @ vh


def _lyapunov_step(b: torch.Tensor, c: torch.Tensor, sweeps: int = 3) -> torch.Tensor:
    """Solve ``S Z + Z S = C`` with ``S = B B^T / 12 - I / 2`` by a Neumann series.

    This is the BCH-corrected update of the block ``C`` (Zimmermann & Hueper 2022); plain
    ``Z = -C`` is Zimmermann's 2017 step. ``B B^T / 6`` is small against the identity inside
    the injectivity radius, so a few sweeps suffice, and matrix products keep it differentiable.
    """
    k = b @ b.transpose(-1, -2) / 12.0
    z = -c
    for _ in range(sweeps):
        z = k @ z + z @ k - c
    return skew(z)


def _completion_iteration(w, perp, beta, a_hat, tol, max_iter, min_updates=0):
    """Rotate the completion ``perp`` of ``w`` until ``log [w expm(tau A), perp]`` has the form
    ``[[2 beta A, -B^T], [B, 0]]`` (``tau = 2 beta - 1``), with at least ``min_updates``
    rotations. Returns ``(A, B, perp, residual)``."""
    p = w.shape[-1]
    tau = 2.0 * beta - 1.0
    for step in range(max(max_iter, min_updates + 1)):
        first = w @ torch.linalg.matrix_exp(tau * a_hat) if tau != 0 else w
        log_v = skew_logm(torch.cat((first, perp), -1))
        a = log_v[..., :p, :p] / (2.0 * beta)
        b = log_v[..., p:, :p]
        c = log_v[..., p:, p:]
        residual = torch.linalg.matrix_norm(c) + abs(tau) * torch.linalg.matrix_norm(a - a_hat)
        if step >= min_updates and (residual.numel() == 0 or bool(residual.amax() <= tol)):
            break
        perp = perp @ torch.linalg.matrix_exp(_lyapunov_step(b, c))
        if tau != 0:
            rot = torch.linalg.matrix_exp(tau * a)
            a_hat = a + tau * rot @ (a - a_hat) @ rot.transpose(-1, -2)
    return a, b, perp, residual


def stiefel_logmap(x: torch.Tensor, y: torch.Tensor, beta: float, tol: float = None,
                   max_iter: int = 100) -> torch.Tensor:
    """Riemannian logarithm of the ``beta``-metric by the algebraic Stiefel log.

    Zimmermann's iteration (2017) for the canonical metric, with the BCH-corrected update of
    Zimmermann & Hueper (2022), and for other ``beta`` the forward iteration of Mataigne,
    Zimmermann & Miolane (2025): find a completion ``V = [[M, X0], [N, Y0]]`` in ``SO(2p)`` of
    ``[M; N]`` (``M = X^T Y``, ``Q N = (I - X X^T) Y``) whose logarithm has the form
    ``[[2 beta A, -B^T], [B, 0]]`` after the right factor ``expm((2 beta - 1) A)``; then
    ``Log_X(Y) = X A + Q B``. Converges linearly for points closer than about ``0.9 pi`` (canonical);
    the ``2p x 2p`` iteration runs in float64 for float32 input. Differentiable by unrolling
    (with autograd at least five updates are taken, so values then differ from those without
    by at most about ``tol``).

    Parameters
    ----------
    x, y : torch.Tensor
        Points, shape ``(..., n, p)``.
    beta : float
        Metric parameter (1: Euclidean, 1/2: canonical).
    tol : float, optional
        Stopping tolerance on the Frobenius norm of the residual blocks (default ``1e-13`` for
        float64 input, ``1e-6`` for float32).
    max_iter : int
        Iteration cap; a ``RuntimeWarning`` names the residual if it is reached (the points
        are then too far apart for the iteration). A ``RuntimeWarning`` also says when the
        result does not map back to ``Y``: at a rotation angle ``pi`` (a column of ``Y``
        opposite to the matching one of ``X``) no logarithm exists, and the iteration stops
        at once.

    Returns
    -------
    torch.Tensor
        ``Log_x(y)``, shape ``(..., n, p)``.
    """
    x, y = torch.broadcast_tensors(x, y)
    p = x.shape[-1]
    if tol is None:
        tol = 1e-6 if x.dtype == torch.float32 else 1e-13
    m_block, q, n_block, moved = _normal_qr(x, y)
    work = torch.float64 if x.dtype == torch.float32 else x.dtype
    w = torch.cat((m_block, n_block), -2).to(work)
    perp = _orthogonal_completion(w)
    # Procrustes start: rotate the free block towards the identity (Zimmermann 2017).
    perp = perp @ _nearest_rotation(perp[..., p:, :].detach().transpose(-1, -2))
    a_hat = torch.zeros_like(m_block, dtype=work)
    if beta != 0.5:
        # Warm start from the canonical solution, which converges from farther away.
        a_hat, _, perp, _ = _completion_iteration(w, perp, 0.5, a_hat, 1e-3, max_iter)
    # Unrolled derivatives forget the detached Procrustes start at the iteration's rate: with
    # autograd, take a few updates even from a start within tolerance (Y turning only some
    # columns of X: the derivative was 6 % off with none).
    grad = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    a, b, _, residual = _completion_iteration(w, perp, beta, a_hat, tol, max_iter,
                                              min_updates=5 if grad else 0)
    if not bool(torch.isfinite(residual).all()):
        raise ValueError("Stiefel logarithm failed: non-finite residual (are the inputs on the "
                         "manifold?)")
    if residual.numel() and bool(residual.amax() > tol):
        warnings.warn(
            f"Stiefel logarithm stopped after {max_iter} iterations with residual "
            f"{float(residual.amax()):.3g} > {tol:g}: the points are too far apart for the "
            "algebraic Stiefel log", RuntimeWarning, stacklevel=2)
    elif residual.numel():
        mismatch = _reconstruction_error(w, a, b, beta)
        if bool(mismatch.amax() > _MAPS_BACK):
            warnings.warn(
                f"Stiefel logarithm does not map back to Y (error {float(mismatch.amax()):.3g}): "
                "a rotation angle of the points reaches pi (a column of Y opposite to X's, "
                "for one), where no logarithm is defined", RuntimeWarning, stacklevel=2)
    log = x @ a.to(x.dtype) + q @ b.to(x.dtype)
    if moved is not None:
        log = log + moved @ _log_gain(a, b, beta).to(x.dtype)
    return log


# A logarithm that maps back errs by about the residual, or by the inputs' departure from the
# manifold (1e-6 in a gradcheck); one at a rotation angle pi errs by a distance.
_MAPS_BACK = 1e-4


def _log_generator(a, b, beta):
    """``[[2 beta A, -B^T], [B, 0]]``: the logarithm of the completed rotation at the solution."""
    return _block(2 * beta * a, -b.transpose(-1, -2), b, torch.zeros_like(a))


def _reconstruction_error(w, a, b, beta):
    """``|| expm([[2 beta A, -B^T], [B, 0]])[:, :p] - W expm((2 beta - 1) A) ||`` per batch entry,
    without gradient: about the residual where the iteration converged to a logarithm, of
    order one where the rotation ``[W, W_perp]`` has an angle ``pi`` (its skew part vanishes
    there, and :func:`skew_logm` returns a logarithm that does not map back)."""
    p = a.shape[-1]
    with torch.no_grad():
        gen = _log_generator(a, b, beta)
        target = w if beta == 0.5 else w @ torch.linalg.matrix_exp((2 * beta - 1) * a)
        return torch.linalg.matrix_norm(torch.linalg.matrix_exp(gen)[..., :p] - target)


def _log_gain(a, b, beta):
    """``G`` with ``B = N G`` at the solution (no gradient): the logarithm's normal block ``Q B``
    is ``(I - X X^T) Y G``. From ``N = B phi(gen)[:p, :p] expm((1 - 2 beta) A)``."""
    p = a.shape[-1]
    with torch.no_grad():
        gen = _log_generator(a, b, beta)
        gain = torch.linalg.inv(_phi_corner(gen, p))
        if beta != 0.5:
            gain = torch.linalg.matrix_exp((2 * beta - 1) * a) @ gain
        return gain
