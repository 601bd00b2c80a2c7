"""Library-wide switches: input validation and the numerical policy.

Numerical policy
----------------
This is the one place that states how riemtorch handles floating-point limits; every other
docstring refers here.

* **Eigendecompositions of float32 input run in float64** (``config.eigh_in_float64``, default
  ``True``). A float32 ``eigh`` determines small eigenvalues only to about
  ``6e-8 * max eigenvalue``, so at condition number 1e6 the smallest eigenvalue of an SPD matrix
  can be off by several percent, and its logarithm, square root and inverse with it. The matrix
  is promoted, decomposed and the result cast back to float32; gradients follow the same path.
  Set the switch to ``False`` to trade that accuracy for speed (mostly relevant on GPUs with slow
  float64).
* **Batched eigendecompositions of matrices of size 33 to 64 on CUDA run on the CPU**
  (``config.cuda_eigh_on_host``, default ``True``). cuSOLVER's batched Jacobi solver takes
  matrices up to 32 x 32; for larger ones ``torch.linalg.eigh`` decomposes the batch one matrix
  at a time on the device: 48 ms for 64 matrices of 64 x 64 (float64, H100), where LAPACK on
  16 host threads takes 13 ms including the copies (3-20x faster for batches of 64-1024 of
  sizes 48-64; at 128 x 128 the device is as fast). Results come back to the input's device;
  autograd follows the copies. Single matrices stay on the device.
* **Batches split over CPU threads run on torch's OpenMP threads**
  (``config.openmp_threads``, default ``True``). Batched LAPACK calls (``eigh``, Cholesky) and
  the sample slices of the iterative means are shared out over ``torch.get_num_threads()``
  threads; the parts run in a parallel region of torch's own OpenMP runtime, whose threads
  are awake between torch's parallel operators anyway (:mod:`riemtorch.linalg.openmp`). Set
  the switch to ``False`` (or the environment variable ``RIEMTORCH_OPENMP_THREADS=0`` before
  import) to run them on a pool of Python threads instead (the fallback where no OpenMP
  runtime is found). Results are the same either way.
* **Eigenvalue floor for functions that need positive eigenvalues** (log, square root, inverse
  square root, negative powers): eigenvalues are clamped from below at
  ``eigenvalue_floor(dtype) * max(|eigenvalue|)`` of the same matrix, where ``dtype`` is the
  dtype of the *input*: ``float32`` ``1.2e-7``, ``float64`` ``2.2e-16`` (the machine epsilon).
  Below that relative size an eigenvalue is rounding noise of the input itself, so clamping
  changes nothing that the input determines, and it keeps ``log`` and ``x**-0.5`` finite.
  With validation on, an eigenvalue more negative than ``-n * floor * max|eigenvalue|`` raises
  ``ValueError`` ("not positive definite") instead of being clamped silently. Matrices that a
  computation forms from its inputs in a wider working dtype (the whitened samples
  ``M^-1/2 X_i M^-1/2`` of the Karcher mean and the affine-invariant batch norm, the
  ``S^1/2 X_i S^1/2`` of the Bures-Wasserstein barycenter) take the working dtype's floor:
  their condition number reaches the product of those of their factors, and their small
  eigenvalues are information, not rounding noise of the input.
* **ReEig** clamps at an absolute threshold chosen by the layer (default ``1e-4``), independent
  of this floor.
* **Float32 inside float64 linear solves.** The conjugate-gradient solves of the Karcher mean
  (its Newton steps and its implicit derivative, hence the affine-invariant batch norm) compute
  the Hessian's departure from the identity in float32
  (:class:`~riemtorch.manifolds.spd.newton_hessian.NewtonHessian`). Where the estimated
  rounding error of that part exceeds the solve's tolerance (a relative ``1e-10``, say, against
  an estimate near ``1e-7``), the solution is refined with its residual computed in the working
  dtype, so every solve reaches its tolerance under the exact product; where the estimate
  exceeds ``1e-4`` (widely spread samples) the solve stays in the working dtype. Everything
  else stays in the working dtype, and each Newton step is checked by the next iteration in
  it, so the mean's tolerance holds as before.
* **Near-equal eigenvalues in backward passes.** The Daleckii-Krein divided differences
  ``(f(a) - f(b)) / (a - b)`` are evaluated in a cancellation-free closed form for the built-in
  functions (sqrt, inverse sqrt, log, exp, powers; exactly for the ReEig clamp); for a user
  function they switch to ``(f'(a) + f'(b)) / 2`` when
  ``|a - b| <= sqrt(eps) * max(|a|, |b|, 1)``. Where a differential ``D f(X)`` is itself
  differentiated in ``X`` (verbs at a base point under a power deformation or the log-Euclidean
  metric), the second divided differences ``f[a, b, c]`` of
  :mod:`riemtorch.linalg.second_differences` take the same role. Gradients are therefore finite
  at repeated eigenvalues, in particular at the identity.

Validation
----------
``config.validate`` (default ``True``; environment variable ``RIEMTORCH_VALIDATE=0`` turns it off
at import) makes public functions check the *values* of their inputs: symmetry, finiteness,
positive definiteness, points lying on the manifold. The SPD metrics check that points and
tangent vectors are finite and symmetric (positive definiteness where a factorisation meets
it); the other manifolds that points and tangent vectors are finite and that points lie on the
manifold within :func:`riemtorch.manifolds.base.input_tolerance` (``1e-5`` float64, ``1e-3``
float32: looser than :meth:`~riemtorch.manifolds.base.Manifold.check_point`, so that
rounding, float32 data promoted to float64 and finite-difference steps pass while a basis that
is not orthonormal or a point outside the ball raises). The methods of those manifolds also
check that their result is finite: from finite inputs a non-finite result means the dtype's
range was left (hyperboloid coordinates beyond about ``43 sqrt(k)`` from the origin in
float32), and it raises ``ValueError`` instead of reaching the caller as ``inf`` or ``NaN``.
The optimizers check each batch of
parameters and its gradient once per step, then update without further checks. These checks
read a value back to the host, which costs a device synchronisation on GPU; turn them off in
tight training loops once the pipeline is known to be sound. They are skipped while
``torch.compile`` traces (a host read would break the graph). Checks of type, dtype and shape
cost nothing and are always on.

Examples
--------
>>> import riemtorch
>>> riemtorch.config.validate
True
>>> with riemtorch.config.override(validate=False):
...     riemtorch.config.validate
False
"""

import contextlib
import os
import sys

import torch

__all__ = ["validate", "eigh_in_float64", "cuda_eigh_on_host", "openmp_threads", "override",
           "validating", "eigenvalue_floor", "symmetry_tolerance"]

_OFF = ("0", "false", "False", "")
validate: bool = os.environ.get("RIEMTORCH_VALIDATE", "1") not in _OFF
eigh_in_float64: bool = True
cuda_eigh_on_host: bool = True
openmp_threads: bool = os.environ.get("RIEMTORCH_OPENMP_THREADS", "1") not in _OFF

_SWITCHES = ("validate", "eigh_in_float64", "cuda_eigh_on_host", "openmp_threads")


@contextlib.contextmanager
def override(**switches):
    """Temporarily set switches of this module, e.g. ``override(validate=False)``."""
    unknown = set(switches) - set(_SWITCHES)
    if unknown:
        raise ValueError(f"unknown config switch(es) {sorted(unknown)}; known: {list(_SWITCHES)}")
    module = globals()
    saved = {name: module[name] for name in switches}
    module.update(switches)
    try:
        yield
    finally:
        module.update(saved)


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing now (``torch.compiler.is_compiling``; before torch
    2.3, which lacks it, ``torch._dynamo.is_compiling`` once dynamo is imported)."""
    if hasattr(torch.compiler, "is_compiling"):
        return torch.compiler.is_compiling()
    dynamo = sys.modules.get("torch._dynamo")
    return dynamo is not None and dynamo.is_compiling()


def validating() -> bool:
    """Whether value checks run now: ``validate`` is on and ``torch.compile`` is not tracing."""
    return validate and not compiling()


def eigenvalue_floor(dtype: torch.dtype) -> float:
    """Relative floor for eigenvalues of SPD input of ``dtype`` (see the numerical policy)."""
    return torch.finfo(dtype).eps


def symmetry_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance on ``max|X - X^T| / max|X|`` accepted as symmetric: ``sqrt(eps)``."""
    return torch.finfo(dtype).eps ** 0.5
