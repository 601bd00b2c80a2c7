"""Layers and manifold operations under ``torch.compile`` give the eager results.

Most cases use the ``aot_eager`` backend: it runs dynamo's tracing and AOT autograd (where a
library function would fail to trace) without the slow inductor code generation. The two model
tests also run the default inductor backend when ``RIEMTORCH_TEST_INDUCTOR=1`` is set (marked
``slow``; a few minutes on two CPU cores).
"""

import os
import subprocess
import sys

import pytest
import torch

import riemtorch

torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

# torch.compile of riemtorch needs torch 2.3 or newer (2.1's dynamo fails on its custom autograd
# Functions); eager use works from 2.1
pytestmark = pytest.mark.skipif(
    tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 3),
    reason="torch.compile of riemtorch needs torch 2.3 or newer")

# Inductor compiles take minutes on a small CPU machine: opt in with RIEMTORCH_TEST_INDUCTOR=1.
BACKENDS = ["aot_eager", pytest.param("inductor", marks=[
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("RIEMTORCH_TEST_INDUCTOR", "0") in ("0", ""),
                       reason="set RIEMTORCH_TEST_INDUCTOR=1 to compile with inductor")])]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_import_leaves_dynamo_unloaded():
    # torch._dynamo takes about a second to import; eager users of riemtorch do not need it
    code = ("import sys, riemtorch, riemtorch.nn; "
            "sys.exit(int('torch._dynamo' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _spd_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        riemtorch.nn.BiMap(6, 4, dtype=torch.float64),
        riemtorch.nn.SPDBatchNorm(4, metric="aim", mean_iters=2, dtype=torch.float64),
        riemtorch.nn.ReEig(),
        riemtorch.nn.LogEig(),
        riemtorch.nn.Vech(),
        torch.nn.Linear(10, 3, dtype=torch.float64),
    )


def _lorentz_model():
    torch.manual_seed(0)
    lorentz = riemtorch.Lorentz(1.0)
    return torch.nn.Sequential(
        riemtorch.nn.ExpMap0(lorentz),
        riemtorch.nn.LorentzLinear(lorentz, 5, 4, dtype=torch.float64),
        riemtorch.nn.GyroBatchNorm(lorentz, (4,), dtype=torch.float64),
        riemtorch.nn.LogMap0(lorentz),
        torch.nn.Linear(3, 2, dtype=torch.float64),
    )


def _spd_input():
    g = torch.Generator().manual_seed(1)
    return riemtorch.SPDAffineInvariant().random(8, n=6, cond=10.0, dtype=torch.float64,
                                                 generator=g)


def _lorentz_input():
    g = torch.Generator().manual_seed(1)
    return 0.5 * torch.randn(8, 4, dtype=torch.float64, generator=g)


def _check_model(make_model, x, backend):
    eager = make_model()
    compiled_model = make_model()
    compiled = torch.compile(compiled_model, backend=backend)

    eager.train()
    compiled_model.train()
    out_e = eager(x)
    out_c = compiled(x)
    torch.testing.assert_close(out_c, out_e)
    out_e.square().sum().backward()
    out_c.square().sum().backward()
    for (name, p_e), p_c in zip(eager.named_parameters(), compiled_model.parameters()):
        assert p_c.grad is not None, name
        torch.testing.assert_close(p_c.grad, p_e.grad, msg=lambda m: f"{name}: {m}")
    # The running statistics updated inside the compiled graph match the eager ones.
    for (name, b_e), b_c in zip(eager.named_buffers(), compiled_model.buffers()):
        torch.testing.assert_close(b_c, b_e, msg=lambda m: f"{name}: {m}")

    eager.eval()
    compiled_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_spdnet_batchnorm_model(backend):
    _check_model(_spd_model, _spd_input(), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lorentz_batchnorm_model(backend):
    _check_model(_lorentz_model, _lorentz_input(), backend)


def _manifold_data(name):
    g = torch.Generator().manual_seed(2)
    dt = torch.float64
    if name == "Sphere":
        m, kw = riemtorch.Sphere(), dict(n=5)
    elif name == "PoincareBall":
        m, kw = riemtorch.PoincareBall(1.0), dict(n=4)
    elif name == "Lorentz":
        m, kw = riemtorch.Lorentz(1.0), dict(n=5)
    elif name == "SPDAffineInvariant":
        m, kw = riemtorch.SPDAffineInvariant(), dict(n=4)
    elif name == "SPDBuresWasserstein":
        m, kw = riemtorch.SPDBuresWasserstein(), dict(n=4)
    elif name == "SPDGeneralizedBuresWasserstein":
        metric = riemtorch.SPDAffineInvariant().random(n=4, dtype=dt, generator=g)
        m, kw = riemtorch.SPDGeneralizedBuresWasserstein(metric), dict(n=4)
    elif name == "SPDLogEuclidean":
        m, kw = riemtorch.SPDLogEuclidean(), dict(n=4)
    elif name == "SPDLogCholesky":
        m, kw = riemtorch.SPDLogCholesky(), dict(n=4)
    elif name == "Grassmann":
        m, kw = riemtorch.Grassmann(), dict(n=5, p=2)
    else:
        m, kw = riemtorch.Stiefel(), dict(n=5, p=2)
    x = m.random(3, dtype=dt, generator=g, **kw)
    y = m.random(3, dtype=dt, generator=g, **kw)
    u = m.proju(x, torch.randn(x.shape, dtype=dt, generator=g))
    u = 0.3 * u / m.norm(x, u, keepdim=True)
    if name == "Stiefel":
        # The Stiefel logarithm is iterative and converges only for nearby points.
        v = m.proju(x, torch.randn(x.shape, dtype=dt, generator=g))
        y = m.expmap(x, 0.5 * v / m.norm(x, v, keepdim=True))
    return m, x, y, u


MANIFOLDS = ["Sphere", "PoincareBall", "Lorentz", "SPDAffineInvariant", "SPDBuresWasserstein",
             "SPDGeneralizedBuresWasserstein", "SPDLogEuclidean", "SPDLogCholesky", "Grassmann",
             "Stiefel"]
OPS = {
    "expmap": lambda m, x, y, u: m.expmap(x, u),
    "logmap": lambda m, x, y, u: m.logmap(x, y),
    "dist": lambda m, x, y, u: m.dist(x, y),
    "transp": lambda m, x, y, u: m.transp(x, y, u),
}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("name", MANIFOLDS)
def test_manifold_op(name, op):
    m, x, y, u = _manifold_data(name)
    fn = OPS[op]

    def run(f):
        xs, ys, us = (t.clone().requires_grad_() for t in (x, y, u))
        out = f(m, xs, ys, us)
        # A fixed random weighting so that the gradient is not that of a symmetric sum.
        w = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(3))
        grads = torch.autograd.grad((w * out).sum(), (xs, ys, us), allow_unused=True)
        return out.detach(), grads

    out_e, grads_e = run(fn)
    out_c, grads_c = run(torch.compile(fn, backend="aot_eager"))
    torch.testing.assert_close(out_c, out_e)
    for g_c, g_e in zip(grads_c, grads_e):
        assert (g_c is None) == (g_e is None)
        if g_e is not None:
            torch.testing.assert_close(g_c, g_e)
