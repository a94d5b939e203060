"""Harmonising a line: the line found, kept note for note, the new voices below (above) it, the
frame search choosing the candidate that plays the line, bad input refused."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from bachsformer.editing import NEW_TRACK
from bachsformer.errors import GenerationError
from bachsformer.generation import Bachsformer
from bachsformer.harmonise import _best, line_of
from conftest import N, write_midi
from ludovico_vae.midi import MidiError, Notes, beats_of_seconds

ROOT = Path(__file__).resolve().parents[2]
SOPRANO = [N(67, 0, 1), N(69, 1, 2), N(71, 2, 4), N(72, 4, 5), N(71, 5, 6), N(69, 6, 8)]
ALTO = [N(62, 0, 2), N(64, 2, 3), N(62, 3, 5), N(64, 5, 8)]
BASS = [N(43, 0, 4), N(48, 4, 6), N(50, 6, 8)]


@pytest.fixture(scope="module")
def model(tiny_plan_pair):
    torch.set_num_threads(1)
    return Bachsformer.from_checkpoints(tiny_plan_pair, "cpu")


@pytest.fixture
def chorale(tmp_path):
    return write_midi(tmp_path / "chorale.mid", SOPRANO + ALTO + BASS, time_signatures=((0.0, 4, 4),))


def _notes(midi, names) -> list:
    out = []
    for inst in midi.instruments:
        if inst.name in names:
            s = beats_of_seconds(midi, [n.start for n in inst.notes])
            e = beats_of_seconds(midi, [n.end for n in inst.notes])
            out += [(n.pitch, float(a), float(b)) for n, a, b in zip(inst.notes, s, e)]
    return sorted(out)


def _as_notes(notes) -> Notes:
    return Notes([n.pitch for n in notes], [n.start for n in notes], [n.end for n in notes])


def test_the_top_and_bottom_lines_of_a_chorale_are_its_soprano_and_bass():
    notes = _as_notes(SOPRANO + ALTO + BASS)
    top = notes.select(line_of(notes, "top"))
    bottom = notes.select(line_of(notes, "bottom"))
    assert sorted(zip(top.pitch, top.start)) == sorted((n.pitch, n.start) for n in SOPRANO)
    assert sorted(zip(bottom.pitch, bottom.start)) == sorted((n.pitch, n.start) for n in BASS)
    single = _as_notes(ALTO)
    assert len(line_of(single, "top")) == len(ALTO)


def _stand_in_decoder(frames_shape):
    """Each frame strikes one key above the soprano's range (C6) and one below (C3), whatever the codes."""
    def decode(indices, carry=None, chunk=64):
        frames = np.zeros((*indices.shape[:2], *frames_shape), dtype=np.uint8)
        for key in (63, 27):  # C6 and C3 (key 0 is A0)
            frames[:, :, 1, key] = 1
            frames[:, :, 0, key, 0] = 1
        return frames
    return decode


def test_the_line_is_kept_exactly_and_the_new_voices_stay_below_it(model, chorale, monkeypatch):
    monkeypatch.setattr(model.vae, "decode_pieces", _stand_in_decoder(model.grid.frame_shape))
    piece = model.harmonise(chorale, "top", seed=0)[0]
    kept = _notes(piece.midi, {"line", "chorale.mid"} | {i.name for i in piece.midi.instruments if i.name != NEW_TRACK})
    assert kept == sorted((n.pitch, float(n.start), float(n.end)) for n in SOPRANO)
    new = _notes(piece.midi, {NEW_TRACK})
    assert new and all(p == 48 for p, _, _ in new)  # C6 (84) is above the line: left out; C3 (48) kept


def test_a_bass_line_is_harmonised_above(model, chorale, monkeypatch):
    monkeypatch.setattr(model.vae, "decode_pieces", _stand_in_decoder(model.grid.frame_shape))
    piece = model.harmonise(chorale, "bottom", seed=0)[0]
    kept = _notes(piece.midi, {i.name for i in piece.midi.instruments if i.name != NEW_TRACK})
    assert kept == sorted((n.pitch, float(n.start), float(n.end)) for n in BASS)
    new = _notes(piece.midi, {NEW_TRACK})
    sounding = lambda beat: [n.pitch for n in BASS if n.start <= beat < n.end]  # noqa: E731
    assert new and all(p > max(sounding(s)) for p, s, _ in new)  # above the bass wherever it sounds
    assert {p for p, _, _ in new} == {48, 84}  # C3 above the G1 of beats 0-4, not above C3 or D3 later


def test_the_search_keeps_the_candidate_that_plays_the_line():
    line = np.zeros((2, 88, 24), dtype=np.uint8)
    line[0, 40, 0] = line[1, 40, :] = 1  # the line strikes key 40 on the beat and holds it
    candidates = np.zeros((3, 1, 2, 88, 24), dtype=np.uint8)
    candidates[0, 0, 0, 30, 0] = 1  # below, but not the line
    candidates[1, 0, 0, 40, 1] = candidates[1, 0, 0, 50, 0] = 1  # the line one step late, and a note above it
    candidates[2, 0, 0, 40, 0] = candidates[2, 0, 0, 33, 0] = 1  # the line, and a note below it
    assert _best(candidates, line, "top") == 2
    candidates[2, 0, 0, 40, 0] = 0
    assert _best(candidates, line, "top") == 1  # the line a step late beats no line at all


def test_the_same_seed_harmonises_alike(model, chorale):
    one, two = model.harmonise(chorale, seed=4, num_samples=2)
    again = model.harmonise(chorale, seed=5)[0]
    assert (one.seed, two.seed) == (4, 5) and np.array_equal(two.tokens, again.tokens)


def test_bad_input_is_refused(model, chorale, tmp_path):
    with pytest.raises(GenerationError, match="voice must be top or bottom"):
        model.harmonise(chorale, "middle")
    rng = np.random.default_rng(0)
    played = write_midi(tmp_path / "played.mid", [N(60 + k % 7, k * 0.5 + int(rng.integers(15, 100)) / 480,
                                                    k * 0.5 + 0.45) for k in range(40)])
    with pytest.raises(GenerationError, match="played.mid: a performance, not a score"):
        model.harmonise(played)
    drums = pretty_midi.PrettyMIDI()
    kit = pretty_midi.Instrument(0, is_drum=True)
    kit.notes = [pretty_midi.Note(100, 36, 0, 0.5)]
    drums.instruments.append(kit)
    drums.write(str(tmp_path / "drums.mid"))
    with pytest.raises(MidiError, match="drums.mid: only drum notes"):
        model.harmonise(tmp_path / "drums.mid")


def test_the_command_line_harmonises(tiny_plan_pair, chorale, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "generate.py"), "--checkpoint-dir",  # noqa: E731
                                     str(tiny_plan_pair), "--device", "cpu", *a], capture_output=True, text=True,
                                    cwd=tmp_path)
    done = run("--harmonise", str(chorale), "--voice", "bottom", "--seed", "1", "--out", "out")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "chorale-seed1-harmonised-bottom-t1.mid").exists()
    both = run("--harmonise", str(chorale), "--input", str(chorale), "--regenerate", "1:1")
    assert both.returncode == 2 and "--harmonise and --input each take a file of their own" in both.stderr


def test_a_rhythm_variation_keeps_every_onset_and_length(model, chorale, monkeypatch):
    monkeypatch.setattr(model.vae, "decode_pieces", _stand_in_decoder(model.grid.frame_shape))
    piece = model.variation(chorale, "rhythm", seed=0)[0]
    notes = _notes(piece.midi, {i.name for i in piece.midi.instruments})
    original = sorted((n.pitch, float(n.start), float(n.end)) for n in SOPRANO + ALTO + BASS)
    assert sorted((s, e) for _, s, e in notes) == sorted((s, e) for _, s, e in original)
    assert {p for p, _, _ in notes} & {48, 84}  # pitches from what the model wrote at that moment
    for i, (p, s, e) in enumerate(notes):  # and never two notes on one key at once, which MIDI would merge
        assert not any(q == p and t < e and s < u for q, t, u in notes[i + 1:])
    with pytest.raises(GenerationError, match="keep must be rhythm or bass"):
        model.variation(chorale, "melody")


def test_repitching_takes_the_nearest_written_pitch_once_per_onset():
    from bachsformer.variation import repitched
    notes = _as_notes([N(72, 0, 1), N(60, 0, 1), N(64, 1, 2)])
    written = _as_notes([N(71, 0, 1), N(70, 0, 1), N(55, 0, 2)])
    assert repitched(notes, written).tolist() == [71, 55, 55]  # 60 takes the next free; at beat 1 55 sounds
    held = _as_notes([N(60, 0, 2), N(62, 1, 2)])  # a held note: the key it took stays taken while it sounds
    assert repitched(held, _as_notes([N(55, 0, 2)])).tolist() == [55, 62]  # 62 keeps its own key


def test_the_search_avoids_parallel_fifths_under_the_line():
    from bachsformer.harmonise import _LineScorer
    lines = np.zeros((2, 2, 88, 24), dtype=np.uint8)
    for frame, key in ((0, 46), (1, 48)):  # the line steps up a tone, G4 to A4 (key k is MIDI 21 + k)
        lines[frame, 0, key, 0] = 1
        lines[frame, 1, key, :] = 1
    scorer = _LineScorer(lines, "top")
    first = np.zeros((1, 1, 2, 88, 24), dtype=np.uint8)
    first[0, 0, :, 46, 0] = first[0, 0, 1, 39, :] = first[0, 0, 0, 39, 0] = 1  # G4 over C4: a fifth
    assert scorer(0, first) == 0
    second = np.zeros((2, 1, 2, 88, 24), dtype=np.uint8)
    for row, bass in ((0, 41), (1, 36)):  # A4 over D4: parallel fifths; over A3: contrary motion
        second[row, 0, :, 48, 0] = 1
        second[row, 0, 1, bass, :] = second[row, 0, 0, bass, 0] = 1
    assert scorer(1, second) == 1


def test_outer_pairs_come_in_time_order_so_parallels_across_frames_are_seen():
    from bachsformer.harmonise import _LineScorer, outer_pairs
    lines = np.zeros((2, 2, 88, 24), dtype=np.uint8)
    for frame, key, step in ((0, 48, 0), (0, 46, 12), (1, 48, 0)):  # A4, G4 on the half beat, then A4
        lines[frame, 0, key, step] = 1
        lines[frame, 1, key, step:step + 12] = 1
    first = np.zeros((1, 1, 2, 88, 24), dtype=np.uint8)
    first[0, 0, 1, 36, :12] = first[0, 0, 1, 34, 12:] = 1  # A3 then G3: octaves under the line
    first[0, 0, 0, 36, 0] = first[0, 0, 0, 34, 12] = 1
    assert outer_pairs(first[0, 0], lines[0], "top") == [(48, 36), (46, 34)]
    scorer = _LineScorer(lines, "top")
    scorer(0, first)
    second = np.zeros((2, 1, 2, 88, 24), dtype=np.uint8)
    for row, bass in ((0, 36), (1, 29)):  # G4-G3 to A4-A3: parallel octaves; to A4 over D3: a fifth
        second[row, 0, 1, bass, :] = second[row, 0, 0, bass, 0] = 1
    assert scorer(1, second) == 1


def test_candidates_are_decoded_after_the_frame_chosen_before_and_written_as_judged(model, chorale, monkeypatch):
    """Each frame's candidates are decoded with the keys sounding at the end of the frame chosen
    before carried (a held note goes on), and the piece is those chosen frames, exactly as the
    scorer judged them: decoded whole again, a later frame could change an earlier one's notes."""
    from bachsformer import harmonise as harmonise_module
    calls, judged, decode = [], [], model.vae.decode_pieces
    monkeypatch.setattr(model.vae, "decode_pieces", lambda indices, carry=None, **k: calls.append(
        (indices.clone(), None if carry is None else np.array(carry))) or decode(indices, carry=carry, **k))
    scorer = harmonise_module._LineScorer.__call__

    def judge(self, frame, candidates):
        kept = scorer(self, frame, candidates)
        judged.append(candidates[kept, 0].copy())
        return kept

    monkeypatch.setattr(harmonise_module._LineScorer, "__call__", judge)
    piece = model.harmonise(chorale, "top", seed=0)[0]
    tokens = piece.tokens.reshape(-1, model.indices_per_frame)
    assert len(calls) == len(tokens) and all(indices.shape[1] == 1 for indices, _ in calls)  # no decode after
    assert calls[0][1] is None
    for frame in range(1, len(tokens)):
        indices, carry = calls[frame]
        assert (carry == judged[frame - 1][1, :, -1].astype(bool)).all(), "what sounds at the end of the frame before"
    assert np.array_equal(piece.frames, np.stack(judged))
