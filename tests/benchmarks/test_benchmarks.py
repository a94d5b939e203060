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
    "frames": {"cold_s", "warm_s", "to_frames_s", "to_midi_s", "round_trip_s"},
    "vae_training": {"samples_per_s", "median_step_ms"},
    "transformer_training": {"tokens_per_s", "cpu_tokens_per_s", "s_per_step"},
    "sampling": {f"batch{b}_len{n}_tokens_per_s" for b in (1, 32) for n in (32, 64)},
    "generate": {"music_s"},
}


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory) -> tuple:
    """`python -m benchmarks --tiny --repeats 1 --json FILE`: its JSON on stdout and in FILE."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--tiny", "--repeats", "1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), json.loads(out.read_text()), done.stderr


def test_the_suite_names_every_benchmark():
    assert set(FIGURES) == set(BENCHMARKS)


def test_stdout_and_json_file_agree(tiny_suite):
    printed, written, _ = tiny_suite
    assert printed == written
    assert written["settings"] == {"repeats": 1, "warmup_runs": 0, "tiny": True, "threads": None, "corpus": None}
    assert written["machine"]["cpu_count"] >= 1 and written["machine"]["torch"]


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
