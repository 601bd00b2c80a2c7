"""Affine-invariant batch normalisation in one eigendecomposition of the centred samples.

Under the affine-invariant metric the transport-form normalisation of
:class:`~riemtorch.nn.RiemannianBatchNorm` with batch mean ``M`` and variance ``v`` is

``Y_i = B^1/2 W_i^t B^1/2``,  ``W_i = M^-1/2 X_i M^-1/2``,  ``t = s / sqrt(v + eps)``,

with ``v = mean_i ||log W_i||^2``: centring is ``log W_i``, scaling multiplies it by ``t`` and
moving to ``B`` is ``B^1/2 expm(.) B^1/2``. Every term is a function of the spectra of the
``W_i``, so one batched ``eigh`` gives the variance and ``W_i^t``, and the same decomposition is
the one the implicit derivative of the Karcher mean needs
(:mod:`riemtorch.manifolds.spd.karcher`): with the iterations ending at an estimate whose
whitened spectrum is known, a training step costs two batched ``eigh`` for one Newton or
Karcher flow iteration (three for a Newton mean to tolerance) and none in the backward pass,
where the generic composition of mean, centre, scale and uncentre takes five.

With the bias root ``R = B^1/2`` and ``W_i = U_i diag(lam) U_i^T``, the output is
``Y_i = V_i^T diag(lam^t) V_i`` with ``V_i = U_i^T R``: one batched product for the bases and one
for the outputs, where centring and moving to ``B`` separately take four.

The backward pass, for an upstream gradient ``G_i`` of ``Y_i`` (symmetrised): the gradient of
``Z_i = W_i^t`` is ``R G_i R``, rotated to ``R_i = V_i G_i V_i^T``; the gradient of ``R`` is
``S + S^T`` with ``S = sum_i Z_i R G_i = sum_i U_i diag(lam^t) V_i G_i``; and

* ``dL/dt = sum_i sum_a (R_i)_aa lam_a^t log lam_a``, hence the gradients of ``s`` and of ``v``;
* ``dL/dW_i = U_i (K^t o R_i + diag(2 (dL/dv) log lam / (N lam))) U_i^T`` with the Loewner
  matrix ``K^t`` of ``lam -> lam^t``;
* through ``P = M^-1/2``: ``dL/dP = C M^1/2 + M^1/2 C^T`` with ``C = sum_i (dL/dW_i) W_i``,
  pulled back to ``M`` by the Daleckii-Krein formula of ``M -> M^-1/2``, then to the samples by
  the implicit function theorem (one conjugate-gradient solve in the eigenbases above);
* ``dL/dX_i = P U_i (...) U_i^T P``.
"""

import torch

from riemtorch.linalg import spectral
from riemtorch.linalg.first_order import first_order
from riemtorch.linalg.symmetric import sym
from riemtorch.manifolds.spd import common, karcher
from riemtorch.manifolds.spd.eigenbases import EigenBases


def _diagonal(a):
    return torch.diagonal(a, dim1=-2, dim2=-1)


class _AIMNormalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, scale, bias_root, mean, var, eps, tol, max_iter, normalize,
                input_dtype, method):
        batch_stats = mean is None
        w = common.uniform_weights(xs)
        residual = 0.0
        if batch_stats:
            mean, frame, lam, bases, residual = karcher.karcher_iterations(
                xs, w, tol, max_iter, method=method)
        else:
            mean, var = mean.clone(), var.clone()
            frame, lam, bases = karcher.whitened_spectrum(xs, mean)
        u, loglam = bases.u, lam.log()
        if batch_stats:
            var = loglam.square().sum(-1).mean(0)
        t = scale / (var + eps).sqrt() if normalize else torch.ones_like(var)
        powered = (t.unsqueeze(-1) * loglam).exp()
        # Y_i = R U_i diag(powered_i) U_i^T R = V_i^T diag(powered_i) V_i with V_i = U_i^T R,
        # symmetrised as H + H^T with H = V_i^T diag(powered_i / 2) V_i (the halving is exact)
        v_bias = u.transpose(-1, -2) @ bias_root
        half = (v_bias.transpose(-1, -2) * (0.5 * powered).unsqueeze(-2)) @ v_bias
        y = torch.add(half, half.transpose(-1, -2))
        ctx.save_for_backward(var, t, w, *frame, lam, loglam, powered, u, v_bias)
        ctx.batch_stats, ctx.normalize, ctx.eps = batch_stats, normalize, eps
        ctx.input_dtype, ctx.residual = input_dtype, residual
        ctx.mark_non_differentiable(mean, var, frame.root, frame.inv_root)
        return y, mean, var, frame.root, frame.inv_root

    @staticmethod
    @first_order
    def backward(ctx, grad_y, *_grad_statistics):
        var, t, w, root, inv_root, mu, v, lam, loglam, powered, u, v_bias = ctx.saved_tensors
        bases = EigenBases(u)
        # dL/dZ_i = R G_i R rotated to the eigenbasis: V_i G_i V_i^T, from V_i G_i
        vg = v_bias @ sym(grad_y)
        del grad_y  # work tensors of the batch's size go as soon as they are used
        rotated = vg @ v_bias.transpose(-1, -2)
        grad_bias_root = None
        if ctx.needs_input_grad[2]:
            # dL/dR = S + S^T with S = sum_i Z_i R G_i = sum_i U_i diag(powered_i) V_i G_i
            s = ((u * powered.unsqueeze(-2)) @ vg).sum(0)
            grad_bias_root = s + s.transpose(-1, -2)
        del vg
        grad_scale = None
        if ctx.batch_stats:  # the implicit solve needs the divided differences of log too
            dlog, d_power = spectral.log_and_power_loewner(lam, t[..., None, None], powered)
        else:
            d_power = spectral.Power(t[..., None, None]).loewner(lam)
        inner = d_power.mul_(rotated)  # (work tensors of the batch's size are updated in place)
        if ctx.normalize:
            grad_t = (_diagonal(rotated) * powered * loglam).sum(-1).sum(0)
            grad_scale = grad_t / (var + ctx.eps).sqrt()
            if ctx.batch_stats:
                grad_var = -0.5 * t * grad_t / (var + ctx.eps)
                extra = (2.0 / lam.shape[0]) * grad_var.unsqueeze(-1) * loglam / lam
                _diagonal(inner).add_(extra)
        del rotated
        if ctx.batch_stats:
            # C = sum_i (dL/dW_i) W_i, then dL/dP and dL/dM through P = M^-1/2.
            c = bases.combine(inner * lam.unsqueeze(-2))
            grad_inv_root = sym(c @ root + root @ c.transpose(-1, -2))
            vt = v.transpose(-1, -2)
            grad_mean = v @ (spectral.INV_SQRT.loewner(mu) * (vt @ grad_inv_root @ v)) @ vt
            z, _ = karcher.implicit_solve(root, lam, bases, w, grad_mean, ctx.input_dtype,
                                          ctx.residual, dlog)
            inner.addcmul_(dlog.mul_(w), bases.rotate(z))
        grad_x = sym(bases.from_bases(inner, inv_root))
        return (grad_x, grad_scale, grad_bias_root, None, None, None, None, None, None, None,
                None)


def aim_normalize(xs, scale, bias_root, mean=None, var=None, *, eps, tol, max_iter, normalize,
                  input_dtype, method="newton"):
    """Centre SPD samples at their affine-invariant mean, scale their dispersion and move them to
    the bias.

    Parameters
    ----------
    xs : torch.Tensor
        Samples ``(N, *channels, n, n)`` in the working dtype.
    scale : torch.Tensor
        Target dispersion ``s`` per channel, shape ``channels``.
    bias_root : torch.Tensor
        ``B^1/2`` of the bias, ``(*channels, n, n)`` (differentiable).
    mean, var : torch.Tensor, optional
        Given statistics (``(*channels, n, n)`` and ``channels``, treated as constants); when
        omitted, the Karcher mean (iterations of ``method``, ``tol`` and ``max_iter``) and the
        Fréchet variance of the batch, differentiated as functions of the samples.
    eps : float
        Added to the variance before the square root.
    normalize : bool
        Scale by ``t = s / sqrt(v + eps)``; otherwise ``t = 1`` (centring only).
    input_dtype : torch.dtype
        Dtype of the user's input, for the accuracy of the implicit backward
        (:func:`~riemtorch.manifolds.spd.common.implicit_rtol`).
    method : {"newton", "flow"}
        Steps of the batch mean (:func:`~riemtorch.manifolds.spd.karcher.karcher_iterations`).

    Returns
    -------
    tuple of torch.Tensor
        ``B^1/2 W_i^t B^1/2`` ``(N, *channels, n, n)``, the mean, the variance, ``M^1/2`` and
        ``M^-1/2`` (all but the first detached; the roots for :func:`running_mean_step`).
    """
    return _AIMNormalize.apply(xs, scale, bias_root, mean, var, float(eps), float(tol),
                               int(max_iter), bool(normalize), input_dtype,
                               karcher.check_method(method))


def running_mean_step(running, root, inv_root, momentum: float):
    """The running mean moved toward the batch mean ``M`` by ``momentum`` along their geodesic,
    ``M #_(1-m) R = M^1/2 (M^-1/2 R M^-1/2)^(1-m) M^1/2`` from the roots of ``M`` that
    :func:`aim_normalize` returns (one ``eigh`` of a single matrix per channel, no Cholesky
    factor of ``R``)."""
    return common.unwhiten(root, common.powm(inv_root @ running @ inv_root, 1.0 - momentum))
