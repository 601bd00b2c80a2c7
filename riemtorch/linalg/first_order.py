"""First-order backward passes for riemtorch's custom autograd functions."""

import functools

import torch


def _message(name: str) -> str:
    return (f"second derivatives are not supported through riemtorch's {name}, a first-order "
            "backward pass (create_graph=True, as a gradient penalty asks, would differentiate "
            "it)")


class _RaiseWhenDifferentiated(torch.autograd.Function):
    """The gradients a first-order backward returns, tied to the incoming gradients that
    require grad (and through them to the forward's inputs), raising when differentiated."""

    @staticmethod
    def forward(ctx, name, count, *tensors):
        ctx.name = name
        return tuple(None if t is None else t.view_as(t) for t in tensors[:count])

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(_message(ctx.name))


def first_order(backward):
    """Decorate the ``backward`` of a ``torch.autograd.Function`` whose gradient formula is not
    itself differentiable.

    Autograd runs a backward pass with grad mode on when ``create_graph=True`` asks for a
    differentiable gradient. ``torch.autograd.function.once_differentiable`` then returns
    gradients whose graph leads nowhere: autograd takes them for independent of the inputs,
    and a second derivative through them comes out silently wrong. Here the gradients are
    computed without autograd and tied to the incoming gradients that require grad, which
    depend on the forward's inputs, by a node that raises ``NotImplementedError`` when a second
    derivative passes through it; other second derivatives (a penalty on another parameter's
    gradient) are unaffected. Where no incoming gradient requires grad (a loss linear in this
    function's outputs), nothing ties the result to the inputs, and the backward raises at once.
    """
    name = backward.__qualname__

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with torch.no_grad():
            outputs = backward(ctx, *grads)
        if not torch.is_grad_enabled():
            return outputs
        tracked = [g for g in grads if isinstance(g, torch.Tensor) and g.requires_grad]
        if not tracked:
            raise NotImplementedError(_message(name))
        single = not isinstance(outputs, tuple)
        outputs = (outputs,) if single else outputs
        tied = _RaiseWhenDifferentiated.apply(name, len(outputs), *outputs, *tracked)
        return tied[0] if single else tied

    return wrapper
