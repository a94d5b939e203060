"""Training the VQ-VAE end to end on a tiny corpus: records, checkpoints, exact resume, errors."""
import csv
import json

import numpy as np
import pytest
import torch

from bachsformer.train.config import ConfigError, build_config
from bachsformer.evaluate.commands import main as evaluate_main
from bachsformer.checkpoints import load_checkpoint
from bachsformer.errors import CheckpointError
from bachsformer.pair import load_vae
from bachsformer.train.run_folder import export_weights
from bachsformer.train.vae import (VAERecipe, mix_registers, register_mix_draws, shift_in_time,
                                      time_shift_draws, train_vae)
from conftest import TINY_VAE


def _config(corpus, out_dir, *extra):
    return build_config(VAERecipe, overrides=[
        f"--data.midi_dir={corpus}", "--data.held_out=[p3]", f"--data.cache_dir={out_dir.parent / 'cache'}",
        f"--train.out_dir={out_dir}", "--train.epochs=2", "--train.eval_every=1", "--train.batch_size=16",
        "--train.warmup_steps=2", "--train.monitor_pieces=1", "--train.threads=1", *TINY_VAE, *extra])


def _quiet(*_):
    pass


def test_a_run_records_metrics_plots_and_checkpoints(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    row = train_vae(_config(tiny_corpus, out), log=_quiet, progress=False)
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.csv", "metrics.png", "last.pt", "best.pt"}
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert 0 <= float(rows[-1]["val_note_f1"]) <= 1 and row["epoch"] == 2
    state = load_checkpoint(out / "last.pt", "vae")
    assert state["epoch"] == 2 and state["held_out"] == ["p3"]
    assert state["grid"]["steps_per_quarter"] == 24 and state["model_config"]["codebook_size"] == 8
    assert len(state["corpus_hash"]) == 64


@pytest.mark.parametrize("extra", [[], ["--train.register_mix=0.5"], ["--train.time_shift=0.5"]])
def test_resume_after_an_interruption_continues_exactly(tiny_corpus, tmp_path, extra):
    straight = tmp_path / "straight"
    train_vae(_config(tiny_corpus, straight, *extra), log=_quiet, progress=False)

    interrupted = tmp_path / "interrupted"
    steps_per_epoch = load_checkpoint(straight / "last.pt")["step"] // 2

    def stop_in_the_second_epoch(trainer):
        if trainer.step == steps_per_epoch + 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_vae(_config(tiny_corpus, interrupted, *extra), log=_quiet, progress=False,
                  on_step=stop_in_the_second_epoch)
    assert load_checkpoint(interrupted / "last.pt")["epoch"] == 1
    train_vae(_config(tiny_corpus, interrupted, *extra), resume=True, log=_quiet, progress=False)

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with open(interrupted / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


def test_register_mix_takes_the_keys_below_the_split_from_the_partner():
    frames, partners = torch.zeros(3, 2, 88, 4), torch.ones(3, 2, 88, 4)
    mixed = mix_registers(frames, partners, torch.tensor([0, 22, 60]))
    assert mixed[0].sum() == 0  # split 0: left as it is
    assert (mixed[1, :, :22] == 1).all() and (mixed[1, :, 22:] == 0).all()
    assert (mixed[2, :, :60] == 1).all() and (mixed[2, :, 60:] == 0).all()


def test_register_mix_partners_come_from_the_same_piece():
    lengths = torch.tensor([5, 3, 7])  # three pieces: frames 0-4, 5-7, 8-14
    piece_length = torch.repeat_interleave(lengths, lengths)
    piece_start = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    order = torch.arange(15).repeat(200)
    u = np.random.default_rng(0).random((len(order), 3), dtype=np.float32)
    partners, splits = register_mix_draws(u, order, piece_start, piece_length, share=0.25, n_keys=88)
    assert (piece_start[partners] == piece_start[order]).all()
    assert set(partners[order == 9].tolist()) == set(range(8, 15))  # every frame of its piece, in time
    mixed = splits > 0
    assert 0.2 < mixed.float().mean() < 0.3
    assert splits[mixed].min() >= 22 and splits[mixed].max() < 66


def test_time_shift_reads_a_frame_late_into_the_next():
    steps = 24
    roll = torch.rand(1, 2, 88, 3 * steps)  # three frames of one piece, as one roll
    frames = roll.reshape(1, 2, 88, 3, steps).permute(3, 0, 1, 2, 4).reshape(3, 2, 88, steps)
    shifted = shift_in_time(frames[:2], frames[1:], torch.tensor([0, 7]))
    assert torch.equal(shifted[0], frames[0]), "offset 0 leaves a frame as it is"
    assert torch.equal(shifted[1], roll[0, :, :, steps + 7:2 * steps + 7]), "the roll, 7 cells later"


def test_time_shift_draws_offsets_within_a_frame():
    u = np.random.default_rng(0).random((4000, 2), dtype=np.float32)
    offsets = time_shift_draws(u, share=0.25, steps=24)
    moved = offsets > 0
    assert 0.2 < moved.float().mean() < 0.3
    assert set(offsets[moved].tolist()) == set(range(1, 24))


@pytest.mark.parametrize("option", ["register_mix", "time_shift"])
@pytest.mark.parametrize("bad", ["-0.1", "1.5"])
def test_augmentation_shares_must_be_shares(tiny_corpus, tmp_path, option, bad):
    with pytest.raises(ConfigError, match=option):
        _config(tiny_corpus, tmp_path / "run", f"--train.{option}={bad}")


def test_an_existing_run_is_never_overwritten(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    train_vae(_config(tiny_corpus, out, "--train.epochs=1"), log=_quiet, progress=False)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train_vae(_config(tiny_corpus, out, "--train.epochs=1"), log=_quiet, progress=False)
    assert (out / "last.pt").read_bytes() == before


@pytest.mark.parametrize("extra, words", [
    (["--data.held_out=[nope]"], "nope"),
    (["--data.held_out=[p0, p1, p2, p3]"], "no piece to train on"),
    (["--model.latent_steps=5"], "steps"),
])
def test_bad_configs_fail_before_training(tiny_corpus, tmp_path, extra, words):
    with pytest.raises(ConfigError, match=words):
        train_vae(_config(tiny_corpus, tmp_path / "run", *extra), log=_quiet, progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_exported_weights_load_and_reconstruct(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    train_vae(_config(tiny_corpus, out, "--train.epochs=1"), log=_quiet, progress=False)
    export_weights(out / "best.pt", tmp_path / "vae.pt", "vae")
    assert "trainer" not in load_checkpoint(tmp_path / "vae.pt")
    model, grid, _ = load_vae(tmp_path / "vae.pt")
    assert not model.training and grid.steps_per_quarter == 24
    assert evaluate_main(["reconstruct", "--vae", str(tmp_path / "vae.pt"), str(tiny_corpus),
                          "--out", str(tmp_path / "rec"), "--json", str(tmp_path / "r.json")]) == 0
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["p0.mid", "p1.mid", "p2.mid", "p3.mid"]
    assert "note F1" in capsys.readouterr().out
    # encoding by search writes the same files with other codes (a one-epoch model rebuilds
    # silence either way; tests/ludovico_vae checks that the search only ever lowers the loss)
    assert evaluate_main(["reconstruct", "--vae", str(tmp_path / "vae.pt"), str(tiny_corpus), "--search", "8",
                          "--json", str(tmp_path / "r8.json")]) == 0
    nearest, searched = (json.loads((tmp_path / name).read_text())["summary"] for name in ("r.json", "r8.json"))
    assert searched["codes_used"] != nearest["codes_used"], (nearest, searched)
    assert evaluate_main(["reconstruct", "--vae", str(tmp_path / "vae.pt"), str(tiny_corpus), "--search", "0"]) == 2
    assert "--search: must be at least 1" in capsys.readouterr().err


def test_a_run_starts_from_a_pretrained_vae_of_the_same_model(tiny_corpus, tmp_path):
    pretrained = tmp_path / "pretrained"
    train_vae(_config(tiny_corpus, pretrained, "--train.epochs=1"), log=_quiet, progress=False)
    # a vanishing learning rate: the weights the fine-tuning starts from are all it has (the
    # codebook's EMA still moves, as it does in any training step)
    said = []
    train_vae(_config(tiny_corpus, tmp_path / "tuned", "--train.epochs=1", "--train.lr=1e-12",
                      f"--train.init_from={pretrained / 'last.pt'}", "--model.search_candidates=4"),
              log=said.append, progress=False)
    assert any(f"starting from {pretrained / 'last.pt'}" in line for line in said)
    before, after = (load_checkpoint(run / "last.pt")["model"] for run in (pretrained, tmp_path / "tuned"))
    weights = [name for name in before if "encoder" in name or "decoder" in name]
    assert weights and all(torch.allclose(before[name], after[name], atol=1e-8) for name in weights)
    fresh = load_checkpoint(tmp_path / "tuned" / "last.pt")["model_config"]
    assert fresh["search_candidates"] == 4  # how frames are encoded is this run's to choose
    with pytest.raises(CheckpointError, match="codebook_size"):
        train_vae(_config(tiny_corpus, tmp_path / "other", "--train.epochs=1", "--model.codebook_size=16",
                          f"--train.init_from={pretrained / 'last.pt'}"), log=_quiet, progress=False)


def test_a_checkpoint_of_the_wrong_kind_is_refused(tmp_path):
    torch.save({"kind": "transformer"}, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="expected a vae checkpoint"):
        load_vae(tmp_path / "t.pt")


def test_a_collapsed_codebook_is_said():
    from bachsformer.train.vae import collapse_warning

    assert "collapsed: perplexity 1.0 of 512 codes" in collapse_warning(1.0, 512)
    assert collapse_warning(387.0, 512) is None and collapse_warning(1.0, 16) is None
