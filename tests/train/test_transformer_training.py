"""The transformer stage end to end on a tiny corpus: tokens, windows, training, resume, pairing."""
import csv
import shutil

import numpy as np
import pytest
import torch

from bachsformer import tokens as tokens_module
from bachsformer.train import token_corpus
from bachsformer.train.config import ConfigError, build_config
from bachsformer.evaluate.commands import main as evaluate_main
from bachsformer.checkpoints import load_checkpoint
from bachsformer.errors import CheckpointError
from bachsformer.train.run_folder import export_weights
from bachsformer.tokens import (BAR_IN_SECTION, BARS_LEFT, FUTURE, PIECE_KEY, SECTION, TokenPiece, beat_slots, form_plan,
                               future_first, progress_bins, silent_frame_codes, token_extras)
from bachsformer.tonality import KEY_WINDOW, NO_KEY, local_keys
from bachsformer.train.token_corpus import TokenWindows, load_token_corpus, with_silent_lead_in
from ludovico_vae.files import sha256_file
from bachsformer.pair import load_pair, load_transformer
from bachsformer.train.transformer import TransformerRecipe, train_transformer
from conftest import TINY_GPT


def _config(corpus, vae, out_dir, *extra):
    return build_config(TransformerRecipe, overrides=[
        f"--data.midi_dir={corpus}", f"--data.vae={vae}", "--data.held_out=[p3]",
        f"--data.cache_dir={out_dir.parent / 'cache'}", f"--train.out_dir={out_dir}", "--train.max_steps=6",
        "--train.eval_every=3", "--train.batch_size=8", "--train.warmup_steps=2", "--train.threads=1",
        "--train.monitor_pieces=1", *TINY_GPT, *extra])


def _quiet(*_):
    pass


def test_windows_are_whole_frames_with_targets_shifted_by_one():
    pieces = [TokenPiece("a", np.arange(6 * 4).reshape(6, 4), np.array([0, 2, 4, 6, 0, 2]))]
    windows = TokenWindows(pieces, frames_per_window=2)
    assert len(windows) == 4 and windows.block_size == 8
    x, y, e = windows.batch(np.array([1]))
    assert x[0].tolist() == list(range(4, 12)) and y[0].tolist() == list(range(5, 13))
    assert e[0, :, 0].tolist() == [0, 1, 2, 3] * 2
    assert e[0, :, 1].tolist() == [2] * 4 + [4] * 4


def test_windows_carry_the_key_of_their_transposition():
    pieces = [TokenPiece("a", np.zeros((6, 4), dtype=np.int64), np.zeros(6, dtype=np.int64), transpose=-3)]
    _, _, e = TokenWindows(pieces, frames_per_window=2).batch(np.array([0, 3]))
    assert e.shape == (2, 8, 10) and (e[..., 2] == 9).all()


def test_windows_carry_the_plan_of_their_piece():
    """A piece of 8 bars of 2 frames in G major: four sections of two bars, bars left to the end."""
    pieces = [TokenPiece("a", np.zeros((16, 1), dtype=np.int64), np.zeros(16, dtype=np.int64),
                         bars=np.repeat(np.arange(8), 2), key=7)]
    _, _, e = TokenWindows(pieces, frames_per_window=4).batch(np.array([0, 11]))  # frames 0-3, 11-14
    assert (e[..., PIECE_KEY] == 7).all()
    assert e[0, :, SECTION].tolist() == [0, 0, 0, 0] and e[1, :, SECTION].tolist() == [2, 3, 3, 3]
    assert e[0, :, BAR_IN_SECTION].tolist() == [0, 0, 1, 1] and e[1, :, BARS_LEFT].tolist() == [2, 1, 1, 0]


def test_a_fill_in_the_middle_window_puts_its_future_first():
    """Frames 1-4 of codes 0..23 with the last 1 as the future: frame 4, then frames 1-3 in order,
    each target the next token of that sequence, the in-order part ending on the future's start."""
    pieces = [TokenPiece("a", np.arange(6 * 4).reshape(6, 4), np.arange(6) % 3)]
    windows = TokenWindows(pieces, frames_per_window=4)
    x, y, e = windows.batch(np.array([1, 1]), future=np.array([0, 1]))
    assert x[0].tolist() == list(range(4, 20)) and (e[0, :, FUTURE] == 0).all()
    assert x[1].tolist() == [16, 17, 18, 19] + list(range(4, 16))
    assert y[1].tolist() == [17, 18, 19, -1] + list(range(5, 16)) + [16]
    assert e[1, :, FUTURE].tolist() == [1] * 4 + [0] * 12
    assert e[1, :, 1].tolist() == [1] * 4 + [1] * 4 + [2] * 4 + [0] * 4  # each frame keeps its own inputs


def test_future_first_moves_whole_frames_and_marks_them():
    extras = token_extras(3, 2, np.array([0, 1, 2]))
    tokens, moved = future_first(np.arange(6), extras, 2, 2)
    assert tokens.tolist() == [2, 3, 4, 5, 0, 1]
    assert moved[:, FUTURE].tolist() == [1, 1, 1, 1, 0, 0] and (extras[:, FUTURE] == 0).all()
    assert moved[:, 1].tolist() == [1, 1, 2, 2, 0, 0]


def test_the_plan_of_a_goldberg_variation_is_a_a_b_b():
    section, in_section, left = form_plan(np.arange(64), 64)
    assert section.tolist() == np.repeat(np.arange(4), 16).tolist()
    assert in_section.tolist() == list(range(16)) * 4
    assert left.tolist() == [15] * 49 + list(range(14, -1, -1))


def test_beat_slots_count_eighths_and_cap_long_bars():
    assert beat_slots(np.array([0.0, 0.5, 1.0, 3.5, 9.0]), 16).tolist() == [0, 1, 2, 7, 15]
    assert token_extras(2, 3, np.array([0, 4]))[:, :3].tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 0],
                                                                    [0, 4, 0], [1, 4, 0], [2, 4, 0]]


def test_progress_counts_sixteenths_of_the_piece():
    assert progress_bins(np.arange(32), 32).tolist() == np.repeat(np.arange(16), 2).tolist()
    assert progress_bins(np.array([-1, 0, 9, 10, 99]), 10).tolist() == [0, 0, 14, 15, 15]
    extras = token_extras(4, 2, np.zeros(4, dtype=np.int64))  # a whole piece of 4 frames
    assert extras[:, 3].tolist() == [0, 0, 4, 4, 8, 8, 12, 12]
    given = token_extras(2, 2, np.zeros(2, dtype=np.int64), progress=np.array([7, 15]))
    assert given[:, 3].tolist() == [7, 7, 15, 15]


def test_windows_carry_the_progress_through_their_piece():
    pieces = [TokenPiece("a", np.zeros((16, 2), dtype=np.int64), np.zeros(16, dtype=np.int64))]
    _, _, e = TokenWindows(pieces, frames_per_window=2).batch(np.array([0, 13]))
    assert e[0, :, 3].tolist() == [0, 0, 1, 1] and e[1, :, 3].tolist() == [13, 13, 14, 14]


def _frames_struck(pitches_per_frame) -> np.ndarray:
    """Frames (N, 2, 88, 24) with each frame's pitches struck on its first step."""
    frames = np.zeros((len(pitches_per_frame), 2, 88, 24), dtype=np.uint8)
    for i, pitches in enumerate(pitches_per_frame):
        for pitch in pitches:
            frames[i, :, pitch - 21, 0] = 1
    return frames


def test_local_keys_name_the_scale_around_each_frame():
    c_major, f_sharp_major = [60, 62, 64, 65, 67, 69, 71], [66, 68, 70, 71, 73, 75, 77]
    frames = _frames_struck([c_major] * KEY_WINDOW + [f_sharp_major] * KEY_WINDOW)
    keys = local_keys(frames)
    assert keys[0] == 0 and keys[-1] == 6  # C major, then F# major
    assert local_keys(_frames_struck([[57, 59, 60, 62, 64, 65, 68]] * 3)).tolist() == [12 + 9] * 3  # A harmonic minor
    assert local_keys(_frames_struck([[43, 67]] * 2)).tolist() == [0] * 2  # a tie goes to the first major scale
    silent = local_keys(_frames_struck([[]] * (2 * KEY_WINDOW) + [c_major]))
    assert silent[0] == NO_KEY and silent[-1] == 0  # no note near: no key


def test_windows_carry_the_local_keys_of_their_frames():
    pieces = [TokenPiece("a", np.zeros((6, 2), dtype=np.int64), np.zeros(6, dtype=np.int64),
                         local_keys=np.array([7, 7, 16, 16, 2, NO_KEY]))]
    _, _, e = TokenWindows(pieces, frames_per_window=2).batch(np.array([1, 3]))
    assert e[0, :, 4].tolist() == [7, 7, 16, 16] and e[1, :, 4].tolist() == [16, 16, 2, 2]
    bare = TokenWindows([TokenPiece("b", np.zeros((3, 2), dtype=np.int64), np.zeros(3, dtype=np.int64))], 2)
    assert (bare.batch(np.array([0]))[2][..., 4] == NO_KEY).all()


@pytest.mark.parametrize("transpose, key", [(0, 0), (5, 5), (-5, 7), (-12, 0), (13, 1)])
def test_key_input_is_the_transposition_modulo_an_octave(transpose, key):
    assert token_extras(2, 3, np.array([0, 4]), transpose)[:, 2].tolist() == [key] * 6


def test_training_records_bits_and_names_its_vae(tiny_corpus, tiny_vae, tmp_path):
    out = tmp_path / "run"
    row = train_transformer(_config(tiny_corpus, tiny_vae, out), log=_quiet, progress=False)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [3, 6] and (out / "metrics.png").exists()
    assert row["val_bits"] > 0 and row["val_unigram_bits"] > 0
    state = load_checkpoint(out / "last.pt", "transformer")
    assert state["model_config"]["vocab_size"] == 8 and state["model_config"]["block_size"] == 4 * 16
    assert list(state["model_config"]["extra_vocab_sizes"]) == [16, 16, 12]
    assert state["vae_sha256"] == sha256_file(tiny_vae)
    assert not list(out.glob("step-*.pt"))  # snapshots only when asked for
    plans = state["style"]["key_plans"]  # the training pieces' local keys, as written, for sampling
    assert sorted(p["name"] for p in plans) == ["p0", "p1", "p2"]
    assert all(len(p["keys"]) > 0 and all(0 <= k <= NO_KEY for k in p["keys"]) for p in plans)


def test_snapshots_keep_every_evaluation_checkpoint(tiny_corpus, tiny_vae, tmp_path):
    out = tmp_path / "run"
    train_transformer(_config(tiny_corpus, tiny_vae, out, "--train.keep_snapshots=true"), log=_quiet, progress=False)
    assert sorted(p.name for p in out.glob("step-*.pt")) == ["step-000003.pt", "step-000006.pt"]
    early, last = load_checkpoint(out / "step-000003.pt", "transformer"), load_checkpoint(out / "last.pt", "transformer")
    assert early["step"] == 3 and last["step"] == 6
    final = load_checkpoint(out / "step-000006.pt", "transformer")
    assert all(torch.equal(final["model"][k], last["model"][k]) for k in last["model"])
    assert not all(torch.equal(early["model"][k], last["model"][k]) for k in last["model"])


def test_code_features_are_the_vaes_codebook_standardised(tiny_corpus, tiny_vae, tmp_path):
    from bachsformer.pair import load_vae

    out = tmp_path / "run"
    train_transformer(_config(tiny_corpus, tiny_vae, out, "--data.code_features=true"), log=_quiet, progress=False)
    state = load_checkpoint(out / "last.pt", "transformer")
    codebook = load_vae(tiny_vae)[0].quantizer.codebook
    features = state["model"]["token_features"]
    assert state["model_config"]["token_feature_dim"] == codebook.shape[1]
    assert torch.allclose(features * codebook.std(0) + codebook.mean(0), codebook, atol=1e-5)


def test_resume_after_an_interruption_continues_exactly(tiny_corpus, tiny_vae, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train_transformer(_config(tiny_corpus, tiny_vae, straight), log=_quiet, progress=False)

    def stop(trainer):
        if trainer.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_transformer(_config(tiny_corpus, tiny_vae, interrupted), log=_quiet, progress=False, on_step=stop)
    train_transformer(_config(tiny_corpus, tiny_vae, interrupted), resume=True, log=_quiet, progress=False)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.parametrize("extra_inputs, sizes", [("[]", []), ("[frame_index]", [16]), ("[beat]", [16]),
                                                         ("[key]", [12]), ("[local_key]", [25])])
def test_extra_inputs_are_configurable(tiny_corpus, tiny_vae, tmp_path, extra_inputs, sizes):
    out = tmp_path / "run"
    train_transformer(_config(tiny_corpus, tiny_vae, out, f"--data.extra_inputs={extra_inputs}",
                              "--train.max_steps=1"), log=_quiet, progress=False)
    assert list(load_checkpoint(out / "last.pt")["model_config"]["extra_vocab_sizes"]) == sizes


def test_key_dropout_tells_some_windows_no_key(tiny_corpus, tiny_vae, tmp_path, monkeypatch):
    from bachsformer.train import transformer as transformer_training

    keys, select = [], tokens_module.select_extras

    def recording(extras, names):
        keys.append(extras[:, 0, 2].clone())  # the key input of each window of a batch
        return select(extras, names)

    monkeypatch.setattr(transformer_training, "select_extras", recording)
    out = tmp_path / "run"
    train_transformer(_config(tiny_corpus, tiny_vae, out, "--data.key_dropout=0.5"), log=_quiet, progress=False)
    seen = torch.cat(keys)
    assert (seen == 12).any() and (seen != 12).any()  # "no key" for some windows, not all
    assert list(load_checkpoint(out / "last.pt")["model_config"]["extra_vocab_sizes"]) == [16, 16, 13]


def test_silent_lead_in_puts_one_silent_frame_before_a_piece():
    piece = TokenPiece("p", np.arange(12).reshape(3, 4), np.array([0, 2, 4]), transpose=2,
                       local_keys=np.array([7, 7, 9]))
    silence = np.array([5, 6, 7, 8])
    led = with_silent_lead_in(piece, silence, slot=6)
    assert led.tokens.tolist() == [[5, 6, 7, 8], *piece.tokens.tolist()]
    assert led.beat_slots.tolist() == [6, 0, 2, 4]
    assert led.local_keys.tolist() == [7, 7, 7, 9]  # the lead-in is in the key the piece starts in
    assert (led.name, led.transpose) == ("p", 2)
    # so the first window starts on the silence and predicts the piece's whole first frame from it
    x, y, e = TokenWindows([led], frames_per_window=2).batch(np.array([0]))
    assert x[0, :4].tolist() == silence.tolist() and y[0, 3:7].tolist() == [0, 1, 2, 3]
    assert e[0, :4, 1].tolist() == [6] * 4


def test_silent_lead_in_comes_before_training_pieces_only(tiny_corpus, tiny_vae, tmp_path):
    plain = load_token_corpus(_config(tiny_corpus, tiny_vae, tmp_path / "a").data, "cpu", _quiet)
    led = load_token_corpus(_config(tiny_corpus, tiny_vae, tmp_path / "b", "--data.silent_lead_in=true").data,
                            "cpu", _quiet)
    silence = silent_frame_codes(led.vae, led.grid.frame_shape, "cpu")
    assert len(led.train) == len(plain.train) == 6  # three pieces in two keys
    for a, b in zip(plain.train, led.train):
        assert (a.name, a.transpose) == (b.name, b.transpose)
        assert np.array_equal(b.tokens[0], silence) and np.array_equal(b.tokens[1:], a.tokens)
        assert b.beat_slots[0] == 6 and np.array_equal(b.beat_slots[1:], a.beat_slots)  # beat 4 of 4/4
    for a, b in zip(plain.held_out, led.held_out):  # held-out bits stay comparable
        assert np.array_equal(a.tokens, b.tokens)
    assert not any((p.tokens == silence).all(axis=1).any() for p in plain.train)


@pytest.mark.parametrize("bad", ["1.0", "-0.1"])
def test_key_dropout_must_be_a_share(tiny_corpus, tiny_vae, tmp_path, bad):
    with pytest.raises(ConfigError, match="key_dropout"):
        _config(tiny_corpus, tiny_vae, tmp_path / "run", f"--data.key_dropout={bad}")


def test_token_cache_is_reused(tiny_corpus, tiny_vae, tmp_path, monkeypatch):
    train_transformer(_config(tiny_corpus, tiny_vae, tmp_path / "a", "--train.max_steps=1"), log=_quiet,
                      progress=False)

    def no_encoding(*args, **kwargs):
        raise AssertionError("the corpus was encoded again")

    monkeypatch.setattr(token_corpus, "encode_piece", no_encoding)
    train_transformer(_config(tiny_corpus, tiny_vae, tmp_path / "b", "--train.max_steps=1"), log=_quiet,
                      progress=False)


def test_a_pair_loads_and_a_foreign_vae_is_refused(tiny_corpus, tiny_vae, tmp_path, capsys):
    out = tmp_path / "run"
    train_transformer(_config(tiny_corpus, tiny_vae, out, "--train.max_steps=3"), log=_quiet, progress=False)
    pair_dir = tmp_path / "checkpoints"
    pair_dir.mkdir()
    shutil.copy(tiny_vae, pair_dir / "vae.pt")
    export_weights(out / "best.pt", pair_dir / "transformer.pt", "transformer")
    pair = load_pair(pair_dir)
    assert not pair.transformer.training and pair.grid.steps_per_quarter == 24

    assert evaluate_main(["likelihood", "--checkpoint-dir", str(pair_dir), "--midi", str(tiny_corpus),
                          "--json", str(tmp_path / "l.json")]) == 0
    assert "bits/token" in capsys.readouterr().out

    other = load_checkpoint(tiny_vae)
    other["corpus_hash"] = "another"
    torch.save(other, pair_dir / "vae.pt")
    with pytest.raises(CheckpointError, match="another VQ-VAE"):
        load_transformer(pair_dir / "transformer.pt", pair_dir / "vae.pt")
    (pair_dir / "vae.pt").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_pair(pair_dir)


def test_transpositions_must_include_the_pieces_as_written(tiny_corpus, tiny_vae, tmp_path):
    with pytest.raises(ConfigError, match="transpositions"):
        _config(tiny_corpus, tiny_vae, tmp_path / "run", "--data.transpositions=[1, 2]")


def test_an_interrupted_encoding_resumes_where_it_stopped(tiny_corpus, tiny_vae, tmp_path, monkeypatch):
    from bachsformer.pair import load_vae
    from bachsformer.train.data import DataConfig, load_corpus
    vae, grid, _ = load_vae(tiny_vae, "cpu")
    pieces, corpus_key = load_corpus(DataConfig(midi_dir=str(tiny_corpus), cache_dir=str(tmp_path / "frames")), grid,
                                     log=_quiet)

    def encode(cache):
        return token_corpus.encode_corpus(vae, tiny_vae, pieces, corpus_key, "cpu", 12, (0, 5), str(cache))

    whole = encode(tmp_path / "whole" / "frames")
    calls, real = [], token_corpus.encode_piece

    def interrupted(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args[1].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(token_corpus, "encode_piece", interrupted)
    cache = tmp_path / "cut" / "frames"
    with pytest.raises(KeyboardInterrupt):
        encode(cache)
    calls.clear()
    monkeypatch.setattr(token_corpus, "encode_piece", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    resumed = encode(cache)
    assert len(calls) == len(whole) - 3, "only what the interrupted run had not done is encoded again"
    assert [(p.name, p.transpose) for p in resumed] == [(p.name, p.transpose) for p in whole]
    for a, b in zip(resumed, whole):
        assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.bars, b.bars) and a.key == b.key
    assert not list((tmp_path / "cut" / "tokens").glob("*.parts")), "the parts go once the whole is written"
    assert len(list((tmp_path / "cut" / "tokens").glob("*.npz"))) == 1
