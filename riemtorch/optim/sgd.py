"""Riemannian stochastic gradient descent with momentum."""

from typing import Optional, Tuple

import torch
from torch.optim.sgd import sgd as _torch_sgd

from riemtorch.optim.common import (RiemannianOptimizer, gather, retract, retract_transport,
                                    riemannian_gradient, scatter_, split, unchecked)

__all__ = ["RiemannianSGD", "riemannian_sgd_update"]


def riemannian_sgd_update(manifold, x: torch.Tensor, grad: torch.Tensor,
                          momentum_buffer: Optional[torch.Tensor], *, lr: float,
                          momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                          weight_decay: float = 0.0, maximize: bool = False,
                          retraction: str = "retr"
                          ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One Riemannian SGD step on a batch of points; the inputs are not modified.

    Parameters
    ----------
    manifold : Manifold
        Manifold of the points (riemtorch or geoopt).
    x : torch.Tensor
        Points, shape ``(..., *point_shape)``.
    grad : torch.Tensor
        Euclidean gradients of the loss at ``x``, same shape.
    momentum_buffer : torch.Tensor or None
        Momentum (tangent at ``x``), or ``None`` on the first step with momentum.
    lr, momentum, dampening, nesterov, weight_decay, maximize
        As for :class:`torch.optim.SGD`.
    retraction : {"retr", "expmap"}
        Move by ``manifold.retr`` (and ``retr_transp``) or by the exponential map.

    Returns
    -------
    (torch.Tensor, torch.Tensor or None)
        The new points and the momentum transported to them (``None`` without momentum).
    """
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(x, alpha=weight_decay)
    rgrad = riemannian_gradient(manifold, x, grad)
    with unchecked():
        if momentum == 0:
            return retract(manifold, retraction, x, rgrad.mul(-lr)), None
        if momentum_buffer is None:
            buf = rgrad.clone()
        else:
            buf = momentum_buffer.mul(momentum).add_(rgrad, alpha=1 - dampening)
        direction = rgrad.add(buf, alpha=momentum) if nesterov else buf
        return retract_transport(manifold, retraction, x, direction.mul(-lr), buf)


class RiemannianSGD(RiemannianOptimizer):
    r"""Stochastic gradient descent on manifolds, with the API of :class:`torch.optim.SGD`.

    A plain parameter steps exactly as :class:`torch.optim.SGD` steps it (the same functional
    kernel, the same state). A parameter with a ``manifold`` attribute
    (:class:`riemtorch.ManifoldParameter`, geoopt's ``ManifoldParameter``) steps by

    .. math::

        g_t = \operatorname{egrad2rgrad}(x_t, \nabla f(x_t) + \lambda x_t), \quad
        b_t = \mu\, \Gamma(b_{t-1}) + (1 - \tau) g_t, \quad
        x_{t+1} = R_{x_t}(-\eta\, d_t)

    with :math:`d_t = b_t` (or :math:`g_t + \mu b_t` with Nesterov), :math:`R` the retraction
    (or the exponential map) and :math:`\Gamma` the vector transport that comes with it
    (``retr_transp`` / ``expmap_transp``); :math:`b_t` is stored transported to
    :math:`x_{t+1}`. The first momentum buffer is :math:`b_1 = g_1`, as in
    :class:`torch.optim.SGD`; geoopt starts from :math:`\mu \nabla f + (1 - \tau) g_1`, which is
    ``(1 + momentum)`` times too large and, on curved manifolds, not tangent. Weight decay is
    added to the Euclidean gradient before ``egrad2rgrad`` (as geoopt does); for a manifold
    parameter it is a pull of the ambient coordinates towards zero, not a Riemannian penalty.

    Manifold parameters of a param group that share a riemtorch manifold, shape, dtype and
    device are stepped together in one batched call (see :mod:`riemtorch.optim.common`).

    Parameters
    ----------
    params : iterable
        Parameters or param groups (dicts), as for any ``torch.optim`` optimizer.
    lr : float
        Learning rate.
    momentum, dampening, weight_decay : float
        As for :class:`torch.optim.SGD` (default 0).
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
    stabilize : int, optional
        Every ``stabilize`` steps, project the stepped manifold parameters onto their manifold
        (``projx``) and their momentum onto the tangent space (``proju``), removing the drift
        that rounding accumulates. The step count is kept per param group.
    retraction : {"retr", "expmap"}
        How manifold parameters move (default ``"retr"``); may be set per param group.
    maximize : bool
        Maximise the objective instead of minimising it.

    Examples
    --------
    >>> import torch, riemtorch
    >>> sphere = riemtorch.Sphere()
    >>> x = riemtorch.ManifoldParameter(sphere.random(3, dtype=torch.float64), sphere)
    >>> opt = riemtorch.optim.RiemannianSGD([x], lr=0.1, momentum=0.9)
    >>> loss = -x[..., 0].sum()
    >>> loss.backward(); opt.step()
    >>> bool(sphere.check_point(x)[0])
    True
    """

    _tangent_state = ("momentum_buffer",)

    def __init__(self, params, lr: float, momentum: float = 0, dampening: float = 0,
                 nesterov: bool = False, weight_decay: float = 0,
                 stabilize: Optional[int] = None, *, retraction: str = "retr",
                 maximize: bool = False):
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        weight_decay=weight_decay, stabilize=stabilize, retraction=retraction,
                        maximize=maximize)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
        return super().step(closure)

    def _batch_key(self, group, param):
        return "momentum_buffer" in self.state[param]

    def _step_plain(self, group, params, grads):
        momentum = group["momentum"]
        buffers = [self.state[p].get("momentum_buffer") for p in params] if momentum else []
        _torch_sgd(params, grads, buffers, has_sparse_grad=any(g.is_sparse for g in grads),
                   foreach=None, weight_decay=group["weight_decay"], momentum=momentum,
                   lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
                   maximize=group["maximize"])
        for p, buf in zip(params, buffers):
            self.state[p]["momentum_buffer"] = buf

    def _step_batch(self, group, manifold, params):
        states = [self.state[p] for p in params]
        momentum = group["momentum"]
        buffers = [s["momentum_buffer"] for s in states] if momentum and "momentum_buffer" in states[0] else None
        x = gather([p.data for p in params])
        new_x, new_buf = riemannian_sgd_update(
            manifold, x, gather([p.grad for p in params]),
            None if buffers is None else gather(buffers),
            lr=group["lr"], momentum=momentum, dampening=group["dampening"],
            nesterov=group["nesterov"], weight_decay=group["weight_decay"],
            maximize=group["maximize"], retraction=group["retraction"])
        stabilize = group["stabilize"]
        if stabilize is not None and group["step"] % stabilize == 0:
            with unchecked():
                new_x = manifold.projx(new_x)
                if new_buf is not None:
                    new_buf = manifold.proju(new_x, new_buf)
        scatter_(params, new_x)
        if new_buf is None:
            return
        if buffers is None:
            for state, buf in zip(states, split(new_buf, len(params))):
                state["momentum_buffer"] = buf
        else:
            scatter_(buffers, new_buf)
