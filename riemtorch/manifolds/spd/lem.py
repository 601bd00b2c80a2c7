"""Log-Euclidean metric on SPD matrices: :class:`SPDLogEuclidean`."""

from riemtorch.manifolds.spd import common
from riemtorch.manifolds.spd.base import GyroSPDManifold


class SPDLogEuclidean(GyroSPDManifold):
    """SPD matrices with the log-Euclidean metric (LEM): ``log`` is an isometry onto the
    symmetric matrices with the Frobenius inner product.

    ``<U, V>_P = <D log_P[U], D log_P[V]>``, ``d(P, Q) = ||log P - log Q||``,
    ``Exp_P V = expm(log P + D log_P[V])``; parallel transport is
    ``D exp_{log Q}[D log_P[V]]`` and the Fréchet mean ``expm(sum_i w_i log X_i)`` (closed
    form). Gyro structure: the commutative group ``P (+) Q = expm(log P + log Q)``,
    ``t (*) P = P^t``, ``(-) P = P^-1``, trivial gyrations.

    Every operation has gradients that are finite at repeated eigenvalues: matrix functions
    with the finite-at-ties backward of :mod:`riemtorch.linalg`, and for the differential
    ``D log_P`` (inner products, exp, log and transport at a base point ``P``) its second-order
    derivative in ``P`` (:mod:`riemtorch.manifolds.spd.frame`).
    Float32 input is computed in float64 (numerical policy of :mod:`riemtorch.config`).

    This is also the ``power = 0`` limit of :class:`SPDAffineInvariant`.

    Examples
    --------
    >>> import torch, riemtorch
    >>> lem = riemtorch.SPDLogEuclidean()
    >>> p = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    >>> lem.dist(torch.eye(2, dtype=torch.float64), p)
    tensor(1.3863, dtype=torch.float64)
    """

    def __init__(self):
        super().__init__(power=0.0)

    def extra_repr(self) -> str:
        return ""

    def _identity_form(self, a, b):
        return common.matrix_inner(a, b)

    def _identity_riesz(self, g):
        return g
