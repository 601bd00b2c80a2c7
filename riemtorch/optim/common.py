"""Machinery shared by the Riemannian optimizers: finding a parameter's manifold, grouping
parameters that can be stepped in one batched call, retractions and stabilisation.

A parameter is *on a manifold* when it has a ``manifold`` attribute (a
:class:`riemtorch.ManifoldParameter`, or a geoopt ``ManifoldParameter``); every other parameter
is plain and steps exactly as the matching ``torch.optim`` optimizer would step it.

Parameters of one param group that live on the same riemtorch manifold (the same object, or
two objects of one class with equal configuration and no tensors of their own) and have equal
shape, dtype and device form a *batch*: their points, gradients and optimizer states are stacked
along a new leading dimension, stepped by one call of each manifold operation, and copied back.
The optimizer state stays per parameter, so ``state_dict`` has the standard layout. Manifolds of
other libraries (geoopt) are stepped one parameter at a time, since their operations need not
broadcast over leading dimensions.
"""

from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from riemtorch import config
from riemtorch.manifolds.base import Manifold

__all__ = ["RETRACTIONS", "RiemannianOptimizer", "manifold_of", "retract", "retract_transport",
           "riemannian_gradient"]

RETRACTIONS = ("retr", "expmap")
_MODULE_ATTRIBUTES = frozenset(vars(nn.Module()))
_SIMPLE = (bool, int, float, str, type(None))


def manifold_of(param: torch.Tensor):
    """The manifold of ``param`` (its ``manifold`` attribute), or ``None`` for a plain tensor."""
    return getattr(param, "manifold", None)


def riemannian_gradient(manifold, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``manifold.egrad2rgrad(x, grad)`` without touching ``grad``: geoopt manifolds (Lorentz,
    for one) convert the gradient in place, so they get a copy.

    This is where an update meets its inputs, so with validation on (:mod:`riemtorch.config`)
    the gradient must be finite (:func:`check_gradient`) and ``egrad2rgrad`` checks its
    arguments; the rest of an update works on values the optimizer made and runs without value
    checks (:func:`unchecked`)."""
    if not isinstance(manifold, Manifold):
        grad = grad.clone()
    else:
        check_gradient(manifold, grad)
    return manifold.egrad2rgrad(x, grad)


def check_gradient(manifold, grad: torch.Tensor) -> None:
    """With validation on, ``ValueError`` for a gradient with NaN or infinite values."""
    if config.validating() and not bool(torch.isfinite(grad).all()):
        raise ValueError(f"the gradient of a parameter on {manifold!r} contains NaN or "
                         "infinite values")


def unchecked():
    """Context in which the manifold operations of an update skip their value checks: after
    :func:`riemannian_gradient`, every tensor an update passes to them is its own result (a
    direction, a moved point, a transported moment), and the checks would read values back to
    the host several times per step (on 200 Stiefel(64, 16) parameters they nearly doubled the
    time of a batched Adam step)."""
    return config.override(validate=False)


def retract(manifold, retraction: str, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Move from ``x`` along the tangent vector ``u`` by ``manifold.retr`` or ``manifold.expmap``."""
    return manifold.retr(x, u) if retraction == "retr" else manifold.expmap(x, u)


def retract_transport(manifold, retraction: str, x, u, v) -> Tuple[torch.Tensor, torch.Tensor]:
    """Retract ``u`` at ``x`` and transport ``v`` to the new point (``retr_transp`` or
    ``expmap_transp``); returns ``(y, v_at_y)``."""
    if retraction == "retr":
        return manifold.retr_transp(x, u, v)
    return manifold.expmap_transp(x, u, v)


def _manifold_key(manifold: Manifold) -> Hashable:
    """Manifolds with equal keys give equal results on the same tensors.

    Two riemtorch manifolds are interchangeable when they are of the same class, hold no
    parameters, buffers or submodules, and their remaining attributes are equal plain values.
    Anything else is only interchangeable with itself.
    """
    if manifold._parameters or manifold._buffers or manifold._modules:
        return ("object", id(manifold))
    config = []
    for name, value in sorted(vars(manifold).items()):
        if name in _MODULE_ATTRIBUTES:
            continue
        if isinstance(value, _SIMPLE) or (
            isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value)
        ):
            config.append((name, value))
        else:
            return ("object", id(manifold))
    return ("config", type(manifold), tuple(config))


def _geometry_stepped(manifold) -> bool:
    """Whether ``manifold``'s points depend on its own parameters (a learnable curvature moves
    the ball's boundary and the hyperboloid) and one of those has a gradient, so may have just
    been stepped."""
    return (getattr(manifold, "points_follow_parameters", False)
            and any(q.grad is not None for q in manifold.parameters()))


def gather(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack a batch along a new dimension 0 (a single tensor is used as it is)."""
    return tensors[0] if len(tensors) == 1 else torch.stack(tensors)


def scatter_(targets: Sequence[torch.Tensor], value: torch.Tensor) -> None:
    """Copy the rows of a gathered ``value`` back into ``targets`` in place."""
    if len(targets) == 1:
        targets[0].copy_(value)
    elif hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(list(targets), list(value.unbind(0)))
    else:
        for target, row in zip(targets, value.unbind(0)):
            target.copy_(row)


def split(value: torch.Tensor, n: int) -> List[torch.Tensor]:
    """Independent contiguous tensors, one per batch member (for new optimizer state)."""
    if n == 1:
        return [value.clone(memory_format=torch.contiguous_format)]
    return [row.clone(memory_format=torch.contiguous_format) for row in value.unbind(0)]


def _check_common_options(lr, weight_decay, stabilize, retraction) -> None:
    if not isinstance(lr, torch.Tensor) and lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if stabilize is not None and (isinstance(stabilize, bool) or not isinstance(stabilize, int)
                                  or stabilize < 1):
        raise ValueError(f"stabilize must be None or a positive int, got {stabilize!r}")
    if retraction not in RETRACTIONS:
        raise ValueError(f"retraction must be one of {RETRACTIONS}, got {retraction!r}")


class RiemannianOptimizer(torch.optim.Optimizer):
    """Base class: splits each param group into plain parameters and manifold batches.

    Subclasses implement ``_step_plain(group, params, grads)``,
    ``_step_batch(group, manifold, params, grads)`` and list in ``_tangent_state`` the state
    entries that are tangent vectors (projected by :meth:`stabilize`).
    """

    _tangent_state: Tuple[str, ...] = ()
    _complex_manifold_parameters = True

    def __init__(self, params, defaults: dict):
        _check_common_options(defaults["lr"], defaults["weight_decay"], defaults["stabilize"],
                              defaults["retraction"])
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # a state dict saved by a torch.optim optimizer lacks the Riemannian options
        for group in self.param_groups:
            for name, value in self.defaults.items():
                group.setdefault(name, value)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_common_options(group["lr"], group["weight_decay"], group["stabilize"],
                              group["retraction"])

    def _batch_key(self, group: dict, param: torch.Tensor) -> Hashable:
        """Extra key separating parameters whose states are at different stages."""
        return ()

    def _partition(self, group: dict):
        """Split the params with a gradient into plain ones and batches on a shared manifold."""
        plain: List[torch.Tensor] = []
        singles = []
        buckets: Dict[Hashable, tuple] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            manifold = manifold_of(p)
            if manifold is None:
                plain.append(p)
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients "
                                   "of manifold parameters")
            if p.is_complex() and not self._complex_manifold_parameters:
                raise TypeError(f"{type(self).__name__} does not support complex manifold "
                                "parameters")
            if not isinstance(manifold, Manifold):
                singles.append((manifold, [p]))
                continue
            key = (id(manifold), p.shape, p.dtype, p.device, self._batch_key(group, p))
            entry = buckets.get(key)
            if entry is None:
                buckets[key] = (manifold, [p])
            else:
                entry[1].append(p)
        if len({key[1:] for key in buckets}) < len(buckets):
            # distinct manifold objects of equal configuration share a batch; the configuration
            # is only compared when two buckets agree in everything else
            merged: Dict[Hashable, tuple] = {}
            config_keys = {}
            for (mid, *rest), (manifold, params) in buckets.items():
                if mid not in config_keys:
                    config_keys[mid] = _manifold_key(manifold)
                entry = merged.setdefault((config_keys[mid], *rest), (manifold, []))
                entry[1].extend(params)
            buckets = merged
        return plain, list(buckets.values()) + singles

    @torch.no_grad()
    def step(self, closure=None) -> Optional[torch.Tensor]:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        partitions = [(group, *self._partition(group)) for group in self.param_groups]
        # Manifold parameters step first, in the geometry their gradients were computed in;
        # the plain ones may include a manifold's own parameters (a learnable curvature), and
        # the points of such a manifold are then projected onto its new version, those without
        # a gradient in this step too.
        for group, _, batches in partitions:
            for manifold, params in batches:
                self._step_batch(group, manifold, params)
        for group, plain, _ in partitions:
            if plain:
                self._step_plain(group, plain, [p.grad for p in plain])
        for group, _, batches in partitions:
            for manifold, params in batches:
                if _geometry_stepped(manifold):
                    self._project(manifold, params)
            for p in group["params"]:
                manifold = manifold_of(p)
                if p.grad is None and manifold is not None and _geometry_stepped(manifold):
                    self._project(manifold, [p])
        return loss

    def _project(self, manifold, params: Sequence[torch.Tensor]) -> None:
        """Project ``params`` (a batch on ``manifold``, or one parameter) onto it (``projx``)
        and their tangent optimizer state onto the tangent spaces of the projected points
        (``proju``), in place."""
        with unchecked():
            x = manifold.projx(gather([p.data for p in params]))
            scatter_(params, x)
            states = [self.state.get(p, {}) for p in params]
            for name in self._tangent_state:
                if all(name in state for state in states):
                    targets = [state[name] for state in states]
                    scatter_(targets, manifold.proju(x, gather(targets)))

    @torch.no_grad()
    def stabilize(self) -> None:
        """Project every manifold parameter onto its manifold (``projx``) and its tangent
        optimizer state onto the tangent space of the projected point (``proju``)."""
        for group in self.param_groups:
            for p in group["params"]:
                manifold = manifold_of(p)
                if manifold is not None:
                    self._project(manifold, [p])

    def _step_plain(self, group, params, grads) -> None:
        raise NotImplementedError

    def _step_batch(self, group, manifold, params) -> None:
        raise NotImplementedError
