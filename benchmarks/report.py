"""Each figure of a `python -m benchmarks` run beside the limit of this machine and the original.

Limits come from the `roofline` benchmark of the same run (`benchmarks.roofline`):

- sampling, batch 1: the chain of one step's weight products alone (`sampling_chain_us`);
- sampling, batch 32: the slower of the step's arithmetic at the fp32 peak of the threads used and
  of its bytes (every weight once a step, each sequence's key/value window) at their read rate;
- training: the arithmetic of a step (`flops_per_token`, `flops_per_frame`) at the fp32 peak, or
  the bfloat16 peak for the bfloat16 figures, of the threads used;
- `python generate.py`: `python -c "import torch"`, which any command using torch pays first.

The original's figures are those of docs/evaluation.md ("The original implementation, measured
here"): the pier-maker92/bachsformer code as published, at its own settings (sampling without a
key/value cache, gpt-mini training at batch 128, VQ-VAE training at batch 512), on the 2-core
machine the project is developed on (torch 2.13), by the number of threads they were measured on.
"""
from __future__ import annotations

from bachsformer.cli import format_table

# (benchmark, figure): {torch threads: the original's figure}
ORIGINAL = {
    ("frames", "round_trip_s"): {2: 2.7},
    ("frames", "to_frames_s"): {2: 1.8},
    ("vae_training", "samples_per_s"): {1: 263, 2: 315},
    ("vae_training", "bf16_samples_per_s"): {1: 263, 2: 315},
    ("transformer_training", "tokens_per_s"): {1: 2900, 2: 2400},
    ("transformer_training", "bf16_tokens_per_s"): {1: 2900, 2: 2400},
    ("sampling", "batch1_len2048_tokens_per_s"): {1: 130, 2: 147},
    ("sampling", "batch1_len8192_tokens_per_s"): {1: 130, 2: 147},
    ("generate", "process_wall_s"): {1: 13.8, 2: 20.3},
}
SECONDS = {"round_trip_s", "to_frames_s", "process_wall_s", "cold_s", "warm_s", "to_midi_s", "regenerate_4_bars_s",
           "harmonise_16_bars_s"}  # lower is better
SHOWN = {  # the figures the table prints, in order; the JSON holds every figure
    "frames": ["cold_s", "warm_s", "to_frames_s", "round_trip_s"],
    "vae_training": ["samples_per_s", "bf16_samples_per_s"],
    "transformer_training": ["tokens_per_s", "bf16_tokens_per_s"],
    "sampling": ["batch1_len2048_tokens_per_s", "batch1_len8192_tokens_per_s", "batch32_len2048_tokens_per_s",
                 "batch32_len8192_tokens_per_s", "batch32_len2048_2_threads_tokens_per_s"],
    "generate": ["process_wall_s", "music_s"],
    "editing": ["regenerate_4_bars_s", "harmonise_16_bars_s"],
}


def _threads(benchmark: dict, figure: str, default: int | None = None) -> int:
    """The torch threads a figure was measured on: its benchmark's, else the run's setting."""
    if "2_threads" in figure:
        return 2
    threads = benchmark.get("torch_threads")
    return threads if isinstance(threads, int) else (default or 2)


def limit(name: str, figure: str, benchmark: dict, machine: dict, threads: int) -> tuple:
    """(the best this machine could give for `figure` on `threads` threads, how that limit is
    set), or (None, "")."""
    peak = machine.get(f"fp32_gflops_{threads}_threads")
    info = benchmark.get("info", {})
    if name == "sampling" and figure.startswith("batch1_") and "sampling_chain_us" in machine:
        return 1e6 / machine["sampling_chain_us"], "weight products alone"
    if name == "sampling" and figure.startswith("batch32_") and peak and "step_flops_per_token" in info:
        bandwidth = machine.get(f"read_gb_per_s_{threads}_threads")
        arithmetic = 32 * info["step_flops_per_token"] / (peak * 1e9)
        reading = (info["step_weight_bytes"] + 32 * info["kv_cache_bytes_per_sequence"]) / (bandwidth * 1e9)
        return 32 / max(arithmetic, reading), "arithmetic" if arithmetic >= reading else "memory"
    if name in ("vae_training", "transformer_training"):
        flops = info.get("flops_per_token") or info.get("flops_per_frame")
        kind = "bf16" if figure.startswith("bf16_") else "fp32"
        rate = machine.get(f"{kind}_gflops_{threads}_threads")
        if flops and rate:
            return rate * 1e9 / flops, f"{kind} arithmetic"
    if name == "generate" and figure == "process_wall_s" and "import_torch_s" in machine:
        return machine["import_torch_s"], "import torch"
    return None, ""


def rows(result: dict) -> list:
    """One row per shown figure: benchmark, figure, median, range, threads, limit, share, original, ratio."""
    machine = result["benchmarks"].get("roofline", {}).get("median", {})
    table = []
    for name, benchmark in result["benchmarks"].items():
        if name == "roofline" or "error" in benchmark:
            if "error" in benchmark:
                table.append([name, "error", benchmark["error"][:60], "", "", "", "", "", ""])
            continue
        for figure in SHOWN.get(name, []):
            if figure not in benchmark["median"]:
                continue
            value = benchmark["median"][figure]
            runs = [r[figure] for r in benchmark["runs"] if figure in r]
            seconds = figure in SECONDS
            threads = _threads(benchmark, figure, result["settings"].get("threads"))
            best, how = limit(name, figure, benchmark, machine, threads)
            original = ORIGINAL.get((name, figure), {}).get(threads)
            share = None if best is None else (best / value if seconds else value / best)
            times = None if original is None else (original / value if seconds else value / original)
            table.append([name, figure, _number(value), f"{_number(min(runs))}-{_number(max(runs))}",
                          str(threads),
                          "" if best is None else f"{_number(best)} ({how})",
                          "" if share is None else f"{share:.0%}",
                          "" if original is None else _number(original),
                          "" if times is None else f"{times:.1f}x"])
    return table


HEADERS = ["benchmark", "figure", "median", "runs", "threads", "limit here", "of limit", "original", "vs original"]


def text(result: dict) -> str:
    """The table a person reads: every shown figure, its limit and the original; then the machine."""
    m = result["machine"]
    machine = result["benchmarks"].get("roofline", {}).get("median", {})
    lines = [format_table(HEADERS, rows(result), right={2, 4, 6, 8}), "",
             f"machine: {m['cpu']}, {m['cpus_usable']} usable cores, torch {m['torch']}, python {m['python']}; "
             f"load average {_load(m.get('load_average_start'))} at the start, {_load(m.get('load_average_end'))} at the end"]
    if machine:
        lines.append("roofline: " + ", ".join(f"{k} {_number(v)}" for k, v in machine.items()
                                              if k not in ("process_wall_s", "peak_rss_mb")))
    s = result["settings"]
    lines.append(f"medians of {s['repeats']} runs in fresh processes after {s['warmup_runs']} warm-up; "
                 "'of limit' is the share of this machine's limit reached (time: limit / figure)")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The same rows as a Markdown table (for the README and docs/speed.md), then the machine."""
    m = result["machine"]
    body = [HEADERS] + [[c.replace("|", "/") for c in row] for row in rows(result)]
    lines = ["| " + " | ".join(row) + " |" for row in body]
    lines.insert(1, "|" + "|".join("---:" if i in (2, 4, 6, 8) else "---" for i in range(len(HEADERS))) + "|")
    return "\n".join(lines + ["", f"{m['cpu']}, {m['cpus_usable']} cores, torch {m['torch']}; load average "
                                   f"{_load(m.get('load_average_start'))} at the start, "
                                   f"{_load(m.get('load_average_end'))} at the end"])


def main(argv=None) -> int:
    """`python -m benchmarks.report RUN.json [--markdown]`: the table of a saved run."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__.split(": ", 1)[1])
    parser.add_argument("run", type=Path, help="the --json FILE of a `python -m benchmarks` run")
    parser.add_argument("--markdown", action="store_true", help="as a Markdown table")
    args = parser.parse_args(argv)
    try:
        result = json.loads(args.run.read_text())
    except (OSError, ValueError) as e:
        parser.error(f"{args.run}: {e}")
    print(markdown(result) if args.markdown else text(result))
    return 0


def _load(values) -> str:
    return "?" if not values else "/".join(f"{v:.2f}" for v in values)


def _number(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) >= 0.01 else f"{x:.2g}"


if __name__ == "__main__":
    raise SystemExit(main())
