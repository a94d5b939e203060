"""Robustness of training: a run killed at any moment resumes losing at most one evaluation
interval, a checkpoint is never half-written, and a bad config stops before any work is done.

The kills are real: the training runs in a child process that receives SIGKILL, from the test
while it trains, or from itself in the middle of writing a checkpoint.
"""
import csv
import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bachsformer.checkpoints import load_checkpoint
from bachsformer.train.run_folder import RunFolder
from bachsformer.train.vae import VAERecipe
from bachsformer.pair import load_vae
from conftest import TINY_GPT, TINY_VAE
from ludovico_vae.files import TEMPORARY_PREFIX

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import train_transformer  # noqa: E402
import train_vq_vae  # noqa: E402

EPOCHS, EVAL_EVERY = 20, 5

CHILD = """
import io, os, signal, sys
sys.path.insert(0, {root!r})
import torch
die_at = int(os.environ.get("DIE_IN_SAVE", "0"))
if die_at:  # the die_at-th torch.save writes half its bytes, then the process is killed
    real_save, calls = torch.save, []
    def dying_save(state, f):
        calls.append(f)
        if len(calls) < die_at:
            return real_save(state, f)
        buffer = io.BytesIO()
        real_save(state, buffer)
        f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = dying_save
import train_vq_vae
sys.exit(train_vq_vae.main(sys.argv[1:]))
"""


@pytest.fixture
def empty_config(tmp_path) -> Path:
    """No YAML file: the dataclass defaults and the overrides alone, whatever configs/ says."""
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path


def _vae_args(corpus, out_dir, config, *extra) -> list:
    return ["--config", str(config), "--midi-dir", str(corpus), "--data.held_out=[p3]",
            f"--data.cache_dir={out_dir.parent / 'cache'}", f"--train.out_dir={out_dir}",
            f"--train.epochs={EPOCHS}", f"--train.eval_every={EVAL_EVERY}", "--train.batch_size=16",
            "--train.monitor_pieces=0", "--train.threads=1", "--no-progress", *TINY_VAE, *extra]


def _child(args, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-u", "-c", CHILD.format(root=str(ROOT)), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def _assert_finished_like_an_unbroken_run(out: Path, epochs: int = EPOCHS) -> None:
    last = load_checkpoint(out / "last.pt", "vae")
    steps_per_epoch = last["step"] // last["epoch"]
    assert last["epoch"] == epochs and last["step"] == epochs * steps_per_epoch
    model, _, best = load_vae(out / "best.pt")
    assert best["epoch"] % EVAL_EVERY == 0 and not model.training
    with open(out / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(EVAL_EVERY, epochs + 1, EVAL_EVERY))
    assert not list(out.glob(f"{TEMPORARY_PREFIX}*"))


def test_a_run_killed_mid_epoch_resumes_and_finishes_as_if_unbroken(tiny_corpus, tmp_path, empty_config, capsys):
    out = tmp_path / "run"
    child = _child(_vae_args(tiny_corpus, out, empty_config))
    printed = []
    for line in child.stdout:
        printed.append(line)
        if line.startswith(f"epoch {EVAL_EVERY}:"):  # a checkpoint is written; the next epoch starts
            child.send_signal(signal.SIGKILL)
            break
    assert child.wait(timeout=60) == -signal.SIGKILL, "".join(printed) + child.stderr.read()
    child.stdout.close()
    child.stderr.close()
    killed_at = load_checkpoint(out / "last.pt", "vae")
    assert EVAL_EVERY <= killed_at["epoch"] < EPOCHS  # at most one evaluation interval was lost

    assert train_vq_vae.main(_vae_args(tiny_corpus, out, empty_config, "--resume")) == 0
    assert f"resumed {out / 'last.pt'} at epoch {killed_at['epoch']}" in capsys.readouterr().out
    _assert_finished_like_an_unbroken_run(out)


def test_a_kill_while_a_checkpoint_is_written_leaves_the_previous_one(tiny_corpus, tmp_path, empty_config):
    out = tmp_path / "run"
    # saves: last and best at epoch 5 (the first result is always the best), last at epoch 10
    short = ["--train.epochs=10"]
    child = _child(_vae_args(tiny_corpus, out, empty_config, *short), DIE_IN_SAVE="3")
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    half_written = list(out.glob(f"{TEMPORARY_PREFIX}last.pt-*"))
    assert len(half_written) == 1  # the kill did land in the middle of writing `last`
    with pytest.raises(Exception):
        torch.load(half_written[0], weights_only=True)
    assert load_checkpoint(out / "last.pt", "vae")["epoch"] == EVAL_EVERY

    assert train_vq_vae.main(_vae_args(tiny_corpus, out, empty_config, *short, "--resume")) == 0
    _assert_finished_like_an_unbroken_run(out, epochs=10)


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path / "run", resume=False, config=VAERecipe())
    folder.save({"kind": "vae", "epoch": 1}, improved=True)
    metrics = folder.metrics({"loss": ["loss"]})
    metrics.append({"step": 1, "loss": 0.5})
    before = {p.name: p.read_bytes() for p in folder.dir.iterdir()}

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left") as caught:
        folder.save({"kind": "vae", "epoch": 2}, improved=True)
    assert caught.value.filename == str(folder.last)
    with pytest.raises(OSError, match="No space left"):
        metrics.append({"step": 2, "loss": 0.4})
    assert {p.name: p.read_bytes() for p in folder.dir.iterdir()} == before


def test_resuming_with_another_grid_or_model_is_one_line(tiny_corpus, tmp_path, empty_config, capsys):
    out = tmp_path / "run"
    assert train_vq_vae.main(_vae_args(tiny_corpus, out, empty_config, "--train.epochs=1")) == 0
    capsys.readouterr()
    for extra, words in ((["--grid.steps_per_quarter=48"], "another grid (steps_per_quarter 24 there, 48 here)"),
                         (["--model.codebook_size=16"], "another model_config (codebook_size 8 there, 16 here)")):
        assert train_vq_vae.main(_vae_args(tiny_corpus, out, empty_config, "--resume", *extra)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and str(out / "last.pt") in err


VAE_CONFIGS = [  # an override, and what the one-line error must say
    ("--train.lrr=0.1", ["train.lrr", "unknown key"]),
    ("--train.lr=fast", ["train.lr", "expected a number"]),
    ("--train.epochs=2.5", ["train.epochs", "expected an integer"]),
    ("--train.lr=-3e-4", ["train.lr", "must be positive"]),
    ("--train.batch_size=0", ["train.batch_size", "at least 1"]),
    ("--grid.steps_per_quarter=12", ["grid.steps_per_quarter=12", "divisible"]),
    ("--model.codebook_size=1", ["model.codebook_size", "at least 2"]),
]


@pytest.mark.parametrize("override, words", VAE_CONFIGS, ids=[o for o, _ in VAE_CONFIGS])
def test_a_bad_vae_config_stops_before_any_work(tiny_corpus, tmp_path, empty_config, capsys, override, words):
    out = tmp_path / "run"
    assert train_vq_vae.main(_vae_args(tiny_corpus, out, empty_config, override)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not out.exists()


GPT_CONFIGS = [
    ("--model.block_size=100", ["model.block_size", "100 is not a multiple of the 16 codes of a frame"]),
    ("--model.block_size=96", ["model.block_size", "disagrees with data.frames_per_window=4"]),
    ("--model.n_embd=15", ["model.n_embd: n_embd=15 must be divisible by n_head=2"]),
    ("--model.n_embd=30", ["model.n_embd: n_embd // n_head = 15 must be even"]),
    ("--train.lr=-1", ["train.lr", "must be positive"]),
    ("--data.frames_per_window=0", ["data.frames_per_window", "at least 1"]),
    ("--data.transpositions=[1, 2]", ["data.transpositions", "must include 0"]),
    ("--model.dropout=yes", ["model.dropout", "expected a number"]),
]


@pytest.mark.parametrize("override, words", GPT_CONFIGS, ids=[o for o, _ in GPT_CONFIGS])
def test_a_bad_transformer_config_stops_before_any_work(tiny_corpus, tiny_vae, tmp_path, empty_config, capsys,
                                                        override, words):
    out = tmp_path / "run"
    argv = ["--config", str(empty_config), "--midi-dir", str(tiny_corpus), "--vae", str(tiny_vae),
            "--data.held_out=[p3]", f"--data.cache_dir={tmp_path / 'cache'}", f"--train.out_dir={out}",
            "--no-progress", *TINY_GPT, override]
    assert train_transformer.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not out.exists() and not (tmp_path / "cache").exists()
