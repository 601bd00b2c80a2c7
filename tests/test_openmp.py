"""Callables run on torch's OpenMP threads: every call once, in parallel, results in order,
autograd off inside, errors re-raised after all calls, no nesting, the switch honoured."""

import threading
import time

import pytest
import torch

import riemtorch
from riemtorch.linalg import openmp

pytestmark = pytest.mark.skipif(not openmp.available(),
                                reason="no OpenMP runtime of torch's found in this process")


def test_calls_run_once_each_in_parallel_inside_a_region_with_results_in_order():
    lib = openmp._runtime()
    seen = []
    meet = threading.Barrier(2, timeout=30)  # broken unless two calls run at the same time

    def call(k):
        seen.append((k, threading.get_ident(), lib.omp_in_parallel()))
        if k < 2:
            meet.wait()
        return 10 * k

    assert openmp.run([lambda k=k: call(k) for k in range(4)]) == [0, 10, 20, 30]
    assert sorted(k for k, _, _ in seen) == [0, 1, 2, 3]
    assert len({ident for _, ident, _ in seen}) >= 2
    assert all(in_region == 1 for _, _, in_region in seen)


def test_the_threads_python_states_last_from_one_region_to_the_next():
    """A thread-local value set in one region is seen in the next by the same OpenMP thread:
    its Python thread state was kept, not created and destroyed with every region."""
    local = threading.local()
    meet = threading.Barrier(2, timeout=30)  # both threads of the team take a call

    def call():
        meet.wait()
        seen = getattr(local, "ident", None)
        local.ident = threading.get_ident()
        return seen, local.ident

    first = openmp.run([call, call])
    second = openmp.run([call, call])
    assert len({ident for _, ident in first}) == 2
    assert {seen for seen, _ in second} == {ident for _, ident in first}


def test_autograd_is_off_inside_and_left_as_it_was_outside():
    x = torch.ones(3, requires_grad=True)
    modes = openmp.run([torch.is_grad_enabled, lambda: (2 * x).requires_grad])
    assert modes == [False, False]
    assert torch.is_grad_enabled()
    with torch.no_grad():
        openmp.run([lambda: None])
        assert not torch.is_grad_enabled()


def test_the_first_failing_call_is_raised_after_every_call_finished():
    done = []

    def fail(k):
        time.sleep(0.01 * (3 - k))
        raise ValueError(f"call {k} failed")

    def finish():
        time.sleep(0.05)
        done.append(True)

    with pytest.raises(ValueError, match="call 1 failed"):
        openmp.run([finish, lambda: fail(1), lambda: fail(2), finish])
    assert done == [True, True]


def test_no_nested_regions_and_the_switch_turns_it_off():
    def nested():
        time.sleep(0.01)
        return openmp.available(), openmp.run([lambda: 1, lambda: 2])

    assert openmp.run([nested, nested]) == [(False, None)] * 2
    ran = []
    with riemtorch.config.override(openmp_threads=False):
        assert not openmp.available()
        assert openmp.run([lambda: ran.append(1)]) is None
    assert ran == []


def test_torch_operations_inside_match_the_calling_thread_bitwise():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 12, 12, dtype=torch.float64, generator=g)
    x = a @ a.mT
    parts = x.split(10)
    results = openmp.run([lambda p=p: torch.linalg.eigh(p) for p in parts])
    for part, (lam, u) in zip(parts, results):
        ref_lam, ref_u = torch.linalg.eigh(part)
        assert torch.equal(lam, ref_lam) and torch.equal(u, ref_u)


def test_the_runtime_is_torchs_own_and_names_are_recognised():
    import os

    torch_dir = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
    candidates = openmp._loaded_candidates()
    own = [p for p in candidates if os.path.realpath(p).startswith(torch_dir)]
    assert candidates and (own == candidates or len(candidates) == 1)
    names = {"libgomp.so.1": True, "libgomp-a34b3233.so.1": True, "libiomp5.so": True,
             "libomp.dylib": True, "libomptarget.so": False, "libgompx.so": False}
    assert {name: bool(openmp._NAME.match(name)) for name in names} == names


def test_the_environment_variable_turns_it_off_at_import():
    import os
    import subprocess
    import sys

    code = ("import riemtorch; from riemtorch.linalg import openmp; "
            "print(riemtorch.config.openmp_threads, openmp.available())")
    for value, expected in (("0", "False False"), ("1", "True True")):
        env = {**os.environ, "RIEMTORCH_OPENMP_THREADS": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        assert out.stdout.split() == expected.split()
