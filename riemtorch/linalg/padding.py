"""Per-sample matrices padded to sizes whose batched products run faster on CPU.

A batched product of small matrices on CPU is not proportional to ``n^3``: torch multiplies
matrices with ``n^3 < 400`` (``n <= 7``) by a generic loop, and MKL's batched kernels favour
some sizes. Single-threaded products of 256 matrices, per matrix (float64, AMD EPYC with
AVX-512, torch 2.13 with MKL): 7 x 7 309 ns against 110 for 8 x 8; 11 x 11 269 against 158
for 12 x 12; 22 x 22 1092 against 677 for 24 x 24; 35 x 35 3188 against 1941 for 36 x 36;
46 x 46 5702 against 4353 for 48 x 48. Where a padded size is at least a fifth faster,
:func:`product_size` names it: 8 for 6 and 7, and the next multiple of 12 for sizes 10 to 48
that lie at most 3 below one (other sizes gained less or lost).

Solvers that multiply the same per-sample matrices many times (the Bures-Wasserstein
barycenter) embed them once as ``diag(X, I)``: products, sums and entrywise steps of such
block matrices keep the identity block and the zero off-diagonal blocks exactly, so the
leading block carries the same values (up to rounding) as the unpadded computation.
Eigendecompositions, whose cost grows with the padded size, are taken of the leading block
and padded after (:func:`pad_identity`).
"""

import torch

_NAIVE_KERNEL_SIZES = (6, 7)
_MAX_PADDED = 48


def product_size(n: int, device: torch.device) -> int:
    """The size to pad ``n x n`` matrices to for batched products on ``device``: ``n``
    itself except on CPU with MKL (the measurements above) for the sizes of the module
    docstring."""
    if torch.device(device).type != "cpu" or not torch.backends.mkl.is_available():
        return n
    if n in _NAIVE_KERNEL_SIZES:
        return 8
    padded = -(-n // 12) * 12
    if 10 <= n and padded <= _MAX_PADDED and padded - n <= 3:
        return padded
    return n


def pad_identity(x: torch.Tensor, size: int) -> torch.Tensor:
    """``diag(x, I)`` of shape ``(..., size, size)`` for ``x`` ``(..., n, n)`` (``x`` itself when
    ``size == n``), column-major where ``x`` is (eigenvectors as LAPACK returns them);
    differentiable."""
    n = x.shape[-1]
    if size < n:
        raise ValueError(f"cannot pad {n}x{n} matrices to the smaller size {size}")
    if n == size:
        return x
    out = x.new_zeros(*x.shape[:-2], size, size)
    if x.mT.is_contiguous() and not x.is_contiguous():
        out = out.mT
    out[..., :n, :n] = x
    out[..., n:, n:].diagonal(dim1=-2, dim2=-1).fill_(1)
    return out


def pad_ones(v: torch.Tensor, size: int) -> torch.Tensor:
    """``v`` ``(..., n)`` followed by ``size - n`` ones: the eigenvalues of :func:`pad_identity`
    of a matrix with eigenvalues ``v``."""
    if v.shape[-1] == size:
        return v
    return torch.cat([v, v.new_ones(*v.shape[:-1], size - v.shape[-1])], -1)
