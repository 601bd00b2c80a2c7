"""Fast SPD paths: Newton Karcher mean, warm-started BW barycenter, Newton-Schulz square roots,
thread-split batches; each against an independent or exact reference."""

import threading
import warnings

import pytest
import torch

import riemtorch
from riemtorch.linalg import openmp
from riemtorch.linalg.batched import SampleChunks, map_batch_chunks, split_eigh
from riemtorch.linalg.symmetric import sym

F64 = torch.float64


def spd(batch, n=5, cond=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return riemtorch.SPDAffineInvariant().random(*batch, n=n, cond=cond, dtype=F64, generator=g)


def wishart(count, n, samples, seed):
    z = torch.randn(count, n, samples, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return z @ z.transpose(-1, -2) / samples


def relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(params=["openmp", "pool"])
def backend(request):
    """Split work on torch's OpenMP threads, or on the fallback pool of Python threads."""
    use_openmp = request.param == "openmp"
    with riemtorch.config.override(openmp_threads=use_openmp):
        if use_openmp and not openmp.available():
            pytest.skip("no OpenMP runtime of torch's found in this process")
        yield request.param


@pytest.mark.parametrize("name", ["SPDBuresWasserstein", "SPDGeneralizedBuresWasserstein"])
@pytest.mark.parametrize("cond", [1e2, 1e4])
def test_newton_schulz_square_roots_agree_with_eigh(name, cond):
    def make(method):
        if name == "SPDBuresWasserstein":
            return riemtorch.SPDBuresWasserstein(sqrtm_method=method)
        return riemtorch.SPDGeneralizedBuresWasserstein(spd((), n=5, cond=10.0, seed=3),
                                                         sqrtm_method=method)

    exact, fast = make("eigh"), make("newton_schulz")
    x, y = spd((3,), n=5, cond=cond, seed=1), spd((3,), n=5, cond=cond, seed=2)
    u = exact.logmap(x, y)
    v = 0.1 * u / exact.norm(x, u, keepdim=True)
    pairs = [(fast.dist(x, y), exact.dist(x, y)), (fast.logmap(x, y), u),
             (fast.expmap(x, v), exact.expmap(x, v)),
             # the fixed point converges slowly for points this far apart: a loose tolerance
             (fast.frechet_mean(torch.stack([x, y]), tol=1e-6),
              exact.frechet_mean(torch.stack([x, y]), tol=1e-6))]
    for approx, reference in pairs:
        assert relative(approx, reference) <= 1e-5


def test_newton_schulz_composite_gradcheck():
    gbw = riemtorch.SPDGeneralizedBuresWasserstein(spd((), n=3, cond=5.0, seed=4),
                                                   sqrtm_method="newton_schulz")
    x, y = spd((3,), n=3, seed=5).requires_grad_(True), spd((2,), n=3, seed=6)

    def loss(a):
        mean = gbw.frechet_mean(sym(a), tol=1e-13)
        return gbw.dist(mean, y).sum() + gbw.logmap(mean, y).sum()

    assert torch.autograd.gradcheck(loss, (x,))


def test_sqrtm_method_is_checked_and_shown():
    with pytest.raises(ValueError, match="sqrtm_method"):
        riemtorch.SPDBuresWasserstein(sqrtm_method="svd")
    assert "newton_schulz" in repr(riemtorch.SPDBuresWasserstein(sqrtm_method="newton_schulz"))


@pytest.mark.parametrize("name, reference", [
    ("SPDAffineInvariant", "mean_riemann"), ("SPDBuresWasserstein", "mean_wasserstein")])
def test_fast_means_match_pyriemann_on_many_samples(name, reference):
    prm = pytest.importorskip("pyriemann.geometry.mean")
    # The benchmark's regime: many Wishart samples (warm starts, chord steps).
    x = wishart(300, 8, 40, 0)
    w = torch.rand(300, dtype=F64, generator=torch.Generator().manual_seed(1)) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = getattr(prm, reference)(x.numpy(), tol=1e-13, maxiter=500,
                                           sample_weight=(w / w.sum()).numpy())
    mean = getattr(riemtorch, name)().frechet_mean(x, weights=w, tol=1e-11)
    assert relative(mean, torch.as_tensor(expected)) <= 1e-8


@pytest.mark.parametrize("name, tol", [("SPDAffineInvariant", 1e-11),
                                       ("SPDBuresWasserstein", 1e-6)])
def test_means_of_widely_spread_samples_are_critical_points(name, tol):
    # pyRiemann's step-size decay stalls here (its AIM gradient stays near 5e-5), so the check
    # is first-order optimality, with the logarithm computed by the manifold's own map.
    m = getattr(riemtorch, name)()
    x = spd((6,), n=4, cond=1e4, seed=7)
    w = torch.rand(6, dtype=F64, generator=torch.Generator().manual_seed(1)) + 0.1
    w = w / w.sum()
    mean = m.frechet_mean(x, weights=w, tol=tol)
    grad = (w[:, None, None] * m.logmap(mean.expand_as(x), x)).sum(0)
    # the BW criterion is relative to the mean's norm (the direction has the data's units)
    scale = float(torch.linalg.matrix_norm(mean)) if name == "SPDBuresWasserstein" else 1.0
    assert float(torch.linalg.matrix_norm(grad)) <= 10 * tol * scale


@pytest.mark.parametrize("name", ["SPDBuresWasserstein", "SPDGeneralizedBuresWasserstein"])
def test_bw_means_are_scale_equivariant_at_the_default_tolerance(name):
    # mean(c X) = c mean(X): the stopping criterion is relative to the barycenter's norm.
    # Compared with the absolute norm, covariances of size 1e-12 (EEG in volts) stopped after
    # the first update, 7e-2 off, and those of size 1e8 ran to the iteration cap.
    m = getattr(riemtorch, name)(*(() if name == "SPDBuresWasserstein" else
                                   (torch.eye(4, dtype=F64),)))
    x = spd((5,), n=4, cond=100.0, seed=0)
    reference = m.frechet_mean(x, tol=1e-14)
    for scale in (1e-12, 1e-6, 1e8):
        torch.testing.assert_close(m.frechet_mean(scale * x) / scale, reference,
                                   rtol=1e-9, atol=0)


@pytest.mark.parametrize("dtype, small", [(torch.float32, 1e-3), (F64, 1e-4)])
def test_bw_barycenter_of_points_differing_in_a_small_direction(dtype, small):
    # Refined roots whose small eigen-direction went stale held the iteration in a cycle to the
    # iteration cap: float32 input (float32's tolerance) returned the arithmetic mean, 8 % off;
    # float64 at spread 1e4 stopped 2e-6 off, unconverged. Commuting points: the barycenter
    # is (mean of the square roots)^2.
    x = torch.stack([torch.diag(torch.tensor([small, 1.0], dtype=dtype)),
                     torch.diag(torch.tensor([3.16 * small, 1.0], dtype=dtype))])
    expected = x.double().sqrt().mean(0).square()
    mean = riemtorch.SPDBuresWasserstein().frechet_mean(x)
    assert mean.dtype == dtype
    rtol = 1e-5 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(mean.double(), expected, rtol=rtol, atol=0)


def test_karcher_final_step_rate_bounds_the_hessian_and_contracts():
    """The step taken past the tolerance is ``2 F / (1 + k)`` with ``k`` at least the largest
    eigenvalue of the Newton Hessian (built densely here from its action on a basis), so the
    linearised residual shrinks by ``(k - 1) / (k + 1)`` even for widely spread samples."""
    from riemtorch.manifolds.spd import karcher, newton_hessian

    x = spd((7,), n=3, cond=1e5, seed=13)
    w = torch.rand(7, dtype=F64, generator=torch.Generator().manual_seed(3)) + 0.1
    w = (w / w.sum())[:, None, None]
    mean = karcher.arithmetic_harmonic_start(x, w)[0]
    _, lam, bases = karcher.whitened_spectrum(x, mean)
    loglam, grad, _ = karcher.karcher_gradient(lam, bases, w)
    hessian = newton_hessian.NewtonHessian(newton_hessian.newton_kernel(lam, loglam), bases, w)
    basis = [sym(torch.zeros(3, 3, dtype=F64).index_put_((torch.tensor(i), torch.tensor(j)),
                                                          torch.tensor(1.0, dtype=F64)))
             for i in range(3) for j in range(i, 3)]
    dense = torch.stack([torch.stack([(a * hessian(b)).sum() for b in basis]) for a in basis])
    # the basis is orthogonal, with squared norms 1 (diagonal) and 1/2 (off-diagonal)
    scale = torch.stack([(b * b).sum() for b in basis]).rsqrt()
    top = float(torch.linalg.eigvalsh(scale[:, None] * dense * scale).max())
    rate = float(karcher._richardson_rate(lam, w))
    k = 2.0 / rate - 1.0
    assert top > 2.0 and top <= k * (1 + 1e-12)
    residual = grad - hessian(rate * grad)
    contraction = (k - 1) / (k + 1)
    assert float(torch.linalg.matrix_norm(residual)) <= contraction * float(
        torch.linalg.matrix_norm(grad)) * (1 + 1e-12)


def test_karcher_mean_weight_gradient_is_the_implicit_derivative():
    aim = riemtorch.SPDAffineInvariant()
    x = spd((2, 3), n=2, seed=8).requires_grad_(True)
    w = (torch.rand(3, dtype=F64, generator=torch.Generator().manual_seed(2)) + 0.5)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: aim.frechet_mean(sym(a), weights=b, dim=1, tol=1e-13), (x, w))


def test_aim_distance_broadcasts_like_the_pairwise_loop():
    aim = riemtorch.SPDAffineInvariant()
    x, y = spd((), seed=9), spd((3,), seed=10)
    expected = torch.stack([aim.dist(x, b) for b in y])
    torch.testing.assert_close(aim.dist(x, y), expected)
    torch.testing.assert_close(aim.dist(y, x), expected)


def test_thread_split_batches_are_bitwise_equal(monkeypatch, backend):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    x = spd((2, 100), n=4, seed=11)
    lam, u = torch.linalg.eigh(x)
    split_lam, split_u = map_batch_chunks(torch.linalg.eigh, x, min_work=16 * 4 ** 3)
    assert torch.equal(split_lam, lam) and torch.equal(split_u, u)
    y = spd((100,), n=4, seed=12)
    assert torch.equal(map_batch_chunks(torch.add, x, y, min_work=16 * 4 ** 3), x + y)
    grad_input = x.clone().requires_grad_(True)
    out = map_batch_chunks(torch.linalg.eigvalsh, grad_input, min_work=16 * 4 ** 3)
    assert out.grad_fn is not None


def test_split_eigh_decomposes_chunks_into_one_output(monkeypatch, backend):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    x = spd((2, 100), n=4, seed=17)
    lam, u = torch.linalg.eigh(x)
    sizes = []
    original = torch.linalg.eigh

    def record(a, **kwargs):
        sizes.append(a.shape[:-2].numel())
        return original(a, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", record)
    split_lam, split_u = split_eigh(x, min_work=16 * 4 ** 3)
    assert sorted(sizes) == [66, 67, 67]
    assert torch.equal(split_lam, lam) and torch.equal(split_u, u)
    assert split_u.shape == (2, 100, 4, 4) and split_u.mT.is_contiguous()
    sizes.clear()
    whole_lam, _ = split_eigh(x)  # below the default work per thread: one call
    assert sizes == [200] and torch.equal(whole_lam, lam)


def test_sample_chunks_plan_one_slice_per_thread_for_large_batches_only(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    slices = SampleChunks.plan(spd((30, 2), n=4, seed=18), min_work=20 * 4 ** 3).slices
    assert slices == [slice(0, 10), slice(10, 20), slice(20, 30)]
    assert not SampleChunks.plan(spd((30, 2), n=4, seed=18)).parallel  # default work: whole
    tracked = spd((30, 2), n=4, seed=18).requires_grad_(True)
    assert not SampleChunks.plan(tracked, min_work=4 ** 3).parallel
    with torch.no_grad():
        assert len(SampleChunks.plan(tracked, min_work=4 ** 3).slices) == 3
    assert len(SampleChunks.plan(spd((2, 30), n=4, seed=18), min_work=4 ** 3).slices) == 2


def test_sample_chunks_run_slices_on_single_threaded_threads_and_restore_the_count(backend):
    """Slices run each once, on torch's OpenMP threads inside a parallel region (or on the
    calling thread, first slice, and the pool), with torch's thread count at 1 inside
    ``serial`` and restored after it, also when a slice raises; sums and gathered slices equal
    the whole batch's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        xs = spd((30, 2), n=4, seed=18)
        w = torch.rand(30, 1, 1, 1, dtype=F64, generator=torch.Generator().manual_seed(19))
        chunks = SampleChunks(30, 3)
        seen = []
        lib = openmp._runtime()

        def inverse_sum(k, s):
            in_region = bool(lib.omp_in_parallel()) if lib is not None else False
            seen.append((k, torch.get_num_threads(), threading.current_thread().name, in_region))
            return (w[s] * torch.linalg.inv(xs[s])).sum(0)

        with chunks.serial():
            total = chunks.sum(inverse_sum)
            inverses = chunks.gather(lambda k, s: torch.linalg.inv(xs[s]), xs)
        assert torch.get_num_threads() == 2
        assert sorted(k for k, *_ in seen) == [0, 1, 2]
        assert all(count == 1 for _, count, *_ in seen)
        if backend == "openmp":
            assert all(in_region for *_, in_region in seen)
        else:
            assert not any(in_region for *_, in_region in seen)
            main = threading.current_thread().name
            assert [k for k, _, name, _ in seen if name == main] == [0]
        torch.testing.assert_close(total, (w * torch.linalg.inv(xs)).sum(0), rtol=1e-13, atol=0)
        assert torch.equal(inverses, torch.linalg.inv(xs))

        def failing(k, s):
            raise RuntimeError("slice failed")

        with pytest.raises(RuntimeError, match="slice failed"), chunks.serial():
            chunks.run(failing)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def slice_in_three(monkeypatch, n):
    """Three threads, and samples of ``n x n`` matrices cut into one slice each from three of
    them on; returns the list of plans made."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    plans = []
    original = SampleChunks.plan.__func__

    def plan(cls, xs, min_work=None):
        plans.append(original(cls, xs, min_work=n ** 3))
        return plans[-1]

    monkeypatch.setattr(SampleChunks, "plan", classmethod(plan))
    return plans


def test_karcher_mean_over_parallel_slices_matches_the_whole_batch(monkeypatch):
    """Values and gradients of the Karcher mean with the samples cut into three slices, each
    on its own thread, against the same computation on the whole batch."""
    x = wishart(60, 6, 12, seed=3).unsqueeze(1).expand(60, 2, 6, 6).clone()
    x[:, 1] = wishart(60, 6, 12, seed=4)
    w = torch.rand(60, 2, 1, 1, dtype=F64, generator=torch.Generator().manual_seed(5))
    w = w / w.sum(0)
    g = torch.randn(2, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(6))
    spd_aim = riemtorch.SPDAffineInvariant()

    def mean_and_gradients():
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        mean = spd_aim.frechet_mean(xs, weights=ws.squeeze(-1).squeeze(-1), tol=1e-10)
        (mean * g).sum().backward()
        return mean.detach(), xs.grad, ws.grad

    whole = mean_and_gradients()
    plans = slice_in_three(monkeypatch, 6)
    sliced = mean_and_gradients()
    assert plans and all(len(p.slices) == 3 for p in plans)
    assert relative(sliced[0], whole[0]) < 1e-13
    # gradients: implicit solves to 1e-10 relative, summed in another order
    for a, b in zip(sliced[1:], whole[1:]):
        assert relative(a, b) < 1e-9


def test_thread_split_of_large_matrices_runs_single_threaded_chunks_and_restores_threads():
    """From 32 x 32 the chunks run with torch's thread count at 1 (no nested LAPACK threads);
    the count comes back afterwards, also when a chunk raises."""
    threads = torch.get_num_threads()
    seen = []

    def eigh_recording_threads(a):
        seen.append(torch.get_num_threads())
        return torch.linalg.eigh(a)

    torch.set_num_threads(2)
    try:
        x = spd((6,), n=32, seed=14)
        lam, u = map_batch_chunks(eigh_recording_threads, x, min_work=32 ** 3)
        ref_lam, ref_u = torch.linalg.eigh(x)
        assert torch.equal(lam, ref_lam) and torch.equal(u, ref_u)
        assert seen == [1, 1] and torch.get_num_threads() == 2

        def failing(a):
            raise RuntimeError("chunk failed")

        with pytest.raises(RuntimeError, match="chunk failed"):
            map_batch_chunks(failing, x, min_work=32 ** 3)
        assert torch.get_num_threads() == 2
        # small matrices: the calling thread's count is left alone (pool workers may keep the
        # single-thread setting they started under)
        seen.clear()
        main = []
        meet = threading.Barrier(2, timeout=30)  # one chunk on each thread

        def record_main(a):
            meet.wait()
            if threading.current_thread() is threading.main_thread():
                main.append(torch.get_num_threads())
            return torch.linalg.eigh(a)

        map_batch_chunks(record_main, spd((6,), n=8, seed=15), min_work=8 ** 3)
        assert main == [2]
    finally:
        torch.set_num_threads(threads)


def test_default_split_threshold_depends_on_where_chunks_run(monkeypatch, backend):
    """By default a batch splits only when every thread gets at least 2^16 of work (sum of
    n^3) on torch's OpenMP threads, 2^19 on the pool: on OpenMP threads 16 matrices of
    20 x 20 run in one call and 17 and a batch-norm batch of 64 in one chunk per thread; on
    the pool 131 run in one call and 132 in two chunks."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    sizes = []

    def record(a):
        sizes.append(a.shape[0])
        return torch.linalg.eigvalsh(a)

    smallest = 17 if backend == "openmp" else 132
    for count in (smallest - 1, smallest, 64, 256):
        sizes.clear()
        out = map_batch_chunks(record, spd((count,), n=20, seed=16))
        assert out.shape == (count, 20)
        whole = count < smallest
        assert sorted(sizes) == ([count] if whole else [count // 2, count - count // 2])


def test_anderson_acceleration_solves_a_linear_fixed_point_in_fewer_steps():
    """``x <- a o x + b`` entrywise, rates up to 0.9, on a batch of matrices: the accelerated
    iteration reaches the fixed point ``b / (1 - a)`` to 1e-12 in fewer steps than the plain
    one, and a batch entry already at its fixed point stays there (no 0 / 0 in the solve)."""
    from riemtorch.manifolds.spd.bw_barycenter import Anderson

    g = torch.Generator().manual_seed(5)
    a = 0.9 * torch.rand(3, 4, 4, dtype=F64, generator=g)
    b = torch.randn(3, 4, 4, dtype=F64, generator=g)
    fixed = b / (1 - a)
    start = torch.zeros_like(b)
    start[0] = fixed[0]

    def steps(accelerate):
        x, anderson = start.clone(), Anderson()
        for count in range(1, 400):
            image = a * x + b
            x = anderson.step(x, image) if accelerate else image
            if float((x - fixed).abs().max()) <= 1e-12:
                return count, x
        raise AssertionError("no convergence")

    plain, _ = steps(False)
    accelerated, x = steps(True)
    assert accelerated < plain
    torch.testing.assert_close(x[0], fixed[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("slices", [1, 3])
@pytest.mark.parametrize("mean", ["karcher", "bw"])
@pytest.mark.parametrize("shared", ["samples", "weights"])
def test_means_of_inputs_shared_by_channels(monkeypatch, slices, mean, shared):
    """Samples ``(N, 1, n, n)`` with per-channel weights ``(N, C, 1, 1)``, or per-channel
    samples with weights ``(N, 1, 1, 1)``: values and gradients equal those of the inputs
    materialised per channel (gradients summed back over the shared dimension), on the whole
    batch and over slices."""
    from riemtorch.manifolds.spd.bw_barycenter import bw_barycenter
    from riemtorch.manifolds.spd.karcher import karcher_mean

    solve = karcher_mean if mean == "karcher" else bw_barycenter
    g = torch.Generator().manual_seed(21)
    count, channels, n = 12, 3, 5
    x = wishart(count * (1 if shared == "samples" else channels), n, 9, seed=22)
    x = x.view(count, 1 if shared == "samples" else channels, n, n)
    w = torch.rand(count, channels if shared == "samples" else 1, 1, 1, dtype=F64, generator=g)
    w = w / w.sum(0)
    cotangent = torch.randn(channels, n, n, dtype=F64, generator=g)
    if slices == 3:
        slice_in_three(monkeypatch, n)

    def value_and_gradients(xs, ws):
        xs, ws = xs.clone().requires_grad_(True), ws.clone().requires_grad_(True)
        value = solve(xs, ws, 1e-12, 50)
        (value * cotangent).sum().backward()
        return value.detach(), xs.grad, ws.grad

    value, grad_x, grad_w = value_and_gradients(x, w)
    full = (count, channels)
    ref_value, ref_x, ref_w = value_and_gradients(x.expand(*full, n, n), w.expand(*full, 1, 1))
    assert relative(value, ref_value) < 1e-12
    assert relative(grad_x, ref_x.sum_to_size(x.shape)) < 1e-8
    assert relative(grad_w, ref_w.sum_to_size(w.shape)) < 1e-8


@pytest.fixture
def chord_attempts(monkeypatch):
    """Whether each chord refinement of the Bures-Wasserstein roots (one call per slice)
    succeeded, in order."""
    from riemtorch.manifolds.spd import bw_barycenter

    attempts = []
    chord = bw_barycenter._chord_steps

    def recording(*args, **kwargs):
        ok, size = chord(*args, **kwargs)
        attempts.append(ok)
        return ok, size

    monkeypatch.setattr(bw_barycenter, "_chord_steps", recording)
    return attempts


@pytest.fixture
def decompositions(monkeypatch):
    """The number of batched ``eigh`` calls of the Bures-Wasserstein barycenter (a list of one
    count, so that tests can reset it)."""
    count = [0]
    eigh = SampleChunks.eigh

    def counting(self, fn, like):
        count[0] += 1
        return eigh(self, fn, like)

    monkeypatch.setattr(SampleChunks, "eigh", counting)
    return count


def start_at_the_arithmetic_mean(monkeypatch):
    from riemtorch.manifolds.spd import bw_barycenter

    monkeypatch.setattr(bw_barycenter, "second_order_start",
                        lambda xs, w, chunks: (w * xs).sum(0))


def test_barycenter_decomposes_once_from_the_second_order_start(monkeypatch, chord_attempts,
                                                                decompositions):
    """From the second-order start one ``eigh`` serves the whole iteration: every later
    iteration refines the stored roots by chord steps. From the arithmetic mean the first move
    is too large for them, and the roots are decomposed a second time. Both give the
    barycenter (pyRiemann-free check: its optimality)."""
    bw = riemtorch.SPDBuresWasserstein()
    x = wishart(200, 10, 30, 3)
    mean = bw.frechet_mean(x, tol=1e-10)
    assert decompositions[0] == 1
    assert len(chord_attempts) >= 2 and all(chord_attempts)
    grad = bw.logmap(mean.expand_as(x), x).mean(0)
    assert float(torch.linalg.matrix_norm(grad)) <= 1e-9
    start_at_the_arithmetic_mean(monkeypatch)
    decompositions[0] = 0
    torch.testing.assert_close(bw.frechet_mean(x, tol=1e-10), mean, rtol=1e-9, atol=0)
    assert decompositions[0] == 2


def test_second_order_start_is_near_the_barycenter_or_the_mean():
    """Two channels: on Wishart samples the start is twentyfold nearer the barycenter than the
    arithmetic mean; on a heavy-tailed spread, where the second-order correction would take it
    below a quarter of the mean, the start is that channel's mean itself (commuting samples
    there: the barycenter is (mean of the roots)^2)."""
    from riemtorch.manifolds.spd.bw_barycenter import second_order_start
    from riemtorch.manifolds.spd.common import weighted_sum

    bw = riemtorch.SPDBuresWasserstein()
    eye = torch.eye(3, dtype=F64)
    heavy = torch.cat([0.1 * eye.expand(270, 3, 3), 9.1 * eye.expand(30, 3, 3)])
    x = torch.stack([wishart(300, 3, 10, 4), heavy], 1)
    w = torch.full((300, 1, 1, 1), 1 / 300, dtype=F64)
    star = bw.frechet_mean(x, tol=1e-13)
    start = second_order_start(x, w, SampleChunks(300))
    mean = weighted_sum(w, x)
    assert relative(start[0], star[0]) < relative(mean[0], star[0]) / 20
    torch.testing.assert_close(start[1], mean[1], rtol=0, atol=0)
    torch.testing.assert_close(star[1], heavy.sqrt().mean(0).square(), rtol=1e-10, atol=0)


@pytest.mark.parametrize("refresh", ["rule", "chord first"])
def test_barycenter_over_parallel_slices_matches_the_whole_batch(monkeypatch, refresh,
                                                                chord_attempts):
    """The Bures-Wasserstein barycenter with the samples cut into three slices, each on its own
    thread, against the whole batch; "chord first" starts at the arithmetic mean and makes
    every iteration try the chord refinement first, so that failed attempts fall back to
    decomposing the rotated slices."""
    from riemtorch.manifolds.spd import bw_barycenter

    if refresh == "chord first":
        monkeypatch.setattr(bw_barycenter, "REFRESH_CHANGE", float("inf"))
        start_at_the_arithmetic_mean(monkeypatch)
    attempts = chord_attempts
    bw = riemtorch.SPDBuresWasserstein()
    x = wishart(90, 7, 30, 8)
    g = torch.randn(7, 7, dtype=F64, generator=torch.Generator().manual_seed(9))

    def mean_and_gradient():
        xs = x.clone().requires_grad_(True)
        mean = bw.frechet_mean(xs, tol=1e-11)
        (mean * g).sum().backward()
        return mean.detach(), xs.grad

    whole = mean_and_gradient()
    plans = slice_in_three(monkeypatch, 7)
    attempts.clear()
    sliced = mean_and_gradient()
    assert plans and all(len(p.slices) == 3 for p in plans)
    assert True in attempts and (refresh == "rule" or False in attempts)
    assert relative(sliced[0], whole[0]) < 1e-13
    assert relative(sliced[1], whole[1]) < 1e-9


def test_truncated_barycenter_gradient_is_that_of_the_returned_value():
    bw = riemtorch.SPDBuresWasserstein()
    x = spd((3,), n=2, cond=20.0, seed=13).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: bw.frechet_mean(sym(a), max_iter=2), (x,))


@pytest.fixture
def three_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("count, n", [(7, 5), (301, 11)])
def test_eigenbasis_products_match_per_sample_products(batch, count, n, parts, three_threads):
    # 301 samples of size 11: the sums over samples are split in three chunks of 1103 rows
    # and one left over
    from riemtorch.manifolds.spd.eigenbases import EigenBases

    g = torch.Generator().manual_seed(4)
    u = torch.linalg.qr(torch.randn(count, *batch, n, n, dtype=F64, generator=g))[0]
    d = torch.randn(*batch, n, n, dtype=F64, generator=g)
    b = torch.randn(count, *batch, n, n, dtype=F64, generator=g)
    s = torch.randn(count, *batch, n, dtype=F64, generator=g)
    # parts: the samples cut into slices whose products run on their own threads
    bases, ut = EigenBases(u, SampleChunks(count, parts)), u.transpose(-1, -2)
    close = dict(rtol=0, atol=1e-13)
    torch.testing.assert_close(bases.rotate(d), ut @ d @ u, **close)
    torch.testing.assert_close(bases.combine(b), (u @ b @ ut).sum(0), **close)
    torch.testing.assert_close(bases.combine_diagonal(s), (u @ torch.diag_embed(s) @ ut).sum(0),
                               **close)
    torch.testing.assert_close(bases.to_bases(b, d), ut @ d @ b @ d.transpose(-1, -2) @ u, **close)
    torch.testing.assert_close(bases.from_bases(b, d), d @ u @ b @ ut @ d.transpose(-1, -2),
                               **close)
    for shared in (d, d.transpose(-1, -2)):  # the second call reuses the buffers of the first
        torch.testing.assert_close(bases.hadamard_sandwich(b, shared),
                                   (u @ (b * (ut @ shared @ u)) @ ut).sum(0), **close)
    single = bases.to(torch.float32)
    assert single.chunks is bases.chunks and single.u.dtype == torch.float32
    torch.testing.assert_close(single.rotate(d.float()), (ut @ d @ u).float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("cond", [1e8, 1e10])
def test_barycenter_of_ill_conditioned_samples_converges_with_refined_roots(cond):
    """The roots refined between decompositions are accurate relative to their smallest
    eigenvalues: refined only relative to their largest, the criterion hovered near ``1e-8``
    to the iteration cap on 50 samples of 22 x 22 at condition numbers 1e8 and 1e10."""
    from riemtorch.manifolds.spd.bw_barycenter import barycenter_fixed_point

    g = torch.Generator().manual_seed(int(cond) % 1000)
    x = riemtorch.SPDAffineInvariant().random(50, n=22, cond=cond, dtype=F64, generator=g)
    w = torch.full((50, 1, 1), 1 / 50, dtype=F64)
    mean, converged = barycenter_fixed_point(x, w, 1e-8, 100)
    assert converged
    grad = riemtorch.SPDBuresWasserstein().logmap(mean.expand_as(x), x).mean(0)
    assert float(torch.linalg.matrix_norm(grad) / torch.linalg.matrix_norm(mean)) < 2e-8
