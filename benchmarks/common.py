"""Timing and table helpers shared by the benchmark scripts."""

import platform
import statistics
import time

import torch


def setup(threads: int = 2) -> None:
    """Fix the thread count so that ratios are comparable between runs."""
    torch.set_num_threads(threads)


def median_ms(fn, repeat: int = 7, warmup: int = 2) -> float:
    """Median wall-clock time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def synchronized(fn, device):
    """``fn`` followed by a device synchronisation on CUDA, so that wall-clock timing counts the
    kernels it launched (unchanged on CPU)."""
    if torch.device(device).type != "cuda":
        return fn

    def call():
        out = fn()
        torch.cuda.synchronize()
        return out

    return call


def machine() -> str:
    """One line describing where the numbers were taken."""
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def print_table(title: str, columns, rows) -> None:
    """Print a markdown table: ``rows`` are sequences matching ``columns``; floats get 3 digits."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return "" if v is None else str(v)

    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|")
    for row in rows:
        print("| " + " | ".join(fmt(v) for v in row) + " |")
    print(f"\n{machine()}")
