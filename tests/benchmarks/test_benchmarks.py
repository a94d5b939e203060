"""The benchmark suite runs: every benchmark at tiny sizes, once, through `python -m benchmarks`.

Speed itself is never tested (the machines are shared and noisy); what is checked is that each
benchmark runs in its own process and reports every figure as a positive number, with its peak
RSS, wall time and the machine it ran on.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # benchmarks/ is not an installed package
from benchmarks.__main__ import BENCHMARKS, main, medians  # noqa: E402

pytestmark = pytest.mark.slow  # each benchmark runs as its own process: `.ci/run` runs them

FIGURES = {  # figures each benchmark must report, besides process_wall_s and peak_rss_mb
    "roofline": {f"{what}_{t}_threads" for what in ("fp32_gflops", "bf16_gflops", "read_gb_per_s") for t in (1, 2)}
    | {"sampling_chain_us", "import_torch_s"},
    "frames": {"cold_s", "warm_s", "to_frames_s", "to_midi_s", "round_trip_s"},
    "vae_training": {"samples_per_s", "median_step_ms"},
    "transformer_training": {"tokens_per_s", "cpu_tokens_per_s", "s_per_step"},
    "sampling": {f"batch{b}_len{n}_tokens_per_s" for b in (1, 32) for n in (32, 64)},
    "generate": {"music_s"},
    "editing": {"regenerate_4_bars_s", "harmonise_16_bars_s"},
}


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory) -> tuple:
    """`python -m benchmarks --tiny --repeats 1 --json FILE`: the JSON in FILE, the table on stdout, stderr."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--tiny", "--repeats", "1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout, done.stderr


def test_the_suite_names_every_benchmark():
    assert set(FIGURES) == set(BENCHMARKS)


def test_the_table_sets_each_figure_against_this_machine_and_the_original(tiny_suite):
    written, table, _ = tiny_suite
    assert written["settings"] == {"repeats": 1, "warmup_runs": 0, "tiny": True, "threads": 1, "corpus": None}
    assert written["machine"]["cpu_count"] >= 1 and written["machine"]["torch"]
    lines = {tuple(line.split()[:2]): line for line in table.splitlines() if line.strip()}
    vae = written["benchmarks"]["vae_training"]
    peak = written["benchmarks"]["roofline"]["median"]["fp32_gflops_1_threads"]
    limit = peak * 1e9 / vae["info"]["flops_per_frame"]
    share = vae["median"]["samples_per_s"] / limit
    row = lines[("vae_training", "samples_per_s")]
    assert f"{share:.0%}" in row and "(fp32 arithmetic)" in row and f"{vae['median']['samples_per_s'] / 263:.1f}x" in row
    row = lines[("generate", "process_wall_s")]
    assert "(import torch)" in row and "13.8" in row
    assert "machine:" in table and "load average" in table and "roofline: fp32_gflops_1_threads" in table


@pytest.mark.parametrize("name", list(FIGURES))
def test_each_benchmark_reports_positive_figures(tiny_suite, name):
    result = tiny_suite[0]["benchmarks"][name]
    assert "error" not in result, result.get("error")
    assert set(result["median"]) >= FIGURES[name] | {"process_wall_s", "peak_rss_mb"}
    for key, value in result["median"].items():
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    assert len(result["runs"]) == 1 and result["runs"][0] == result["median"]
    assert result["peak_rss_mb"] == result["median"]["peak_rss_mb"]
    assert result["command"] == f"python -m benchmarks --only {name} --tiny"
    assert f"benchmarks: {name} run 1/1" in tiny_suite[2]


def test_medians_are_per_figure_over_the_runs():
    runs = [{"a": 1.0, "b": 10.0}, {"a": 3.0, "b": 30.0}, {"a": 2.0}]
    assert medians(runs) == {"a": 2.0}
    assert medians(runs[:2]) == {"a": 2.0, "b": 20.0}


@pytest.mark.parametrize("argv, fragment", [
    (["--only", "frames,nonsense"], "unknown benchmark nonsense"),
    (["--repeats", "0"], "at least 1"),
    (["--threads", "two"], "at least 1"),
])
def test_bad_options_are_usage_errors(argv, fragment, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert fragment in capsys.readouterr().err


def test_the_roofline_counts_every_product_of_a_step():
    from benchmarks.sampling import step_flops_per_token
    from mingpt.model import GPTConfig

    cfg = GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=2, n_kv_head=1, n_embd=4)
    # q, k, v 4 x 8; scores and values 2 heads x 2 x 2 x 4; projection 4 x 4; MLP 2 x 4 x 16; head 4 x 10
    assert step_flops_per_token(cfg) == 2 * (32 + 32 + 16 + 128 + 40)
    assert step_flops_per_token(GPTConfig(**{**cfg.to_dict(), "n_layer": 2})) == 2 * (2 * 208 + 40)


def test_the_batch1_roofline_streams_the_weights_the_cached_decoder_multiplies():
    from benchmarks.sampling import step_weight_shapes
    from mingpt.model import GPT, GPTConfig, KVCacheDecoder

    cfg = GPTConfig(vocab_size=10, block_size=4, n_layer=2, n_head=2, n_kv_head=1, n_embd=4)
    decoder = KVCacheDecoder(GPT(cfg), batch_size=1)
    used = [tuple(w.shape) for layer in decoder.layers for w in (layer.w_qkv, layer.w_o, layer.w_fc, layer.w_proj)]
    assert step_weight_shapes(cfg) == used + [tuple(decoder.w_head.shape)]


def test_limits_take_the_slower_of_arithmetic_and_memory_and_the_threads_measured():
    from benchmarks.report import limit

    machine = {"fp32_gflops_1_threads": 10.0, "fp32_gflops_2_threads": 20.0, "read_gb_per_s_1_threads": 1.0,
               "read_gb_per_s_2_threads": 100.0, "sampling_chain_us": 250.0, "import_torch_s": 1.5,
               "bf16_gflops_1_threads": 40.0}
    info = {"step_flops_per_token": 1e6, "step_weight_bytes": 4e6, "kv_cache_bytes_per_sequence": 1e6}
    sampling = {"torch_threads": 1, "info": info}
    # one thread: 32 tokens' arithmetic 3.2 ms, the 36 MB read 36 ms -> memory
    assert limit("sampling", "batch32_len2048_tokens_per_s", sampling, machine, 1) == (32 / 0.036, "memory")
    # two threads: arithmetic 1.6 ms, reading 0.36 ms -> arithmetic
    best, how = limit("sampling", "batch32_len2048_2_threads_tokens_per_s", sampling, machine, 2)
    assert how == "arithmetic" and abs(best - 20_000) < 1e-6
    assert limit("sampling", "batch1_len2048_tokens_per_s", sampling, machine, 1) == (4000.0, "weight products alone")
    training = {"info": {"flops_per_token": 1e6}}
    assert limit("transformer_training", "bf16_tokens_per_s", training, machine, 1) == (40_000.0, "bf16 arithmetic")
    assert limit("generate", "process_wall_s", {}, machine, 1) == (1.5, "import torch")
    assert limit("frames", "cold_s", {}, machine, 1) == (None, "")


def test_a_saved_run_prints_again_as_markdown(tiny_suite, tmp_path, capsys):
    from benchmarks.report import main as report_main

    written, table, _ = tiny_suite
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(written))
    assert report_main([str(saved)]) == 0
    assert capsys.readouterr().out.strip() == table.strip()
    assert report_main([str(saved), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| benchmark | figure | median |") and lines[1].startswith("|---|")
    generate = next(line for line in lines if line.startswith("| generate | process_wall_s |"))
    assert "(import torch)" in generate and "| 13.8 |" in generate
    with pytest.raises(SystemExit) as stop:
        report_main([str(tmp_path / "missing.json")])
    assert stop.value.code == 2
