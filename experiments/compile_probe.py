"""Would torch.compile speed up a sampling step? The matrix work of one step, eager against compiled.

A cached sampling step of the bundled transformer is, per layer, a layer norm, the fused q/k/v
projection, the output projection, a layer norm and the two MLP matrices; attention over the cache
and the vocabulary head come on top. This times that matrix chain alone, with the bundled
checkpoint's shapes (4 layers, 128 wide, q/k/v 192 wide with one key/value head), in eager
PyTorch and under `torch.compile` (inductor, which writes and compiles C++ for the CPU), at
batch 1 and 32, interleaved so that the machine's drift hits both alike.

    python experiments/compile_probe.py [--threads 1] [--repeats 5]

It prints microseconds per step and the tokens per second that the chain alone would allow,
an upper bound on sampling speed at that width.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

N_LAYER, WIDTH, QKV = 4, 128, 192


def make_step(weights):
    def step(x):
        for w_qkv, w_o, w_fc, w_proj in weights:
            h = F.layer_norm(x, (WIDTH,))
            x = x + (h @ w_qkv)[:, :WIDTH] @ w_o
            h = F.layer_norm(x, (WIDTH,))
            x = x + F.gelu(h @ w_fc, approximate="tanh") @ w_proj
        return x
    return step


def per_call_us(fn, x, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    weights = [tuple(torch.randn(shape) * 0.05 for shape in
                     ((WIDTH, QKV), (WIDTH, WIDTH), (WIDTH, 4 * WIDTH), (4 * WIDTH, WIDTH)))
               for _ in range(N_LAYER)]
    eager = make_step(weights)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    for batch in (1, 32):
        x = torch.randn(batch, WIDTH)
        compiled = torch.compile(eager, dynamic=False)
        start = time.perf_counter()
        with torch.inference_mode():
            torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-4)
        compile_s = time.perf_counter() - start
        times = {"eager": [], "compiled": []}
        with torch.inference_mode():
            for fn in (eager, compiled):
                per_call_us(fn, x, 100)  # warm-up
            for _ in range(args.repeats):
                for name, fn in (("eager", eager), ("compiled", compiled)):
                    times[name].append(per_call_us(fn, x, args.calls))
        row = ", ".join(f"{name} {statistics.median(t):.0f} us ({batch / statistics.median(t) * 1e6:,.0f} tokens/s)"
                        for name, t in times.items())
        print(f"batch {batch}: {row}; compiling took {compile_s:.1f} s")


if __name__ == "__main__":
    main()
