"""The classifier two-sample test (docs/evaluation.md, "Discriminator") and its command.

Rolls, windows, AUC and folds are checked on small inputs whose answer is known by hand; the CNN
must tell two clearly different styles apart and must not tell apart two sets drawn from one
generator; the command runs in-process on synthetic MIDI written with pretty_midi.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from bachsformer.evaluate import discriminate as dis
from bachsformer.evaluate.commands import main
from command_line import assert_one_error_line, run
from ludovico_vae.midi import Notes, read_midi
from synthetic_midi import text_file, write_midi

PROG = "bachsformer.evaluate"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test, restored afterwards: on a shared, oversubscribed CPU a second
    thread spin-waits for a busy core, and these tests ran 15 times slower with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def notes(triples) -> Notes:
    pitch, start, end = zip(*triples)
    return Notes(pitch, start, end)


def scales(seed: int, beats: int = 32) -> list:
    """Running sixteenths up and down a major scale from a seeded root."""
    rng = np.random.default_rng(seed)
    degrees = np.cumsum([0, 2, 2, 1, 2, 2, 2, 1, 2, 2, 1, 2, 2, 2])  # two octaves
    root, out = int(rng.integers(48, 60)), []
    for i in range(beats * 4):
        step = i % 26 if i % 26 < 14 else 26 - i % 26  # up and down again
        out.append((root + int(degrees[step]), i / 4, (i + 1) / 4))
    return out


def chords(seed: int, beats: int = 32) -> list:
    """Block triads of two beats with a bass note, on seeded roots."""
    rng = np.random.default_rng(seed)
    out = []
    for beat in range(0, beats, 2):
        root = int(rng.integers(55, 67))
        out += [(root + k, beat, beat + 2) for k in (0, 4, 7)] + [(root - 12, beat, beat + 2)]
    return out


def phrase(seed: int, beats: int = 32) -> list:
    """Random sixteenths over a bass note a beat: one generator, any seed."""
    rng = np.random.default_rng(seed)
    out = []
    for beat in range(beats):
        out += [(int(rng.integers(60, 84)), beat + i / 4, beat + (i + 1) / 4) for i in range(4)]
        out.append((int(rng.integers(36, 56)), beat, beat + 1))
    return out


# ---------------------------------------------------------------- rolls and windows

def test_piece_roll_marks_onsets_and_sounding_cells():
    roll = dis.piece_roll(notes([(60, 0, 1), (60, 1, 1.5), (64, 0.5, 0.51), (10, 0, 4), (120, 0, 4)]))
    assert roll.shape == (2, 88, 18) and roll.dtype == np.uint8  # ends at 1.5 beats; off-keyboard notes dropped
    c4, e4 = 60 - 21, 64 - 21
    assert np.flatnonzero(roll[0, c4]).tolist() == [0, 12]
    assert np.flatnonzero(roll[1, c4]).tolist() == list(range(18))
    assert np.flatnonzero(roll[0, e4]).tolist() == [6] and np.flatnonzero(roll[1, e4]).tolist() == [6]  # a cell at least
    assert roll.sum() == 2 + 18 + 2


@pytest.mark.parametrize("beats, piece_beats, expected", [(8, 24, 5), (8, 26, 5), (8, 3, 1), (4, 24, 11), (1, 2, 3)])
def test_windows_cover_the_piece_every_half_window(beats, piece_beats, expected):
    piece = notes([(60, b, b + 1) for b in range(piece_beats)])
    windows = dis.piece_windows(piece, beats)
    assert windows.shape == (expected, 2, 88, beats * 12)
    assert windows[0, 0, 60 - 21, 0] == 1


def test_windows_without_a_note_are_left_out():
    piece = notes([(60, 0, 1), (62, 23, 24)])  # silence from beat 1 to 23
    windows = dis.piece_windows(piece, 8)  # starts 0, 4, ..., 16: only the first and the last hold a note
    assert len(windows) == 2 and windows[0][0].sum() == 1 and windows[1][0].sum() == 1


# ---------------------------------------------------------------- scores

def test_auc_and_balanced_accuracy_by_hand():
    assert dis.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert dis.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert dis.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert dis.roc_auc([0, 0, 1], [0.2, 0.7, 0.7]) == 0.75  # one win, one tie of two pairs
    assert np.isnan(dis.roc_auc([1, 1], [0.2, 0.3]))
    assert dis.balanced_accuracy([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9]) == 1.0
    assert dis.balanced_accuracy([0, 0, 0, 1], [0.9, 0.9, 0.9, 0.9]) == 0.5  # all said 1: a guess
    assert dis.balanced_accuracy([0, 0, 1, 1], [0.6, 0.1, 0.6, 0.1]) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_auc_is_the_share_of_pairs_ranked_right(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 40)
    scores = rng.integers(0, 6, 40) / 5  # many ties
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0)
             for p, n in itertools.product(scores[labels == 1], scores[labels == 0])]
    assert dis.roc_auc(labels, scores) == pytest.approx(np.mean(pairs))


# ---------------------------------------------------------------- folds grouped by file

@pytest.mark.parametrize("n_generated, n_reference, folds", [(40, 31, 5), (5, 5, 5), (7, 12, 3), (2, 9, 2)])
def test_no_file_is_on_both_sides_of_a_fold(n_generated, n_reference, folds):
    rng = np.random.default_rng(0)
    sides = np.array([1] * n_generated + [0] * n_reference)
    file_fold = dis.assign_folds(sides, folds, rng)
    window_file = np.repeat(np.arange(len(sides)), rng.integers(1, 6, len(sides)))
    held_out = np.zeros(len(window_file), int)
    for fold in range(folds):
        train, test = dis.fold_windows(window_file, file_fold, fold)
        assert not set(window_file[train]) & set(window_file[test])
        assert set(sides[window_file[test]]) == {0, 1}  # every fold holds files of both sets
        assert set(sides[window_file[train]]) == {0, 1}
        held_out[test] += 1
    assert (held_out == 1).all()  # every window scored once


# ---------------------------------------------------------------- the test itself

def test_two_styles_are_told_apart():
    result = dis.discriminate([notes(scales(s)) for s in range(6)], [notes(chords(s)) for s in range(6)],
                              beats=4, folds=3, progress=False)
    assert result["balanced_accuracy"] > 0.95 and result["auc"] > 0.98
    assert result["windows"] == {"generated": 6 * 15, "reference": 6 * 15,
                                 "reference_half_a": 3 * 15, "reference_half_b": 3 * 15}
    assert len(result["per_fold"]["test"]) == 3 and len(result["per_fold"]["baseline"]) == 3


def test_one_generator_is_not_told_apart():
    result = dis.discriminate([notes(phrase(s)) for s in range(10)], [notes(phrase(100 + s)) for s in range(10)],
                              beats=4, folds=5, seed=3, progress=False)
    assert abs(result["balanced_accuracy"] - 0.5) < 0.12 and abs(result["auc"] - 0.5) < 0.12
    assert abs(result["baseline_balanced_accuracy"] - 0.5) < 0.2


def test_no_baseline_below_twice_the_folds():
    result = dis.discriminate([notes(scales(s, 8)) for s in range(3)], [notes(chords(s, 8)) for s in range(5)],
                              beats=4, folds=3, progress=False)
    assert result["baseline_balanced_accuracy"] is None and result["per_fold"]["baseline"] is None


# ---------------------------------------------------------------- the command

@pytest.fixture
def corpora(tmp_path):
    """Two folders of MIDI files written with pretty_midi: scales (generated) and chords (reference)."""
    for name, style in (("gen", scales), ("ref", chords)):
        (tmp_path / name).mkdir()
        for s in range(6):
            write_midi(tmp_path / name / f"{name}{s}.mid", style(s, 16))
    return tmp_path


def test_command_prints_the_table_and_writes_the_same_json_twice(corpora, capsys):
    figures = []
    for k in range(2):
        code, out, _ = run(main, capsys, "discriminate", corpora / "gen", "--reference", corpora / "ref",
                           "--beats", 4, "--folds", 3, "--json", corpora / f"{k}.json")
        assert code == 0
        figures.append((corpora / f"{k}.json").read_text())
    assert "generated vs reference" in out and "reference half vs half" in out and "0.5 = indistinguishable" in out
    assert figures[0] == figures[1]
    data = json.loads(figures[0])
    for key in ("balanced_accuracy", "auc", "baseline_balanced_accuracy", "baseline_auc"):
        assert 0 <= data[key] <= 1
    assert (data["beats"], data["folds"], data["seed"]) == (4, 3, 0)
    assert data["windows"]["generated"] == data["windows"]["reference"] == 6 * 7
    assert data["balanced_accuracy"] > 0.95


def test_command_skips_unreadable_files_and_names_them(corpora, capsys):
    text_file(corpora / "gen" / "broken.mid")
    code, out, _ = run(main, capsys, "discriminate", corpora / "gen", "--reference", corpora / "ref",
                       "--beats", 4, "--folds", 2)
    assert code == 0 and "generated broken.mid skipped: not a MIDI file" in out


def test_command_refuses_an_existing_json(corpora, capsys):
    (corpora / "out.json").write_text("{}")
    code, _, err = run(main, capsys, "discriminate", corpora / "gen", "--reference", corpora / "ref",
                       "--json", corpora / "out.json")
    assert code == 2
    assert_one_error_line(err, PROG, "out.json", "--force")


@pytest.mark.parametrize("args, fragment", [
    (["{empty}", "--reference", "{ref}"], "no MIDI files"),
    (["{gen}", "--reference", "{empty}"], "no MIDI files"),
    (["{gen}", "--reference", "{ref}", "--folds", "7"], "--folds 7 needs at least 7"),
    (["{few}", "--reference", "{ref}", "--folds", "2"], "GEN_DIR"),
    (["{gen}", "--reference", "{ref}", "--beats", "0"], "--beats"),
    (["{gen}", "--reference", "{ref}", "--folds", "1"], "--folds"),
    (["{gen}", "--reference", "{ref}", "--seed", "-1"], "--seed"),
])
def test_bad_input_is_one_line_and_code_2(corpora, capsys, args, fragment):
    (corpora / "empty").mkdir()
    (corpora / "few").mkdir()
    write_midi(corpora / "few" / "one.mid", scales(0, 8))
    text_file(corpora / "few" / "broken.mid")
    folders = {name: corpora / name for name in ("gen", "ref", "empty", "few")}
    code, _, err = run(main, capsys, "discriminate", *[a.format(**folders) for a in args])
    assert code == 2
    assert_one_error_line(err, PROG, fragment)


@pytest.mark.slow
def test_goldberg_against_its_beats_scrambled(goldberg_dir):
    """Goldberg files whose notes are moved by a random octave each beat are told apart; halves are not."""
    reference = [read_midi(path).notes for path in sorted(goldberg_dir.glob("*.mid"))]
    rng = np.random.default_rng(0)
    scrambled = [Notes(n.pitch + 12 * rng.integers(-1, 2, int(n.start.max()) + 1)[n.start.astype(int)],
                       n.start, n.end) for n in reference[::2]]
    result = dis.discriminate(scrambled, reference[1::2], progress=False)
    assert result["balanced_accuracy"] > 0.7  # 0.79 when written
    assert abs(result["baseline_balanced_accuracy"] - 0.5) < 0.2
