"""The research scripts in experiments/ still run against the code they study.

They are not part of the product, but README quotes their figures with the commands that
reproduce them, so a change that breaks one breaks a claim. Each is run as a user would.
"""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bachsformer.generation import Bachsformer

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "experiments").glob("*.py"))
BUNDLED = ROOT / "checkpoints"


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / name), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def needs_bundle():
    if not (BUNDLED / "vae.pt").exists() or not (BUNDLED / "transformer.pt").exists():
        pytest.skip(f"no bundled weights in {BUNDLED}")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_explains_itself(name):
    result = run_script(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_sampling_study_scores_the_bundled_pair(goldberg_dir):
    needs_bundle()
    result = run_script("sampling_study.py", "top_p:1:1", "--seeds", "0", "--bars", "2",
                        "--reference", goldberg_dir, "--note-cost", "none")
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1].split()
    assert row[0] == "top_p:1:1"
    figures = [float(x) for x in row[1:]]  # pitch class, duration, scale, copied, bass
    assert len(figures) == 5 and all(0 <= x <= 1 for x in figures)
    assert figures[0] > 0.5, "the bundled pair writes music in the corpus' key"
    bad = run_script("sampling_study.py", "top_p:1:1", "--note-cost", "cheap")
    assert bad.returncode == 2 and "--note-cost" in bad.stderr


@pytest.mark.parametrize("score", ["logp", "margin"])
def test_rerank_study_keeps_the_best_scored_candidate(goldberg_dir, score):
    needs_bundle()
    result = run_script("rerank_study.py", "--score", score, "--candidates", "2", "--seeds", "0",
                        "--bars", "2", "--reference", goldberg_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("seed 0: rank correlation with " + score)
    first, best = ([float(x) for x in re.findall(r"-?\d+\.\d{3}", line)] for line in lines[1:3])
    assert len(first) == len(best) == 5  # four medians, then the mean score
    assert all(0 <= x <= 1 for x in first[:4] + best[:4])
    assert best[4] >= first[4], "the best of each pair scores at least as well as its first candidate"


def test_seed_sweep_trains_each_seed_and_confirms_the_best(goldberg_dir, tmp_path):
    needs_bundle()
    out = tmp_path / "sweep"
    result = run_script("seed_sweep.py", "--vae", BUNDLED / "vae.pt", "--midi-dir", goldberg_dir,
                        "--seeds", 1, 2, "--parallel", 2, "--steps", 2, "--score-seeds", 0,
                        "--confirm-seeds", 1, "--confirm-top", 1, "--bars", 2, "--out", out, "--",
                        "--train.max_steps=2", "--train.eval_every=2", "--train.batch_size=4", "--model.n_embd=16")
    assert result.returncode == 0, result.stderr
    with open(out / "scores.csv") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["run", "step", "mean", "seed_0", "seed_1"]
    assert sorted(row[0] for row in rows) == ["seed1", "seed2"] and all(row[1] == "2" for row in rows)
    confirmed, other = rows
    assert len(confirmed) == 5 and len(other) == 4, "only the best of the first round is scored again"
    assert float(confirmed[3]) >= float(other[3]), "the first round's best is the one confirmed"
    assert float(confirmed[2]) == pytest.approx((float(confirmed[3]) + float(confirmed[4])) / 2, abs=6e-4)
    assert all(0 < float(x) <= 1 for row in rows for x in row[2:])
    assert (out / "seed1" / "step-000002" / "transformer.pt").exists()


def test_tonal_profile_reads_a_folder_of_samples(goldberg_dir, tmp_path):
    needs_bundle()
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, piece in enumerate(Bachsformer.from_checkpoints(BUNDLED, "cpu").generate(bars=8, seed=0, num_samples=2)):
        piece.midi.write(str(folder / f"s{i}.mid"))
    result = run_script("tonal_profile.py", "--reference", goldberg_dir, folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    section = next(i for i, line in enumerate(lines) if line.startswith("notes below G3, by eighth"))
    bass = [line for line in lines[section:] if line.startswith(str(folder)[-23:])]
    assert bass, result.stdout
    shares = [float(x) for x in re.findall(r"\d\.\d{3}", bass[0])]
    assert len(shares) == 8 and all(0 <= x <= 1 for x in shares), "the bass share of each eighth"


def test_plot_codebook_curve_draws_the_runs(tmp_path):
    for k, (f1, ppl) in {16: (0.19, 12.9), 64: (0.22, 39.2), 256: (0.31, 135.0), 1024: (0.46, 513.5)}.items():
        summary = {"note_f1": f1, "onset_f1": f1 + 0.1, "cell_f1": f1 + 0.3, "perplexity": ppl}
        (tmp_path / f"k{k}-local.json").write_text(json.dumps({"summary": summary}))
    out = tmp_path / "curve.png"
    result = run_script("plot_codebook_curve.py", tmp_path, out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "k64-local.json").unlink()
    missing = run_script("plot_codebook_curve.py", tmp_path, out)
    assert missing.returncode == 2 and "k64-local.json" in missing.stderr


def test_code_cycle_gives_most_codes_back(goldberg_dir):
    needs_bundle()
    result = run_script("code_cycle.py", "--vae", BUNDLED / "vae.pt", "--midi-dir", goldberg_dir, "--pieces", "988-v10")
    assert result.returncode == 0, result.stderr
    share = float(re.search(r": ([0-9.]+) of the codes come back after decode -> encode \(988-v10\)", result.stdout).group(1))
    assert 0.5 < share <= 1.0, "decoding then encoding a piece keeps most of its codes"
