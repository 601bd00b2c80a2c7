"""Python callables run on the threads of torch's own OpenMP runtime.

torch runs its parallel CPU operators on an OpenMP team. After each parallel operator the
team's worker threads spin-wait for a few milliseconds (GNU OpenMP's default; 4-7 ms measured
on 2 cores) before they sleep, so during a training step they hold every core but the caller's
almost all the time. Work handed to threads of our own then shares those cores with spinning
threads: on 2 cores, 64 ``eigh`` of 20 x 20 split between the calling thread and a pool thread
took 1.15 ms right after a batched product, as long as the whole batch on one thread.

:func:`run` hands the work to the spinning threads themselves instead: it opens a parallel
region of torch's runtime (``GOMP_parallel``, which GNU, LLVM and Intel OpenMP all export)
whose threads call back into Python and take the calls one by one. Inside the region
torch's operators and MKL run single-threaded (no nested parallelism), and torch's operators
release the GIL, so the calls run in parallel: the same 64 ``eigh`` took 0.59 ms, whatever ran
before. A region costs about 30 microseconds (each of its threads takes the GIL once).

The runtime is the OpenMP library already loaded in the process from torch's directory, or
the only one loaded (found through ``/proc/self/maps``); nothing new is loaded. Where none is
found (Windows, macOS, torch built without OpenMP), where the caller is already inside a
parallel region, or with ``riemtorch.config.openmp_threads`` off, :func:`run` returns ``None``
and callers use a thread pool of their own.
"""

import ctypes
import itertools
import os
import re
import threading
from typing import Optional

import torch

from riemtorch import config

# GNU, Intel and LLVM OpenMP, as shipped (e.g. libgomp.so.1, libgomp-a34b3233.so.1, libomp.dylib)
_NAME = re.compile(r"lib(gomp|iomp5|omp)(-[0-9a-f]+)?\.(so|dylib)")
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_JOBS: dict = {}
_KEYS = itertools.count(1)  # 0 would reach the callback as NULL
_LOCK = threading.Lock()
_RUNTIME = {"searched": False, "lib": None}


def _loaded_candidates() -> list:
    """Paths of OpenMP runtimes mapped into this process (Linux), torch's own first."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {fields[5] for fields in map(str.split, maps)
                     if len(fields) > 5 and fields[5].startswith("/")}
    except OSError:
        return []
    found = sorted(p for p in paths if _NAME.match(os.path.basename(p)))
    torch_dir = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
    own = [p for p in found if os.path.realpath(p).startswith(torch_dir)]
    return own or (found if len(found) == 1 else [])


def _open(path: str):
    """The already loaded runtime at ``path`` with the entry points :func:`run` needs, or
    ``None``."""
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        lib.GOMP_parallel.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        lib.GOMP_parallel.restype = None
        lib.omp_in_parallel.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


def _runtime():
    if _RUNTIME["searched"]:
        return _RUNTIME["lib"]
    with _LOCK:
        if not _RUNTIME["searched"]:
            lib = None
            if getattr(torch._C, "has_openmp", False) and hasattr(os, "RTLD_NOLOAD"):
                lib = next(filter(None, map(_open, _loaded_candidates())), None)
            _RUNTIME.update(searched=True, lib=lib)
        return _RUNTIME["lib"]


def available() -> bool:
    """Whether :func:`run` can use torch's OpenMP threads from this thread now."""
    lib = _runtime() if config.openmp_threads else None
    return lib is not None and not lib.omp_in_parallel()


class _Job:
    """Calls shared out by a counter: each thread of the region takes the next call left, so
    every call runs whatever the team's size, and no thread needs its OpenMP thread number
    (a call into the runtime would release the GIL and hand it back and forth)."""

    def __init__(self, calls):
        self.calls = calls
        self.results = [None] * len(calls)
        self.errors = []
        self.take = itertools.count().__next__  # atomic under the GIL

    def work(self) -> None:
        """Run calls until none is left (with autograd off on this thread meanwhile)."""
        enabled = torch.is_grad_enabled()
        torch.set_grad_enabled(False)  # per thread; the team's threads start with it on
        try:
            while (k := self.take()) < len(self.calls):
                try:
                    self.results[k] = self.calls[k]()
                except BaseException as error:  # re-raised on the calling thread
                    self.errors.append((k, error))
        finally:
            torch.set_grad_enabled(enabled)


_THREAD = threading.local()  # per Python thread state, so it lasts as long as the state


def _keep_thread_state() -> None:
    """Keep this thread's Python thread state past the callback. A thread that Python did not
    start gets a fresh state for every callback, created on entry and destroyed on return
    (with its own 16 KB stack mapped and unmapped); one unmatched ``PyGILState_Ensure`` keeps
    it, so later regions reuse it (an empty region of two calls right after a batched product:
    35 -> 30 microseconds). The states of threads that Python started are kept anyway, and an
    extra count changes nothing for them."""
    ctypes.pythonapi.PyGILState_Ensure()  # a PyDLL function: called with the GIL held
    _THREAD.kept = True


@_CALLBACK
def _member(key):
    if not getattr(_THREAD, "kept", False):
        _keep_thread_state()
    _JOBS[key].work()


def run(calls: list) -> Optional[list]:
    """``[call() for call in calls]`` without autograd on a parallel region of torch's OpenMP
    runtime with one thread per call, or ``None`` where :func:`available` is false (nothing
    runs then). Returns, or raises the first failed call's error, once every call is done."""
    if not available():
        return None
    job, key = _Job(calls), next(_KEYS)
    _JOBS[key] = job
    try:
        _RUNTIME["lib"].GOMP_parallel(_member, key, len(calls), 0)
    finally:
        del _JOBS[key]
    job.work()  # nothing is left unless a thread of the region failed outside the calls
    if job.errors:
        raise min(job.errors, key=lambda e: e[0])[1]
    return job.results
