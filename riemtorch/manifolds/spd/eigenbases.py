"""Per-sample eigenbases and their products with one shared matrix.

The Karcher mean and the affine-invariant batch norm work in the eigenbases ``U_i`` of many
samples at once and keep meeting two products: ``U_i^T D U_i`` for a shared ``D`` and the sum
``sum_i U_i B_i U_i^T``. Each is a batch of small products; with the bases laid out once as
the stacked rows of the ``U_i^T`` (an ``(N n, n)`` matrix) and as the wide matrix
``[U_1 ... U_N]`` (``(n, N n)``), half of the work becomes one large matrix product with no
copies, about twice as fast on CPU as the batched form. The sums over samples are products
with a long inner dimension (``N n``), which MKL runs on one thread in float64: they are split
into one chunk per thread, multiplied as a batch and added (on two threads, 1000 samples of
22 x 22: twice as fast; 64 of 20 x 20: as fast). In float32 MKL threads such a product itself
and it stays whole (split, 64 samples of 20 x 20 took 17 against 13 microseconds, 1000 of
22 x 22 as long). With :class:`~riemtorch.linalg.batched.SampleChunks` the
samples are instead cut into one slice per thread, each slice's products running on its own
thread.
"""

import torch

from riemtorch.linalg.batched import SampleChunks

# work (rows x n^2 multiply-adds) below which a sum over samples stays one product
_MIN_SPLIT_WORK = 65536


def _chunks(stacked: torch.Tensor) -> int:
    """Number of chunks for a sum over samples of rows ``(*batch, K, n)``: one per CPU
    thread for float64 work that is worth it, else 1 (see the module docstring)."""
    if stacked.device.type != "cpu" or stacked.dtype != torch.float64:
        return 1
    rows, n = stacked.shape[-2], stacked.shape[-1]
    threads = torch.get_num_threads()
    if threads < 2 or rows * n * n < _MIN_SPLIT_WORK:
        return 1
    return min(threads, rows)


class EigenBases:
    """Eigenvectors ``u`` ``(N, *batch, n, n)`` of ``N`` samples (columns are eigenvectors).

    For computations without autograd (solvers and hand-written backward passes): some
    products write into work tensors.

    Parameters
    ----------
    u : torch.Tensor
        Orthogonal matrices, samples first; ``*batch`` are shared leading dimensions
        (channels) that broadcast against the shared matrices.
    chunks : SampleChunks, optional
        Slices of the samples whose products run in parallel (default: one).
    """

    def __init__(self, u: torch.Tensor, chunks: SampleChunks = None):
        self.u = u
        self.chunks = chunks or SampleChunks(u.shape[0])
        self._parts = self.chunks.run(lambda k, s: _Bases(u[s]))

    def part(self, k: int) -> "_Bases":
        """The products of slice ``k`` of the samples alone (the whole batch for one slice),
        for per-sample work that a thread does on its slice."""
        return self._parts[k]

    def to(self, dtype: torch.dtype) -> "EigenBases":
        """The same bases in ``dtype``, sliced alike."""
        return EigenBases(self.u.to(dtype), self.chunks)

    def rotate(self, d: torch.Tensor) -> torch.Tensor:
        """``U_i^T D U_i`` for a shared ``d`` ``(*batch, n, n)``; ``(N, *batch, n, n)``."""
        return self.chunks.gather(lambda k, s: self._parts[k].rotate(d), self.u)

    def to_bases(self, xs: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``U_i^T a X_i a^T U_i`` for per-sample ``xs`` ``(N, *batch, n, n)`` and a shared
        ``a`` ``(*batch, n, n)`` (not symmetrised)."""
        return self.chunks.gather(lambda k, s: self._parts[k].to_bases(xs[s], a), xs)

    def from_bases(self, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``a U_i B_i U_i^T a^T`` for per-sample ``b`` ``(N, *batch, n, n)`` and a shared
        ``a`` (not symmetrised): the inverse of :meth:`to_bases` for orthogonal ``a``."""
        return self.chunks.gather(lambda k, s: self._parts[k].from_bases(b[s], a), b)

    def combine(self, b: torch.Tensor) -> torch.Tensor:
        """``sum_i U_i B_i U_i^T`` for per-sample ``b`` ``(N, *batch, n, n)``."""
        return self.chunks.sum(lambda k, s: self._parts[k].combine(b[s]))

    def hadamard_sandwich(self, kernel: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """``sum_i U_i (K_i o (U_i^T D U_i)) U_i^T`` for per-sample ``kernel`` ``K_i``
        ``(N, *batch, n, n)`` and a shared ``d``: :meth:`combine` of :meth:`rotate`, with the
        per-sample intermediates in reused work tensors."""
        return self.chunks.sum(lambda k, s: self._parts[k].hadamard_sandwich(kernel[s], d))

    def combine_diagonal(self, s: torch.Tensor) -> torch.Tensor:
        """``sum_i U_i diag(s_i) U_i^T`` for per-sample ``s`` ``(N, *batch, n)``."""
        return self.chunks.sum(lambda k, part: self._parts[k].combine_diagonal(s[part]))


class _Bases:
    """The products of :class:`EigenBases` for one slice of the samples, on one thread."""

    def __init__(self, u: torch.Tensor):
        self.u = u
        count, n = u.shape[0], u.shape[-1]
        self._shape = (count, n)
        # (*batch, N, n, n) with the U_i^T contiguous: free for the column-major eigenvectors
        # that eigh returns, one copy otherwise
        transposed = u.movedim(0, -3).mT.contiguous()
        self._by_sample = transposed.mT
        self._rows = transposed.flatten(-3, -2)
        self._wide = self._rows.mT
        self._work = [None, None]

    def rotate(self, d):
        return (self._frames(d) @ self._by_sample).movedim(-3, 0)

    def _frames(self, a):
        """``U_i^T a`` for a shared ``a``, ``(*batch, N, n, n)``."""
        count, n = self._shape
        return (self._rows @ a).unflatten(-2, (count, n))

    def to_bases(self, xs, a):
        frames = self._frames(a)
        return (frames @ xs.movedim(0, -3) @ frames.transpose(-1, -2)).movedim(-3, 0)

    def from_bases(self, b, a):
        frames = self._frames(a.transpose(-1, -2))
        return (frames.transpose(-1, -2) @ b.movedim(0, -3) @ frames).movedim(-3, 0)

    def combine(self, b):
        q = b.movedim(0, -3) @ self._by_sample.mT
        return self._sum_over_samples(q.flatten(-3, -2))

    def _sum_over_samples(self, stacked: torch.Tensor) -> torch.Tensor:
        """``sum_i U_i A_i`` for the ``A_i`` stacked as rows ``(*batch, N n, n)``: the product
        ``[U_1 ... U_N] @ stacked``, in chunks of the inner dimension on CPU threads."""
        parts = _chunks(stacked)
        if parts < 2:
            return self._wide @ stacked
        size = stacked.shape[-2] // parts
        main = size * parts
        wide = self._wide[..., :main].unflatten(-1, (parts, size)).movedim(-2, -3)
        out = (wide @ stacked[..., :main, :].unflatten(-2, (parts, size))).sum(-3)
        if main < stacked.shape[-2]:
            out = out + self._wide[..., main:] @ stacked[..., main:, :]
        return out

    def _buffer(self, k: int) -> torch.Tensor:
        """Work tensor ``k`` (0 or 1) of the stacked rows' shape, allocated on first use and
        reused: iterative solvers call the products many times, and a fresh large tensor costs
        page faults."""
        if self._work[k] is None:
            self._work[k] = torch.empty_like(self._rows)
        return self._work[k]

    def hadamard_sandwich(self, kernel, d):
        count, n = self._shape
        left, middle = self._buffer(0), self._buffer(1).unflatten(-2, (count, n))
        torch.matmul(self._rows, d, out=left)
        torch.matmul(left.unflatten(-2, (count, n)), self._by_sample, out=middle)
        middle.mul_(kernel.movedim(0, -3))
        torch.matmul(middle, self._by_sample.mT, out=left.unflatten(-2, (count, n)))
        return self._sum_over_samples(left)

    def combine_diagonal(self, s):
        scaled = torch.mul(self._rows, s.movedim(0, -2).flatten(-2).unsqueeze(-1),
                           out=self._buffer(0))
        return self._sum_over_samples(scaled)
