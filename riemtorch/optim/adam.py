"""Riemannian Adam (Bécigneul & Ganea, 2019) and AMSGrad."""

import inspect
import math
from typing import Optional, Tuple

import torch
from torch.optim.adam import adam as _torch_adam

from riemtorch.manifolds.base import Manifold
from riemtorch.manifolds.spd import SPDAffineInvariant
from riemtorch.manifolds.spd import common as spd_common
from riemtorch.manifolds.spd.aim import aim_move_along, aim_whitened_gradient
from riemtorch.optim.common import (RiemannianOptimizer, check_gradient, gather,
                                    retract_transport, riemannian_gradient, scatter_, split,
                                    unchecked)

__all__ = ["RiemannianAdam", "riemannian_adam_update"]

# torch's functional Adam takes has_complex from torch 2.2 on
_ADAM_TAKES_HAS_COMPLEX = "has_complex" in inspect.signature(_torch_adam).parameters


def _step_dtype() -> torch.dtype:
    # the dtype torch.optim.Adam gives its step counter, so that states are interchangeable
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def squared_norm_per_point(manifold, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``<u, u>_x`` per point, kept broadcastable against ``u`` (shape ``(..., 1, ..., 1)``).

    geoopt manifolds answer ``component_inner`` (the same value, broadcast; element-wise for
    geoopt's ``Euclidean``), which keeps their parameters stepping as geoopt steps them.
    """
    if not isinstance(manifold, Manifold) and hasattr(manifold, "component_inner"):
        return manifold.component_inner(x, u)
    return manifold.inner(x, u, keepdim=True)


def riemannian_adam_update(manifold, x: torch.Tensor, grad: torch.Tensor,
                           exp_avg: Optional[torch.Tensor], exp_avg_sq: Optional[torch.Tensor],
                           max_exp_avg_sq: Optional[torch.Tensor], step: int, *, lr: float,
                           beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                           weight_decay: float = 0.0, amsgrad: bool = False,
                           maximize: bool = False, retraction: str = "retr"):
    """One Riemannian Adam step on a batch of points; the inputs are not modified.

    Parameters
    ----------
    manifold : Manifold
        Manifold of the points (riemtorch or geoopt).
    x, grad : torch.Tensor
        Points and Euclidean gradients, shape ``(..., *point_shape)``.
    exp_avg : torch.Tensor or None
        First moment (tangent at ``x``), shape of ``x``; ``None`` on the first step.
    exp_avg_sq, max_exp_avg_sq : torch.Tensor or None
        Second moment and its running maximum (AMSGrad), one scalar per point, shape
        ``(..., 1, ..., 1)``; ``None`` on the first step.
    step : int
        Number of this step (1 on the first), for the bias corrections.
    lr, beta1, beta2, eps, weight_decay, amsgrad, maximize
        As for :class:`torch.optim.Adam`.
    retraction : {"retr", "expmap"}
        Move by ``manifold.retr_transp`` or ``manifold.expmap_transp``.

    Returns
    -------
    tuple of torch.Tensor
        ``(x_new, exp_avg, exp_avg_sq, max_exp_avg_sq)``: the new points, the first moment
        transported to them, the second moment and its maximum (``None`` without AMSGrad).
    """
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(x, alpha=weight_decay)
    moments = dict(step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps, amsgrad=amsgrad)
    if _moves_in_cholesky_frame(manifold):
        return _affine_invariant_update(manifold, x, grad, exp_avg, exp_avg_sq, max_exp_avg_sq,
                                        moments)
    rgrad = riemannian_gradient(manifold, x, grad)
    with unchecked():
        sq = squared_norm_per_point(manifold, x, rgrad)
        exp_avg, exp_avg_sq, max_exp_avg_sq, denom, rate = _moments(
            rgrad, sq, exp_avg, exp_avg_sq, max_exp_avg_sq, **moments)
        direction = (exp_avg / denom).mul_(rate)
        new_x, exp_avg = retract_transport(manifold, retraction, x, direction, exp_avg)
        return new_x, exp_avg, exp_avg_sq, max_exp_avg_sq


def _moments(rgrad, sq, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps,
             amsgrad):
    """Adam's moments updated with the gradient ``rgrad`` (squared norm ``sq``); returns them
    with the denominator and the rate of the step ``rate * exp_avg / denom``."""
    if exp_avg is None:
        exp_avg = rgrad.mul(1 - beta1)
        exp_avg_sq = sq.mul(1 - beta2)
    else:
        exp_avg = exp_avg.mul(beta1).add_(rgrad, alpha=1 - beta1)
        exp_avg_sq = exp_avg_sq.mul(beta2).add_(sq, alpha=1 - beta2)
    if amsgrad:
        max_exp_avg_sq = (exp_avg_sq if max_exp_avg_sq is None
                          else torch.maximum(max_exp_avg_sq, exp_avg_sq))
        second = max_exp_avg_sq
    else:
        max_exp_avg_sq = None
        second = exp_avg_sq
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    denom = (second.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    return exp_avg, exp_avg_sq, max_exp_avg_sq, denom, -lr / bias_correction1


def _moves_in_cholesky_frame(manifold) -> bool:
    """SPD matrices under the (undeformed) affine-invariant metric, where
    ``retr_transp`` is ``expmap_transp``: the update runs in the Cholesky frame of the point
    (:func:`_affine_invariant_update`)."""
    return type(manifold) is SPDAffineInvariant and manifold.power == 1


def _affine_invariant_update(manifold, x, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, moments):
    """The update of :func:`riemannian_adam_update` in the Cholesky frame of ``X = L L^T``,
    where the affine-invariant metric is the Frobenius one: the Riemannian gradient comes
    without a solve, and the step along the first moment and the moment's transport come from
    one ``eigh`` of it (:func:`~riemtorch.manifolds.spd.aim.aim_move_along`), where the generic
    composition of ``egrad2rgrad``, ``inner`` and ``expmap_transp`` takes two Cholesky
    factors, three whitenings and more products (20 x 20 on CPU: about half the time). The
    same values up to rounding; the moments keep the parameter's dtype."""
    check_gradient(manifold, grad)
    spd_common.check_ambient(grad, "Euclidean gradient")  # as egrad2rgrad checks it
    dtype, (point, grad) = spd_common.promote(x, grad)
    moment = None if exp_avg is None else exp_avg.to(point.dtype)
    chol, rgrad, sq, moment = aim_whitened_gradient(point, grad, moment)
    moment, exp_avg_sq, max_exp_avg_sq, denom, rate = _moments(
        rgrad, sq.to(dtype), moment, exp_avg_sq, max_exp_avg_sq, **moments)
    new_x, exp_avg = aim_move_along(chol, moment, (rate / denom).to(point.dtype))
    return new_x.to(dtype), exp_avg.to(dtype), exp_avg_sq, max_exp_avg_sq


class RiemannianAdam(RiemannianOptimizer):
    r"""Adam on manifolds (Bécigneul & Ganea, 2019), with the API of :class:`torch.optim.Adam`.

    A plain parameter steps exactly as :class:`torch.optim.Adam` steps it (the same functional
    kernel, the same state). A parameter with a ``manifold`` attribute steps by

    .. math::

        g_t = \operatorname{egrad2rgrad}(x_t, \nabla f(x_t) + \lambda x_t), \quad
        m_t = \beta_1 \Gamma(m_{t-1}) + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \langle g_t, g_t \rangle_{x_t},

    .. math::

        x_{t+1} = R_{x_t}\!\left(-\eta\, \frac{m_t / (1-\beta_1^t)}
                  {\sqrt{v_t / (1-\beta_2^t)} + \epsilon}\right)

    where the second moment :math:`v_t` is one scalar per point (the Riemannian squared norm,
    summed over the manifold dimensions; a batch of points in one parameter has one scalar per
    point), :math:`R` is the retraction or the exponential map and :math:`\Gamma` the vector
    transport that comes with it (``retr_transp`` / ``expmap_transp``). With ``amsgrad``,
    :math:`v_t` is replaced by its running maximum. Weight decay is added to the Euclidean
    gradient before ``egrad2rgrad`` (as geoopt does).

    The state of every parameter holds ``step`` as a scalar tensor (like
    :class:`torch.optim.Adam`; ``load_state_dict`` keeps its dtype, so a resumed run
    reproduces the uninterrupted one exactly), ``exp_avg``, ``exp_avg_sq`` and, with AMSGrad,
    ``max_exp_avg_sq``. Manifold parameters of a param group that share a riemtorch manifold,
    shape, dtype, device and step count are stepped together in one batched call (see
    :mod:`riemtorch.optim.common`). Parameters on :class:`~riemtorch.SPDAffineInvariant`
    (``power=1``) step in the Cholesky frame of the point, with the same values up to rounding
    in about half the time (:func:`_affine_invariant_update`).

    Parameters
    ----------
    params : iterable
        Parameters or param groups (dicts).
    lr : float
        Learning rate (default ``1e-3``).
    betas : (float, float)
        Decay rates of the first and second moments (default ``(0.9, 0.999)``).
    eps : float
        Added to the denominator (default ``1e-8``).
    weight_decay : float
        L2 penalty added to the Euclidean gradient (default 0).
    amsgrad : bool
        Use the running maximum of the second moment (default ``False``).
    stabilize : int, optional
        Every ``stabilize`` steps (of each parameter), project the manifold parameters onto
        their manifold (``projx``) and the first moment onto the tangent space (``proju``).
    retraction : {"retr", "expmap"}
        How manifold parameters move (default ``"retr"``); may be set per param group.
    maximize : bool
        Maximise the objective instead of minimising it.

    Examples
    --------
    >>> import torch, riemtorch
    >>> sphere = riemtorch.Sphere()
    >>> x = riemtorch.ManifoldParameter(sphere.random(4), sphere)
    >>> opt = riemtorch.optim.RiemannianAdam([x], lr=1e-2)
    >>> (x[..., 0]).sum().backward(); opt.step()
    >>> opt.state[x]["exp_avg_sq"].shape
    torch.Size([4, 1])
    """

    _tangent_state = ("exp_avg",)
    # the second moment is the metric's <g, g>, not <g, conj(g)>
    _complex_manifold_parameters = False

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False,
                 stabilize: Optional[int] = None, *, retraction: str = "retr",
                 maximize: bool = False):
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid beta parameters: {betas}, expected each in [0, 1)")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, stabilize=stabilize, retraction=retraction,
                        maximize=maximize)
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # geoopt (and torch before 1.12) store the step count as a Python number
        for param_state in self.state.values():
            step = param_state.get("step")
            if step is not None and not isinstance(step, torch.Tensor):
                param_state["step"] = torch.tensor(float(step), dtype=_step_dtype())

    def _batch_key(self, group, param):
        state = self.state[param]
        if not state:
            return 0, False
        return state["step"].item(), "max_exp_avg_sq" in state

    def _step_plain(self, group, params, grads):
        exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], []
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("RiemannianAdam does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=_step_dtype())
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsgrad"] and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        complex_flag = ({"has_complex": any(torch.is_complex(p) for p in params)}
                        if _ADAM_TAKES_HAS_COMPLEX else {})
        _torch_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                    foreach=None, **complex_flag,
                    amsgrad=group["amsgrad"], beta1=beta1, beta2=beta2, lr=group["lr"],
                    weight_decay=group["weight_decay"], eps=group["eps"],
                    maximize=group["maximize"])

    def _step_batch(self, group, manifold, params):
        states = [self.state[p] for p in params]
        first = not states[0]
        step = 1 if first else int(states[0]["step"]) + 1
        amsgrad = group["amsgrad"]
        has_max = not first and "max_exp_avg_sq" in states[0]
        beta1, beta2 = group["betas"]
        new_x, exp_avg, exp_avg_sq, max_exp_avg_sq = riemannian_adam_update(
            manifold, gather([p.data for p in params]), gather([p.grad for p in params]),
            None if first else gather([s["exp_avg"] for s in states]),
            None if first else gather([s["exp_avg_sq"] for s in states]),
            gather([s["max_exp_avg_sq"] for s in states]) if has_max else None,
            step, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
            weight_decay=group["weight_decay"], amsgrad=amsgrad, maximize=group["maximize"],
            retraction=group["retraction"])
        stabilize = group["stabilize"]
        if stabilize is not None and step % stabilize == 0:
            with unchecked():
                new_x = manifold.projx(new_x)
                exp_avg = manifold.proju(new_x, exp_avg)
        scatter_(params, new_x)
        n = len(params)
        if first:
            for state, m, v in zip(states, split(exp_avg, n), split(exp_avg_sq, n)):
                state["step"] = torch.tensor(float(step), dtype=_step_dtype())
                state["exp_avg"] = m
                state["exp_avg_sq"] = v
        else:
            for state in states:
                state["step"].fill_(step)
            scatter_([s["exp_avg"] for s in states], exp_avg)
            scatter_([s["exp_avg_sq"] for s in states], exp_avg_sq)
        if amsgrad:
            if has_max:
                scatter_([s["max_exp_avg_sq"] for s in states], max_exp_avg_sq)
            else:
                for state, v in zip(states, split(max_exp_avg_sq, n)):
                    state["max_exp_avg_sq"] = v
