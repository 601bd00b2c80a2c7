"""Affine-invariant (Karcher) mean by Riemannian Newton steps (or Karcher flow steps),
differentiated implicitly.

In the frame of the current estimate ``M`` the samples are ``W_i = M^-1/2 X_i M^-1/2`` and
the mean solves ``F(M) = sum_i w_i log W_i = 0``. Moving the estimate to ``M^1/2 (I + D) M^1/2``
changes ``F`` by ``-H[D]`` to first order, with the Hessian

``H[D] = sum_i w_i U_i (K_i o (U_i^T D U_i)) U_i^T``,
``K_i[a, b] = (l_a + l_b) / 2 * (log l_a - log l_b) / (l_a - l_b)``

for ``W_i = U_i diag(l) U_i^T``. ``K >= 1`` entrywise, so ``H`` is symmetric positive definite
with all eigenvalues at least 1 and, for moderately spread data, close to 1: conjugate
gradients solve ``H[V] = F`` in a few matrix products, and the Newton step
``M <- M^1/2 exp(V) M^1/2`` converges quadratically. The products compute ``H - I``, small for
concentrated samples, in float32, refined with float64 residuals where the tolerance asks for
more (:class:`~riemtorch.manifolds.spd.newton_hessian.NewtonHessian`): the Newton step of the
benchmark's 1000 samples solves in a third of the time. Every iteration costs one batched ``eigh``
of the samples (the logs and ``H`` come from the same decomposition); started from the
geometric mean of the arithmetic and harmonic means (no eigendecomposition of the samples), two
iterations typically reach ``||F|| < 1e-8``, where the Karcher flow ``M <- M^1/2 exp(F) M^1/2``
needs five or more.

The Karcher flow ``M <- M^1/2 exp(F) M^1/2`` (``method="flow"``) is the cheaper step: the
same batched ``eigh`` per iteration but no Hessian and no solve. It converges linearly (from
the arithmetic-harmonic start, one flow step on the benchmark's batches lands about ``1e-2``
from the mean, against ``6e-6`` for one Newton step and ``3e-2`` for the one flow step from
the arithmetic mean that other libraries take), so it suits batch statistics of one or a few
steps rather than means to tolerance (64 samples of 20 x 20 at condition number 1e8 take
about 100 flow steps to the rounding floor, against 7 to 10 Newton steps). After a step that
fails to decrease ``||F||`` the next one is halved, as for Newton steps.

On CPU, a batch large enough to share out is cut into one slice of samples per thread
(:class:`~riemtorch.linalg.batched.SampleChunks`): each thread whitens, decomposes and
multiplies its slice for the whole solve, and only the ``n x n`` sums meet on the calling
thread.

The backward is the implicit function theorem at the solution: with ``P = M^-1/2``,
``dM = M^1/2 H^-1[R] M^1/2`` where ``R = sum_i dw_i log W_i + w_i Dlog_{W_i}[P dX_i P]``, so a
loss gradient ``G`` pulls back through one more ``eigh`` and one conjugate-gradient solve
``H[Z] = M^1/2 G M^1/2``: ``grad X_i = w_i P Dlog_{W_i}[Z] P`` and ``grad w_i = <Z, log W_i>``.
Both are finite at repeated eigenvalues (the divided differences of ``log`` are evaluated
without cancellation). They are the derivatives of the exact mean: when ``max_iter`` stops the
iteration before convergence, the value returned is the last iterate (on the benchmark's
Wishart samples one Newton step takes the gradient norm from ``3e-2`` to ``1.5e-9``) while
the gradient remains that of the mean, evaluated at the iterate (so to about its ``||F||``,
the accuracy to which the batch norm's backward then solves for it).
"""

import math
from typing import NamedTuple

import torch

from riemtorch import config
from riemtorch.linalg import spectral
from riemtorch.linalg.batched import TEAM_MIN_WORK, SampleChunks, eigh
from riemtorch.linalg.first_order import first_order
from riemtorch.linalg.symmetric import floor_eigenvalues, sym
from riemtorch.manifolds.spd import common
from riemtorch.manifolds.spd.eigenbases import EigenBases
from riemtorch.manifolds.spd.newton_hessian import NewtonHessian, newton_kernel


class Frame(NamedTuple):
    """``M^1/2``, ``M^-1/2`` and the eigendecomposition ``M = V diag(mu) V^T``."""

    root: torch.Tensor
    inv_root: torch.Tensor
    mu: torch.Tensor
    v: torch.Tensor


def symmetric_frame(mean) -> Frame:
    """The :class:`Frame` of SPD ``M`` from one ``eigh`` (no autograd)."""
    mu, v = eigh(mean)
    mu = mu.clamp_min(torch.finfo(mu.dtype).tiny)
    vt = v.transpose(-1, -2)
    root = (v * mu.sqrt().unsqueeze(-2)) @ vt
    inv_root = (v * mu.rsqrt().unsqueeze(-2)) @ vt
    return Frame(root, inv_root, mu, v)


def whitened_spectrum(xs, mean, chunks=None):
    """Frame of ``M`` and eigenvalues and eigenvectors of ``W_i = M^-1/2 X_i M^-1/2``.

    Returns ``(frame, lam, bases)`` with the eigenvectors as :class:`EigenBases`; ``eigh``
    reads one triangle, so ``W_i`` is not symmetrised. With parallel ``chunks``
    (:class:`~riemtorch.linalg.batched.SampleChunks`) each slice of the samples is whitened
    and decomposed on its own thread and the bases keep that slicing; otherwise the batch is
    split over threads for the decomposition alone (no autograd). The eigenvalue floor is that
    of the working dtype, whatever the user's input: the condition number of ``W_i`` reaches
    ``cond(M) cond(X_i)``, and its small eigenvalues, computed in the working dtype, carry the
    input's information (float32 input at condition number 1e6 has whitened eigenvalues down
    to ``1e-12`` of the largest).
    """
    frame = symmetric_frame(mean)
    return (frame, *_whitened(xs, frame.inv_root, chunks))


def _whitened(xs, whitening, chunks=None):
    """Eigenvalues (floored) and :class:`EigenBases` of ``P X_i P^T`` for ``P = whitening``."""
    chunks = chunks or SampleChunks(xs.shape[0])
    lam, u = chunks.eigh(lambda k, s: common.congruence_shared(whitening, xs[s]), xs)
    return floor_eigenvalues(lam, lam.dtype), EigenBases(u, chunks)


def _weighted_inverse_sum(xs, w):
    """``sum_i w_i X_i^-1`` and the Cholesky factorisations' ``info`` (nonzero where a sample is
    not positive definite)."""
    chol, info = torch.linalg.cholesky_ex(xs)
    return common.weighted_sum(w, torch.cholesky_inverse(chol)), info


def _harmonic_inverse(xs, w, chunks):
    """``sum_i w_i X_i^-1`` by the slices of ``chunks``; with validation on, ``ValueError``
    naming the first sample that is not positive definite (its index in the whole batch, which
    a slice's own Cholesky error would not give)."""
    parts = chunks.run(lambda k, s: _weighted_inverse_sum(xs[s], w[s]))
    if config.validating():
        info = torch.cat([part[1] for part in parts])
        failed = info.reshape(info.shape[0], -1).ne(0).any(-1)
        if bool(failed.any()):
            raise ValueError(f"point is not positive definite: sample {int(failed.nonzero()[0])} "
                             "of the batch has no Cholesky factor")
    return sum((part[0] for part in parts[1:]), parts[0][0])


def arithmetic_harmonic_start(xs, w, chunks=None):
    """Geometric mean ``A # H`` of the weighted arithmetic and harmonic means, ``(..., n, n)``,
    with a factor ``B`` of it (``A # H = B B^T``) and ``B^-1``.

    Exact for two equally weighted commuting samples and a close start in general (about
    ``6e-3`` relative on the Wishart samples of the benchmark, where the log-Euclidean mean is
    ``5e-4`` off but costs a batched ``eigh``); it needs Cholesky factors, no
    eigendecomposition of the samples. The inverses are summed by slices of ``chunks``, or,
    where the solver keeps the batch whole, by one slice per thread once each gets
    ``TEAM_MIN_WORK`` (two LAPACK calls per sample and one sum: 64 samples of 20 x 20 in 150
    against 185 microseconds on 2 cores).
    ``A = L L^T`` and ``C = L^T H^-1 L = Q diag(c) Q^T`` give ``A # H = L C^-1/2 L^T`` and the
    factor ``B = L Q diag(c^-1/4)``: the samples whitened by ``B^-1`` are those whitened by
    ``(A # H)^-1/2`` up to a rotation, which the first Newton step does not see, so it needs
    no ``eigh`` of the start itself.
    """
    arith = common.weighted_sum(w, xs)
    if chunks is None or not chunks.parallel:
        chunks = SampleChunks.plan(xs, TEAM_MIN_WORK)
    inverse_mean = _harmonic_inverse(xs, w, chunks)
    chol = common.cholesky(arith)
    c, q = eigh(sym(chol.transpose(-1, -2) @ inverse_mean @ chol))
    quarter = floor_eigenvalues(c, c.dtype).sqrt().sqrt()
    factor = (chol @ q) / quarter.unsqueeze(-2)
    # B^-1 = diag(c^1/4) Q^T L^-1, the transpose of L^-T Q diag(c^1/4)
    inv_factor = torch.linalg.solve_triangular(chol.transpose(-1, -2),
                                               q * quarter.unsqueeze(-2), upper=True)
    return sym(factor @ factor.transpose(-1, -2)), factor, inv_factor.transpose(-1, -2)


def karcher_gradient(lam, bases, w):
    """``log lam``, ``F(M) = sum_i w_i log W_i`` and its Frobenius norms from the spectra."""
    loglam = lam.log()
    grad = sym(bases.combine_diagonal(w.squeeze(-1) * loglam))
    return loglam, grad, torch.linalg.matrix_norm(grad)


def _damping(nu, crit, previous):
    """Halve the step whenever ``||F||`` fails to decrease, double it back up to 1 otherwise."""
    return torch.where(crit >= previous, 0.5 * nu, (2.0 * nu).clamp_max(1.0))


def _richardson_rate(lam, w):
    """``2 / (1 + k)`` with ``k = sum_i w_i max K_i >= ||H||``, per batch entry.

    ``K_i[a, b]`` is the ratio of the arithmetic to the logarithmic mean of ``l_a`` and
    ``l_b``, which grows with ``|log(l_a / l_b)|``, so its largest entry is that of the
    extreme eigenvalues. With ``1 <= H <= k``, the step ``V = 2 F / (1 + k)`` leaves the
    residual ``F - H[V]`` at most ``(k - 1) / (k + 1) ||F||``: a contraction however spread the
    samples, where the unit step of the Karcher flow can overshoot."""
    low, high = lam[..., 0], lam[..., -1]
    log_ratio = high.log() - low.log()
    ratio = (0.5 * (high + low) * log_ratio / (high - low)).nan_to_num_(1.0).clamp_min_(1.0)
    return 2.0 / (1.0 + (w[..., 0, 0] * ratio).sum(0))


def richardson_step(factor, lam, grad, w):
    """``B exp(a F) B^T`` for ``M = B B^T`` (the spectra and ``F`` in the frame of ``B``) with
    the rate ``a`` of :func:`_richardson_rate`: no solve, one exponential of a single matrix.
    From an estimate with ``||F|| <= tol`` it contracts ``||F||`` by at most
    ``(k - 1) / (k + 1)`` to first order (``0.12`` on the benchmark's Wishart samples, where
    ``||F||`` goes from ``1.5e-9`` to ``1.2e-10``)."""
    return flow_step(factor, lam, grad, w, 1.0, first=False)


def newton_step(factor, lam, loglam, bases, w, grad, nu, atol):
    """The damped Newton step ``B exp(nu H^-1[F]) B^T`` from ``M = B B^T`` (the spectra and
    ``F`` in the frame of the factor ``B``), with ``H^-1[F]`` solved by conjugate gradients to
    the residual ``atol``."""
    step = NewtonHessian(newton_kernel(lam, loglam, bases.chunks), bases, w).solve(grad, atol)
    return common.unwhiten(factor, common.expm(nu[..., None, None] * sym(step)))


def flow_step(factor, lam, grad, w, nu, first):
    """The damped Karcher flow step ``B exp(nu a F) B^T`` from ``M = B B^T`` (the spectra and
    ``F`` in the frame of the factor ``B``): one exponential of a single matrix per batch entry.

    The step length ``a`` is the rate ``2 / (1 + k)`` of :func:`_richardson_rate`, which
    contracts ``||F||`` by ``(k - 1) / (k + 1)`` to first order, except on the ``first`` step
    where ``k < 2``: there it is the unit step of the classical flow, which contracts by
    ``k - 1`` in the worst case but lands closer on concentrated batches (``k = 1.75`` on the
    benchmark's: ``1e-2`` from the mean against ``3e-2`` at the rate). Later unit steps would
    slow the iteration as ``k`` nears 2 (35 to 42 steps to ``1e-10`` against 16 to 21), and
    where ``k >= 2`` they overshoot (random 4 x 4 samples at condition number 1e4: ``1e-10``
    not reached in 100 steps, against 45 to 52 at the rate)."""
    rate = _richardson_rate(lam, w)
    step = torch.where(rate > 2.0 / 3.0, torch.ones_like(rate), rate) if first else rate
    return common.unwhiten(factor, common.expm((nu * step)[..., None, None] * grad))


METHODS = ("newton", "flow")


def check_method(method) -> str:
    """``method`` if it names a step of :func:`karcher_iterations`, else ``ValueError``."""
    if method not in METHODS:
        raise ValueError(f"mean_method must be one of {METHODS}, got {method!r}")
    return method


def _solve_tolerance(crit, tol, last):
    """Residual to which a Newton step solves ``H[V] = F``: ``tol / 10``, except on the last
    step the iteration cap allows, which nothing checks afterwards: there the relative residual
    ``min(1/2, ||F|| / 100)`` (a forcing term proportional to ``||F||``, which keeps the step
    quadratically convergent) takes three conjugate-gradient products instead of about eight
    on a batch of 64 samples."""
    if not last:
        return 0.1 * tol
    top = crit.amax()
    return max(0.1 * tol, float(top * (0.01 * top).clamp_max(0.5)))


class _RoundingFloor:
    """Detects Newton iterations stalled above ``tol`` at the rounding floor of ``||F||``.

    Near the mean each Newton step squares the relative error, so ``||F||`` falls by orders of
    magnitude per step until the rounding of the whitened samples' logarithms dominates:
    about ``eps cond / 10`` (float64: ``1e-9`` at condition number ``1e8``), above the
    default tolerance ``1e-10`` from condition numbers near ``1e7`` (whitening by a Cholesky
    factor instead of ``M^-1/2`` leaves it as high). From there the criterion fluctuates and
    the iteration would run to ``max_iter``. The floor counts as reached when, since the
    criterion last halved its smallest value, at least ``STEPS`` iterations passed and it
    rose at least ``RISES`` times, that smallest value being at most ``sqrt(tol)``: a steadily
    converging iteration does not rise, and a solver this close to the mean is past the
    damped regime where it may.
    """

    STEPS = 3
    RISES = 2

    def __init__(self, tol: float):
        self.near = math.sqrt(tol)
        self.best = self.last = math.inf
        self.steps = self.rises = 0

    def reached(self, value: float) -> bool:
        """Record the criterion of one iteration (the largest over a batch); whether the
        iteration has stalled."""
        if value < 0.5 * self.best:
            self.best, self.steps, self.rises = value, 0, 0
        else:
            self.best = min(self.best, value)
            self.steps += 1
            self.rises += value >= self.last
        self.last = value
        return self.steps >= self.STEPS and self.rises >= self.RISES and self.best <= self.near


def karcher_iterations(xs, w, tol, max_iter, step_past_tolerance=False, method="newton"):
    """Damped Newton (``method="newton"``) or Karcher flow (``"flow"``) iterations for the
    weighted Karcher mean (no autograd; see the module docstring), at most ``max_iter`` steps
    from :func:`arithmetic_harmonic_start`.

    The iteration also ends where ``||F||`` stalls at its rounding floor above ``tol``
    (:class:`_RoundingFloor`; ill-conditioned samples).

    With ``step_past_tolerance`` the iteration takes one more step from the first estimate
    with ``||F|| <= tol``, a :func:`richardson_step` (the Newton step would cost a Hessian
    kernel and a conjugate-gradient product for a gain that no caller can see at that size),
    and returns ``(M, None, None, None, 0.0)`` (after a stall, the stalled ``||F||`` instead
    of 0), or ``(M, None, None, None, None)`` when the iteration cap stops it first
    (``||F(M)||`` unknown).
    Otherwise it ends at that estimate, or after the last step, and returns
    ``(M, frame, lam, bases, residual)`` with the whitened spectrum
    ``W_i = U_i diag(lam_i) U_i^T`` at the returned ``M`` (eigenvectors as
    :class:`EigenBases`), so a caller that centres the samples at the mean needs no further
    ``eigh`` (``max_iter = 1`` costs two batched ``eigh`` in all), and the largest
    ``||F(M)||`` over the batch as a float: ``M`` is within about that relative distance of
    the mean (``H >= 1``), which bounds what the implicit derivative at ``M`` can resolve
    (:func:`implicit_solve`).
    """
    check_method(method)
    chunks = SampleChunks.plan(xs)
    if chunks.parallel:  # the slices' results fill tensors shaped like the samples
        xs = common.expand_samples(xs, w)
    with chunks.serial():
        return _iterate(xs, w, tol, max_iter, step_past_tolerance, method, chunks)


def _iterate(xs, w, tol, max_iter, step_past_tolerance, method, chunks):
    mean, factor, inv_factor = arithmetic_harmonic_start(xs, w, chunks)
    nu = torch.ones(mean.shape[:-2], dtype=xs.dtype, device=xs.device)
    previous = torch.full_like(nu, float("inf"))
    floor = _RoundingFloor(tol)
    frame = None
    for k in range(max_iter + 1):
        if k == max_iter and step_past_tolerance:
            break
        if k == 0:  # in the frame of the start's factor: no eigh of the start
            lam, bases = _whitened(xs, inv_factor, chunks)
        else:
            frame, lam, bases = whitened_spectrum(xs, mean, chunks)
            factor = frame.root
        loglam, grad, crit = karcher_gradient(lam, bases, w)
        top = float(crit.amax())
        if k == max_iter or top <= tol or floor.reached(top):
            if not step_past_tolerance:
                if frame is None:  # callers get the spectra in the symmetric frame
                    frame, lam, bases = whitened_spectrum(xs, mean, chunks)
                return mean, frame, lam, bases, top
            residual = 0.0 if top <= tol else top
            return richardson_step(factor, lam, grad, w), None, None, None, residual
        nu, previous = _damping(nu, crit, previous), crit
        if method == "flow":
            mean = flow_step(factor, lam, grad, w, nu, first=k == 0)
        else:
            atol = _solve_tolerance(crit, tol, last=k == max_iter - 1)
            mean = newton_step(factor, lam, loglam, bases, w, grad, nu, atol)
    return mean, None, None, None, None


def implicit_solve(root, lam, bases, w, grad_mean, input_dtype, residual=0.0, dlog=None):
    """Solve ``H[Z] = M^1/2 G M^1/2`` for a loss gradient ``G`` of the mean ``M`` (the implicit
    function theorem at the solution), to the relative accuracy that
    :func:`~riemtorch.manifolds.spd.common.implicit_rtol` gives the user's ``input_dtype``
    (float32 input, decomposed in float64, needs about three conjugate-gradient products
    where ten digits take seven), or to ``residual`` (at most ``1e-3``) where that is larger:
    the ``||F||`` of the point ``M`` at which the derivative is evaluated, whose distance from
    the mean (about ``||F||`` relative) already perturbs the derivative by that order (after one
    Newton step on a batch-norm batch, ``||F|| = 5e-6``: four products instead of seven;
    the cap keeps the solve itself accurate when a far point is given). Returns ``Z`` and
    the divided differences ``dlog`` of ``log`` at the ``lam`` (computed unless given). The
    gradient of sample ``i`` is then ``w_i M^-1/2 Dlog_{W_i}[Z] M^-1/2`` and that of its
    weight ``<Z, log W_i>``."""
    chunks = bases.chunks
    if dlog is None:
        dlog = chunks.gather(lambda k, s: spectral.LOG.loewner(lam[s]), bases.u)

    def kernel(k, s):  # (l_a + l_b) / 2 * dlog, by slices of the samples
        return torch.add(lam[s].unsqueeze(-1), lam[s].unsqueeze(-2)).mul_(dlog[s]).mul_(0.5)

    ratio = chunks.gather(kernel, dlog)
    rhs = sym(root @ grad_mean @ root)
    rtol = max(common.implicit_rtol(input_dtype), min(residual, 1e-3))
    atol = float(torch.linalg.matrix_norm(rhs).amax()) * rtol
    z = NewtonHessian(ratio, bases, w).solve(rhs, atol, max_iter=100)
    return z, dlog


class _KarcherMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, w, tol, max_iter, input_dtype, method):
        mean, *_, residual = karcher_iterations(xs, w, tol, max_iter, step_past_tolerance=True,
                                                method=method)
        ctx.save_for_backward(xs, w, mean)
        ctx.input_dtype, ctx.residual = input_dtype, residual
        return mean

    @staticmethod
    @first_order
    def backward(ctx, grad):
        xs, w, mean = ctx.saved_tensors
        chunks = SampleChunks.plan(xs)
        # samples or weights shared by channels get per-channel gradients (autograd sums them)
        xs = common.expand_samples(xs, w)
        with chunks.serial():
            return _KarcherMean._gradients(ctx, xs, w, mean, grad, chunks)

    @staticmethod
    def _gradients(ctx, xs, w, mean, grad, chunks):
        frame, lam, bases = whitened_spectrum(xs, mean, chunks)
        residual = ctx.residual
        if residual is None:  # stopped by the iteration cap: the derivative's accuracy
            residual = float(karcher_gradient(lam, bases, w)[2].amax())
        z, dlog = implicit_solve(frame.root, lam, bases, w, grad, ctx.input_dtype, residual)
        grad_x = xs.new_empty(xs.shape) if ctx.needs_input_grad[0] else None
        grad_w = w.new_empty(*xs.shape[:-2], 1, 1) if ctx.needs_input_grad[1] else None

        def sample_gradients(k, s):  # into the slices of the gradients, on the slice's thread
            part = bases.part(k)
            rotated = part.rotate(z)
            if grad_x is not None:
                g = w[s] * part.from_bases(dlog[s] * rotated, frame.inv_root)
                torch.add(g, g.transpose(-1, -2), out=grad_x[s]).mul_(0.5)
            if grad_w is not None:
                # <Z, U diag(log l) U^T> = sum_a log(l_a) (U^T Z U)_aa
                diagonal = torch.diagonal(rotated, dim1=-2, dim2=-1)
                torch.sum(diagonal * lam[s].log(), -1, out=grad_w[s][..., 0, 0])

        chunks.run(sample_gradients)
        return grad_x, grad_w, None, None, None, None


def karcher_mean(xs, w, tol, max_iter, input_dtype=None, method="newton"):
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
        most ``tol`` (then one more, contracting, gradient step is taken).
    max_iter : int
        Iteration cap.
    input_dtype : torch.dtype, optional
        Dtype of the user's input, for the accuracy of the implicit backward
        (:func:`~riemtorch.manifolds.spd.common.implicit_rtol`).
    method : {"newton", "flow"}
        Newton steps or Karcher flow steps (see the module docstring).

    Returns
    -------
    torch.Tensor
        The mean, shape ``(..., n, n)``.
    """
    return _KarcherMean.apply(xs, w, float(tol), int(max_iter), input_dtype or xs.dtype,
                              check_method(method))
