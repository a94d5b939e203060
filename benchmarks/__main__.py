"""`python -m benchmarks`: every speed figure of the project from one command, each beside the
limit of the machine it runs on and the original implementation's figure.

    python -m benchmarks [--only NAME[,NAME]] [--repeats N] [--threads N] [--tiny] [--json FILE]

    roofline              this machine's fp32 and bf16 peak, memory read rate, `import torch`
    frames                corpus -> frames (cold, and warm from the cache) -> MIDI, seconds
    vae_training          VQ-VAE training, frames per second (the bundled VAE), fp32 and bf16
    transformer_training  transformer training, tokens per second (the bundled GPT), fp32 and bf16
    sampling              sampling, tokens per second at batch 1 and 32, 2,048 and 8,192 tokens
    generate              `python generate.py` as a whole process, seconds
    editing               regenerating 4 bars and harmonising 16, in process, seconds

Every run is a fresh process, so imports are cold and its peak RSS (`ru_maxrss` as `wait4`
reports it for that child alone) is its own. After `--warmup-runs` untimed runs (default 1; 0
with --tiny) come `--repeats` timed runs (default 3); each figure is reported as the median over
them, beside the runs themselves, the process's wall time and peak RSS, the torch threads used
and the machine (cores, torch version, load average before and after each benchmark). Every
benchmark runs on `--threads` threads (default 1: figures per thread, comparable between
machines); the roofline and batch-32 sampling also measure two. These machines are shared:
compare runs made side by side, and read the load average. `--tiny` runs every benchmark at toy
sizes: it checks they work (tests/benchmarks) and measures nothing.

stdout gets the table (`benchmarks.report`): median, range of the runs, the limit here and the
share of it reached, the original's figure and the ratio to it. `--json FILE` writes everything,
runs and settings included; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = {  # name: (module, what one run measures)
    "roofline": ("benchmarks.roofline", "this machine's peak rates, the limits of the rest"),
    "frames": ("benchmarks.frames", "corpus -> frames -> MIDI, seconds"),
    "vae_training": ("benchmarks.vae_training", "VQ-VAE training throughput, frames per second"),
    "transformer_training": ("benchmarks.transformer_training", "transformer training throughput, tokens per second"),
    "sampling": ("benchmarks.sampling", "sampling throughput, tokens per second"),
    "generate": ("benchmarks.generate_script", "python generate.py, whole process"),
    "editing": ("benchmarks.editing", "regenerating 4 bars of 32, harmonising 16 bars, in process"),
}
WHOLE_PROCESS = {"generate"}  # timed as the user's own command, not through a child of this runner


class BenchmarkError(RuntimeError):
    """A benchmark process that failed; the message ends with its last line of stderr."""


def run_process(argv: list, env: dict | None = None, cwd=REPO) -> dict:
    """Run `argv` to its end: {"returncode", "stdout", "stderr", "wall_s", "peak_rss_mb"}.

    The peak RSS is the child's own `ru_maxrss` from `wait4` (None where the platform has no
    `wait4`); `getrusage(RUSAGE_CHILDREN)` would give the largest of all children so far.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        peak = None
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)  # bytes there, KiB on Linux
        else:
            proc.wait()
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return {"returncode": proc.returncode, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace"), "wall_s": wall, "peak_rss_mb": peak}


def _failure(name: str, done: dict) -> BenchmarkError:
    lines = done["stderr"].strip().splitlines() or ["(no output)"]
    return BenchmarkError(f"{name}: exited with code {done['returncode']}: {lines[-1]}")


def _env(threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return env


def run_once(name: str, tiny: bool, threads: int | None, corpus=None, run: int = 0) -> dict:
    """One run (number `run`) of benchmark `name` in a fresh process: {"figures", "info"}.

    Figures always include the process's wall time and (where measurable) its peak RSS.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        if name in WHOLE_PROCESS:
            module = importlib.import_module(BENCHMARKS[name][0])
            done = run_process(module.command(tmp, tiny, seed=run), _env(threads))
            if done["returncode"]:
                raise _failure(name, done)
            result = {"figures": module.music_seconds(tmp),
                      "info": {"torch_threads": threads or "sampling 1 (generate's default), the rest torch's default",
                               "seed": run}}
        else:
            argv = [sys.executable, "-m", "benchmarks", "--child", name] + (["--tiny"] if tiny else [])
            argv += (["--threads", str(threads)] if threads else []) + (["--corpus", str(corpus)] if corpus and name == "frames" else [])
            done = run_process(argv, _env(threads))
            if done["returncode"]:
                raise _failure(name, done)
            result = json.loads(done["stdout"].strip().splitlines()[-1])
    result["figures"]["process_wall_s"] = done["wall_s"]
    if done["peak_rss_mb"] is not None:
        result["figures"]["peak_rss_mb"] = done["peak_rss_mb"]
    return result


def medians(runs: list) -> dict:
    """The median of each figure over runs (figures every run has, in the first run's order)."""
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def run_benchmark(name: str, repeats: int, warmup_runs: int, tiny: bool, threads: int | None,
                  corpus=None, log=print) -> dict:
    """Warm-up runs, then `repeats` timed runs of one benchmark; medians beside every run."""
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    runs, info = [], {}
    for i in range(warmup_runs + repeats):
        label = "warm-up" if i < warmup_runs else f"run {i - warmup_runs + 1}/{repeats}"
        t0 = time.perf_counter()
        result = run_once(name, tiny, threads, corpus, run=i)
        log(f"benchmarks: {name} {label}: {time.perf_counter() - t0:.1f} s")
        if i >= warmup_runs:
            runs.append(result["figures"])
            info = info or result["info"]
    command = f"python -m benchmarks --only {name}" + (" --tiny" if tiny else "")
    return {"what": BENCHMARKS[name][1], "command": command, "median": medians(runs), "runs": runs,
            "peak_rss_mb": max((r["peak_rss_mb"] for r in runs if "peak_rss_mb" in r), default=None),
            "torch_threads": info.pop("torch_threads", None), "info": info,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    def version(package):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": _cpu_model(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": version("torch"), "numpy": version("numpy"),
            "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def run_suite(names: list, repeats: int = 3, warmup_runs: int = 1, tiny: bool = False, threads: int | None = None,
              corpus=None, log=print) -> dict:
    """Every benchmark in `names`; a failed one is reported under "error" and the rest still run."""
    result = {"machine": machine(),
              "settings": {"repeats": repeats, "warmup_runs": warmup_runs, "tiny": tiny, "threads": threads,
                           "corpus": None if corpus is None else str(corpus)},
              "benchmarks": {}}
    for name in names:
        try:
            result["benchmarks"][name] = run_benchmark(name, repeats, warmup_runs, tiny, threads, corpus, log)
        except (BenchmarkError, json.JSONDecodeError, IndexError, RuntimeError) as e:
            log(f"benchmarks: {name} failed: {e}")
            result["benchmarks"][name] = {"what": BENCHMARKS[name][1], "error": str(e)}
    result["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return result


def child(name: str, tiny: bool, threads: int | None, corpus) -> None:
    """What one fresh process does: one run of the benchmark, printed as one JSON line."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    options = {"corpus": corpus} if corpus else {}
    result = importlib.import_module(BENCHMARKS[name][0]).measure(tiny=tiny, threads=threads, **options)
    print(json.dumps(result))


def _names(text: str) -> list:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown benchmark {', '.join(unknown) or repr(text)}; "
                                         f"choose from {', '.join(BENCHMARKS)}")
    return names


def _at_least(low: int):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {low}, got {text!r}")
        return value
    return check


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0],
                                     epilog=f"benchmarks: {', '.join(BENCHMARKS)}")
    parser.add_argument("--only", type=_names, default=list(BENCHMARKS), metavar="NAME[,NAME]",
                        help="run only these benchmarks (default: all)")
    parser.add_argument("--repeats", type=_at_least(1), default=3, help="timed runs of each (default: 3)")
    parser.add_argument("--warmup-runs", type=_at_least(0), help="untimed runs first (default: 1, 0 with --tiny)")
    parser.add_argument("--threads", type=_at_least(1), default=1,
                        help="torch threads (and OMP/MKL) in every run (default: %(default)s, figures per thread)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks that each benchmark runs")
    parser.add_argument("--corpus", type=Path, help="MIDI folder for `frames` (default: the Goldberg files)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON here")
    parser.add_argument("--child", choices=list(BENCHMARKS), help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    corpus = args.corpus.resolve() if args.corpus else None
    if args.child:
        child(args.child, args.tiny, args.threads, corpus)
        return 0
    if args.json and not args.json.parent.is_dir():
        build_parser().error(f"--json {args.json}: folder {args.json.parent} does not exist")
    warmup_runs = args.warmup_runs if args.warmup_runs is not None else (0 if args.tiny else 1)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    result = run_suite(args.only, args.repeats, warmup_runs, args.tiny, args.threads, corpus, log)
    print(report.text(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if any("error" in b for b in result["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
