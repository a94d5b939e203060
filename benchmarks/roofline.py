"""What this machine can do at best: the rates every other figure is set against.

    python -m benchmarks --only roofline

- `fp32_gflops_N_threads`, `bf16_gflops_N_threads`: a large square matrix product (2,048), the
  fastest arithmetic torch reaches here, on 1 and 2 threads;
- `read_gb_per_s_N_threads`: summing a tensor four times the size of the last-level cache, bytes
  read per second from main memory;
- `sampling_chain_us`: the weight products of one cached sampling step of the bundled
  transformer at batch 1, alone and in order on one thread (`benchmarks.sampling`): a step
  streams every weight once, so no batch-1 step can be faster, whatever its other ops cost;
- `import_torch_s`: `python -c "import torch"` as a whole process, the floor of any command
  that uses torch (median of three).

`python -m benchmarks` turns these into a limit for each figure (`benchmarks.report`).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

import torch

from benchmarks.common import bundled
from benchmarks.sampling import step_products_us
from mingpt.model import GPTConfig

THREADS = (1, 2)
STREAM_BYTES = 512 * 2**20  # well past any last-level cache of a laptop or a server core


def matmul_gflops(n: int, threads: int, dtype=torch.float32, seconds: float = 0.5) -> float:
    """Square (n, n) @ (n, n) products per second on `threads` threads, in GFLOP/s (median of 5)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b, out = (torch.randn(n, n).to(dtype) for _ in range(3))
        torch.mm(a, b, out=out)
        flops = 2 * n ** 3
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        reps = max(1, int(seconds / max(time.perf_counter() - t0, 1e-6)))
        rates = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b, out=out)
            rates.append(flops * reps / (time.perf_counter() - t0) / 1e9)
        return statistics.median(rates)
    finally:
        torch.set_num_threads(before)


def read_gb_per_s(n_bytes: int, threads: int) -> float:
    """Bytes summed per second over a float32 tensor of `n_bytes`, in GB/s (median of 5)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.ones(n_bytes // 4)
        x.sum()
        rates = []
        for _ in range(5):
            t0 = time.perf_counter()
            x.sum()
            rates.append(n_bytes / (time.perf_counter() - t0) / 1e9)
        return statistics.median(rates)
    finally:
        torch.set_num_threads(before)


def import_torch_s(runs: int = 3) -> float:
    """Wall seconds of `python -c "import torch"` as its own process (median of `runs`)."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def measure(tiny: bool = False, threads: int | None = None) -> dict:
    """The machine's rates; tiny: small products and tensors, one import."""
    n, n_bytes = (256, 8 * 2**20) if tiny else (2048, STREAM_BYTES)
    figures = {}
    for t in THREADS:
        figures[f"fp32_gflops_{t}_threads"] = matmul_gflops(n, t)
        figures[f"bf16_gflops_{t}_threads"] = matmul_gflops(n, t, torch.bfloat16)
        figures[f"read_gb_per_s_{t}_threads"] = read_gb_per_s(n_bytes, t)
    cfg = GPTConfig.from_dict(bundled("transformer")[0])
    figures["sampling_chain_us"] = step_products_us(cfg, reps=50 if tiny else 2000)
    figures["import_torch_s"] = import_torch_s(1 if tiny else 3)
    return {"figures": figures,
            "info": {"square_product": n, "stream_mb": n_bytes / 2**20, "torch_threads": list(THREADS),
                     "sampling_model": cfg.to_dict()}}


if __name__ == "__main__":
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "roofline", *sys.argv[1:]]))
