"""Stateless network operations (SPD, hyperbolic and Grassmann layers); the modules in
:mod:`riemtorch.nn` call these with their parameters.

Shapes follow torch: leading dimensions are batch dimensions, the last two are the matrix.
Matrix functions follow the numerical policy of :mod:`riemtorch.config`.
"""

import functools
import math

import torch

from riemtorch import config, linalg
from riemtorch.linalg import spectral
from riemtorch.linalg.checks import (
    check_finite,
    check_finite_number,
    check_float_tensor,
    check_floating_tensor,
    check_nonnegative_number,
    check_square,
)
from riemtorch.linalg.padding import pad_identity
from riemtorch.linalg.safe import safe_norm


class _BiMap(torch.autograd.Function):
    """``sym(W^T X W)`` with the gradients of :func:`bimap` (see there)."""

    @staticmethod
    def forward(ctx, x, weight):
        # (X W)^T W: one product over the folded batch, then a batched one with the weight
        # broadcast; sym((X W)^T W) = sym(W^T X W) = W^T sym(X) W for any X
        xw = x @ weight
        shared = weight.expand(*xw.shape[:-2], *weight.shape)
        ctx.save_for_backward(x, weight, xw)
        return linalg.sym(torch.matmul(xw.transpose(-1, -2), shared))

    @staticmethod
    def backward(ctx, grad):
        x, weight, xw = ctx.saved_tensors
        grad = linalg.sym(grad)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[1]:
            # 2 sym(X) W sym(G), summed over the batch: from the saved X W when X is symmetric
            # (and no double backward needs this product as a function of W)
            if not torch.is_grad_enabled() and torch.equal(x, x.transpose(-1, -2)):
                total = (xw @ grad).mul_(2.0)
            else:
                total = (x + x.transpose(-1, -2)) @ (weight @ grad)
            grad_weight = total.sum_to_size(weight.shape)
        if ctx.needs_input_grad[0]:
            grad_x = (weight @ grad) @ weight.transpose(-1, -2)
        return grad_x, grad_weight


def bimap(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Bilinear map ``W^T X W`` of SPD matrices.

    Parameters
    ----------
    x : torch.Tensor
        SPD matrices ``(..., n_in, n_in)``; promoted with ``weight`` to their common dtype.
    weight : torch.Tensor
        ``(n_in, n_out)`` with orthonormal columns when ``n_out <= n_in``; when ``n_out > n_in``
        a square ``(n_out, n_out)`` orthogonal matrix, and ``X`` is first embedded as
        ``blockdiag(X, I)`` so the output stays full rank.

    Returns
    -------
    torch.Tensor
        ``(..., n_out, n_out)``, symmetrised: for any ``X`` it is ``W^T sym(X) W``, and the
        gradients are those of that expression.

    The backward pass keeps ``X W`` (and ``X`` and ``W`` themselves) and, for symmetric
    ``X``, forms the weight's gradient ``2 sum_i X_i W sym(G_i)`` from it with one batched
    product: about a quarter of the work of differentiating the products one by one (64
    matrices of 40 x 40 to 20 x 20: about 1 against 4 million multiply-adds).
    """
    check_float_tensor(x)
    check_float_tensor(weight, "weight")
    rows = weight.shape[-2] if weight.dim() == 2 else None
    if rows is None:
        raise ValueError(f"weight must have shape (n_in, n_out), got {tuple(weight.shape)}")
    if x.dim() < 2 or x.shape[-1] != x.shape[-2] or x.shape[-1] > rows:
        raise ValueError(f"input must have shape (batch..., n_in, n_in) with n_in <= {rows} (the "
                         f"rows of the weight), got {tuple(x.shape)}")
    if x.dtype != weight.dtype:  # as the other SPD layers: the common dtype
        dtype = torch.promote_types(x.dtype, weight.dtype)
        x, weight = x.to(dtype), weight.to(dtype)
    if x.shape[-1] != rows:
        x = pad_identity(x, rows)
    return _BiMap.apply(x, weight)


def _spectral_layer(x: torch.Tensor, fn: spectral.SpectralFunction) -> torch.Tensor:
    """``fn`` of symmetric ``(..., n, n)`` float matrices, after the checks that cost nothing
    (type, dtype, shape) and, with validation on, a finiteness check (a NaN would reach
    ``eigh`` as a LAPACK error or come out as NaN)."""
    check_float_tensor(x)
    check_square(x)
    check_finite(x)
    return linalg.apply_spectral(x, (fn,))[0]


def reeig(x: torch.Tensor, threshold: float = 1e-4) -> torch.Tensor:
    """Rectify eigenvalues: ``U max(Λ, threshold) U^T`` (the ReEig layer of SPDNet). Matrices
    with no eigenvalue below ``threshold`` pass unchanged (symmetrised) after a Cholesky test,
    with no eigendecomposition (:func:`riemtorch.linalg.symmetric.rectify`)."""
    check_float_tensor(x)
    check_square(x)
    check_finite(x)
    return linalg.symmetric.rectify(x, linalg.symmetric.check_threshold(threshold))


def logeig(x: torch.Tensor) -> torch.Tensor:
    """Matrix logarithm of SPD matrices (the LogEig layer)."""
    return _spectral_layer(x, spectral.LOG)


def expeig(x: torch.Tensor) -> torch.Tensor:
    """Matrix exponential of symmetric matrices (the ExpEig layer)."""
    return _spectral_layer(x, spectral.EXP)


def poweig(x: torch.Tensor, p: float) -> torch.Tensor:
    """Matrix power ``X^p`` of SPD matrices (the PowEig layer); ``p`` is a finite number."""
    return _spectral_layer(x, spectral.Power(check_finite_number(p, "p")))


def covariance(signals: torch.Tensor, shrinkage=None, trace_normalize: bool = False,
               eps: float = 0.0) -> torch.Tensor:
    """Covariance matrices of multichannel signals.

    Parameters
    ----------
    signals : torch.Tensor
        ``(..., channels, time)``.
    shrinkage : None, float in [0, 1], or "oas"
        ``None``: the sample covariance (centred, divided by ``time - 1``). A float ``a``:
        ``(1 - a) S + a tr(S)/c I``. ``"oas"``: the Oracle Approximating Shrinkage of Chen et al.
        (2010), computed per matrix from the maximum-likelihood covariance (divided by ``time``),
        as scikit-learn's ``oas``.
    trace_normalize : bool
        Divide each matrix by its trace. With validation on, ``ValueError`` for a zero trace
        (constant signals), which would give NaN whatever ``eps`` and ``shrinkage``.
    eps : float
        Added to the diagonal (after shrinkage and normalisation) to guarantee positive
        definiteness when ``time < channels`` and no shrinkage is used.

    Returns
    -------
    torch.Tensor
        ``(..., channels, channels)`` SPD (PSD if ``eps = 0`` and the data are rank deficient).
    """
    check_float_tensor(signals, "signals")
    if signals.dim() < 2 or signals.shape[-1] < 2:
        raise ValueError(f"signals must have shape (..., channels, time >= 2), got {tuple(signals.shape)}")
    eps = check_nonnegative_number(eps, "eps")
    c, t = signals.shape[-2], signals.shape[-1]
    centred = signals - signals.mean(dim=-1, keepdim=True)
    gram = centred @ centred.transpose(-1, -2)
    eye = torch.eye(c, dtype=signals.dtype, device=signals.device)
    if shrinkage is None:
        cov = gram / (t - 1)
    elif shrinkage == "oas":
        cov = gram / t
        mu = cov.diagonal(dim1=-2, dim2=-1).sum(-1) / c
        alpha = cov.square().sum(dim=(-2, -1)) / c**2
        num = alpha + mu.square()
        den = (t + 1) * (alpha - mu.square() / c)
        rho = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)),
                          torch.ones_like(den)).clamp(max=1.0)
        cov = (1 - rho)[..., None, None] * cov + (rho * mu)[..., None, None] * eye
    elif (isinstance(shrinkage, (int, float)) and not isinstance(shrinkage, bool)
          and 0 <= shrinkage <= 1):
        cov = gram / (t - 1)
        mu = cov.diagonal(dim1=-2, dim2=-1).sum(-1) / c
        cov = (1 - shrinkage) * cov + shrinkage * mu[..., None, None] * eye
    else:
        raise ValueError(f"shrinkage must be None, a float in [0, 1] or 'oas', got {shrinkage!r}")
    if trace_normalize:
        trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
        if config.validating() and bool((trace == 0).any()):
            raise ValueError("cannot trace-normalise a covariance of zero trace (constant "
                             "signals): the result would be NaN; use trace_normalize=False with "
                             "eps > 0 (eps is added after the normalisation, and shrinkage "
                             "keeps a zero trace)")
        cov = cov / trace[..., None, None]
    if eps:
        cov = cov + eps * eye
    return cov


@functools.lru_cache(maxsize=64)
def _upper_triangle(n: int, dtype: torch.dtype, device: torch.device):
    """Positions of the upper triangle of ``n x n`` in the flattened matrix (row by row) and
    the scale ``1`` (diagonal) or ``sqrt(2)`` (off-diagonal) of each, in ``dtype`` (a float32
    ``sqrt(2)`` would be off by ``2e-8`` in float64); made once per size, dtype and device,
    outside inference mode (a first call under ``torch.inference_mode`` would otherwise cache
    inference tensors, which autograd cannot save for later training)."""
    with torch.inference_mode(False):
        rows, cols = torch.triu_indices(n, n, device=device)
        scale = torch.full(rows.shape, math.sqrt(2.0), dtype=dtype, device=device)
        scale[rows == cols] = 1.0
        return rows * n + cols, scale


def vech(x: torch.Tensor) -> torch.Tensor:
    """Upper triangle of symmetric ``(..., n, n)`` as ``(..., n(n+1)/2)`` with off-diagonal
    entries times ``sqrt(2)``, so Euclidean inner products of vectors equal Frobenius inner
    products of matrices."""
    check_float_tensor(x)
    check_square(x, "input")
    index, scale = _upper_triangle(x.shape[-1], x.dtype, x.device)
    return x.flatten(-2).index_select(-1, index) * scale


def unvech(v: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`vech`: ``(..., n(n+1)/2)`` back to symmetric ``(..., n, n)``."""
    check_float_tensor(v)
    if v.dim() < 1:
        raise ValueError("input must have a last dimension of size n(n+1)/2")
    m = v.shape[-1]
    n = int(round((math.sqrt(8 * m + 1) - 1) / 2))
    if n * (n + 1) // 2 != m:
        raise ValueError(f"last dimension {m} is not a triangular number n(n+1)/2")
    index, scale = _upper_triangle(n, v.dtype, v.device)
    upper = v.new_zeros(*v.shape[:-1], n * n).index_copy(-1, index, v / scale)
    upper = upper.unflatten(-1, (n, n))
    # the diagonal is in both triangles: halve it once
    return upper + upper.transpose(-1, -2) - torch.diag_embed(upper.diagonal(0, -2, -1))


# ---- hyperbolic layers -------------------------------------------------------------------------
def lorentz_linear(x: torch.Tensor, weight: torch.Tensor, bias=None, *, k, time_weight=None,
                   time_bias=None, log_scale=None) -> torch.Tensor:
    """Fully hyperbolic linear map (:class:`~riemtorch.nn.LorentzLinear`): the spatial part
    ``h = x W^T + b`` of the output, and the time coordinate ``sqrt(|h|^2 + k)``, so the output
    lies on the hyperboloid ``<y, y>_L = -k``.

    With ``time_weight`` ``v`` (shape ``(1, in)``), ``time_bias`` ``c`` and ``log_scale``
    ``s``, the distance from the origin is learned: ``t = exp(s) sigmoid(x v^T + c) +
    sqrt(k) (1 + 1e-3)`` and ``h`` is rescaled to ``|h| = sqrt(t^2 - k)`` (the origin where
    ``h = 0``). ``k`` is a positive number or tensor.
    """
    check_floating_tensor(x)
    if (time_weight is None) != (log_scale is None):
        raise ValueError("time_weight and log_scale come together (time_bias is optional)")
    k = torch.as_tensor(k, dtype=x.dtype, device=x.device)
    h = torch.nn.functional.linear(x, weight, bias)
    if time_weight is not None:
        t = (log_scale.exp() * torch.sigmoid(torch.nn.functional.linear(x, time_weight, time_bias))
             + k.sqrt() * (1 + 1e-3))
        # at h = 0 there is no direction to carry the distance: the output stays at the
        # origin, with a zero gradient there instead of one through 1 / sqrt(tiny)
        moved = h.square().sum(-1, keepdim=True) > 0
        h = torch.where(moved, h * ((t.square() - k).clamp_min(0).sqrt()
                                    / safe_norm(h, keepdim=True)), torch.zeros_like(h))
    # the time coordinate from the spatial part, also where h = 0 (no direction to carry the
    # learned distance: the origin) and without the rounding of t^2 - k
    return torch.cat([(h.square().sum(-1, keepdim=True) + k).sqrt(), h], dim=-1)


def poincare_mlr(x: torch.Tensor, points: torch.Tensor, normals: torch.Tensor,
                 manifold) -> torch.Tensor:
    """Logits ``(..., num_classes)`` of the Poincaré multinomial logistic regression
    (:class:`~riemtorch.nn.PoincareMLR`, where the formula is stated) for points ``x``
    ``(..., n)`` of the ball ``manifold``, class hyperplanes through ``points`` ``(K, n)`` with
    ``normals`` ``(K, n)`` given at the origin. No input checks: the module checks its input."""
    m = manifold
    c = -m.k.to(dtype=x.dtype, device=x.device)
    sqrt_c = c.sqrt()
    a = m.transp0(points, normals)
    a_norm = safe_norm(a)
    lam_p = m.lambda_x(points)
    # <z, a> / (1 - c |z|^2) for z = (-p) ⊕ x from the inner products of p, x and a: the
    # Möbius sum's denominator cancels, and no z is formed (the ball's gyroadd keeps its result
    # a margin inside the boundary, which saturated the logits of points far from p: float32,
    # 9 from the origin, 34 % off)
    px, xa = x @ points.mT, x @ a.mT
    pa = (points * a).sum(-1)
    x2 = x.square().sum(-1, keepdim=True)
    p_gap = 1 - c * points.square().sum(-1)
    num = p_gap * xa - (1 - 2 * c * px + c * x2) * pa
    arg = 2 * sqrt_c * num / (p_gap * (1 - c * x2) * a_norm)
    return lam_p * a_norm / sqrt_c * torch.asinh(arg)


# ---- Grassmann layers --------------------------------------------------------------------------
def subspace_logits(x: torch.Tensor, subspaces: torch.Tensor, scale) -> torch.Tensor:
    """``scale * |S_k^T x / |x||`` for features ``(..., n)`` and orthonormal bases ``subspaces``
    ``(K, n, p)``: logits ``(..., K)`` of :class:`~riemtorch.nn.SubspaceClassifier`."""
    check_floating_tensor(x)
    unit = x / safe_norm(x, keepdim=True)
    coords = torch.einsum("...n,knp->...kp", unit, subspaces)
    return scale * safe_norm(coords)


def orthonormalize(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis ``Q`` of the column space of ``(..., n, p)`` full-rank matrices, from a
    QR decomposition with the signs fixed so ``R`` has a positive diagonal (ReOrth)."""
    check_floating_tensor(x)
    q, r = torch.linalg.qr(x)
    sign = torch.sign(r.diagonal(dim1=-2, dim2=-1))
    return q * torch.where(sign == 0, torch.ones_like(sign), sign).unsqueeze(-2)


def projector(x: torch.Tensor) -> torch.Tensor:
    """Projection matrices ``X X^T`` of orthonormal bases ``(..., n, p)`` (ProjMap)."""
    check_floating_tensor(x)
    return x @ x.transpose(-1, -2)
