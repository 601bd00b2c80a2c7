"""The :class:`Manifold` interface shared by every geometry.

A point or tangent vector is a tensor whose trailing ``manifold.ndim`` dimensions are the
manifold; all leading dimensions are batch dimensions and broadcast like torch.
"""

import functools
import inspect
from typing import Optional, Tuple

import torch
from torch import nn

from riemtorch import config
from riemtorch.linalg.checks import check_nonnegative_number
from riemtorch.linalg.safe import safe_sqrt


def default_tolerance(dtype: torch.dtype) -> float:
    """Tolerance of membership checks: ``1e-4`` for float32, ``1e-8`` for float64."""
    return 1e-4 if dtype == torch.float32 else 1e-8


def input_tolerance(dtype: torch.dtype) -> float:
    """Tolerance of the membership checks that public methods run on their points when
    validation is on: ``1e-5`` for float64, ``1e-3`` for float32 (at least ``10 eps`` for
    lower precisions). Looser than :func:`default_tolerance` (that of
    :meth:`Manifold.check_point`): these checks catch inputs that are not points (a basis that
    is not orthonormal, a point outside the ball), not rounding, so float32 points promoted to
    float64 and points moved by a finite-difference step pass."""
    if dtype == torch.float64:
        return 1e-5
    return max(1e-3, 10 * torch.finfo(dtype).eps)


ROLES = ("point", "tangent vector", "ambient")


def _promote_arguments(args, kwargs, given):
    """``args`` and ``kwargs`` with the tensors of ``given`` (``(position, name, tensor)``)
    cast to their common dtype."""
    dtype = functools.reduce(torch.promote_types, [value.dtype for _, _, value in given])
    args, kwargs = list(args), dict(kwargs)
    for i, name, value in given:
        if i < len(args):
            args[i] = value.to(dtype)
        else:
            kwargs[name] = value.to(dtype)
    return tuple(args), kwargs


def checks_inputs(*roles):
    """Decorate a public method whose leading arguments (after ``self``) have the given roles.

    ``"point"``, ``"tangent vector"`` and ``"ambient"`` (a tensor of the point shape that need
    not be tangent, such as a Euclidean gradient) are checked by
    :meth:`Manifold._check_input`; ``None`` marks an argument left alone (a scalar). An
    argument passed as ``None`` (an optional one) is skipped. The decorated method carries
    ``input_roles`` (``{argument: role}``); its body should call the plain formulas rather than
    other decorated methods, whose checks would repeat on the same tensors.

    Checked arguments of different float dtypes are promoted to their common dtype (float32
    with float64 gives float64), as torch's elementwise operations do and as the SPD metrics
    do explicitly, so that methods built on matrix products accept them too; the result has
    that dtype.

    With validation on, where a point or tangent vector was given (their values are checked),
    a result that is not finite raises ``ValueError`` (:meth:`Manifold._check_result`): from
    finite inputs it means an overflow (hyperbolic points far from the origin, for instance)
    or an undefined value, which would otherwise reach the caller as a silent ``inf`` or
    ``NaN``. Methods that take only ambient tensors (``projx``) keep no value checks, so they
    also run under ``torch.vmap``.
    """
    if any(role not in ROLES + (None,) for role in roles):
        raise ValueError(f"roles must be among {ROLES} or None, got {roles}")

    def decorate(method):
        parameters = tuple(inspect.signature(method).parameters)[1:]
        names = parameters[:len(roles)]
        checked_args = tuple((i, name, role) for i, (name, role) in enumerate(zip(names, roles))
                             if role is not None)

        @functools.wraps(method)
        def checked(self, *args, **kwargs):
            given, values_checked = [], False
            for i, name, role in checked_args:
                value = args[i] if i < len(args) else kwargs.get(name)
                if value is not None:
                    self._check_input(value, role, name, method.__name__)
                    given.append((i, name, value))
                    values_checked = values_checked or role != "ambient"
            if len(given) > 1 and any(value.dtype != given[0][2].dtype for _, _, value in given):
                args, kwargs = _promote_arguments(args, kwargs, given)
            result = method(self, *args, **kwargs)
            if values_checked and config.validating():
                arguments = [*zip(parameters, args), *kwargs.items()]
                self._check_result(result, arguments, method.__name__)
            return result

        checked.input_roles = dict(zip(names, roles))
        return checked

    return decorate


def default_mean_tolerance(dtype: torch.dtype) -> float:
    """Stopping tolerance of iterative means (norm of the last step): ``1e-5`` / ``1e-10``."""
    return 1e-5 if dtype == torch.float32 else 1e-10


def mean_tolerance(tol, dtype: torch.dtype) -> float:
    """The stopping tolerance of an iterative mean: ``tol`` checked (a finite number ``>= 0``,
    else ``ValueError``; ``TypeError`` for a non-number), or :func:`default_mean_tolerance` of
    ``dtype`` for ``None``."""
    if tol is None:
        return default_mean_tolerance(dtype)
    return check_nonnegative_number(tol, "tol")


def broadcast_batch(value: torch.Tensor, x: torch.Tensor, ndim: int, keepdim: bool):
    """Broadcast a per-point ``value`` (batch shape, plus ``ndim`` ones when ``keepdim``) to the
    batch shape of the points ``x``, so reductions follow torch broadcasting of all inputs."""
    batch = x.shape[: x.dim() - ndim] + ((1,) * ndim if keepdim else ())
    if value.shape == batch:
        # the common case; torch.broadcast_shapes costs tens of microseconds per call
        return value
    return value.expand(torch.broadcast_shapes(batch, value.shape))


class Manifold(nn.Module):
    """Base class of all manifolds (an ``nn.Module``, so learnable geometry moves with ``.to()``).

    Subclasses implement ``projx``, ``proju``, ``inner``, ``expmap``, ``logmap``, ``transp``,
    ``random``, ``origin`` and ``_check_point_on_manifold`` / ``_check_vector_on_tangent``; the
    rest has generic defaults that subclasses override with closed forms.

    Attributes
    ----------
    ndim : int
        Number of trailing dimensions that make one point (2 for matrices, 1 for vectors).
    points_follow_parameters : bool
        Whether the set of points depends on the manifold's own learnable parameters (the
        curvature of a ball or hyperboloid): the optimizers of :mod:`riemtorch.optim` then
        project the parameters that live on the manifold onto it after stepping those
        (``projx``).
    """

    ndim: int = 1
    points_follow_parameters: bool = False

    # ---- to be implemented by every manifold -------------------------------------------------
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest point of the manifold (or a projection onto it)."""
        raise NotImplementedError

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Project an ambient vector ``u`` onto the tangent space at ``x``."""
        raise NotImplementedError

    def inner(self, x, u, v=None, keepdim: bool = False) -> torch.Tensor:
        """Riemannian inner product ``<u, v>_x`` (``v = u`` when omitted)."""
        raise NotImplementedError

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian exponential map ``Exp_x(u)``."""
        raise NotImplementedError

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Riemannian logarithm ``Log_x(y)``, the inverse of ``expmap`` near ``x``."""
        raise NotImplementedError

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Transport a tangent vector ``v`` at ``x`` to the tangent space at ``y``."""
        raise NotImplementedError

    def random(self, *size, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Random points; ``size`` is the batch shape."""
        raise NotImplementedError

    def origin(self, *size, dtype=None, device=None) -> torch.Tensor:
        """The base point (identity element of the gyro structure), with batch shape ``size``."""
        raise NotImplementedError

    def _check_point_on_manifold(self, x, atol, rtol) -> Tuple[bool, Optional[str]]:
        raise NotImplementedError

    def _check_vector_on_tangent(self, x, u, atol, rtol) -> Tuple[bool, Optional[str]]:
        raise NotImplementedError

    def _check_shape(self, shape: torch.Size, name: str) -> Tuple[bool, Optional[str]]:
        if len(shape) < self.ndim:
            return False, f"{name} needs at least {self.ndim} dimensions, got shape {tuple(shape)}"
        return True, None

    def _check_input(self, value, role: str, name: str, method: str) -> None:
        """Checks of an argument of a public method (see :func:`checks_inputs`).

        Always (no cost on the device): a floating-point tensor (``TypeError``) of the point
        shape (``ValueError``). When validation is on (:mod:`riemtorch.config`): points and
        tangent vectors are finite, so are the squared norms of tangent vectors, and points lie
        on the manifold within :func:`input_tolerance` (``ValueError``). Tangency is not
        checked: the maps that take tangent vectors accept them up to the rounding of their own
        projections.
        """
        where = f"{type(self).__name__}.{method}"
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{where}: {name} must have a floating-point dtype, got {value.dtype}")
        ok, reason = self._check_shape(value.shape, name)
        if not ok:
            raise ValueError(f"{where}: {reason}")
        if role == "ambient" or not config.validating():
            return
        with torch.no_grad():
            if role == "tangent vector":
                # one reduction for both: a NaN or infinite entry, or a vector whose squared
                # norm leaves the dtype's range, which the maps' norms would turn into NaN or a
                # wrong point
                square = value.square()
                if self.ndim:
                    square = square.sum(tuple(range(-self.ndim, 0)))
                if not bool(torch.isfinite(square).all()):
                    if bool(torch.isfinite(value).all()):
                        raise ValueError(f"{where}: {name} is too large: its squared norm "
                                         f"overflows {value.dtype}")
                    raise ValueError(f"{where}: {name} contains NaN or infinite values")
            elif not bool(torch.isfinite(value).all()):
                raise ValueError(f"{where}: {name} contains NaN or infinite values")
            if role == "point":
                tol = input_tolerance(value.dtype)
                ok, reason = self._check_point_on_manifold(value.detach(), tol, tol)
                if not ok:
                    raise ValueError(f"{where}: {name} is not a point of {self!r}: {reason}")

    def _finite_range_hint(self, dtype: torch.dtype) -> str:
        """What leaves the range of ``dtype`` on this manifold, for :meth:`_check_result`."""
        return (f"an overflow (inputs too large for {dtype}) or an undefined value (such as "
                f"0 / 0)")

    def _check_result(self, result, arguments, method: str) -> None:
        """``ValueError`` if a tensor of ``result`` (a tensor or a tuple of them) has a NaN or
        infinite entry: naming the tensor argument that has one (arguments not checked on
        entry, such as Euclidean gradients or scalars), or else saying what finite inputs can
        produce (:meth:`_finite_range_hint`)."""
        tensors = result if isinstance(result, (tuple, list)) else (result,)
        tensors = [t for t in tensors if isinstance(t, torch.Tensor) and t.is_floating_point()]
        with torch.no_grad():
            if all(bool(torch.isfinite(t).all()) for t in tensors):
                return
            where = f"{type(self).__name__}.{method}"
            for name, value in arguments:
                if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(
                        torch.isfinite(value).all()):
                    raise ValueError(f"{where}: {name} contains NaN or infinite values")
        raise ValueError(f"{where}: the result is not finite in {tensors[0].dtype} although the "
                         f"inputs are: {self._finite_range_hint(tensors[0].dtype)}")

    # ---- generic defaults ----------------------------------------------------------------------
    def egrad2rgrad(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient from the Euclidean gradient ``g`` of a function at ``x``."""
        return self.proju(x, g)

    def norm(self, x: torch.Tensor, u: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
        """Riemannian norm ``||u||_x`` (finite, zero gradient at ``u = 0``)."""
        return safe_sqrt(self.inner(x, u, keepdim=keepdim).clamp_min(0))

    def dist(self, x: torch.Tensor, y: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
        """Geodesic distance."""
        return self.norm(x, self.logmap(x, y), keepdim=keepdim)

    def dist2(self, x: torch.Tensor, y: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
        """Squared geodesic distance (differentiable at ``x = y``)."""
        return self.inner(x, self.logmap(x, y), keepdim=keepdim)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Retraction; the exponential map unless a manifold documents a cheaper one."""
        return self.expmap(x, u)

    def retr_transp(self, x, u, v) -> Tuple[torch.Tensor, torch.Tensor]:
        """Retract ``u`` and transport ``v`` to the new point: ``(y, transp(x, y, v))``."""
        y = self.retr(x, u)
        return y, self.transp(x, y, v)

    def expmap_transp(self, x, u, v) -> Tuple[torch.Tensor, torch.Tensor]:
        """Exponential map of ``u`` and transport of ``v`` to the new point."""
        y = self.expmap(x, u)
        return y, self.transp(x, y, v)

    def geodesic(self, x: torch.Tensor, y: torch.Tensor, t) -> torch.Tensor:
        """Point at time ``t`` on the geodesic from ``x`` (``t = 0``) to ``y`` (``t = 1``).

        ``t`` is a number or a tensor broadcastable with the batch shape.
        """
        return self.expmap(x, self.scale_tangent(t, self.logmap(x, y)))

    def scale_tangent(self, t, u: torch.Tensor) -> torch.Tensor:
        """Multiply tangent vectors by ``t`` (number or tensor over the batch dimensions)."""
        if isinstance(t, torch.Tensor):
            t = t.to(u.dtype).reshape(t.shape + (1,) * self.ndim)
        return t * u

    def center(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """``Log_mean(x)`` transported to the origin: the centring step of batch normalisation.

        Returns tangent vectors at :meth:`origin`. Manifolds override it with closed forms.
        """
        origin = self.origin_like(mean)
        return self.transp(mean, origin, self.logmap(mean, x))

    def uncenter(self, u: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`center`: ``Exp_point`` of ``u`` transported from the origin."""
        return self.expmap(point, self.transp(self.origin_like(point), point, u))

    def origin_like(self, x: torch.Tensor) -> torch.Tensor:
        """The origin with the point shape, dtype and device of ``x`` (batch shape of ``x``)."""
        raise NotImplementedError

    # ---- checks --------------------------------------------------------------------------------
    def check_point(self, x, atol=None, rtol=None) -> Tuple[bool, Optional[str]]:
        """Whether ``x`` is a batch of points of this manifold: ``(ok, reason)``."""
        if not isinstance(x, torch.Tensor):
            return False, f"point must be a torch.Tensor, got {type(x).__name__}"
        ok, reason = self._check_shape(x.shape, "point")
        if not ok:
            return ok, reason
        if not bool(torch.isfinite(x).all()):
            return False, "point contains NaN or infinite values"
        tol = default_tolerance(x.dtype)
        with torch.no_grad():  # values only (a parameter is checked without autograd warnings)
            return self._check_point_on_manifold(x.detach(), tol if atol is None else atol,
                                                 tol if rtol is None else rtol)

    def check_vector(self, x, u, atol=None, rtol=None) -> Tuple[bool, Optional[str]]:
        """Whether ``u`` is a batch of tangent vectors at ``x``: ``(ok, reason)``."""
        ok, reason = self.check_point(x, atol, rtol)
        if not ok:
            return ok, reason
        ok, reason = self._check_shape(u.shape, "tangent vector")
        if not ok:
            return ok, reason
        if not bool(torch.isfinite(u).all()):
            return False, "tangent vector contains NaN or infinite values"
        tol = default_tolerance(u.dtype)
        with torch.no_grad():
            return self._check_vector_on_tangent(x.detach(), u.detach(),
                                                 tol if atol is None else atol,
                                                 tol if rtol is None else rtol)

    def assert_check_point(self, x, name: str = "point") -> None:
        """Raise ``ValueError`` with the reason if ``x`` is not on the manifold."""
        ok, reason = self.check_point(x)
        if not ok:
            raise ValueError(f"{name} is not on {self!r}: {reason}")

    def assert_check_vector(self, x, u, name: str = "tangent vector") -> None:
        """Raise ``ValueError`` with the reason if ``u`` is not tangent at ``x``."""
        ok, reason = self.check_vector(x, u)
        if not ok:
            raise ValueError(f"{name} is not tangent to {self!r}: {reason}")

    # ---- Fréchet statistics --------------------------------------------------------------------
    def _reduce_dim(self, x: torch.Tensor, dim: int) -> int:
        batch_ndim = x.dim() - self.ndim
        if not -batch_ndim <= dim < batch_ndim:
            raise ValueError(
                f"dim={dim} is not a batch dimension of a tensor of shape {tuple(x.shape)} "
                f"on a manifold with ndim={self.ndim}"
            )
        return dim % batch_ndim

    def _stack_and_weights(self, x, weights, dim):
        """Move the reduced dimension first; weights normalised to sum 1 along it."""
        dim = self._reduce_dim(x, dim)
        given_batch = x.shape[: x.dim() - self.ndim]
        x = x.movedim(dim, 0)
        batch = x.shape[: x.dim() - self.ndim]
        if batch[0] == 0:
            raise ValueError("cannot average zero points: batch dimension "
                             f"{dim} of x {tuple(x.movedim(0, dim).shape)} is empty")
        if weights is None:
            w = torch.full(batch[:1], 1.0 / batch[0], dtype=x.dtype, device=x.device)
            w = w.reshape(w.shape + (1,) * (len(batch) - 1))
        else:
            if not isinstance(weights, torch.Tensor):
                raise TypeError(f"weights must be a tensor, got {type(weights).__name__}")
            w = weights.to(dtype=x.dtype, device=x.device)
            if w.dim() == 1:
                if w.shape[0] != batch[0]:
                    raise ValueError(f"weights {tuple(w.shape)} do not match {batch[0]} samples")
                w = w.reshape(w.shape + (1,) * (len(batch) - 1))
            else:
                if w.dim() != len(given_batch) or any(
                        a not in (b, 1) for a, b in zip(w.shape, given_batch)):
                    raise ValueError(f"weights {tuple(w.shape)} must have shape ({batch[0]},) or "
                                     f"the batch shape {tuple(given_batch)} of x")
                w = w.movedim(dim, 0)
            if config.validating():
                if not bool(torch.isfinite(w).all()):
                    raise ValueError("weights must be finite (no NaN or infinite values)")
                if bool((w < 0).any()):
                    raise ValueError("weights must be non-negative")
                if not bool((w.sum(dim=0) > 0).all()):
                    raise ValueError("weights must not all be zero (along the averaged dimension)")
            w = w / w.sum(dim=0, keepdim=True)
        return x, w.expand(batch), dim

    def _initial_mean(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x[0]

    def _karcher_direction(self, mean, xs, w):
        """``g(m) = sum_i w_i Log_m(x_i)``, minus the Riemannian gradient of the Fréchet function
        ``f(m) = 1/2 sum_i w_i d(m, x_i)^2``."""
        return self.scale_tangent(w, self.logmap(mean.unsqueeze(0), xs)).sum(0)

    def _karcher_line_search(self, mean, direction, residual, size, trial, trial_direction):
        """Whether the trial ``Exp_m(t g)`` (``t = size``, ``|g| = residual``) is kept, and the
        next step size; no autograd.

        Along the geodesic ``phi(s) = f(Exp_m(s g))`` has ``phi'(0) = -|g|^2`` and
        ``phi'(t) = <g(trial), Log_trial(m)> / t``. The trapezoid rule, exact for a quadratic
        ``phi``, gives ``f(trial) - f(m) = t (phi'(0) + phi'(t)) / 2``, and the step is kept where
        that is negative, i.e. ``phi'(t) < |g|^2`` (for a quadratic of curvature ``lambda``:
        ``t lambda < 2``, the steps that contract). Comparing values of ``f`` would fail near the
        mean, where its change, of order ``|g|^2``, is below the rounding of ``f``. The secant
        curvature ``c = (phi'(t) - phi'(0)) / t`` gives the next step ``|g|^2 / c`` (``1 / lambda``
        for a quadratic), capped at 1 (also where ``c <= 0``: ``f`` not convex along the
        geodesic); after a rejected step it is at most half the rejected one.
        """
        slope = self.inner(trial, trial_direction, self.logmap(trial, mean)) / size
        descent = residual.square()
        accept = slope < descent
        curvature = (slope + descent) / size
        secant = torch.where(curvature > descent, descent / curvature, 1.0)
        return accept, torch.where(accept, secant, torch.minimum(secant, 0.5 * size))

    def frechet_mean(self, x, weights=None, dim: int = 0, keepdim: bool = False,
                     tol: Optional[float] = None, max_iter: int = 100) -> torch.Tensor:
        """Weighted Fréchet (Karcher) mean over batch dimension ``dim``.

        The generic solver is the damped Karcher flow ``m <- Exp_m(t g(m))``, with
        ``g(m) = sum_i w_i Log_m(x_i)`` (minus the gradient of ``f(m) = 1/2 sum_i w_i
        d(m, x_i)^2``) and a step size ``t <= 1`` per batch entry, 1 at the start. The plain
        flow (``t = 1``) overshoots where the Hessian of ``f`` exceeds 2: on negatively curved
        manifolds once the points lie about 2 or more from their mean (the Hessian of
        ``d(., x)^2 / 2`` at distance ``d`` in curvature -1 reaches ``d coth d``), where it falls
        into a 2-cycle. A step that at least halves ``||g||`` is kept with its ``t``. Otherwise a
        line search decides (:meth:`_karcher_line_search`): the step is kept if it lowers ``f``
        (judged from the slopes at its two ends), else the estimate stays, and the next ``t`` is
        the secant minimiser of ``f`` along the geodesic, capped at 1 (at most half the last
        ``t`` after a rejection). Concentrated samples thus take the steps of the plain flow at
        its cost; spread hyperbolic ones converge in about ten steps. After at least one step,
        the iteration stops at an estimate with ``||g|| <= tol`` in every batch entry (``1e-10``
        float64, ``1e-5`` float32), which is returned, or after ``max_iter`` steps, returning
        the last step taken (``max_iter=1``: one step of the plain flow from the start). It is
        differentiable by unrolling, with the step sizes and the choice of steps held constant.
        Manifolds with closed forms or faster solvers override it.

        Parameters
        ----------
        x : torch.Tensor
            Points, shape ``(..., N, ..., *point_shape)`` with ``N`` at batch dimension ``dim``.
        weights : torch.Tensor, optional
            Non-negative weights of shape ``(N,)`` or of the batch shape of ``x``.
        dim : int
            Batch dimension to average over (counted among batch dimensions).
        keepdim : bool
            Keep the reduced dimension with size 1.
        tol : float, optional
            Largest ``||g||`` accepted at the returned mean (a finite number ``>= 0``).
        max_iter : int
            Largest number of steps.
        """
        xs, w, dim = self._stack_and_weights(x, weights, dim)
        tol = mean_tolerance(tol, x.dtype)
        mean = self._initial_mean(xs, w)
        direction = self._karcher_direction(mean, xs, w)
        with torch.no_grad():
            residual = self.norm(mean, direction)
            size = torch.ones_like(residual)
        for k in range(max_iter):
            if k > 0:
                trial_direction = self._karcher_direction(trial, xs, w)
                with torch.no_grad():
                    trial_residual = self.norm(trial, trial_direction)
                    contracted = trial_residual < 0.5 * residual
                    # one host synchronisation per step on the common path
                    all_contracted, converged = torch.stack(
                        (contracted.all(), trial_residual.amax() <= tol)).tolist()
                if all_contracted:
                    mean, direction, residual = trial, trial_direction, trial_residual
                else:
                    with torch.no_grad():
                        accept, searched = self._karcher_line_search(
                            mean, direction, residual, size, trial, trial_direction)
                        accept = accept | contracted
                        size = torch.where(contracted, size, searched)
                        residual = torch.where(accept, trial_residual, residual)
                        converged = bool(residual.amax() <= tol)
                    keep = accept.reshape(accept.shape + (1,) * self.ndim)
                    mean = torch.where(keep, trial, mean)
                    direction = torch.where(keep, trial_direction, direction)
                if converged:
                    break
            trial = self.expmap(mean, self.scale_tangent(size, direction))
        else:  # the cap was reached: the last step taken, not checked
            if max_iter > 0:
                mean = trial
        return mean.unsqueeze(dim) if keepdim else mean

    def frechet_variance(self, x, mean=None, weights=None, dim: int = 0,
                         keepdim: bool = False) -> torch.Tensor:
        """Weighted mean squared distance of ``x`` to ``mean`` along batch dimension ``dim``.

        ``mean`` defaults to :meth:`frechet_mean`; pass it to reuse a computed mean. It has the
        batch shape of ``x`` without ``dim`` (or with size 1 there).
        """
        if mean is None:
            mean = self.frechet_mean(x, weights=weights, dim=dim, keepdim=True)
        elif mean.dim() == x.dim() - 1:
            mean = mean.unsqueeze(self._reduce_dim(x, dim))
        xs, w, dim = self._stack_and_weights(x, weights, dim)
        d2 = self.dist2(mean.movedim(dim, 0), xs)
        var = (w * d2).sum(0)
        return var.unsqueeze(dim) if keepdim else var
