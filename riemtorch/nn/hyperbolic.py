"""Hyperbolic layers: the fully hyperbolic Lorentz linear layer, a Poincaré multinomial logistic
regression head, and adapters between Euclidean features and a manifold."""

import math

import torch
from torch import nn

from riemtorch import config
from riemtorch.linalg.checks import check_positive_int
from riemtorch.manifolds.lorentz import Lorentz
from riemtorch.manifolds.stereographic import Stereographic
from riemtorch.nn import functional as F
from riemtorch.parameter import ManifoldParameter


def _check_origin_map(manifold, layer: str, method: str) -> None:
    """``TypeError`` unless ``manifold`` has the map at the origin the layer calls (``expmap0``
    or ``logmap0``: the stereographic models, Poincaré ball included, Lorentz, and geoopt's
    manifolds that have it), so that a wrong argument fails where it is given, not in the first
    forward."""
    if not callable(getattr(manifold, method, None)):
        raise TypeError(f"{layer} needs a manifold with {method} (Stereographic, PoincareBall or "
                        f"Lorentz), got {type(manifold).__name__}")


class ExpMap0(nn.Module):
    """Euclidean features to manifold points by the exponential map at the origin.

    For :class:`~riemtorch.Lorentz`, input ``(..., n)`` is read as the spatial part of a tangent
    vector at the origin and the output is ``(..., n + 1)``; for stereographic models the shapes
    agree.
    """

    def __init__(self, manifold):
        super().__init__()
        _check_origin_map(manifold, "ExpMap0", "expmap0")
        self.manifold = manifold

    def forward(self, x):
        if isinstance(self.manifold, Lorentz):
            x = torch.cat([torch.zeros_like(x[..., :1]), x], dim=-1)
        return self.manifold.expmap0(x)


class LogMap0(nn.Module):
    """Manifold points to Euclidean features by the logarithm at the origin (inverse of
    :class:`ExpMap0`; for Lorentz the time coordinate, always 0 there, is dropped)."""

    def __init__(self, manifold):
        super().__init__()
        _check_origin_map(manifold, "LogMap0", "logmap0")
        self.manifold = manifold

    def forward(self, x):
        u = self.manifold.logmap0(x)
        return u[..., 1:] if isinstance(self.manifold, Lorentz) else u


class LorentzLinear(nn.Module):
    """Fully hyperbolic linear layer (Chen et al., 2022) on the hyperboloid ``<x,x>_L = -k``.

    The spatial output is an affine map of the whole input point, ``h = W x + b`` (which covers
    Lorentz boosts and rotations), and the time coordinate is set to ``sqrt(|h|^2 + k)``, so the
    output lies exactly on the hyperboloid of the manifold's curvature (any ``k``, learnable or
    not). With ``time_scale=True`` the distance from the origin is learned as in Chen et al.:
    ``t = exp(s) sigmoid(v^T x + c) + sqrt(k) (1 + 1e-3)`` and ``h`` is rescaled to
    ``|h| = sqrt(t^2 - k)``.

    Parameters
    ----------
    manifold : Lorentz
    in_features, out_features : int
        Ambient dimensions (``n + 1``, so at least 2: they count the time coordinate) of input
        and output points.
    bias : bool
    time_scale : bool
    dropout : float
        Dropout on the input point before the map.
    """

    def __init__(self, manifold: Lorentz, in_features: int, out_features: int, bias: bool = True,
                 time_scale: bool = False, dropout: float = 0.0, dtype=None, device=None):
        super().__init__()
        if not isinstance(manifold, Lorentz):
            raise TypeError(f"manifold must be a Lorentz manifold, got {type(manifold).__name__}")
        # the sizes count the time coordinate: 2 at least
        in_features = check_positive_int(in_features, "in_features", minimum=2)
        out_features = check_positive_int(out_features, "out_features", minimum=2)
        self.manifold = manifold
        self.in_features, self.out_features = in_features, out_features
        self.linear = nn.Linear(in_features, out_features - 1, bias=bias, dtype=dtype, device=device)
        self.dropout = nn.Dropout(dropout)
        self.time_scale = time_scale
        if time_scale:
            self.time_linear = nn.Linear(in_features, 1, dtype=dtype, device=device)
            self.log_scale = nn.Parameter(torch.tensor(math.log(10.0), dtype=dtype, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.out_features)
        nn.init.uniform_(self.linear.weight, -bound, bound)
        # The time column multiplies x0 >= sqrt(k): start without it so the origin maps near the origin.
        with torch.no_grad():
            self.linear.weight[:, 0] = 0
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected points of dimension {self.in_features}, got {x.shape[-1]}")
        time = {}
        if self.time_scale:
            time = dict(time_weight=self.time_linear.weight, time_bias=self.time_linear.bias,
                        log_scale=self.log_scale)
        return F.lorentz_linear(self.dropout(x), self.linear.weight, self.linear.bias,
                                k=self.manifold.k, **time)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, time_scale={self.time_scale}"


class PoincareMLR(nn.Module):
    """Multinomial logistic regression on the Poincaré ball (Ganea et al., 2018).

    Class ``k`` has a hyperplane through a point ``p_k`` (a ball parameter) with normal ``a_k``
    (stored at the origin and transported to ``p_k``). Its logit is the signed distance to the
    hyperplane times the Riemannian norm of the normal:
    ``(lambda_p |a| / sqrt(c)) asinh(2 sqrt(c) <z, a> / ((1 - c |z|^2) |a|))`` with
    ``z = (-p) ⊕ x``, evaluated from ``<p, x>``, ``<x, a>``, ``<p, a>``, ``|p|`` and ``|x|``
    without forming ``z``: ``<z, a> / (1 - c |z|^2) = ((1 - c |p|^2) <x, a> - (1 - 2c <p, x> +
    c |x|^2) <p, a>) / ((1 - c |p|^2) (1 - c |x|^2))``. As ``c -> 0`` it tends to the Euclidean
    ``4 (<x, a> - <p, a>)``.

    Parameters
    ----------
    manifold : Stereographic
        A ball (curvature ``k = -c < 0``).
    in_features, num_classes : int

    With validation on, :meth:`forward` raises ``ValueError`` for input outside the ball: the
    formula would return the logits of another point there.
    """

    def __init__(self, manifold: Stereographic, in_features: int, num_classes: int,
                 dtype=None, device=None):
        super().__init__()
        if not isinstance(manifold, Stereographic) or float(manifold.k.detach()) >= 0:
            raise ValueError("PoincareMLR needs a Stereographic manifold of negative curvature")
        in_features = check_positive_int(in_features, "in_features")
        num_classes = check_positive_int(num_classes, "num_classes")
        self.manifold = manifold
        self.points = ManifoldParameter(torch.zeros(num_classes, in_features, dtype=dtype,
                                                    device=device), manifold, check=False)
        self.normals = nn.Parameter(torch.empty(num_classes, in_features, dtype=dtype, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.points.zero_()
        nn.init.normal_(self.normals, std=1.0 / math.sqrt(self.normals.shape[-1]))

    def forward(self, x):
        """Logits ``(..., num_classes)`` of points ``(..., in_features)``."""
        if x.shape[-1] != self.points.shape[-1]:
            raise ValueError(f"expected points of dimension {self.points.shape[-1]}, "
                             f"got input of shape {tuple(x.shape)}")
        m = self.manifold
        if config.validating() and float(m.k.detach()) >= 0:
            raise ValueError("PoincareMLR needs a negative curvature; the learnable curvature of "
                             f"its manifold has reached k = {float(m.k.detach()):g} (a "
                             "learnable PoincareBall keeps c > 0)")
        m._check_input(x, "point", "input", "PoincareMLR")  # values only with validation on
        return F.poincare_mlr(x, self.points, self.normals, m)
