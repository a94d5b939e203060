"""Statistics of generated music (docs/evaluation.md) and `evaluate samples`.

Each statistic is checked on small note lists built here whose answer is known by hand; the
command runs in-process on synthetic MIDI written with pretty_midi; and on the Goldberg corpus
the figures must reproduce the real-music yardstick of docs/evaluation.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bachsformer.evaluate import music_stats as ms
from bachsformer.evaluate.commands import main
from ludovico_vae.midi import Notes, read_midi

from conftest import GOLDBERG_DIR as GOLDBERG  # noqa: E402
C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def notes(*triples) -> Notes:
    """Notes from (pitch, start, end) triples in beats."""
    if not triples:
        return Notes([], [], [])
    pitch, start, end = zip(*triples)
    return Notes(pitch, start, end)


def melody(pitches, step=0.5, offset=0.0) -> Notes:
    """One note after another, `step` beats each."""
    return notes(*[(p, offset + i * step, offset + (i + 1) * step) for i, p in enumerate(pitches)])


def transposed(n: Notes, semitones: int) -> Notes:
    return Notes(n.pitch + semitones, n.start, n.end)


def joined(*parts: Notes) -> Notes:
    return Notes(np.concatenate([p.pitch for p in parts]), np.concatenate([p.start for p in parts]),
                 np.concatenate([p.end for p in parts]))


def phrase(seed: int, beats: int = 16) -> Notes:
    """A seeded line of sixteenths and a bass note per beat, no two beats alike in practice."""
    rng = np.random.default_rng(seed)
    triples = []
    for beat in range(beats):
        triples += [(int(rng.integers(60, 84)), beat + i / 4, beat + (i + 1) / 4) for i in range(4)]
        triples.append((int(rng.integers(36, 56)), beat, beat + 1))
    return notes(*triples)


# ---------------------------------------------------------------- per-piece statistics

@pytest.mark.parametrize("pitches, expected", [
    (C_MAJOR, 1.0),
    ([57, 59, 60, 62, 64, 65, 68, 69], 1.0),  # A harmonic minor
    ([57, 59, 60, 62, 64, 65, 67, 68, 69], 1.0),  # A minor with both sevenths
    (list(range(60, 72)), 8 / 12),  # chromatic: the best scale holds 8 of the 12
    ([60, 61, 60, 61], 1.0),  # C and C# (Db) both lie in Db major
])
def test_scale_consistency(pitches, expected):
    assert ms.scale_consistency(melody(pitches)) == pytest.approx(expected)


def test_scale_consistency_is_a_share_of_notes_not_of_pitch_classes():
    piece = melody([60] * 9 + [61, 62, 63])  # no scale holds four semitones in a row: D minor holds C-C#-D
    assert ms.scale_consistency(piece) == pytest.approx(11 / 12)


def test_notes_per_beat_counts_from_beat_0_to_the_last_onset():
    assert ms.notes_per_beat(melody(C_MAJOR, step=0.5)) == pytest.approx(2.0)  # 8 notes in 4 beats
    assert ms.notes_per_beat(melody(C_MAJOR[:4], step=0.5, offset=4.0)) == pytest.approx(4 / 6)
    assert ms.notes_per_beat(notes((60, 0, 16))) == pytest.approx(1.0)  # a held note is one beat


def test_polyphony_averages_over_sounding_cells_only():
    chord_then_note = notes((60, 0, 1), (64, 0, 1), (67, 0, 1), (72, 1, 2), (48, 10, 11))
    assert ms.mean_polyphony(chord_then_note) == pytest.approx((3 * 12 + 12 + 12) / 36)
    assert ms.mean_polyphony(notes((60, 0, 0.01))) == pytest.approx(1.0)  # shorter than a cell still sounds


def test_pitch_range_is_the_5th_to_95th_percentile():
    low, high, span = ms.pitch_range(melody(range(0, 101)))
    assert (low, high, span) == pytest.approx((5.0, 95.0, 90.0))
    assert ms.pitch_range(melody([60] * 19 + [100]))[1] == pytest.approx(62.0)  # one outlier moves it little


def test_onsets_snap_to_the_grid_before_choosing_a_beat():
    early = notes((60, 0, 1), (62, 0.999, 2))  # a tick early: belongs to beat 1, cell 0
    assert ms.beat_codes(early) == [(60,), (62,)]
    assert ms.beat_codes(notes((64, 1 / 3, 1), (60, 0.5, 1))) == [(4 * 128 + 64, 6 * 128 + 60)]


def test_empty_beats_are_beats_in_which_no_note_starts():
    busy = melody(C_MAJOR, step=1.0)
    assert ms.empty_beat_rate(busy) == 0.0
    gap = joined(melody([60, 62]), melody([64, 65], offset=6.0))  # beats 1-5 silent
    assert ms.empty_beat_rate(gap) == pytest.approx(5 / 7)
    held = notes((60, 0, 4), (62, 4, 5))  # beats 1-3 hold a note but strike none
    assert ms.empty_beat_rate(held) == pytest.approx(3 / 5)


def test_a_stuck_piece_repeats_its_beats():
    stuck = joined(*[melody([60, 64, 67, 72], step=0.25, offset=b) for b in range(16)])
    assert ms.repeated_beat_rate(stuck) == pytest.approx(15 / 16)
    assert ms.repeated_beat_rate(melody(C_MAJOR, step=1.0)) == 0.0
    # an empty beat between two equal beats breaks the repetition, and is not counted itself
    assert ms.repeated_beat_rate(notes((60, 0, 1), (60, 2, 3), (60, 3, 4))) == pytest.approx(1 / 3)
    # durations do not matter, only which keys are struck when
    assert ms.repeated_beat_rate(notes((60, 0, 0.5), (60, 1, 2))) == pytest.approx(1 / 2)


# ---------------------------------------------------------------- histograms and overlap

@pytest.mark.parametrize("a, b, expected", [
    ([1, 2, 3], [1, 2, 3], 1.0),
    ([1, 2, 3], [10, 20, 30], 1.0),  # normalised first
    ([1, 0, 0], [0, 1, 1], 0.0),
    ([1, 1, 0], [0, 1, 1], 0.5),
])
def test_overlap(a, b, expected):
    assert ms.overlap(a, b) == pytest.approx(expected)
    assert ms.overlap(b, a) == pytest.approx(expected)


def test_overlap_of_an_empty_histogram_is_undefined():
    assert np.isnan(ms.overlap([0, 0], [1, 0]))


def test_durations_beyond_the_last_edge_count_in_the_last_bin():
    counts = ms.duration_counts(notes((60, 0, 0.1), (60, 1, 1.25), (60, 2, 2.5), (60, 3, 7), (60, 8, 40)))
    assert counts.sum() == 5
    assert counts[[0, 2, 4, -1]].tolist() == [1, 1, 1, 2]


def test_density_counts_every_beat_including_empty_ones():
    piece = joined(melody([60, 62, 64, 65], step=0.25), notes((60, 3, 4), (64, 3, 4)))
    assert ms.density_counts(piece).tolist() == [2, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]  # beats of 4, 0, 0, 2
    assert ms.density_counts(melody([60] * 150, step=0.001))[-1] == 1  # 100 or more: the last bin


def test_pitch_class_counts():
    assert ms.pitch_class_counts(melody([60, 72, 61])).tolist() == [2, 1] + [0] * 10


# ---------------------------------------------------------------- copying

def copying(generated: Notes, *reference: Notes) -> dict:
    return ms.compare({"g": generated}, {f"r{k}": r for k, r in enumerate(reference)})["rows"][0]


def test_a_piece_equal_to_a_reference_piece_is_all_copied():
    piece = phrase(0)
    row = copying(piece, phrase(1), piece)
    assert row["copied_4beat_share"] == 1.0
    assert row["longest_copied_run"] == 16
    assert row["longest_copied_from"] == "r1"


def test_a_transposed_copy_is_not_a_copy():
    row = copying(transposed(phrase(0), 1), phrase(0))
    assert row["copied_4beat_share"] == 0.0
    assert row["longest_copied_run"] == 0


def test_a_quotation_of_six_beats():
    source = phrase(0)
    quoted = source.select((source.start >= 4) & (source.start < 10)).shifted(-4 + 8)  # beats 4-9 at 8-13
    piece = joined(phrase(1, beats=8), quoted, phrase(2, beats=8).shifted(14))  # 22 beats, 19 windows
    row = copying(piece, source)
    assert row["longest_copied_run"] == 6
    assert row["copied_4beat_share"] == pytest.approx(3 / 19)


def test_a_quotation_half_a_beat_off_the_beat_is_not_verbatim():
    assert copying(phrase(0).shifted(0.5), phrase(0))["copied_4beat_share"] == 0.0


def test_copies_do_not_run_across_two_reference_pieces():
    a, b = phrase(0, beats=8), phrase(1, beats=8)
    piece = joined(a.select(a.start >= 4).shifted(-4), b.select(b.start < 4).shifted(4))  # end of a, start of b
    row = copying(piece, a, b)
    assert row["longest_copied_run"] == 4
    assert row["copied_4beat_share"] == pytest.approx(2 / 5)  # the first and the last window


def test_silence_is_not_a_quotation():
    reference = notes((60, 0, 1), (62, 9, 10))  # 8 empty beats between
    piece = notes((70, 0, 1), (71, 9, 10))  # the same silence between other notes
    row = copying(piece, reference)
    assert row["longest_copied_run"] == 0
    assert row["copied_4beat_share"] == 0.0
    assert row["windows"] == 2  # the windows holding beat 0 or beat 9; the 5 all-empty ones are left out
    # a copied note followed by copied silence is a run that counts in full
    assert copying(notes((60, 0, 1), (71, 9, 10)), reference)["longest_copied_run"] == 9


def test_too_short_for_a_window():
    row = copying(melody([60, 62, 64], step=1.0), melody([60, 62, 64], step=1.0))
    assert np.isnan(row["copied_4beat_share"])
    assert row["longest_copied_run"] == 3


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(21, 108), st.integers(0, 12 * 12), st.integers(1, 48)), min_size=1, max_size=40))
def test_any_piece_is_all_copied_from_itself(cells):
    piece = notes(*[(p, s / 12, (s + d) / 12) for p, s, d in cells])
    row = copying(piece, phrase(3), piece)
    assert row["longest_copied_run"] == row["beats"]
    assert row["copied_4beat_share"] == 1.0 or row["beats"] < ms.WINDOW_BEATS
    assert row["pitch_class_overlap"] <= 1.0 + 1e-12


# ---------------------------------------------------------------- whole comparisons

def test_compare_gives_rows_medians_and_ranges():
    result = ms.compare({"copy": phrase(0), "new": phrase(5), "shifted": transposed(phrase(0), 2)},
                        {"a": phrase(0), "b": phrase(1)})
    assert [r["piece"] for r in result["rows"]] == ["copy", "new", "shifted"]
    assert set(ms.SUMMARY_KEYS) <= set(result["summary"])
    assert result["summary"]["copied_4beat_share"] == 0.0
    assert result["max"]["copied_4beat_share"] == 1.0
    assert result["max"]["longest_copied_run"] == 16
    assert result["rows"][0]["pitch_class_overlap"] < 1.0  # b is in the pooled reference too


def test_pooled_reference_histograms_sum_the_pieces():
    a, b = melody([60, 60, 62]), melody([64, 65, 67, 69])
    row = ms.compare({"g": joined(a, b.shifted(2))}, {"a": a, "b": b})["rows"][0]
    assert row["pitch_class_overlap"] == pytest.approx(1.0)


def test_the_yardstick_scores_each_piece_against_the_others_only():
    result = ms.real_music_yardstick({"a": phrase(0), "twin": phrase(0), "b": phrase(1)}, ["a", "b"])
    a, b = result["rows"]
    assert a["copied_4beat_share"] == 1.0 and a["longest_copied_from"] == "twin"
    assert b["copied_4beat_share"] == 0.0
    alone = ms.real_music_yardstick({"a": melody(C_MAJOR), "b": melody([61, 63])}, ["a"])["rows"][0]
    assert alone["pitch_class_overlap"] == 0.0  # against b alone, not against the pool with itself
    with pytest.raises(KeyError, match="zzz"):
        ms.real_music_yardstick({"a": phrase(0), "b": phrase(1)}, ["zzz"])
    with pytest.raises(ValueError, match="no other piece"):
        ms.real_music_yardstick({"a": phrase(0)}, ["a"])


# ---------------------------------------------------------------- the command

def write_piece(path, piece: Notes, qpm: float = 100.0) -> Path:
    """A one-instrument MIDI file of `piece` at `qpm` (beats must come back whatever the tempo)."""
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=qpm)
    instrument = pretty_midi.Instrument(program=6)
    seconds = 60.0 / qpm
    instrument.notes = [pretty_midi.Note(80, int(p), s * seconds, e * seconds)
                        for p, s, e in zip(piece.pitch.tolist(), piece.start.tolist(), piece.end.tolist())]
    pm.instruments.append(instrument)
    pm.write(str(path))
    return Path(path)


def run(capsys, *argv) -> tuple:
    code = main(["samples", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def folders(tmp_path) -> tuple:
    """A reference of three pieces and generated pieces: a copy of p0, a transposed p1, a new one,
    a copy of the held-out piece p2, and a corrupt file."""
    ref, gen = tmp_path / "ref", tmp_path / "gen"
    ref.mkdir()
    gen.mkdir()
    for k in range(3):
        write_piece(ref / f"p{k}.mid", phrase(k), qpm=90 + 10 * k)
    write_piece(gen / "copy.mid", phrase(0))
    write_piece(gen / "transposed.mid", transposed(phrase(1), 3))
    write_piece(gen / "new.mid", phrase(7))
    write_piece(gen / "heldout_copy.mid", phrase(2))
    (gen / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")
    return gen, ref


def test_samples_command_table_and_json(folders, tmp_path, capsys):
    gen, ref = folders
    code, out, err = run(capsys, gen, "--reference", ref, "--held-out", "p2", "--json", tmp_path / "s.json")
    assert code == 0, err
    assert "against 2 reference pieces" in out and "without the held-out p2.mid" in out
    assert "broken.mid" in out and "ERROR: corrupt or truncated" in out
    assert "real music: 1 held-out piece," in out
    data = json.loads((tmp_path / "s.json").read_text())
    rows = {r["piece"]: r for r in data["pieces"]}
    assert rows["copy.mid"]["copied_4beat_share"] == 1.0
    assert rows["copy.mid"]["longest_copied_run"] == 16
    assert rows["transposed.mid"]["copied_4beat_share"] == 0.0
    assert rows["heldout_copy.mid"]["copied_4beat_share"] == 0.0  # p2 is not part of the training pieces
    assert rows["broken.mid"]["error"].startswith("corrupt or truncated")
    assert set(ms.SUMMARY_KEYS) <= set(data["summary"])
    assert data["summary"]["copied_4beat_share"] == 0.0  # median of 1, 0, 0, 0
    assert data["reference_pieces"] == ["p0.mid", "p1.mid"] and data["held_out"] == ["p2.mid"]
    real = data["real_music"]["pieces"]
    assert [r["piece"] for r in real] == ["p2.mid"] and real[0]["copied_4beat_share"] == 0.0


def test_without_held_out_pieces_every_reference_piece_is_the_yardstick(folders, tmp_path, capsys):
    gen, ref = folders
    code, out, err = run(capsys, gen / "copy.mid", "--reference", ref, "--json", tmp_path / "s.json")
    assert code == 0, err
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["held_out"] == [] and len(data["reference_pieces"]) == 3
    assert len(data["real_music"]["pieces"]) == 3
    assert "reference pieces (none held out)" in out


@pytest.mark.parametrize("setup, argv, fragment", [
    ("missing", ["{tmp}/nowhere", "--reference", "{ref}"], "no such file or directory"),
    ("empty", ["{tmp}/empty", "--reference", "{ref}"], "no MIDI files"),
    ("missing", ["{gen}", "--reference", "{tmp}/nowhere"], "no such file or directory"),
    ("all_bad", ["{tmp}/bad", "--reference", "{ref}"], "no MIDI file could be read"),
    ("all_bad", ["{gen}", "--reference", "{tmp}/bad"], "no MIDI file could be read"),
    (None, ["{gen}", "--reference", "{ref}", "--held-out", "p9"], "not in the reference: p9"),
    (None, ["{gen}", "--reference", "{ref}", "--held-out", "p0", "p1", "p2"], "every piece is held out"),
    (None, ["{gen}"], "--reference"),
])
def test_bad_input_is_one_line_and_exit_code_2(folders, tmp_path, capsys, setup, argv, fragment):
    gen, ref = folders
    if setup == "empty":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("no MIDI here")
    if setup == "all_bad":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "x.mid").write_bytes(b"not midi")
    code, out, err = run(capsys, *[a.format(tmp=tmp_path, gen=gen, ref=ref) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bachsformer.evaluate: ") and fragment in lines[0], err


# ---------------------------------------------------------------- the Goldberg corpus

@pytest.fixture(scope="module")
def goldberg() -> dict:
    files = sorted(GOLDBERG.glob("*.mid"))
    if not files:
        pytest.skip(f"Goldberg corpus not found at {GOLDBERG}")
    return {p.stem: read_midi(p).notes for p in files}


def test_a_held_out_piece_copies_nothing_and_a_training_piece_everything(goldberg):
    training = {name: n for name, n in goldberg.items() if name != "988-v10"}
    rows = ms.compare({"988-v10": goldberg["988-v10"], "988-v05": goldberg["988-v05"]}, training)["rows"]
    assert rows[0]["copied_4beat_share"] == 0.0
    assert rows[1]["copied_4beat_share"] == 1.0
    assert rows[1]["longest_copied_run"] == rows[1]["beats"]


def test_goldberg_reproduces_the_real_music_yardstick(goldberg):
    """docs/evaluation.md: each file against the other 30, medians and ranges."""
    result = ms.real_music_yardstick(goldberg, list(goldberg))
    median, low, high = result["summary"], result["min"], result["max"]
    for key, m, lo, hi in [("pitch_class_overlap", 0.938, 0.69, 0.97), ("duration_overlap", 0.656, 0.26, 0.85),
                           ("density_overlap", 0.595, 0.22, 0.85), ("scale_consistency", 0.949, 0.82, 0.98)]:
        assert median[key] == pytest.approx(m, abs=5e-4), key
        assert (low[key], high[key]) == pytest.approx((lo, hi), abs=5e-3), key
    assert high["copied_4beat_share"] == 0.0
    assert median["repeated_beat_rate"] == 0.0 and high["repeated_beat_rate"] <= 0.025
