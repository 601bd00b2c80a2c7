"""Batched LAPACK work split over threads on CPU, and batched eigendecompositions that suit the
device.

On CPU, torch runs a batched ``eigh``, ``eigvalsh``, ``cholesky`` or triangular solve as a
serial loop over the batch (one LAPACK call per matrix), whatever ``torch.get_num_threads()``
says; for batches of small matrices that loop dominates the SPD computations.
:func:`map_batch_chunks` splits the batch into ``torch.get_num_threads()`` contiguous chunks and
runs them in parallel, so the loop uses the threads the user granted. Results are bitwise those
of the unsplit call: every matrix goes through the same LAPACK routine. :func:`split_eigh` does
the same for ``eigh`` with the chunks writing into one output. :class:`SampleChunks` keeps one
slice of the samples per thread for a whole iterative computation.

The chunks run on the threads of torch's own OpenMP runtime (:mod:`riemtorch.linalg.openmp`),
which are awake anyway between torch's parallel operators; where that runtime is not available,
on a small pool of Python threads (torch releases the GIL inside its operators). The calling
thread takes chunks too.

It only splits without autograd (inside custom ``autograd.Function`` passes, or when no input
requires grad), on CPU, and when every thread gets enough work (``min_work``, counted as the
sum of ``n^3`` over its matrices). On OpenMP threads a region costs about 30 microseconds and
a 20 x 20 ``eigh`` about 17, so the default is ``2^16`` (9 matrices of 20 x 20, 128 of 8 x 8
per thread; 2 cores, right after a batched product: 16 ``eigh`` of 20 x 20 in 0.23 ms split
against 0.27 ms whole, 64 in 0.78 against 1.24). On the pool it is ``2^19`` (66 matrices of
20 x 20): the OpenMP threads that torch's parallel operators leave spinning for milliseconds
hold the cores the pool's threads need (2 cores, right after a batched product: 64 ``eigh`` of
20 x 20 took 2.1 ms split that way against 1.9 ms whole, 256 took 4.2 against 7.5).

For matrices of 32 x 32 and larger, torch's own thread count is set to 1 while the chunks run
(and restored after): MKL's LAPACK threads a single decomposition from about that size, and
threads inside every chunk would oversubscribe the cores (2 cores, pool threads, interleaved
runs: 256 ``eigh`` of 64 x 64 in 94 ms split that way, 71 ms with single-threaded chunks; 40 x
40, 43 and 35 ms; below 32 x 32 no gain). Inside an OpenMP region nested parallelism is off
anyway. Other Python threads that run torch operations at that moment see that thread count
too, and restoring it goes through ``torch.set_num_threads``, which also sets MKL's thread
count to torch's.
"""

import concurrent.futures
import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import torch

from riemtorch import config
from riemtorch.linalg import openmp

# sizes that CUDA batches decompose on the host (why: riemtorch.config, cuda_eigh_on_host)
HOST_EIGH_SIZES = (33, 64)
# from this size on, chunks run with torch's thread count at 1 (see the module docstring)
SERIAL_CHUNKS_FROM = 32
# smallest work (sum of n^3 over its matrices) worth a part of a split batch, with the parts on
# torch's OpenMP threads and on the fallback pool (see the module docstring)
TEAM_MIN_WORK = 1 << 16
POOL_MIN_WORK = 1 << 19

_LOCK = threading.Lock()
_POOL = {"executor": None, "workers": 0, "pid": None}


def _executor(workers: int) -> ThreadPoolExecutor:
    # A pool inherited through fork (e.g. by DataLoader workers) has no threads: rebuild it.
    with _LOCK:
        if (_POOL["executor"] is None or _POOL["workers"] < workers
                or _POOL["pid"] != os.getpid()):
            _POOL["executor"] = ThreadPoolExecutor(workers, thread_name_prefix="riemtorch-batch")
            _POOL["workers"] = workers
            _POOL["pid"] = os.getpid()
        return _POOL["executor"]


def _without_grad(fn, args, serial=False):
    if serial:
        # a pool thread keeps the OpenMP thread count of its first torch operation: set it here
        # too (the process-wide counts are already 1 while the chunks run)
        torch.set_num_threads(1)
    with torch.no_grad():
        return fn(*args)


def _concatenate(results, batch):
    first = results[0]
    if isinstance(first, torch.Tensor):
        if first.dim() >= 3 and not first.is_contiguous() and first.mT.is_contiguous():
            # keep the column-major matrices LAPACK returns, as the unsplit call does
            out = torch.cat([r.mT for r in results]).mT
        else:
            out = torch.cat(results)
        return out.reshape(*batch, *out.shape[1:])
    return tuple(_concatenate([r[i] for r in results], batch) for i in range(len(first)))


def _split(tensors, min_work: Optional[int]):
    """``(chunks, batch, n)`` for :func:`map_batch_chunks`: the flattened, broadcast inputs cut
    into tuples of contiguous chunks, one per thread, the broadcast batch shape and the matrix
    size; ``None`` where the batch stays whole."""
    threads = torch.get_num_threads()
    if threads < 2:
        return None
    if len(tensors) == 1:  # the common case, without the broadcast bookkeeping
        batch, n = tensors[0].shape[:-2], tensors[0].shape[-1]
    else:
        batch = torch.broadcast_shapes(*(t.shape[:-2] for t in tensors))
        n = max(t.shape[-1] for t in tensors)
    count = batch.numel()
    work = count * n ** 3
    if min_work is None:
        if work < 2 * TEAM_MIN_WORK:  # whole on either kind of thread: no runtime lookup
            return None
        min_work = TEAM_MIN_WORK if openmp.available() else POOL_MIN_WORK
    parts = min(threads, work // min_work, count)
    if parts < 2:
        return None
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if needs_grad or any(t.device.type != "cpu" for t in tensors):
        return None
    flat = [t.expand(*batch, *t.shape[-2:]).reshape(count, *t.shape[-2:]) for t in tensors]
    return list(zip(*(f.tensor_split(parts) for f in flat))), batch, n


def _in_threads(fn: Callable, args: list, serial: bool) -> list:
    """``[fn(*a) for a in args]`` without autograd, on torch's OpenMP threads, else the first on
    this thread and the others in the pool (single-threaded there with ``serial``); returns or
    raises only once every call has finished, so that none still writes into shared
    tensors."""
    team = openmp.run([functools.partial(fn, *a) for a in args])
    if team is not None:
        return team
    pool = _executor(len(args))
    futures = [pool.submit(_without_grad, fn, a, serial) for a in args[1:]]
    try:
        first = _without_grad(fn, args[0])
    finally:
        concurrent.futures.wait(futures)
    return [first] + [f.result() for f in futures]


def _run(fn: Callable, chunks, n: int) -> list:
    """``fn`` of every chunk (of ``n x n`` matrices), over threads as in :func:`_in_threads`."""
    threads = torch.get_num_threads()
    serial = n >= SERIAL_CHUNKS_FROM
    if serial:
        torch.set_num_threads(1)
    try:
        return _in_threads(fn, chunks, serial)
    finally:
        if serial:
            torch.set_num_threads(threads)


def map_batch_chunks(fn: Callable, *tensors: torch.Tensor, min_work: Optional[int] = None):
    """``fn(*tensors)`` computed over chunks of the batch in ``torch.get_num_threads()`` threads.

    Parameters
    ----------
    fn : callable
        Takes tensors ``(B, n, n)`` (and any trailing shape) and returns a tensor or a tuple of
        tensors whose first dimension is ``B``; it must treat batch entries independently.
    tensors : torch.Tensor
        Inputs ``(..., n, n)``; their batch dimensions are broadcast together.
    min_work : int
        Smallest work worth a thread, as the sum of ``n^3`` over its matrices.

    Returns
    -------
    The result of ``fn`` with the broadcast batch shape in front.
    """
    plan = _split(tensors, min_work)
    if plan is None:
        return fn(*tensors)
    chunks, batch, n = plan
    return _concatenate(_run(fn, chunks, n), batch)


class SampleChunks:
    """Contiguous slices of the first (sample) dimension, one per CPU thread, for iterative
    solvers that sweep the same per-sample tensors many times (the Karcher mean).

    Instead of letting every operator split its own work over torch's threads, the samples are
    cut into one slice per thread for the whole computation, and every per-sample step runs on
    each slice single-threaded (decomposition, products with the eigenbases, partial sums);
    only the small shared ``n x n`` matrices meet on the calling thread. Inside :meth:`serial`
    torch's own thread count is 1, so those shared steps run on the calling thread alone. The
    slices run on torch's OpenMP threads (a parallel region per step, about 30 microseconds)
    or, without them, on the pool. On 2 cores the Karcher mean of 1000 matrices of 22 x 22
    took 36-41 ms that way against 42-46 ms with the work split operator by operator, the
    Bures-Wasserstein barycenter of 500 of them 28-31 against 35, and an SPDNet training step
    with batch norm on 256 matrices of 20 x 20 32.5 against 36 (pool). With the backward pass
    too, on OpenMP threads against the pool: the barycenter of 3000 matrices of 8 x 8 37-40 ms
    against 52-56 (the pool's slices competed with torch's spinning OpenMP threads: 43-49 ms
    unsliced), the Karcher mean of 200 of 22 x 22 19-20 against 27-32. A batch-norm batch of
    64 matrices of 20 x 20 stays whole: its many short steps would pay a region each (forward
    pass 6.4 ms sliced against 4.4). One slice (GPU tensors, autograd, small batches) runs on
    the calling thread as a plain call.

    Parameters
    ----------
    count : int
        Size of the first dimension.
    parts : int
        Number of slices.
    """

    def __init__(self, count: int, parts: int = 1):
        bounds = [count * k // parts for k in range(parts + 1)]
        self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    @classmethod
    def plan(cls, xs: torch.Tensor, min_work: int = 1 << 19) -> "SampleChunks":
        """One slice per CPU thread for samples ``xs`` ``(N, ..., n, n)`` when every thread
        gets at least ``min_work`` (the sum of ``n^3`` over its matrices, as for
        :func:`map_batch_chunks`), without autograd; else one slice."""
        count = xs.shape[0] if xs.dim() > 2 else 1
        parts = torch.get_num_threads()
        work = xs.shape[:-2].numel() * xs.shape[-1] ** 3 // min_work
        if xs.device.type != "cpu" or (torch.is_grad_enabled() and xs.requires_grad):
            parts = 1
        return cls(count, max(1, min(parts, work, count)))

    @property
    def parallel(self) -> bool:
        return len(self.slices) > 1

    @contextlib.contextmanager
    def serial(self):
        """Torch's thread count at 1 while parallel slices are in use, restored after (other
        Python threads that run torch operations meanwhile see that count too)."""
        if not self.parallel:
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def run(self, fn: Callable) -> list:
        """``[fn(k, s) for each slice s, k its index]`` over threads (:func:`_in_threads`),
        without autograd."""
        if not self.parallel:
            return [fn(0, self.slices[0])]
        return _in_threads(fn, list(enumerate(self.slices)), serial=True)

    def sum(self, fn: Callable):
        """The sum of :meth:`run`'s results."""
        parts = self.run(fn)
        return sum(parts[1:], parts[0])

    def gather(self, fn: Callable, like: torch.Tensor) -> torch.Tensor:
        """:meth:`run`'s results (tensors) as one tensor of the shape, dtype and device of
        ``like``: for one slice the result itself, else each result copied into its slice of a
        new tensor on its thread."""
        if not self.parallel:
            return fn(0, self.slices[0])
        out = like.new_empty(like.shape)
        self.run(lambda k, s: out[s].copy_(fn(k, s)))
        return out

    def eigh(self, fn: Callable, like: torch.Tensor):
        """``eigh`` of the symmetric ``fn(k, s)`` of every slice, each decomposed on its
        thread into its slice of one pair ``(eigenvalues, eigenvectors)`` for matrices of the
        shape of ``like`` (eigenvectors column-major, as LAPACK returns them); for one slice,
        :func:`split_eigh` of ``fn`` of the whole batch."""
        if not self.parallel:
            return split_eigh(fn(0, self.slices[0]))
        lam = like.new_empty(like.shape[:-1])
        u = like.new_empty(like.shape).mT
        self.run(lambda k, s: torch.linalg.eigh(fn(k, s), out=(lam[s], u[s])))
        return lam, u


def split_eigh(x: torch.Tensor, min_work: Optional[int] = None):
    """:func:`eigh` of ``(..., n, n)`` split over threads like :func:`map_batch_chunks`, each
    chunk decomposed into its slice of one output pair: a copy of the eigenvectors fewer than
    concatenating the chunks' results (1000 matrices of 22 x 22 on 2 cores: 18.3 ms against
    18.8). The eigenvectors come column-major, as LAPACK returns them."""
    plan = _split((x,), min_work)
    if plan is None:
        return eigh(x)
    chunks, batch, n = plan
    lam = x.new_empty(batch.numel(), n)
    u = x.new_empty(batch.numel(), n, n).mT
    sizes = [chunk.shape[0] for (chunk,) in chunks]
    slices = [(chunk, values, vectors)
              for (chunk,), values, vectors in zip(chunks, lam.split(sizes), u.split(sizes))]
    _run(lambda chunk, values, vectors: torch.linalg.eigh(chunk, out=(values, vectors)), slices,
         n)
    return lam.reshape(*batch, n), u.reshape(*batch, n, n)


def _on_host(x: torch.Tensor) -> bool:
    return (x.device.type == "cuda" and config.cuda_eigh_on_host and x.dim() > 2
            and HOST_EIGH_SIZES[0] <= x.shape[-1] <= HOST_EIGH_SIZES[1]
            and x.shape[:-2].numel() > 1)


def _decompose(fn: Callable, x: torch.Tensor):
    if _on_host(x):
        out = map_batch_chunks(fn, x.cpu())
        if isinstance(out, torch.Tensor):
            return out.to(x.device)
        return tuple(t.to(x.device) for t in out)
    return fn(x)


def eigh(x: torch.Tensor):
    """``torch.linalg.eigh`` of symmetric ``(..., n, n)``; on CUDA, batches of matrices of size 33
    to 64 are decomposed on the host's threads (``config.cuda_eigh_on_host``)."""
    return _decompose(torch.linalg.eigh, x)


def eigvalsh(x: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.eigvalsh`` with the device rule of :func:`eigh`."""
    return _decompose(torch.linalg.eigvalsh, x)
