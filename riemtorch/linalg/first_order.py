"""First-order backward passes for riemtorch's custom autograd functions."""

import functools

import torch


def first_order(backward):
    """Decorate the ``backward`` of a ``torch.autograd.Function`` whose gradient formula is not
    itself differentiable.

    ``torch.autograd.function.once_differentiable`` refuses a second derivative only where the
    incoming gradient requires grad; for a constant one (a gradient penalty on ``f(x).sum()``)
    it returns a first derivative that autograd then treats as independent of ``x``, and the
    second derivative comes out silently wrong. Autograd runs a backward pass with grad mode
    on exactly when ``create_graph=True`` asks for a differentiable result, so this refuses
    that case with ``NotImplementedError``.
    """
    once = torch.autograd.function.once_differentiable(backward)
    name = backward.__qualname__

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            raise NotImplementedError(
                f"second derivatives are not supported through riemtorch's {name}, a first-order "
                "backward pass (create_graph=True, as a gradient penalty asks, would "
                "differentiate it)")
        return once(ctx, *grads)

    return wrapper
