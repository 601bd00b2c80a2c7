"""Bures-Wasserstein barycenter: fixed point with warm-started square roots, implicit backward.

The barycenter ``S`` of SPD ``X_i`` with weights ``w_i`` is the fixed point of
``S <- T S T`` with ``T = sum_i w_i T_i`` and the optimal transport maps ``T_i`` from ``S`` to
``X_i`` (Álvarez-Esteban et al.; the same iterate as the unit-step gradient descent of
pyRiemann). For any factor ``S = F F^T``, ``T_i = F^-T (F^T X_i F)^1/2 F^-1``, so with
``Q = sum_i w_i (F^T X_i F)^1/2`` the update is ``F <- F^-T Q``; near the fixed point
``Q ~ F^T F`` and the factor, hence ``C_i = F^T X_i F``, changes little between iterations.

Square roots (``method="eigh"``): the iteration starts at the barycenter's expansion to
second order about the arithmetic mean (:func:`second_order_start`) and decomposes
``C_i = U diag(s^2) U^T`` there, once. Later iterations refine the previous roots by
chord-Newton steps ``R <- R + L[C_i - R^2]``, where ``L`` solves the Lyapunov equation of the
*stored* root, ``R0 E + E R0 = V``. Kept in the stored eigenbasis (``U^T C_i U``, ``U^T R U``),
a step is one batched product and an entrywise division instead of an ``eigh``. Each step
reduces the error by about the relative distance between the stored and the current root
(about 1e-3 from the start on Wishart samples). An iteration refines only until its residual
is ``ROOT_RATIO`` times its first one over the condition number of ``C_i``, far below the next
move of the iterate; the roots of the final iterate are taken to the rounding floor and one
step beyond. A first residual above
``CHORD_LIMIT`` or a step that gains less than tenfold triggers a fresh ``eigh``, and an
iterate that moved by more than ``REFRESH_CHANGE`` (relative) decomposes at once, without the
chord attempt. The products run on the samples and bases padded as ``diag(X_i, I)`` to a
size that the CPU multiplies faster (:mod:`riemtorch.linalg.padding`; 22 x 22 as 24 x 24).
On 500 Wishart samples of 22 x 22 (100 degrees of freedom, 2 cores) one ``eigh`` and three
refining iterations reach a relative criterion of 2e-9 in 19-21 ms (21-22 unpadded); from
the arithmetic mean, decomposing in the first two iterations and refining to the rounding
floor in every later one, it took 32 ms.
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

from riemtorch.linalg.batched import SampleChunks, eigh, eigvalsh
from riemtorch.linalg.first_order import first_order
from riemtorch.linalg.newton_schulz import newton_schulz_roots
from riemtorch.linalg.padding import pad_identity, pad_ones, product_size
from riemtorch.linalg.symmetric import sqrtm_invsqrtm, sym
from riemtorch.manifolds.spd import common
from riemtorch.manifolds.spd.eigenbases import EigenBases
from riemtorch.manifolds.spd.krylov import gmres

METHODS = ("eigh", "newton_schulz")
# The Bures-Wasserstein maps take roots of products such as P^1/2 Q P^1/2, whose condition
# number reaches cond(P) cond(Q): 30 iterations keep relative errors near 1e-12 up to 1e8
# (points up to 1e4), where the default 20 of the linalg function leave 2e-4.
NEWTON_SCHULZ_ITERATIONS = 30
# First chord residual above which the stored roots are not refined but recomputed (steps
# would then gain little, and a fresh ``eigh`` costs less than several slow ones), and relative
# change of the iterate above which they are recomputed without that attempt: the first chord
# residual is about that change (within a factor two on Wishart and random samples).
CHORD_LIMIT = 1e-2
REFRESH_CHANGE = CHORD_LIMIT
# An iteration refines its roots until their residual is this many times its first one,
# divided by the condition number of C_i: the residual is relative to ||C_i||, and the relative
# error of a root's smallest eigenvalue is about that residual times the condition number. The
# root error then stays far below the next move of the iterate (the fixed-point iteration
# contracts about thirtyfold per step on Wishart samples). Without that division, samples at
# condition number 1e8-1e10 kept the criterion hovering near 1e-8 to the iteration cap.
ROOT_RATIO = 1e-3
# Iterations without the largest criterion halving its best value, once that is at most
# sqrt(tol), after which every iteration decomposes afresh: at condition numbers from about
# 1e8 the refined roots' accuracy relative to their small eigenvalues can hold the criterion a
# few hundred times above tol (20 samples of 5 x 5 at 1e8, 2 seeds in 12: 5e-9 to 4e-8 up to
# the iteration cap), where fresh roots reach it.
STALL_STEPS = 3
# The final iterate's refined roots are polished (see ``_Roots.polish``) unless their error
# relative to their smallest eigenvalues is below this fraction of the tolerance: the returned
# barycenter then owes to them at most that fraction of its error.
POLISH_BELOW = 1e-2
_norm = torch.linalg.matrix_norm


def check_method(method) -> str:
    if method not in METHODS:
        raise ValueError(f"sqrtm_method must be one of {METHODS}, got {method!r}")
    return method


def sqrtm_by(x, method):
    """Square root of SPD ``x`` by ``eigh`` or by Newton-Schulz iterations."""
    if method == "eigh":
        return common.sqrtm(x)
    return newton_schulz_roots(x, NEWTON_SCHULZ_ITERATIONS)[0]


def sqrtm_invsqrtm_by(x, method):
    """``(X^1/2, X^-1/2)`` by ``eigh`` or by Newton-Schulz iterations."""
    if method == "eigh":
        return sqrtm_invsqrtm(x)
    return newton_schulz_roots(x, NEWTON_SCHULZ_ITERATIONS)


def fixed_point_map(s, xs, w, method="eigh"):
    """``Phi(S) = S^-1/2 (sum_i w_i (S^1/2 X_i S^1/2)^1/2)^2 S^-1/2``, differentiable."""
    root, inv_root = sqrtm_invsqrtm_by(s, method)
    q = (w * sqrtm_by(sym(root @ xs @ root), method)).sum(0)
    return sym(inv_root @ q @ q @ inv_root)


def _chord_steps(ct, offset, sig, n, target_of, min_steps=0, max_steps=4):
    """Chord steps on one slice for matrices ``Ct`` in the eigenbasis of their stored root
    ``diag(sig)``: the current root ``Rt = diag(sig) + E`` is held as its offset ``E``
    (``offset``, refined in place) and a step ``Rt <- Rt + L[Ct - Rt^2]`` solves the stored
    root's Lyapunov equation by an entrywise division. Stops once the largest relative
    residual ``||Ct - Rt^2|| / ||Ct||`` is at most ``target_of(first residual)``; after a step
    ``D`` that residual is bounded without a product: it is ``-(E D + D E) - D^2``, of norm at
    most ``(2 ||E|| + ||D||) ||D||`` (``E`` before the step). Returns whether the target was
    met and the residual or bound reached; gives up (``False``) when the first residual
    exceeds ``CHORD_LIMIT`` or a step gains less than tenfold. At least
    ``min_steps`` steps are taken whatever the residual. Matrices padded as ``diag(C, I)``
    (:mod:`riemtorch.linalg.padding`) carry ``C`` in their leading ``n x n`` block, the norm
    that residuals are relative to (the rest of their residual is zero)."""
    scale = _norm(ct[..., :n, :n])
    shift = sig.unsqueeze(-1) + sig.unsqueeze(-2)
    squares = sig.square()

    def residual_of():
        # Ct - (diag(sig) + E)^2 = Ct - diag(sig^2) - shift o E - E E
        residual = torch.baddbmm(ct, offset, offset, alpha=-1) if ct.dim() == 3 \
            else ct - offset @ offset
        residual.addcmul_(shift, offset, value=-1)
        residual.diagonal(dim1=-2, dim2=-1).sub_(squares)
        return residual, float((_norm(residual) / scale).amax())  # NaN: not <= target

    residual, size = residual_of()
    if not size <= CHORD_LIMIT:
        return False, size
    target = target_of(size)
    for taken in range(max_steps):
        if size <= target and taken >= min_steps:
            return True, size
        stale = _norm(offset)
        # no symmetrisation: the asymmetry stays at rounding level and the sum is symmetrised
        step = residual.div_(shift)
        length = _norm(step)
        offset.add_(step)
        bound = float(((2 * stale + length) * length / scale).amax())
        if bound <= target:
            return True, bound
        residual, new = residual_of()
        if not new <= 0.1 * size:
            return False, new
        size = new
    return size <= target, size


class _Roots:
    """The square roots ``C_i^1/2`` of ``C_i = F^T X_i F`` for the current factor ``F``, kept in
    stored eigenbases between iterations (see the module docstring), and their weighted sum
    ``Q = sum_i w_i C_i^1/2``; the per-sample work runs by slices of ``chunks``. In its stored
    basis ``U_i`` a root is ``diag(sig_i) + E_i``; ``Q`` is the fixed
    ``sum_i w_i U_i diag(sig_i) U_i^T`` plus ``sum_i w_i U_i E_i U_i^T``.

    Eigenvalues are only kept positive (at the smallest normal number), not floored relative to
    the largest: near the fixed point ``C_i ~ (F^T F)^2`` has about the squared condition number
    of ``S``, and its small eigenvalues carry the barycenter's small directions (a floor at the
    working dtype's epsilon held the criterion near ``1e-8`` from condition number ``1e8`` on,
    and the iteration ran to ``max_iter``).
    """

    def __init__(self, xs, w, chunks):
        self.xs, self.w, self.chunks = xs, w, chunks
        self.n = xs.shape[-1]
        self.size = product_size(self.n, xs.device)
        self.bases = self.ct = self.padded = None

    def forget(self) -> None:
        """Decompose afresh at the next :meth:`weighted_sum`."""
        self.bases = None

    def weighted_sum(self, factor, ratio: float, floor: float) -> torch.Tensor:
        """``Q`` for ``factor``: stored roots refined until their residual is at most
        ``ratio`` times the first one over the condition number of ``C_i`` (and ``floor``),
        else decomposed afresh."""
        factor_t = factor.transpose(-1, -2)
        if self.bases is None:
            lam, u = self.chunks.eigh(
                lambda k, s: common.congruence_shared(factor_t, self.xs[s]), self.xs)
            return self._store(lam, u)
        if self.ct is None:  # the first refinement: work tensors and padded samples
            self.ct = self.offset.new_empty(self.offset.shape)
            self.padded = pad_identity(self.xs, self.size)
        factor_t = pad_identity(factor_t, self.size)

        def on_slice(k, s):
            self.ct[s] = self.bases.part(k).to_bases(self.padded[s], factor_t)
            return self._refine_slice(k, s, ratio, floor)

        return self._finish(self.chunks.run(on_slice))

    def polish(self, floor: float, tol: float):
        """``Q`` with the refined roots of the same ``C_i`` taken one chord step further, and
        on to a residual of at most ``floor``, or ``None`` where the roots are fresh from
        ``eigh`` or already accurate to ``POLISH_BELOW * tol`` relative to their smallest
        eigenvalues. The residual is relative to ``||C_i||``: at the floor the small
        eigen-directions of a root can still be relatively far off (a root eigenvalue ``1e-4``
        beside ``1``: ``3e-8``), and a step divides each entry of the residual by its own
        ``sig_j + sig_k``."""
        if self.fresh or self.accuracy <= POLISH_BELOW * tol:
            return None
        return self._finish(self.chunks.run(
            lambda k, s: self._refine_slice(k, s, 0.0, floor, min_steps=1)))

    def _refine_slice(self, k, s, ratio, floor, min_steps=0):
        """Chord steps on slice ``s`` to ``max(floor, ratio * first residual / cond(C_i))``;
        the slice's part of ``Q`` (``None`` where they failed) and the bound on the roots'
        error relative to their smallest eigenvalues (residual times condition number)."""
        spread = float(self.spread[s].amax())
        ok, bound = _chord_steps(self.ct[s], self.offset[s], self.sig[s], self.n,
                                 lambda first: max(floor, ratio * first / spread), min_steps)
        if not ok:
            return None, bound
        return self.bases.part(k).combine(self.w[s] * self.offset[s]), bound * spread

    def _finish(self, results) -> torch.Tensor:
        n = self.n
        if any(q is None for q, _ in results):
            # C_i = U_i Ct_i U_i^T: decompose the rotated matrices already at hand
            lam, v = self.chunks.eigh(lambda k, s: self.ct[s][..., :n, :n], self.xs)
            u = self.chunks.gather(lambda k, s: self.bases.u[s][..., :n, :n] @ v[s], v)
            return self._store(lam, u)
        self.fresh = False
        self.accuracy = max(accuracy for _, accuracy in results)
        return sum((q[..., :n, :n] for q, _ in results), self.diagonal_sum)

    def _store(self, lam, u) -> torch.Tensor:
        """Stores the eigenvalues ``lam`` and eigenvectors ``u`` of the ``C_i`` (unpadded)
        and returns ``Q`` from them."""
        lam = lam.clamp_min(torch.finfo(lam.dtype).tiny)
        self.spread = lam.amax(-1) / lam.amin(-1)  # condition numbers of the C_i
        lam, u = pad_ones(lam, self.size), pad_identity(u, self.size)
        self.sig = lam.sqrt()
        self.bases = EigenBases(u, self.chunks)
        self.offset = u.new_zeros(u.shape)
        self.fresh = True
        q = self.bases.combine_diagonal(self.w.squeeze(-1) * self.sig)
        self.diagonal_sum = q[..., :self.n, :self.n]
        return self.diagonal_sum


def second_order_start(xs, w, chunks):
    """A start for the fixed point: the barycenter's expansion to second order in the
    deviations ``D_i = X_i - M`` from the arithmetic mean ``M``, ``S ~ M - sum_i w_i A_i M A_i``
    with ``A_i M + M A_i = D_i`` (the first-order optimal transport maps, entrywise in the
    eigenbasis of ``M``). It is much nearer than ``M``, so that the stored roots of the first
    iteration serve to the end without a second ``eigh`` (500 Wishart samples of 22 x 22 with
    100 degrees of freedom: 1.1e-3 from the barycenter, against 6.2e-2 for ``M``). Where the
    correction exceeds three quarters of ``M`` (in the Loewner order), the expansion is not
    trusted and the start is ``M`` (batch entry by batch entry)."""
    mean = common.weighted_sum(w, xs)
    mu, v = eigh(mean)
    shift = mu.unsqueeze(-1) + mu.unsqueeze(-2)
    eye = torch.eye(mu.shape[-1], dtype=mu.dtype, device=mu.device)

    def on_slice(k, s):
        a = common.congruence_shared(v.transpose(-1, -2), xs[s]).sub_(eye * mu.unsqueeze(-1))
        a.div_(shift)
        return (w[s] * ((a * mu.unsqueeze(-2)) @ a)).sum(0)

    correction = sym(chunks.sum(on_slice))
    root = mu.clamp_min(torch.finfo(mu.dtype).tiny).rsqrt()
    relative = eigvalsh(root.unsqueeze(-1) * correction * root.unsqueeze(-2))[..., -1]
    start = sym(v @ (torch.diag_embed(mu) - correction) @ v.transpose(-1, -2))
    return torch.where((relative <= 0.75)[..., None, None], start, mean)


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
    :class:`Anderson` from the second update on (the first, from the start, is the largest and
    least linear step); an iterate whose criterion did not decrease restarts the
    acceleration with a plain step. On the benchmark's 500 Wishart samples the iterate moves
    by ``1.1e-3, 2.2e-5, 6.8e-7`` (relative) and stops, where the plain iteration moves once
    more (``2e-8``); on more spread samples it saves two or three of eight or nine
    iterations.

    Stops after the update from an iterate whose descent direction ``sum_i w_i Log_S X_i``
    has Frobenius norm at most ``tol ||S||_F``. The direction carries the units of the data,
    so the criterion is relative (pyRiemann's ``mean_wasserstein`` compares the absolute norm
    with ``tol``: covariances of size 1e-12 then stop at the first update, 7 % off, and of
    size 1e8 never stop). Returns the barycenter and whether it is converged: the criterion
    was met within ``max_iter``, or the iteration stalled within ``sqrt(tol)`` of it, at its
    rounding floor (samples at condition numbers near ``1e9``, where it hovers at ``1e-10`` to
    ``2e-9``).
    """
    chunks = SampleChunks.plan(xs) if method == "eigh" else SampleChunks(xs.shape[0])
    if chunks.parallel:  # the slices' results fill tensors shaped like the samples
        xs = common.expand_samples(xs, w)
    with chunks.serial():
        return _iterate(xs, w, tol, max_iter, method, chunks)


def _iterate(xs, w, tol, max_iter, method, chunks):
    factor = common.cholesky(second_order_start(xs, w, chunks))
    # Roots are refined to the rounding floor of C - R^2 (a residual near 1e3 eps relative to
    # ||C||) before the iteration stops, whatever tol: a coarser acceptance lets the small
    # eigen-directions of the roots drift, and the iteration can cycle (tol 1e-5, diag(1e-3, 1)
    # and diag(3.16e-3, 1): it returned their arithmetic mean, 8 % off, at the cap). Before
    # that, an iteration refines them only to ``ROOT_RATIO`` (see there).
    floor = 1e3 * torch.finfo(xs.dtype).eps
    roots = _Roots(xs, w, chunks)
    anderson = Anderson()
    previous = s_previous = None
    best, unimproved, fresh = float("inf"), 0, False
    for iteration in range(max_iter):
        s = factor @ factor.transpose(-1, -2)
        if fresh or (s_previous is not None
                     and _relative_change(s, s_previous) > REFRESH_CHANGE):
            roots.forget()
        s_previous = s
        if method == "eigh":
            q = roots.weighted_sum(factor, ROOT_RATIO, floor)
        else:
            c = sym(common.congruence_shared(factor.transpose(-1, -2), xs))
            q = common.weighted_sum(w, sqrtm_by(c, method))
        inv_t = torch.linalg.inv(factor).transpose(-1, -2)

        def criterion(q):
            half = inv_t @ q @ factor.transpose(-1, -2)
            return _norm(half + half.transpose(-1, -2) - 2 * s) / _norm(s)

        q = sym(q)
        crit = criterion(q)
        if method == "eigh" and bool(crit.amax() <= tol):
            polished = roots.polish(floor, tol)
            if polished is not None:
                q = sym(polished)
                crit = criterion(q)
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
                roots.forget()
            factor = update
        previous = crit
        top = float(crit.amax())
        best, unimproved = (top, 0) if top < 0.5 * best else (min(best, top), unimproved + 1)
        if not fresh and unimproved >= STALL_STEPS and best <= tol ** 0.5:
            fresh = True  # stalled on the refined roots: fresh ones from the next iteration on
            anderson.reset()
    # at the cap: an iteration that stalled within sqrt(tol) is at the criterion's rounding
    # floor, close enough to the barycenter for its implicit derivative
    return sym(factor @ factor.transpose(-1, -2)), fresh


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
    @first_order
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
        the iteration converged (or stalled at its rounding floor near ``tol``), else through
        ``max_iter`` unrolled steps of the same iteration (so the gradient is that of the value
        returned).
    """
    method = check_method(method)
    input_dtype = input_dtype or xs.dtype
    common.check_positive_samples(xs)
    with torch.no_grad():
        s, converged = barycenter_fixed_point(xs, w, float(tol), int(max_iter), method)
    if not (torch.is_grad_enabled() and (xs.requires_grad or w.requires_grad)):
        return s
    if converged:
        return _Barycenter.apply(xs, w, s, method, input_dtype)
    return unrolled_fixed_point(xs, w, int(max_iter), method)
