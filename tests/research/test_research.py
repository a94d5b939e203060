"""The studies in research/ still run against the code they study, as a user would run them.

`docs/results.md` quotes their figures with the commands that reproduce them, so a change that
breaks one breaks a claim. They train and sample, so they are marked slow; `.ci/run` runs them.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "research").glob("*/*.py"))
BUNDLED = ROOT / "checkpoints"

pytestmark = pytest.mark.slow


def run_script(path: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / path), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)


def test_every_study_has_a_readme():
    studies = [p for p in (ROOT / "research").iterdir() if p.is_dir()]
    assert studies and all((p / "README.md").is_file() for p in studies)


@pytest.mark.parametrize("path", SCRIPTS)
def test_every_script_explains_itself(path):
    result = run_script(path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_seed_sweep_trains_each_seed_and_confirms_the_best(goldberg_dir, tmp_path):
    out = tmp_path / "sweep"
    result = run_script("research/seed_sweep/seed_sweep.py", "--vae", BUNDLED / "vae.pt", "--midi-dir", goldberg_dir,
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


def test_plot_codebook_curve_draws_the_runs(tmp_path):
    for k, (f1, ppl) in {16: (0.19, 12.9), 64: (0.22, 39.2), 256: (0.31, 135.0), 1024: (0.46, 513.5)}.items():
        summary = {"note_f1": f1, "onset_f1": f1 + 0.1, "cell_f1": f1 + 0.3, "perplexity": ppl}
        (tmp_path / f"k{k}-local.json").write_text(json.dumps({"summary": summary}))
    out = tmp_path / "curve.png"
    script = "research/codebook_curve/plot_codebook_curve.py"
    result = run_script(script, tmp_path, out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "k64-local.json").unlink()
    missing = run_script(script, tmp_path, out)
    assert missing.returncode == 2 and "k64-local.json" in missing.stderr
