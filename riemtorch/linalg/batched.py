"""Batched LAPACK work split over threads on CPU, and batched eigendecompositions that suit the
device.

On CPU, torch runs a batched ``eigh``, ``eigvalsh``, ``cholesky`` or triangular solve as a
serial loop over the batch (one LAPACK call per matrix), whatever ``torch.get_num_threads()``
says; for batches of small matrices that loop dominates the SPD computations.
:func:`map_batch_chunks` splits the batch into ``torch.get_num_threads()`` contiguous chunks and
runs them in a small thread pool (torch releases the GIL inside its operators), so the loop uses
the threads the user granted. Results are bitwise those of the unsplit call: every matrix goes
through the same LAPACK routine.

It only splits without autograd (inside custom ``autograd.Function`` passes, or when no input
requires grad), on CPU, and when every thread gets enough work (``min_work``, counted as the
sum of ``n^3`` over its matrices: 128 matrices of 8 x 8, 9 of 20 x 20); otherwise it calls the
function directly. Handing a chunk to a thread costs tens of microseconds, a 20 x 20 ``eigh``
about thirty.

Every chunk runs in a pool worker whose torch thread count is 1, set once when the worker
starts, while the calling thread waits. Under torch's OpenMP backend the count is per thread,
and a worker left at the default would start an OpenMP team of its own in the first threaded
operator it meets (the copies inside ``eigh``, MKL's LAPACK from about 32 x 32), whose threads
then spin beside the caller's on the same cores long after the chunk is done. That contention
doubled the time of an affine-invariant batch norm step on 64 matrices of 20 x 20 (forward and
backward, 2 cores: about 50 ms, 24 ms with single-threaded workers). A worker's first
``torch.set_num_threads`` also changes the count that ``torch.get_num_threads()`` reports in
other threads, so the pool starts all its workers when it is created and then restores the
caller's count; other Python threads that run torch operations at that moment may see a
count of 1.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from riemtorch import config

# sizes that CUDA batches decompose on the host (why: riemtorch.config, cuda_eigh_on_host)
HOST_EIGH_SIZES = (33, 64)

# bound at import: a worker's first query must reach torch (see _single_threaded)
_QUERY_THREADS = torch.get_num_threads
_LOCK = threading.Lock()
_POOL = {"executor": None, "workers": 0, "pid": None}


def _executor(workers: int) -> ThreadPoolExecutor:
    # A pool inherited through fork (e.g. by DataLoader workers) has no threads: rebuild it.
    with _LOCK:
        if (_POOL["executor"] is None or _POOL["workers"] < workers
                or _POOL["pid"] != os.getpid()):
            threads = torch.get_num_threads()
            pool = ThreadPoolExecutor(workers, thread_name_prefix="riemtorch-batch",
                                      initializer=_single_threaded)
            # start every worker now (each task waits for all to start): none sets its count
            # later, while the caller computes
            barrier = threading.Barrier(workers)
            for started in [pool.submit(barrier.wait) for _ in range(workers)]:
                started.result()
            torch.set_num_threads(threads)
            _POOL["executor"] = pool
            _POOL["workers"] = workers
            _POOL["pid"] = os.getpid()
        return _POOL["executor"]


def _single_threaded():
    """Pool worker initialiser: no OpenMP team or MKL threads inside a chunk. Torch gives a
    thread its count from the process-wide one on the thread's first query, which would undo
    an earlier ``set_num_threads``: query first."""
    _QUERY_THREADS()
    torch.set_num_threads(1)


def _without_grad(fn, args):
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


def map_batch_chunks(fn: Callable, *tensors: torch.Tensor, min_work: int = 65536):
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
    threads = torch.get_num_threads()
    if threads < 2:
        return fn(*tensors)
    if len(tensors) == 1:  # the common case, without the broadcast bookkeeping
        batch, n = tensors[0].shape[:-2], tensors[0].shape[-1]
    else:
        batch = torch.broadcast_shapes(*(t.shape[:-2] for t in tensors))
        n = max(t.shape[-1] for t in tensors)
    count = batch.numel()
    parts = min(threads, count * n ** 3 // min_work, count)
    if parts < 2:
        return fn(*tensors)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if needs_grad or any(t.device.type != "cpu" for t in tensors):
        return fn(*tensors)
    flat = [t.expand(*batch, *t.shape[-2:]).reshape(count, *t.shape[-2:]) for t in tensors]
    chunks = list(zip(*(f.tensor_split(parts) for f in flat)))
    pool = _executor(threads)
    futures = [pool.submit(_without_grad, fn, chunk) for chunk in chunks]
    results = [f.result() for f in futures]
    return _concatenate(results, batch)


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
