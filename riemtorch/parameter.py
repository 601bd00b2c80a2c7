"""``ManifoldParameter``: a ``torch.nn.Parameter`` that knows the manifold it lives on."""

import copy

import torch
from torch import nn

from riemtorch import config


def _rebuild_manifold_parameter(data, manifold, requires_grad):
    return ManifoldParameter(data, manifold, requires_grad=requires_grad, check=False)


class ManifoldParameter(nn.Parameter):
    """A learnable point of a manifold.

    Riemannian optimizers (:mod:`riemtorch.optim`) step it along its manifold; everything else
    treats it as an ordinary parameter. It survives ``copy.deepcopy``, pickling and ``.to()``,
    and a model's ``state_dict`` holds plain tensors, so it loads with
    ``torch.load(..., weights_only=True)``.

    Two torch mechanisms replace parameters by new ``nn.Parameter`` objects and so drop the
    manifold (the optimizers then step such a parameter as a Euclidean one, off its manifold):
    ``module.load_state_dict(..., assign=True)`` and ``.to()`` / ``.double()`` with
    ``torch.__future__.set_swap_module_params_on_conversion(True)``. Load state dicts with the
    default ``assign=False`` (which copies into the existing parameters), and leave that flag
    off, for models with manifold parameters.

    Parameters
    ----------
    data : torch.Tensor
        Points of ``manifold`` (any batch shape).
    manifold : riemtorch.manifolds.Manifold
        The manifold. For a manifold with learnable or device-bound state (e.g. a metric matrix),
        register it in the model too so that ``.to()`` moves it.
    requires_grad : bool
        As for ``nn.Parameter``.
    check : bool
        Check that ``data`` lies on the manifold (when validation is on, see
        :mod:`riemtorch.config`) and raise ``ValueError`` otherwise.

    Examples
    --------
    >>> import torch, riemtorch
    >>> sphere = riemtorch.Sphere()
    >>> p = riemtorch.ManifoldParameter(sphere.random(4, 3), sphere)
    >>> p.manifold is sphere
    True
    """

    def __new__(cls, data, manifold, requires_grad: bool = True, check: bool = True):
        from riemtorch.manifolds.base import Manifold

        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold must be a riemtorch Manifold, got {type(manifold).__name__}")
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
        if check and config.validating():
            manifold.assert_check_point(data, "ManifoldParameter data")
        instance = super().__new__(cls, data.detach(), requires_grad)
        instance.manifold = manifold
        return instance

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        result = ManifoldParameter(
            self.data.clone(memory_format=torch.preserve_format),
            copy.deepcopy(self.manifold, memo),
            requires_grad=self.requires_grad,
            check=False,
        )
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, proto):
        return _rebuild_manifold_parameter, (self.data, self.manifold, self.requires_grad)

    def __repr__(self):
        return f"ManifoldParameter on {self.manifold!r} containing:\n{self.data!r}"
