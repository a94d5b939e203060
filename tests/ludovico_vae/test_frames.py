"""Notes <-> frames: round trips through MIDI files, the bar grid, and the frame cache.

The invariant throughout: write a MIDI file, read it, cut it into frames, write the frames back
as MIDI and read that; the notes are exactly the keyboard reference of the first file's notes
(docs/evaluation.md), compared note by note.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ludovico_vae.dataset as dataset
from bachsformer.evaluate.metrics import note_f1
from conftest import DRUMS, N, goldberg_files, note_list, split_voices, write_midi, write_pretty_midi
from ludovico_vae.frames import (ONSET, SOUNDING, FrameGrid, frames_to_roll, notes_to_roll, roll_to_frames,
                                 roll_to_notes, score_to_piece)
from ludovico_vae.midi import LOWEST_PITCH, Notes, keyboard_reference, read_midi, score_to_midi

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def round_trip(src, grid: FrameGrid = FrameGrid(), out=None):
    """MIDI file -> piece -> MIDI file `out` -> score; returns (piece, score read back)."""
    piece = score_to_piece(read_midi(src), grid)
    out = out or src.with_name(src.stem + "-out.mid")
    score_to_midi(piece.score()).write(str(out))
    return piece, read_midi(out)


def assert_round_trip(src, grid: FrameGrid = FrameGrid()):
    """The round trip gives the keyboard reference note by note, with tempo and meter kept."""
    score = read_midi(src)
    piece, back = round_trip(src, grid)
    reference = note_list(keyboard_reference(score.notes))
    assert note_list(back.notes) == reference
    assert back.time_signatures == score.time_signatures
    assert [b for b, _ in back.tempos] == [b for b, _ in score.tempos]
    np.testing.assert_allclose([q for _, q in back.tempos], [q for _, q in score.tempos], rtol=1e-5)
    frames = piece.frames
    assert frames.dtype == np.uint8 and frames.shape[1:] == grid.frame_shape
    assert np.all(frames[:, SOUNDING] >= frames[:, ONSET])  # an onset cell also sounds
    assert piece.stats["keyboard_notes"] == len(reference) == int(frames[:, ONSET].sum())
    return piece, back


T24 = 1 / 24
ROUND_TRIPS = {  # name: (notes in beats, write_midi keyword arguments)
    "repeated notes on one key": ([(60, 0, 0.25), (60, 0.25, 0.5), (60, 0.5, 1), (60, 1, 1 + T24),
                                   (60, 1 + T24, 1 + 2 * T24), (60, 1 + 2 * T24, 3)], {}),
    "held across frame boundaries": ([(48, 0.5, 9.75), (50, 1, 2), (52, 0, 12), (55, 11 + 23 * T24, 12)], {}),
    "chords": ([(60, 0, 1), (64, 0, 1), (67, 0, 2), (72, 0, 0.5), (60, 1, 2), (64, 1, 3), (36, 1, 3)], {}),
    "very start and end": ([(LOWEST_PITCH, 0, T24), (108, 0, 4), (60, 4 - T24, 4), (62, 3.5, 4)], {}),
    "triplets": ([(60 + k % 5, k / 3, (k + 1) / 3) for k in range(9)]
                 + [(72, 3 + k / 6, 3 + (k + 1) / 6) for k in range(6)]
                 + [(76, 4 + k / 12, 4 + (k + 1) / 12) for k in range(12)], {}),
    "struck again while sounding": ([N(60, 0, 4, track=0), N(60, 1, 2, track=1), N(60, 0, 1, channel=1),
                                     N(62, 0, 1), N(62, 0, 3, channel=1)], {}),
    "pickup and meter changes": ([(67, 0, 0.5), (60, 0.5, 3.5), (62, 3.5, 5), (64, 5, 6.5), (65, 6.5, 10.5)],
                                 {"time_signatures": [(0, 1, 8), (0.5, 3, 4), (3.5, 6, 8), (6.5, 4, 4)]}),
    "tempo changes at 96 ticks": ([(60, 0, 1), (62, 1 + T24, 2.5), (64, 2.5, 7)],
                                  {"ticks_per_beat": 96, "tempos": [(0, 90), (1, 150), (2.5, 40)]}),
    "960 ticks, type 0, drums": ([N(60, 0, 1), N(64, 0.5, 1.5, channel=3), N(36, 0, 1, channel=DRUMS)],
                                 {"ticks_per_beat": 960, "midi_type": 0}),
    "one note": ([(60, 0, 1)], {}),
}


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_round_trip_gives_the_keyboard_reference(tmp_path, case):
    notes, kwargs = ROUND_TRIPS[case]
    assert_round_trip(write_midi(tmp_path / "in.mid", notes, **kwargs))


def cell_pattern(steps: int) -> list:
    """Repeated notes, a chord, notes across frame boundaries and at the end, in cells of `steps`."""
    T = steps
    cells = [(60, 0, 1), (60, 1, 2), (62, 0, 3 * T), (64, T - 1, T + 1), (67, 2 * T, 2 * T + 1), (69, 1, 2),
             (71, 3 * T - 1, 3 * T), (60, 3 * T, 4 * T), (72, 3 * T, 4 * T)]
    return [(p, s / T, e / T) for p, s, e in cells]


@pytest.mark.parametrize("steps", [4, 12, 24, 32, 48])
def test_round_trip_on_other_grids(tmp_path, steps):
    piece, _ = assert_round_trip(write_midi(tmp_path / "in.mid", cell_pattern(steps)), FrameGrid(steps))
    assert piece.frames.shape == (4, 2, 88, steps)


@pytest.mark.parametrize("steps", [12, 24, 32])
def test_frames_of_a_piece_cover_its_notes(tmp_path, steps):
    src = write_midi(tmp_path / "in.mid", [(60, 0, 2.5), (61, 4, 4.5)])
    piece = score_to_piece(read_midi(src), FrameGrid(steps))
    assert piece.frames.shape == (5, 2, 88, steps)  # 4.5 beats round up to 5 frames
    key = 60 - LOWEST_PITCH
    assert piece.frames[:, ONSET, key].sum() == 1 and piece.frames[0, ONSET, key, 0] == 1
    assert piece.frames[:2, SOUNDING, key].all() and piece.frames[2, SOUNDING, key, : steps // 2].all()
    assert not piece.frames[2, SOUNDING, key, steps // 2:].any()


# at 480 ticks per beat a cell of the 24 grid is 20 ticks; (start, end) in ticks -> cells
SNAPS = {
    "just before a cell": ((29, 80), (1, 4)),
    "just after a cell": ((21, 80), (1, 4)),
    "below half a cell": ((9, 40), (0, 2)),
    "above half a cell": ((11, 40), (1, 2)),
    "half a cell rounds up": ((10, 40), (1, 2)),
    "both ends off the grid": ((41, 59), (2, 3)),
    "end snaps up": ((40, 71), (2, 4)),
    "tiny": ((45, 46), (2, 3)),
    "tiny at half a cell": ((50, 51), (3, 4)),
    "tiny at the start": ((0, 1), (0, 1)),
    "shorter than a cell snapping to nothing": ((44, 49), (2, 3)),
}


@pytest.mark.parametrize("case", SNAPS)
def test_off_grid_notes_snap_to_the_nearest_cell_and_keep_one(tmp_path, case):
    (start, end), (cell_start, cell_end) = SNAPS[case]
    src = write_midi(tmp_path / "in.mid", [(60, start / 480, end / 480), (72, 4, 5)])
    piece, back = round_trip(src)
    assert note_list(back.notes) == [(60, cell_start / 24, cell_end / 24), (72, 4, 5)]
    assert piece.stats["onsets_on_grid"] == (1.0 if start % 20 == 0 else 0.5)


def test_notes_colliding_after_snapping_follow_the_keyboard_reference(tmp_path):
    ticks = [(60, 0, 35, 0), (60, 25, 80, 1),  # second onset snaps to cell 1 and cuts the first
             (62, 0, 100, 0), (62, 5, 40, 1),  # both onsets snap to cell 0: the longer stays
             (64, 0, 3, 0), (64, 4, 8, 1)]     # two tiny notes both in cell 0: one note of one cell
    src = write_midi(tmp_path / "in.mid", [N(p, s / 480, e / 480, channel=c) for p, s, e, c in ticks])
    _, back = round_trip(src)
    assert note_list(back.notes) == [(60, 0, 1 / 24), (60, 1 / 24, 4 / 24), (62, 0, 5 / 24), (64, 0, 1 / 24)]


def test_zero_length_notes_are_dropped_like_the_reference():
    """A score built in code may hold zero-length notes; the reference drops them, so must the roll."""
    notes = Notes([60, 62, 64], [0.0, 1.0, 2.0], [0.0, 2.0, 2.0])
    back = roll_to_notes(notes_to_roll(notes, 24), 24)
    assert note_list(back) == note_list(keyboard_reference(notes)) == [(62, 1.0, 2.0)]


OUT_OF_RANGE = [(0, 0, 1), (12, 1, 2), (20, 2, 3), (21, 3, 4), (108, 4, 5), (109, 5, 6), (120, 6, 7), (127, 7, 8),
                (20, 8, 10), (32, 8, 9)]  # the last two fold onto one key at one onset: the longer stays
OUT_OF_RANGE_KEPT = {
    "fold": [(24, 0, 1), (24, 1, 2), (32, 2, 3), (21, 3, 4), (108, 4, 5), (97, 5, 6), (108, 6, 7), (103, 7, 8),
             (32, 8, 10)],
    "drop": [(21, 3, 4), (108, 4, 5), (32, 8, 9)],
}


@pytest.mark.parametrize("mode", ["fold", "drop"])
def test_out_of_range_notes_are_folded_or_dropped_and_counted(tmp_path, mode):
    src = write_midi(tmp_path / "in.mid", OUT_OF_RANGE)
    piece, back = round_trip(src, FrameGrid(out_of_range=mode))
    assert note_list(back.notes) == sorted(OUT_OF_RANGE_KEPT[mode])
    assert piece.stats["out_of_range"] == 7 and piece.stats["out_of_range_mode"] == mode
    assert piece.stats["notes"] == len(OUT_OF_RANGE)
    assert piece.stats["keyboard_notes"] == len(OUT_OF_RANGE_KEPT[mode])


def test_a_pickup_bar_falls_before_the_first_frame_boundary(tmp_path):
    src = write_midi(tmp_path / "in.mid", [(67, 0, 0.5), (60, 0.5, 4.5), (64, 4.5, 8.5)],
                     time_signatures=[(0, 1, 8), (0.5, 4, 4)])
    piece, back = assert_round_trip(src)
    assert piece.lead_in == 0.5
    numerators, denominators, beat_in_bar = piece.meter_per_frame()
    assert beat_in_bar[0] == 3.0 and beat_in_bar[1] == 0.0
    assert beat_in_bar.tolist() == [3.0, 0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0]
    assert numerators.tolist() == [4] * 9 and denominators.tolist() == [4] * 9
    assert piece.frames[0, ONSET, 67 - LOWEST_PITCH].tolist() == [0] * 12 + [1] + [0] * 11  # the pickup: beat 3.5
    assert piece.frames[1, ONSET, 60 - LOWEST_PITCH, 0] == 1  # the downbeat starts frame 1


METER_CHANGES = {  # name: (time signatures, last beat, lead-in, beat in bar, numerator of each frame)
    "4/4 3/8 4/4": ([(0, 4, 4), (4, 3, 8), (5.5, 4, 4)], 13.5, 0.0,
                    [0, 1, 2, 3, 0, 1, 0.5, 1.5, 2.5, 3.5, 0.5, 1.5, 2.5, 3.5], [4, 4, 4, 4, 3, 3] + [4] * 8),
    "4/4 3/8 then long 4/4": ([(0, 4, 4), (4, 3, 8), (5.5, 4, 4)], 21.5, 0.5,
                              [3.5, 0.5, 1.5, 2.5, 3.5, 0.5] + [0, 1, 2, 3] * 4, [4] * 5 + [3] + [4] * 16),
    "3/4 then 6/8": ([(0, 3, 4), (6, 6, 8)], 12, 0.0, [0, 1, 2] * 4, [3] * 6 + [6] * 6),
    "7/8": ([(0, 7, 8)], 14, 0.0, [0, 1, 2, 3, 0.5, 1.5, 2.5, 0, 1, 2, 3, 0.5, 1.5, 2.5], [7] * 14),
    "change after the last note": ([(0, 4, 4), (8, 3, 4)], 3, 0.0, [0, 1, 2], [4, 4, 4]),
}


@pytest.mark.parametrize("case", METER_CHANGES)
def test_meter_changes_give_the_beat_in_the_bar(tmp_path, case):
    signatures, end, lead_in, expected_beats, expected_numerators = METER_CHANGES[case]
    src = write_midi(tmp_path / "in.mid", [(60, 0, end - 1), (62, end - 1, end)], time_signatures=signatures)
    piece, _ = assert_round_trip(src)
    numerators, _, beat_in_bar = piece.meter_per_frame()
    assert piece.lead_in == lead_in
    assert beat_in_bar.tolist() == expected_beats
    assert numerators.tolist() == expected_numerators


@pytest.mark.parametrize("length", [1, 23, 24, 25, 72, 100])
@pytest.mark.parametrize("steps", [12, 24, 32])
def test_frames_and_roll_reshape_into_each_other(length, steps):
    roll = (np.random.default_rng(length * steps).random((2, 88, length)) < 0.1).astype(np.uint8)
    frames = roll_to_frames(roll, steps)
    n = math.ceil(length / steps)
    assert frames.shape == (n, 2, 88, steps) and frames.dtype == np.uint8
    padded = frames_to_roll(frames)
    assert padded.shape == (2, 88, n * steps)
    assert np.array_equal(padded[:, :, :length], roll) and not padded[:, :, length:].any()
    for i in range(n):
        assert np.array_equal(frames[i], padded[:, :, i * steps:(i + 1) * steps])
    assert np.array_equal(roll_to_frames(padded, steps), frames)


# one key's row: '.' silent, '-' sounding without onset, 'o' onset and sounding, 'x' onset without sounding
ROWS = {
    "sounding without onset": ("-----", [(0, 5)]),
    "a run without onset": ("..---..", [(2, 5)]),
    "onset without sounding": ("x....", [(0, 1)]),
    "two onsets without sounding": ("x.x..", [(0, 1), (2, 3)]),
    "re-struck run": ("o--o-", [(0, 3), (3, 5)]),
    "onsets in a row": ("oo.o", [(0, 1), (1, 2), (3, 4)]),
    "onset without sounding before a run": ("x---", [(0, 1), (1, 4)]),
    "mixed": ("--o--x", [(0, 2), (2, 5), (5, 6)]),
    "broken run": ("-.-.-", [(0, 1), (2, 3), (4, 5)]),
    "onset in the last cell": ("....o", [(4, 5)]),
    "bare onset in the last cell": ("....x", [(4, 5)]),
}


def row_roll(row: str, key: int = 40) -> np.ndarray:
    roll = np.zeros((2, 88, len(row)), dtype=np.uint8)
    roll[ONSET, key] = [c in "ox" for c in row]
    roll[SOUNDING, key] = [c in "o-" for c in row]
    return roll


@pytest.mark.parametrize("case", ROWS)
def test_roll_to_notes_reads_inconsistent_rolls_sensibly(case):
    row, expected = ROWS[case]
    notes = roll_to_notes(row_roll(row), 4)
    assert note_list(notes) == [(40 + LOWEST_PITCH, s / 4, e / 4) for s, e in expected]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_roll_reads_as_playable_notes(data):
    """Onsets and the starts of sounding runs begin notes; every onset or sounding cell is covered once."""
    keys, length = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 30))
    cells = st.lists(st.lists(st.booleans(), min_size=length, max_size=length), min_size=keys, max_size=keys)
    onset, sounding = np.array(data.draw(cells), dtype=bool), np.array(data.draw(cells), dtype=bool)
    roll = np.zeros((2, 88, length), dtype=np.uint8)
    roll[ONSET, 10:10 + keys], roll[SOUNDING, 10:10 + keys] = onset, sounding
    notes = roll_to_notes(roll, 4)
    listed = note_list(notes)
    assert all(e > s for _, s, e in listed)
    for (p, _, e), (q, t, _) in zip(listed, listed[1:]):
        assert p != q or e <= t
    rising = sounding & ~np.pad(sounding, ((0, 0), (1, 0)))[:, :-1]
    again = notes_to_roll(notes, 4, n_steps=length)
    assert np.array_equal(again[ONSET, 10:10 + keys], onset | rising)
    assert np.array_equal(again[SOUNDING, 10:10 + keys], sounding | onset)
    assert note_list(roll_to_notes(again, 4)) == listed


@st.composite
def on_grid_notes(draw):
    steps = draw(st.sampled_from([12, 24, 32]))
    pitch = st.integers(21, 108) | st.sampled_from([21, 60, 108])  # the edges, and keys struck again
    notes = draw(st.lists(st.tuples(pitch, st.integers(0, 8 * steps), st.integers(1, 4 * steps)),
                          min_size=1, max_size=25))
    return steps, [(p, s / steps, (s + d) / steps) for p, s, d in notes]


@PROPERTY
@given(on_grid_notes())
def test_random_on_grid_notes_round_trip_exactly(tmp_path, grid_and_notes):
    steps, notes = grid_and_notes
    src = write_pretty_midi(tmp_path / "in.mid", split_voices(notes))
    assert note_list(read_midi(src).notes) == sorted(notes)
    _, back = round_trip(src, FrameGrid(steps))
    assert note_list(back.notes) == note_list(keyboard_reference(Notes(*zip(*notes))))
    assert note_list(keyboard_reference(back.notes)) == note_list(back.notes)


# --- the cache -----------------------------------------------------------------------------------

@pytest.fixture
def midi_file(tmp_path):
    return write_midi(tmp_path / "piece.mid", ROUND_TRIPS["pickup and meter changes"][0],
                      **ROUND_TRIPS["pickup and meter changes"][1])


@pytest.fixture
def counted_reads(monkeypatch):
    """Count the MIDI files the cache had to parse."""
    calls = []

    def counting(path):
        calls.append(path)
        return read_midi(path)

    monkeypatch.setattr(dataset, "read_midi", counting)
    return calls


def assert_same_piece(a, b):
    assert np.array_equal(a.frames, b.frames) and a.frames.dtype == b.frames.dtype
    assert (a.grid, a.lead_in, a.source, a.stats) == (b.grid, b.lead_in, b.source, b.stats)
    assert a.tempos == b.tempos and a.time_signatures == b.time_signatures


def test_a_second_load_comes_from_the_cache(tmp_path, midi_file, monkeypatch):
    cache = tmp_path / "cache"
    first = dataset.load_piece(midi_file, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_parsing(path):
        raise AssertionError(f"{path} parsed again despite the cache")

    monkeypatch.setattr(dataset, "read_midi", no_parsing)
    second = dataset.load_piece(midi_file, cache_dir=cache)
    assert_same_piece(first, second)
    assert_same_piece(second, score_to_piece(read_midi(midi_file)))


def test_a_different_grid_is_a_different_cache_entry(tmp_path, midi_file, counted_reads):
    cache = tmp_path / "cache"
    grids = [FrameGrid(24), FrameGrid(12), FrameGrid(24, out_of_range="drop")]
    pieces = [dataset.load_piece(midi_file, grid, cache_dir=cache) for grid in grids]
    assert len(counted_reads) == 3 and len(list(cache.glob("*.npz"))) == 3
    assert [p.frames.shape[-1] for p in pieces] == [24, 12, 24]
    again = [dataset.load_piece(midi_file, grid, cache_dir=cache) for grid in grids]
    assert len(counted_reads) == 3
    for piece, cached in zip(pieces, again):
        assert_same_piece(piece, cached)


def test_changed_content_is_not_served_from_the_cache(tmp_path, midi_file, counted_reads):
    cache = tmp_path / "cache"
    dataset.load_piece(midi_file, cache_dir=cache)
    write_midi(midi_file, [(70, 0, 1)])
    piece = dataset.load_piece(midi_file, cache_dir=cache)
    assert len(counted_reads) == 2
    assert note_list(piece.notes()) == [(70, 0.0, 1.0)]


CORRUPTIONS = {
    "garbage": lambda data: b"not a cache entry",
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "flipped bytes": lambda data: data[:40] + bytes(b ^ 0xFF for b in data[40:80]) + data[80:],
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupted_cache_entry_is_rebuilt(tmp_path, midi_file, counted_reads, corruption):
    cache = tmp_path / "cache"
    fresh = dataset.load_piece(midi_file, cache_dir=cache)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(CORRUPTIONS[corruption](entry.read_bytes()))
    rebuilt = dataset.load_piece(midi_file, cache_dir=cache)
    assert len(counted_reads) == 2
    assert_same_piece(fresh, rebuilt)
    assert_same_piece(fresh, dataset.load_saved_piece(entry))  # the entry was written again


def test_a_cache_entry_with_wrong_metadata_is_rebuilt(tmp_path, midi_file, counted_reads):
    cache = tmp_path / "cache"
    fresh = dataset.load_piece(midi_file, cache_dir=cache)
    (entry,) = cache.glob("*.npz")
    np.savez(entry, bits=np.zeros(3, dtype=np.uint8), meta=np.array('{"shape": [99, 2, 88, 24]}'))
    assert_same_piece(fresh, dataset.load_piece(midi_file, cache_dir=cache))
    assert len(counted_reads) == 2


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_unwritable_cache_still_loads(tmp_path, midi_file, where):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache should be")
    cache = blocker if where == "a file" else blocker / "frames"
    piece = dataset.load_piece(midi_file, cache_dir=cache)
    assert_same_piece(piece, score_to_piece(read_midi(midi_file)))
    assert blocker.read_text() == "a file where the cache should be"


def test_load_pieces_returns_bad_files_with_their_reason(tmp_path, midi_file):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    pieces, failures = dataset.load_pieces([midi_file, bad, tmp_path / "missing.mid"], cache_dir=tmp_path / "c")
    assert [p.source for p in pieces] == [str(midi_file)]
    assert [f.path for f in failures] == [str(bad), str(tmp_path / "missing.mid")]
    assert failures[0].reason.startswith("corrupt or truncated MIDI") and failures[1].reason == "no such file"


# --- the Goldberg corpus -------------------------------------------------------------------------

@pytest.mark.parametrize("name", goldberg_files() or ["corpus-missing"])
def test_goldberg_round_trip(goldberg_dir, tmp_path, name):
    score = read_midi(goldberg_dir / name)
    piece, back = round_trip(goldberg_dir / name, out=tmp_path / name)
    reference = keyboard_reference(score.notes)
    f1 = note_f1(reference, back.notes)
    assert f1["onset_f1"] == 1.0 and f1["note_f1"] >= 0.999, f1
    assert f1["estimated_notes"] == f1["reference_notes"]
    assert piece.stats["out_of_range"] == 0
    assert back.time_signatures == score.time_signatures


def test_goldberg_corpus_is_complete(goldberg_dir):
    assert len(list(goldberg_dir.glob("*.mid"))) == 31
