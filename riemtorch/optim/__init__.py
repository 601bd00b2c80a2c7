"""Riemannian optimizers: :class:`RiemannianSGD` and :class:`RiemannianAdam`.

Both are :class:`torch.optim.Optimizer` subclasses: plain parameters step exactly as with
:class:`torch.optim.SGD` / :class:`torch.optim.Adam`, manifold parameters step along their
manifold, batched over parameters that share it; learning-rate schedulers, ``zero_grad``,
``add_param_group`` and ``state_dict`` / ``load_state_dict`` work as usual.

Manifold parameters step before plain ones, in the geometry their gradients were computed in.
When a manifold's own parameter is stepped too (a learnable curvature), that manifold's points
are then projected onto its new version (``projx``), with their tangent optimizer state
(``proju``): a ball that shrinks would otherwise leave them outside.
"""

from riemtorch.optim.adam import RiemannianAdam, riemannian_adam_update
from riemtorch.optim.sgd import RiemannianSGD, riemannian_sgd_update

__all__ = ["RiemannianSGD", "RiemannianAdam", "riemannian_sgd_update", "riemannian_adam_update"]
