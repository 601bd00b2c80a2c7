"""The Grassmann manifold of ``p``-dimensional subspaces of ``R^n``, on orthonormal bases."""

import torch

from riemtorch.linalg.symmetric import sym, working_eigh
from riemtorch.manifolds import grassmann_math as gm
from riemtorch.manifolds import stiefel_math as sm
from riemtorch.manifolds.base import Manifold, broadcast_batch, checks_inputs
from riemtorch.manifolds.stiefel import Stiefel, _check_option, check_projection
from riemtorch.linalg.safe import safe_sqrt

_RETRACTIONS = ("exp", "polar", "qr", "cayley")


def _gyroadd(x, y):
    return gm.rotate_from_origin_frame(gm.log_at_origin(x), y)


class Grassmann(Manifold):
    """Subspaces represented by orthonormal bases ``X`` of shape ``(..., n, p)``.

    A tangent vector at ``X`` is the horizontal lift ``U`` with ``X^T U = 0``; the metric is
    ``<U, V> = tr(U^T V)``. Two bases ``X``, ``X O`` (``O`` orthogonal) are the same point:
    compare points by their projectors ``X X^T`` (:meth:`projector_distance`).

    Parameters
    ----------
    retraction : {"exp", "polar", "qr", "cayley"}
        What :meth:`retr` computes: the exponential map, the polar factor of ``X + U``
        (``(X + U)(I + U^T U)^(-1/2)``, aligned with ``X``), the ``Q`` factor of ``X + U``, or
        the Cayley transform ``(I - W/2)^(-1)(I + W/2) X``, ``W = U X^T - X U^T``.

    Notes
    -----
    Exact geometry (Edelman, Arias & Smith 1998; Bendokat, Zimmermann & Absil 2024):
    :meth:`expmap` returns the basis of the end point aligned with ``x`` (``x^T y`` symmetric),
    :meth:`logmap` is the horizontal lift of the logarithm (independent of the basis of ``y``),
    so ``expmap(x, logmap(x, y))`` is the aligned basis of ``span(y)``. :meth:`dist` is the
    norm of the principal angles (pymanopt's convention). :meth:`transp` is the parallel
    transport along the minimising geodesic, expressed at the given basis ``y``.
    :meth:`frechet_mean` is the Karcher flow (batched over the other batch dimensions) started
    from the extrinsic mean, the dominant subspace of ``sum_i w_i X_i X_i^T``.

    Gyro structure (Nguyen & Yang 2023), with origin ``I_{n,p} = [I_p; 0]``: write
    ``Log_{I_{n,p}}(U) = [0; B_U]`` and ``Omega_U = [[0, -B_U^T], [B_U, 0]]``. Then
    ``V + U = expm(Omega_V) U``, ``-U = expm(-Omega_U) I_{n,p}``,
    ``t * U = expm(t Omega_U) I_{n,p}`` and ``gyr[V, U] W = -(V + U) + (V + (U + W))``. The
    matrix exponentials are exact (closed form through ``B^T B``); the results of ``gyroinv``
    and ``gyroscalarmul`` are the bases aligned with the origin.

    Examples
    --------
    >>> import torch, riemtorch
    >>> gr = riemtorch.Grassmann()
    >>> x = gr.random(3, n=6, p=2, dtype=torch.float64)
    >>> e = gr.origin(3, n=6, p=2, dtype=torch.float64)
    >>> bool((gr.dist(gr.gyroadd(gr.gyroinv(x), x), e) < 1e-10).all())  # the same subspaces
    True
    """

    ndim = 2

    def __init__(self, retraction: str = "exp"):
        super().__init__()
        _check_option(retraction, _RETRACTIONS, "retraction")
        self.retraction = retraction

    def extra_repr(self) -> str:
        return f"retraction={self.retraction!r}"

    # ---- checks ----------------------------------------------------------------------------
    # A basis of a subspace is a point of the Stiefel manifold: the same shape and point checks.
    _check_shape = Stiefel._check_shape
    _check_point_on_manifold = Stiefel._check_point_on_manifold

    def _check_vector_on_tangent(self, x, u, atol, rtol):
        xu = x.transpose(-1, -2) @ u
        err = xu.abs().amax() if xu.numel() else torch.zeros(())
        if bool(err > atol):
            return False, f"X^T U must be 0 (horizontal), max |X^T U| = {float(err):.3g}"
        return True, None

    @checks_inputs("point", "point")
    def projector_distance(self, x, y):
        """``max |x x^T - y y^T|`` over the batch: zero exactly when the bases ``x`` and ``y``
        span the same subspaces (a tensor, to compare with a tolerance)."""
        px = x @ x.transpose(-1, -2)
        py = y @ y.transpose(-1, -2)
        return (px - py).abs().amax()

    # ---- geometry ----------------------------------------------------------------------------
    @checks_inputs("ambient")
    def projx(self, x):
        """An orthonormal basis of the span of ``x``: its polar factor, as
        :meth:`Stiefel.projx <riemtorch.manifolds.Stiefel.projx>` (``ValueError`` for a
        rank-deficient ``x`` with validation on)."""
        return check_projection(sm.projection_polar(x))

    @checks_inputs("point", "ambient")
    def proju(self, x, u):
        return u - x @ (x.transpose(-1, -2) @ u)

    @checks_inputs("point", "tangent vector", "tangent vector")
    def inner(self, x, u, v=None, keepdim=False):
        v = u if v is None else v
        return broadcast_batch((u * v).sum(dim=(-2, -1), keepdim=keepdim), x, self.ndim, keepdim)

    @checks_inputs("point", "tangent vector")
    def expmap(self, x, u):
        return gm.grassmann_expmap(x, u)

    @checks_inputs("point", "point")
    def logmap(self, x, y):
        return gm.grassmann_logmap(x, y)

    @checks_inputs("point", "point")
    def dist2(self, x, y, keepdim=False):
        d2 = gm.grassmann_dist2(x, y)
        return d2[..., None, None] if keepdim else d2

    @checks_inputs("point", "point")
    def dist(self, x, y, keepdim=False):
        d = safe_sqrt(gm.grassmann_dist2(x, y))
        return d[..., None, None] if keepdim else d

    @checks_inputs("point", "tangent vector")
    def retr(self, x, u):
        if self.retraction == "polar":
            return sm.polar(x + u)
        if self.retraction == "qr":
            return sm.qr_orthonormal(x + u)
        if self.retraction == "cayley":
            x, u = torch.broadcast_tensors(x, u)
            return sm.cayley_transform(x, torch.cat((u, x), -1), torch.cat((x, -u), -1), u)
        return gm.grassmann_expmap(x, u)

    @checks_inputs("point", "point", "tangent vector")
    def transp(self, x, y, v):
        return gm.grassmann_transp(x, y, v)

    # Haar-uniform Stiefel points span uniformly distributed subspaces; the origin is I_{n,p}.
    random = Stiefel.random
    origin = Stiefel.origin
    origin_like = Stiefel.origin_like

    # ---- Fréchet mean --------------------------------------------------------------------------
    def _initial_mean(self, x, w):
        """Dominant ``p``-subspace of the mean projector ``sum w_i x_i x_i^T``, with the basis
        rotated towards ``x[0]`` (Procrustes), so that equal inputs give back ``x[0]``. The
        rotation is taken in the working dtype of the ``eigh``: in float32 the polar factor of
        ``top^T x[0]``, ill-conditioned where ``x[0]`` is far from the subspace, could leave
        the basis off orthonormal by more than the validation tolerance."""
        p = x.shape[-1]
        proj = (self.scale_tangent(w, x @ x.transpose(-1, -2))).sum(0)
        _, vecs = working_eigh(sym(proj))
        top = vecs[..., -p:]
        first = x[0].to(top.dtype)
        return sm.polar(top @ (top.transpose(-1, -2) @ first)).to(x.dtype)

    # ---- gyro structure ------------------------------------------------------------------------
    def _origin_like(self, x):
        n, p = x.shape[-2:]
        return torch.eye(n, p, dtype=x.dtype, device=x.device)

    @checks_inputs("point", "point")
    def gyroadd(self, x, y):
        """``x + y = expm(Omega_x) y``, shape ``(..., n, p)``."""
        return _gyroadd(x, y)

    @checks_inputs("point")
    def gyroinv(self, x):
        """``-x = expm(-Omega_x) I_{n,p}``."""
        return gm.rotate_from_origin_frame(-gm.log_at_origin(x), self._origin_like(x))

    @checks_inputs(None, "point")
    def gyroscalarmul(self, t, x):
        """``t * x = expm(t Omega_x) I_{n,p}``; ``t`` is a number or a tensor over the batch."""
        b = self.scale_tangent(t, gm.log_at_origin(x))
        return gm.rotate_from_origin_frame(b, self._origin_like(x))

    @checks_inputs("point", "point", "point")
    def gyration(self, x, y, z):
        """``gyr[x, y] z = -(x + y) + (x + (y + z))``, an orthogonal map of ``R^n`` applied to
        the basis ``z`` (so an isometry), with ``gyr[x, y] I_{n,p}`` spanning the origin."""
        xy = _gyroadd(x, y)
        xyz = _gyroadd(x, _gyroadd(y, z))
        return gm.rotate_from_origin_frame(-gm.log_at_origin(xy), xyz)
