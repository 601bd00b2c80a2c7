"""Eigenbasis kernels ``X, V -> U (K o (U^T V U)) U^T`` with a backward finite at repeated
eigenvalues.

For symmetric ``X = U diag(a) U^T`` and a symmetric kernel ``K_ij = k(a_i, a_j)`` this is a
linear map of ``V`` that depends smoothly on ``X`` (e.g. the Bures-Wasserstein parallel transport
between ``I`` and ``X``: ``k = sqrt((a + b) / 2)``). Plain autograd through ``eigh`` divides by
``a_i - a_j`` and returns NaN when ``X`` has repeated eigenvalues, at the identity for instance.
The backward here uses the divided differences ``E_pqc = (k(a_p, a_c) - k(a_q, a_c)) /
(a_p - a_q)`` (``d k / d a`` on ties): with ``G~ = U^T G U`` and ``V~ = U^T V U``, the gradient in
``X`` is ``U (T + T^T) U^T`` with ``T_pq = sum_c E_pqc G~_pc V~_qc``. It costs ``O(n^3)`` memory per
matrix.
"""

import torch

from riemtorch.linalg.first_order import first_order
from riemtorch.linalg.symmetric import as_dtype, sym, working_eigh


class Kernel:
    """A symmetric kernel ``k(a, b)`` of eigenvalue pairs and its first divided difference.

    Subclasses give :meth:`matrix` (``K``) and :meth:`divided` (``E``, shape ``(..., n, n, n)``,
    ``E[p, q, c] = (k(a_p, a_c) - k(a_q, a_c)) / (a_p - a_q)``) in cancellation-free form.
    """

    def matrix(self, lam: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def divided(self, lam: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class HalfSumRoot(Kernel):
    """``k(a, b) = sqrt((a + b) / 2)``: Bures-Wasserstein transport from ``I`` to ``X``."""

    def matrix(self, lam):
        return (0.5 * (lam.unsqueeze(-1) + lam.unsqueeze(-2))).sqrt()

    def divided(self, lam):
        root = self.matrix(lam)  # root[p, c]
        # k(p,c)^2 - k(q,c)^2 = (a_p - a_q)/2, so E = 1 / (2 (k(p,c) + k(q,c))).
        return 0.5 / (root.unsqueeze(-2) + root.unsqueeze(-3))


class InverseHalfSumRoot(Kernel):
    """``k(a, b) = sqrt(2 / (a + b))``: Bures-Wasserstein transport from ``X`` to ``I``."""

    def matrix(self, lam):
        return HalfSumRoot().matrix(lam).reciprocal()

    def divided(self, lam):
        root = HalfSumRoot().matrix(lam)
        rp, rq = root.unsqueeze(-2), root.unsqueeze(-3)
        return -0.5 / (rp * rq * (rp + rq))


class _KernelCongruence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, kernel):
        # X keeps its own batch shape: a matrix shared by a batch of V is decomposed once
        lam, u = working_eigh(x)
        ut = u.transpose(-1, -2)
        vt = ut @ v.to(u.dtype) @ u
        out = u @ (kernel.matrix(lam) * vt) @ ut
        ctx.save_for_backward(lam, u, vt)
        ctx.kernel, ctx.dtypes, ctx.v_shape = kernel, (x.dtype, v.dtype), v.shape
        return as_dtype(out, torch.promote_types(x.dtype, v.dtype))

    @staticmethod
    @first_order
    def backward(ctx, grad):
        lam, u, vt = ctx.saved_tensors
        ut = u.transpose(-1, -2)
        gt = ut @ sym(grad.to(u.dtype)) @ u
        grad_v = u @ (ctx.kernel.matrix(lam) * gt) @ ut
        divided = ctx.kernel.divided(lam)
        n = lam.shape[-1]
        if lam.shape[:-1].numel() == 1 and gt.shape[:-2].numel() > 1:
            # one X for a batch of V: contract the batch first (no (batch, n, n, n) temporary)
            pairs = torch.einsum("bpc,bqc->pqc", gt.reshape(-1, n, n), vt.reshape(-1, n, n))
            t = (divided.reshape(n, n, n) * pairs).sum(-1).reshape(u.shape)
        else:
            t = torch.einsum("...pqc,...pc,...qc->...pq", divided, gt, vt).sum_to_size(u.shape)
        grad_x = u @ (t + t.transpose(-1, -2)) @ ut
        return (grad_x.to(ctx.dtypes[0]), grad_v.sum_to_size(ctx.v_shape).to(ctx.dtypes[1]),
                None)


def kernel_congruence(x: torch.Tensor, v: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """``U (K o (U^T V U)) U^T`` for symmetric ``X = U diag(a) U^T`` ``(..., n, n)`` and symmetric
    ``V`` (broadcasting with ``X``), without input checks (for library internals).

    One ``eigh`` of ``X`` in its own batch shape (in the working dtype of :mod:`riemtorch.config`),
    so a matrix shared by a batch of ``V`` is decomposed once; gradients in ``X`` and ``V`` are
    finite and exact at repeated eigenvalues (see the module docstring).
    """
    return _KernelCongruence.apply(x, v, kernel)
