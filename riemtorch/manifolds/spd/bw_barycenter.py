"""Bures-Wasserstein barycenter: fixed point with warm-started square roots, implicit backward.

The barycenter ``S`` of SPD ``X_i`` with weights ``w_i`` is the fixed point of
``S <- T S T`` with ``T = sum_i w_i T_i`` and the optimal transport maps ``T_i`` from ``S`` to
``X_i`` (Álvarez-Esteban et al.; the same iterate as the unit-step gradient descent of
pyRiemann). For any factor ``S = F F^T``, ``T_i = F^-T (F^T X_i F)^1/2 F^-1``, so with
``Q = sum_i w_i (F^T X_i F)^1/2`` the update is ``F <- F^-T Q``; near the fixed point
``Q ~ F^T F`` and the factor, hence ``C_i = F^T X_i F``, changes little between iterations.

Square roots (``method="eigh"``): once an iteration has an eigendecomposition
``C_i = U diag(s^2) U^T``, later iterations refine the previous roots by chord-Newton steps
``R <- R + L[C_i - R^2]``, where ``L`` solves the Lyapunov equation of the *stored*
root, ``R0 E + E R0 = V``. Kept in the stored eigenbasis (``U^T C_i U``, ``U^T R U``), a step
is one batched product and an entrywise division instead of an ``eigh``. Each step reduces the
error by about the relative distance between the stored and the current root, a thousandfold
once the iterate has settled; a large first residual or a step that gains less than tenfold
triggers a fresh ``eigh``, and an iterate that moved by more than ``REFRESH_CHANGE`` (relative)
decomposes at once, without the chord attempt. Typically the first two iterations decompose
and the rest refine.
On CPU a large batch is cut into one slice of samples per thread for the whole iteration
(:class:`~riemtorch.linalg.batched.SampleChunks`): decompositions, chord steps and root sums
run on each slice's thread.
With ``method="newton_schulz"`` every iteration takes the roots from
:func:`riemtorch.linalg.sqrtm_invsqrtm_newton_schulz` (matrix products only).

When ``max_iter`` stops the iteration before convergence and a gradient is needed, the plain
iteration (without the Anderson acceleration of :func:`barycenter_fixed_point`) is rerun with
autograd through every step instead, so the gradient is that of the value returned; that value
then differs from the one returned without autograd by the truncation error.

The backward differentiates the fixed point ``S = Phi(S, X, w)`` implicitly: the adjoint
solves ``u - (dPhi/dS)^T u = G`` by GMRES (:func:`riemtorch.manifolds.spd.krylov.gmres`; the operator
is not symmetric), then ``grad = (dPhi/d(X, w))^T u``; each product is one backward pass through
``Phi`` with the finite-at-ties matrix-function backward of :mod:`riemtorch.linalg`. Summing the
Neumann series ``u = G + (dPhi/dS)^T u`` instead (it converges at the rate of the fixed-point
iteration) took 16 products to ten digits on a batch-norm batch of 64 16 x 16 matrices; GMRES
takes 8.
"""

import torch

from riemtorch.linalg.batched import SampleChunks
from riemtorch.linalg.newton_schulz import sqrtm_invsqrtm_newton_schulz
from riemtorch.linalg.symmetric import sqrtm_invsqrtm, sym
from riemtorch.manifolds.spd import common
from riemtorch.manifolds.spd.eigenbases import EigenBases
from riemtorch.manifolds.spd.krylov import gmres

METHODS = ("eigh", "newton_schulz")
# The Bures-Wasserstein maps take roots of products such as P^1/2 Q P^1/2, whose condition
# number reaches cond(P) cond(Q): 30 iterations keep relative errors near 1e-12 up to 1e8
# (points up to 1e4), where the default 20 of the linalg function leave 2e-4.
NEWTON_SCHULZ_ITERATIONS = 30
# Relative change of the iterate above which the stored roots are not refined but recomputed:
# the first chord residual is about that change (within a factor two on Wishart and random
# samples), and the chord gives up above 1e-4, after work that a fresh ``eigh`` does not need.
REFRESH_CHANGE = 1e-3
_norm = torch.linalg.matrix_norm


def check_method(method) -> str:
    if method not in METHODS:
        raise ValueError(f"sqrtm_method must be one of {METHODS}, got {method!r}")
    return method


def sqrtm_by(x, method):
    """Square root of SPD ``x`` by ``eigh`` or by Newton-Schulz iterations."""
    if method == "eigh":
        return common.sqrtm(x)
    return sqrtm_invsqrtm_newton_schulz(x, NEWTON_SCHULZ_ITERATIONS)[0]


def sqrtm_invsqrtm_by(x, method):
    """``(X^1/2, X^-1/2)`` by ``eigh`` or by Newton-Schulz iterations."""
    if method == "eigh":
        return sqrtm_invsqrtm(x)
    return sqrtm_invsqrtm_newton_schulz(x, NEWTON_SCHULZ_ITERATIONS)


def fixed_point_map(s, xs, w, method="eigh"):
    """``Phi(S) = S^-1/2 (sum_i w_i (S^1/2 X_i S^1/2)^1/2)^2 S^-1/2``, differentiable."""
    root, inv_root = sqrtm_invsqrtm_by(s, method)
    q = (w * sqrtm_by(sym(root @ xs @ root), method)).sum(0)
    return sym(inv_root @ q @ q @ inv_root)


def _chord_sqrt(ct, rt, sig, target, chunks, max_steps=4):
    """Refine ``rt ~ Ct^1/2`` for matrices in the eigenbasis of the stored root ``diag(sig)``,
    by slices of ``chunks`` (:class:`~riemtorch.linalg.batched.SampleChunks`).

    There the chord step solves its Lyapunov equation by an entrywise division. Returns the
    refined root and whether the largest relative residual ``||Ct - Rt^2|| / ||Ct||`` reached
    ``target``; gives up (``False``) when the first residual exceeds ``1e-4`` (the stored root
    is then too far for fast steps, and a fresh ``eigh`` costs less than several slow ones),
    or when a step gains less than tenfold.
    """
    rt = rt.clone()  # refined in place below
    residuals = [None] * len(chunks.slices)

    def residual_size(update):
        def on_slice(k, s):
            if update:  # the chord step of the previous residual
                # no symmetrisation: the asymmetry stays at rounding level and the sum is
                # symmetrised
                rt[s].add_(residuals[k].div_(sig[s].unsqueeze(-1) + sig[s].unsqueeze(-2)))
            residuals[k] = (rt[s] @ rt[s]).sub_(ct[s]).neg_()
            return float((_norm(residuals[k]) / _norm(ct[s])).amax())

        return float(torch.tensor(chunks.run(on_slice)).amax())  # NaN propagates

    previous = 1e-3  # so that a first residual above 1e-4 gives up at once
    for step in range(max_steps + 1):
        size = residual_size(update=step > 0)
        if size <= target:
            return rt, True
        if step == max_steps or size > 0.1 * previous:
            return rt, False
        previous = size
    return rt, False


def _weighted_root_sum(factor, xs, w, stored, method, target, chunks):
    """``sum_i w_i C_i^1/2`` for ``C_i = F^T X_i F`` and the state ``(bases, sig, rt)`` that the
    next iteration refines: the stored eigenbases (:class:`EigenBases`), their root eigenvalues
    ``sig`` and the current roots in those bases, ``rt = U^T R U``; the per-sample work runs by
    slices of ``chunks``. Eigenvalues are only kept
    positive (at the smallest normal number), not floored relative to the largest: near the
    fixed point ``C_i ~ (F^T F)^2`` has about the squared condition number of ``S``, and its
    small eigenvalues carry the barycenter's small directions (a floor at the working dtype's
    epsilon held the criterion near ``1e-8`` from condition number ``1e8`` on, and the
    iteration ran to ``max_iter``)."""
    factor_t = factor.transpose(-1, -2)
    if method == "newton_schulz":
        c = sym(common.congruence_shared(factor_t, xs))
        return common.weighted_sum(w, sqrtm_by(c, method)), None
    if stored is None:
        lam, u = chunks.eigh(lambda k, s: common.congruence_shared(factor_t, xs[s]), xs)
    else:
        bases, sig, rt = stored
        ct = bases.to_bases(xs, factor_t)
        rt, ok = _chord_sqrt(ct, rt, sig, target, chunks)
        if ok:
            return chunks.sum(lambda k, s: bases.part(k).combine(w[s] * rt[s])), (bases, sig, rt)
        # C_i = U_i Ct_i U_i^T: decompose the rotated matrices already at hand
        lam, v = chunks.eigh(lambda k, s: ct[s], ct)
        u = chunks.gather(lambda k, s: bases.u[s] @ v[s], v)
    sig = lam.clamp_min(torch.finfo(lam.dtype).tiny).sqrt()
    bases = EigenBases(u, chunks)
    return bases.combine_diagonal(w.squeeze(-1) * sig), (bases, sig, torch.diag_embed(sig))


class Anderson:
    """Anderson acceleration (type II, ``depth`` differences) of a fixed-point iteration
    ``x <- g(x)`` on batches of matrices ``(..., n, n)``, each batch entry on its own.

    :meth:`step` takes the iterate ``x`` and its image ``g(x)`` and returns the next iterate:
    ``g(x)`` minus the combination of the last image differences whose residual differences
    best cancel the residual ``g(x) - x`` (least squares through the small Gram matrix, a
    deterministic solve). :meth:`reset` forgets the differences (the caller's safeguard when
    an accelerated step did not pay).
    """

    def __init__(self, depth: int = 2):
        self.depth = depth
        self.reset()

    def reset(self) -> None:
        self.residuals, self.images = [], []

    def step(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        residual = (image - x).flatten(-2)
        self.residuals = (self.residuals + [residual])[-(self.depth + 1):]
        self.images = (self.images + [image.flatten(-2)])[-(self.depth + 1):]
        if len(self.residuals) < 2:
            return image
        d_res = torch.stack([b - a for a, b in zip(self.residuals, self.residuals[1:])], -1)
        d_img = torch.stack([b - a for a, b in zip(self.images, self.images[1:])], -1)
        gram = d_res.mT @ d_res
        scale = torch.diagonal(gram, dim1=-2, dim2=-1).sum(-1)[..., None, None]
        ridge = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device) * (
            torch.finfo(gram.dtype).eps * scale + torch.finfo(gram.dtype).tiny)
        gamma = torch.linalg.solve(gram + ridge, (d_res.mT @ residual.unsqueeze(-1)))
        return image - (d_img @ gamma).squeeze(-1).unflatten(-1, image.shape[-2:])


def _relative_change(new, old) -> float:
    """Largest ``||new - old|| / ||new||`` (Frobenius) over the batch."""
    return float((_norm(new - old) / _norm(new)).amax())


def barycenter_fixed_point(xs, w, tol, max_iter, method="eigh"):
    """The fixed-point iteration of the module docstring, without autograd, accelerated by
    :class:`Anderson` from the second update on (the first leaves the arithmetic mean with a
    large, nonlinear step); an iterate whose criterion did not decrease restarts the
    acceleration with a plain step. On the benchmark's 500 Wishart samples the criterion falls
    ``4e-4, 1e-5, 3e-8, 5e-11`` instead of ``4e-4, 1e-5, 4e-7, 1e-8, 4e-10``; on more
    spread samples it saves two or three of eight or nine iterations.

    Stops after the update from an iterate whose descent direction ``sum_i w_i Log_S X_i``
    has Frobenius norm at most ``tol ||S||_F``. The direction carries the units of the data,
    so the criterion is relative (pyRiemann's ``mean_wasserstein`` compares the absolute norm
    with ``tol``: covariances of size 1e-12 then stop at the first update, 7 % off, and of
    size 1e8 never stop). Returns the barycenter and whether the criterion was met within
    ``max_iter``.
    """
    chunks = SampleChunks.plan(xs) if method == "eigh" else SampleChunks(xs.shape[0])
    if chunks.parallel:  # the slices' results fill tensors shaped like the samples
        xs = common.expand_samples(xs, w)
    with chunks.serial():
        return _iterate(xs, w, tol, max_iter, method, chunks)


def _iterate(xs, w, tol, max_iter, method, chunks):
    factor = common.cholesky(common.weighted_sum(w, xs))
    eps = torch.finfo(xs.dtype).eps
    stored = None
    anderson = Anderson()
    previous = s_previous = None
    for iteration in range(max_iter):
        s = factor @ factor.transpose(-1, -2)
        if stored is not None and _relative_change(s, s_previous) > REFRESH_CHANGE:
            stored = None
        s_previous = s
        # Roots are refined to the rounding floor of C - R^2 (a residual near 1e3 eps relative
        # to ||C||), whatever tol: a coarser acceptance lets the small eigen-directions of the
        # roots drift, and the iteration can cycle (tol 1e-5, diag(1e-3, 1) and
        # diag(3.16e-3, 1): it returned their arithmetic mean, 8 % off, at the cap).
        q, stored = _weighted_root_sum(factor, xs, w, stored, method, 1e3 * eps, chunks)
        q = sym(q)
        inv_t = torch.linalg.inv(factor).transpose(-1, -2)
        half = inv_t @ q @ factor.transpose(-1, -2)
        crit = _norm(half + half.transpose(-1, -2) - 2 * s) / _norm(s)
        update = inv_t @ q
        if bool(crit.amax() <= tol):
            return sym(update @ update.transpose(-1, -2)), True
        if iteration and bool((crit < previous).all()):
            factor = anderson.step(factor, update)
        else:
            anderson.reset()
            if iteration:
                # no progress: decompose afresh too (refined roots whose small eigen-directions
                # went stale held commuting diag(1e-4, 1), diag(3.16e-4, 1) in a cycle)
                stored = None
            factor = update
        previous = crit
    return sym(factor @ factor.transpose(-1, -2)), False


def unrolled_fixed_point(xs, w, iterations, method="eigh"):
    """``iterations`` steps of ``S <- Phi(S)`` from the arithmetic mean, differentiated by
    autograd through every step: the derivative of a truncated iteration."""
    s = common.weighted_sum(w, xs)
    for _ in range(iterations):
        s = fixed_point_map(s, xs, w, method)
    return s


class _Barycenter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, w, s, method, input_dtype):
        ctx.save_for_backward(xs, w, s)
        ctx.method, ctx.input_dtype = method, input_dtype
        return s.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        xs, w, s = ctx.saved_tensors
        with torch.enable_grad():
            xs = xs.detach().requires_grad_(ctx.needs_input_grad[0])
            w = w.detach().requires_grad_(ctx.needs_input_grad[1])
            s = s.detach().requires_grad_(True)
            image = fixed_point_map(s, xs, w, ctx.method)
        grad = sym(grad)
        limit = common.implicit_rtol(ctx.input_dtype) * float(
            torch.linalg.matrix_norm(grad).amax())

        def adjoint_operator(u):
            (back,) = torch.autograd.grad(image, s, u, retain_graph=True)
            return u - sym(back)

        adjoint = gmres(adjoint_operator, grad, atol=limit)
        inputs = [t for t, need in zip((xs, w), ctx.needs_input_grad[:2]) if need]
        grads = iter(torch.autograd.grad(image, inputs, adjoint) if inputs else ())
        grad_xs = next(grads) if ctx.needs_input_grad[0] else None
        grad_w = next(grads) if ctx.needs_input_grad[1] else None
        return grad_xs, grad_w, None, None, None


def bw_barycenter(xs, w, tol, max_iter, method="eigh", input_dtype=None):
    """Weighted Bures-Wasserstein barycenter (see the module docstring).

    Parameters
    ----------
    xs : torch.Tensor
        SPD samples ``(N, ..., n, n)`` in the working dtype.
    w : torch.Tensor
        Weights ``(N, ..., 1, 1)`` summing to one.
    tol : float
        Stopping tolerance on the Frobenius norm of ``sum_i w_i Log_S X_i`` relative to that
        of ``S`` (see :func:`barycenter_fixed_point`).
    max_iter : int
        Iteration cap.
    method : {"eigh", "newton_schulz"}
        How the square roots are computed.
    input_dtype : torch.dtype, optional
        Dtype of the user's input, for the accuracy of the implicit backward (default: that
        of ``xs``).

    Returns
    -------
    torch.Tensor
        The barycenter ``(..., n, n)``, differentiable in ``xs`` and ``w``: implicitly when
        the iteration converged, else through ``max_iter`` unrolled steps of the same
        iteration (so the gradient is that of the value returned).
    """
    method = check_method(method)
    input_dtype = input_dtype or xs.dtype
    with torch.no_grad():
        s, converged = barycenter_fixed_point(xs, w, float(tol), int(max_iter), method)
    if not (torch.is_grad_enabled() and (xs.requires_grad or w.requires_grad)):
        return s
    if converged:
        return _Barycenter.apply(xs, w, s, method, input_dtype)
    return unrolled_fixed_point(xs, w, int(max_iter), method)
