"""Regenerating bars of a MIDI file: kept notes kept exactly, new notes inside the bars, the
future shown to a model trained to fill gaps, bad ranges refused."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from bachsformer.editing import NEW_TRACK, SPAN_DRAWS, bar_spans, context_key, parse_bar_range
from bachsformer.errors import GenerationError
from bachsformer.generation import Bachsformer
from bachsformer.tokens import EXTRA_INPUTS
from conftest import N, write_midi
from ludovico_vae.midi import LOWEST_PITCH, Notes, beats_of_seconds, read_midi

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tiny_fill_pair):
    torch.set_num_threads(1)
    return Bachsformer.from_checkpoints(tiny_fill_pair, "cpu")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Eight bars of 3/4 in two tracks; a bass note held from bar 2 into bar 3."""
    path = tmp_path_factory.mktemp("editing") / "theme.mid"
    melody = [N(60 + (beat * 5) % 12, beat, beat + 0.5) for beat in range(24)]
    melody += [N(72, beat + 0.5, beat + 1) for beat in range(24)]
    bass = [N(43, 0, 3), N(45, 3, 7.5), N(47, 7.5, 12), N(48, 12, 24)]
    write_midi(path, melody + bass, time_signatures=((0.0, 3, 4),))
    return path


def _notes(midi, instruments=None) -> list:
    """(pitch, start beat, end beat) of every note of the named tracks (all but bachsformer's by default)."""
    out = []
    for inst in midi.instruments:
        if (instruments is None and inst.name != NEW_TRACK) or (instruments and inst.name in instruments):
            starts = beats_of_seconds(midi, [n.start for n in inst.notes])
            ends = beats_of_seconds(midi, [n.end for n in inst.notes])
            out += [(n.pitch, float(s), float(e)) for n, s, e in zip(inst.notes, starts, ends)]
    return sorted(out)


def _decoding_a_held_note(frames_shape):
    """A stand-in decoder: whatever the codes, each gap's frames hold key 39 (C4) struck at their start."""
    def decode(indices, carry=None, chunk=64):
        frames = np.zeros((*indices.shape[:2], *frames_shape), dtype=np.uint8)
        frames[:, :, 1, 39] = 1
        frames[:, 0, 0, 39, 0] = 1
        return frames
    return decode


def test_notes_outside_the_bars_are_kept_exactly_and_new_ones_stay_inside(model, source, monkeypatch):
    monkeypatch.setattr(model.vae, "decode_pieces", _decoding_a_held_note(model.grid.frame_shape))
    piece = model.regenerate(source, [(3, 4), (7, 7)], seed=0)[0]
    original = _notes(pretty_midi.PrettyMIDI(str(source)))
    kept = _notes(piece.midi)
    spans = [(6.0, 12.0), (18.0, 21.0)]
    inside = lambda beat: any(a <= beat < b for a, b in spans)  # noqa: E731
    expected = []
    for pitch, start, end in original:
        if inside(start):
            continue
        cut = [a for a, _ in spans if start < a < end]  # held into a span: cut where it begins
        expected.append((pitch, start, min(cut) if cut else end))
    assert kept == sorted(expected)
    assert (45, 3.0, 6.0) in kept  # the bass held from bar 2 into bar 3 ends at bar 3
    assert _notes(piece.midi, [NEW_TRACK]) == [(60, 6.0, 12.0), (60, 18.0, 21.0)]  # one held note per span


def _decoding_what_is_carried_on(frames_shape):
    """A stand-in decoder that holds on, through a gap's first frame and unstruck, every key it is
    told sounds before the gap (`carry`), and strikes key 39 (C4) at the gap's start."""
    def decode(indices, carry=None, chunk=64):
        frames = np.zeros((*indices.shape[:2], *frames_shape), dtype=np.uint8)
        frames[:, 0, 0, 39, 0] = frames[:, 0, 1, 39] = 1
        if carry is not None:
            frames[:, 0, 1] |= np.asarray(carry, dtype=np.uint8)[:, :, None]
        return frames
    return decode


def test_a_note_the_new_bars_hold_on_is_kept_whole_not_struck_again(model, source, monkeypatch):
    """The new bars are decoded after the bar before them: a bass note held into them that the
    decoder holds on stays one note, as the file has it, rather than cut and struck again."""
    monkeypatch.setattr(model.vae, "decode_pieces", _decoding_what_is_carried_on(model.grid.frame_shape))
    piece = model.regenerate(source, [(3, 4)], seed=0)[0]
    assert (45, 3.0, 7.5) in _notes(piece.midi)  # held from bar 2 into bar 3: whole
    new = _notes(piece.midi, [NEW_TRACK])
    assert (60, 6.0, 7.0) in new and not [n for n in new if n[0] == 45]  # C4 struck; the bass not again


def test_the_same_seed_writes_the_same_bars_and_sample_i_is_seed_plus_i(model, source):
    one, two = model.regenerate(source, [(2, 3)], seed=5, num_samples=2)
    again = model.regenerate(source, [(2, 3)], seed=6)[0]
    assert one.seed == 5 and two.seed == 6
    assert np.array_equal(two.tokens, again.tokens) and _notes(two.midi, [NEW_TRACK]) == _notes(again.midi, [NEW_TRACK])
    assert len(one.tokens) == 6 * 16  # bars 2-3 of 3/4: six frames of codes


C_MAJOR, F_SHARP_MAJOR = 0, 6
TRIADS = {C_MAJOR: (60, 64, 67), F_SHARP_MAJOR: (66, 70, 73)}


@pytest.fixture(scope="module")
def in_c(tmp_path_factory):
    """Twelve bars of C major in 3/4: a scale over the tonic triad, bar after bar."""
    path = tmp_path_factory.mktemp("editing") / "in_c.mid"
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    notes = [N(scale[b % 8] + 12, b, b + 1) for b in range(36)]
    notes += [N(p, 3 * bar, 3 * bar + 3) for bar in range(12) for p in (48, 52, 55)]
    write_midi(path, notes, time_signatures=((0.0, 3, 4),))
    return path


def _decoding_triads(frames_shape, keys: list, calls: list):
    """A stand-in decoder: its n-th call writes, in every row, the tonic triad of keys[n] held and
    struck at each frame (the last of the list once it runs out)."""
    def decode(indices, carry=None, chunk=64):
        frames = np.zeros((*indices.shape[:2], *frames_shape), dtype=np.uint8)
        pitches = np.array(TRIADS[keys[min(len(calls), len(keys) - 1)]]) - LOWEST_PITCH
        frames[:, :, 1, pitches] = 1
        frames[:, :, 0, pitches, 0] = 1
        calls.append(len(indices))
        return frames
    return decode


def _new_pitch_classes(piece) -> set:
    return {p % 12 for p, _, _ in _notes(piece.midi, [NEW_TRACK])}


def test_new_bars_that_leave_the_key_around_them_are_drawn_again(model, in_c, monkeypatch):
    """Bars 5-6 drawn first in F# major, around them C major: drawn again, and the draw in C kept."""
    calls = []
    monkeypatch.setattr(model.vae, "decode_pieces",
                        _decoding_triads(model.grid.frame_shape, [F_SHARP_MAJOR, F_SHARP_MAJOR, C_MAJOR], calls))
    pieces = model.regenerate(in_c, [(5, 6)], seed=0, num_samples=2)
    assert calls == [2, 2, 2]  # both versions drawn three times: twice in F#, then in C
    assert all(_new_pitch_classes(p) == {0, 4, 7} for p in pieces)
    calls.clear()
    again = model.regenerate(in_c, [(5, 6)], seed=0, num_samples=2)  # the same seed: the same draws
    assert [a.tokens.tolist() for a in again] == [p.tokens.tolist() for p in pieces]


def test_when_no_draw_keeps_the_key_the_first_is_written(model, in_c, monkeypatch):
    calls = []
    monkeypatch.setattr(model.vae, "decode_pieces", _decoding_triads(model.grid.frame_shape, [F_SHARP_MAJOR], calls))
    first = model.regenerate(in_c, [(5, 6)], seed=3)[0]
    assert calls == [1] * SPAN_DRAWS and _new_pitch_classes(first) == {6, 10, 1}
    monkeypatch.undo()
    calls.clear()
    monkeypatch.setattr(model.vae, "decode_pieces", _decoding_triads(model.grid.frame_shape, [C_MAJOR], calls))
    kept = model.regenerate(in_c, [(5, 6)], seed=3)[0]
    assert calls == [1] and np.array_equal(kept.tokens, first.tokens)  # the first draw is the version's own


def test_the_key_around_a_span_is_read_from_the_bars_on_both_sides(in_c):
    notes = read_midi(in_c).notes
    bounds = np.arange(0, 37, 3.0)  # 12 bars of 3/4 and the end
    assert context_key(notes, bounds, 12.0, 18.0) == C_MAJOR
    inside = (notes.start >= 12.0) & (notes.start < 18.0)
    moved = Notes(np.where(inside, notes.pitch + 6, notes.pitch), notes.start, notes.end)  # the span itself in F#
    assert context_key(moved, bounds, 12.0, 18.0) == C_MAJOR
    silent = Notes(np.zeros(0, int), np.zeros(0), np.zeros(0))
    assert context_key(silent, bounds, 12.0, 18.0) is None


def test_a_model_trained_to_fill_gaps_sees_the_future_first(model, source, monkeypatch):
    seen = []
    real = model.transformer.generate

    def spy(prompt, n_new, **kwargs):
        seen.append((prompt.shape[1], kwargs["extras"][0, :, model.extra_inputs.index("future")].tolist()))
        return real(prompt, n_new, **kwargs)

    monkeypatch.setattr(model.transformer, "generate", spy)
    model.regenerate(source, [(4, 4)], seed=0)
    # a context of 4 frames cannot hold the bar's 3 frames, its future and its past at once: the
    # first frame is written straight on, the last two seeing the future (one frame) first (a
    # span that left the key is drawn again the same way)
    assert len(seen) % 2 == 0 and set(seen[0][1]) == {0} and seen[2:] == seen[:2] * (len(seen) // 2 - 1)
    length, future = seen[1]
    assert future == [1] * 16 + [0] * (length - 16) + [0] * 32
    assert length + 32 <= model.transformer.config.block_size


def test_a_model_without_the_future_input_continues_into_the_bars(tiny_plan_pair, source):
    plain = Bachsformer.from_checkpoints(tiny_plan_pair, "cpu")
    assert "future" not in plain.extra_inputs
    piece = plain.regenerate(source, [(1, 2)], seed=0)[0]  # from the very start: nothing before
    assert len(piece.tokens) == 6 * 16 and piece.frames.shape[0] >= 24
    assert all(s >= 6 for _, s, _ in _notes(piece.midi))  # bars 1-2 (beats 0-6) hold only new notes


@pytest.mark.parametrize("ranges, reason", [
    ([(0, 2)], "outside the piece, which has bars 1 to 8"), ([(7, 9)], "outside the piece"),
    ([(4, 2)], "run backwards"), ([(2, 4), (4, 5)], "overlap"), ([], "no bars")])
def test_bad_ranges_are_refused_naming_the_file(model, source, ranges, reason):
    with pytest.raises(GenerationError, match=reason) as error:
        model.regenerate(source, ranges, seed=0)
    assert str(source) in str(error.value)


def test_bar_ranges_parse_from_text():
    assert parse_bar_range("5:8") == (5, 8) and parse_bar_range("3") == (3, 3)
    for bad in ("a:b", "1:2:3", ""):
        with pytest.raises(GenerationError, match="expected A:B"):
            parse_bar_range(bad)
    assert bar_spans("x.mid", [(2, 3)], np.array([0.0, 3.0, 6.0, 9.0]), 11.0) == [(3.0, 9.0)]
    assert bar_spans("x.mid", [(4, 4)], np.array([0.0, 3.0, 6.0, 9.0]), 11.0) == [(9.0, 11.0)]


def test_a_performance_is_refused(model, tmp_path):
    path = tmp_path / "played.mid"
    rng = np.random.default_rng(0)
    write_midi(path, [N(60 + k % 7, k * 0.5 + int(rng.integers(15, 100)) / 480, k * 0.5 + 0.45) for k in range(40)])
    with pytest.raises(GenerationError, match="a performance, not a score"):
        model.regenerate(path, [(2, 2)], seed=0)


def test_the_command_line_regenerates_bars_and_refuses_bad_ranges(tiny_fill_pair, source, tmp_path):
    run = lambda *args: subprocess.run([sys.executable, str(ROOT / "generate.py"), "--checkpoint-dir",  # noqa: E731
                                        str(tiny_fill_pair), "--device", "cpu", *args],
                                       capture_output=True, text=True, cwd=tmp_path)
    done = run("--input", str(source), "--regenerate", "2:3", "--regenerate", "6", "--seed", "3", "--out", "out")
    assert done.returncode == 0, done.stderr
    written = Path(tmp_path / "out" / "theme-seed3-bars2-3_6-t1.mid")
    assert done.stdout.split() == [str(Path("out") / written.name)] and written.exists()
    again = run("--input", str(source), "--regenerate", "2:3", "--regenerate", "6", "--seed", "3", "--out", "out")
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run("--input", str(source), "--regenerate", "9:12", "--out", "other")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "theme.mid: bars 9:12" in bad.stderr
    assert not (tmp_path / "other").exists()
    lonely = run("--regenerate", "2:3")
    assert lonely.returncode == 2 and "--regenerate needs --input" in lonely.stderr


def test_the_future_input_is_a_known_extra():
    assert "future" in EXTRA_INPUTS
