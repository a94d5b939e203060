"""Reading MIDI in beats, the keyboard reference, and refusing bad files with a `MidiError`.

Every file is synthetic, written in the test on exact ticks, so the notes read back are compared
with the notes written one by one.
"""
from __future__ import annotations

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DRUMS, N, note_list, write_midi
from ludovico_vae.midi import MidiError, Notes, Score, keyboard_reference, read_midi

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# on whole ticks at 96, 220, 480 and 960 ticks per beat: sixteenths and longer
MELODY = [(60, 0.0, 1.0), (64, 0.25, 0.5), (67, 0.5, 2.75), (72, 1.0, 1.25), (48, 2.0, 6.0),
          (60, 3.5, 3.75), (59, 5.5, 7.0), (55, 6.75, 8.0)]
TEMPO_MAPS = {
    "constant": [(0.0, 120.0)],
    "changes": [(0.0, 100.0), (2.0, 60.0), (5.5, 180.0), (6.75, 45.0)],
    "first-change-late": [(3.0, 200.0)],
}


@pytest.mark.parametrize("tempo_map", TEMPO_MAPS)
@pytest.mark.parametrize("ticks_per_beat", [96, 220, 480, 960])
def test_notes_are_read_in_beats_whatever_the_resolution_and_tempo(tmp_path, ticks_per_beat, tempo_map):
    path = write_midi(tmp_path / "melody.mid", MELODY, ticks_per_beat=ticks_per_beat, tempos=TEMPO_MAPS[tempo_map])
    score = read_midi(path)
    assert note_list(score.notes) == sorted(MELODY)
    assert score.ticks_per_beat == ticks_per_beat
    assert score.source == str(path)


@pytest.mark.parametrize("ticks_per_beat", [96, 480])
@pytest.mark.parametrize("midi_type", [0, 1])
def test_tempo_changes_are_read_at_their_beat(tmp_path, midi_type, ticks_per_beat):
    tempos = TEMPO_MAPS["changes"]
    score = read_midi(write_midi(tmp_path / "t.mid", MELODY, tempos=tempos, midi_type=midi_type,
                                 ticks_per_beat=ticks_per_beat))
    assert [beat for beat, _ in score.tempos] == [beat for beat, _ in tempos]
    np.testing.assert_allclose([qpm for _, qpm in score.tempos], [qpm for _, qpm in tempos], rtol=1e-5)


def test_a_tempo_map_that_starts_late_begins_at_the_midi_default(tmp_path):
    score = read_midi(write_midi(tmp_path / "t.mid", MELODY, tempos=TEMPO_MAPS["first-change-late"]))
    assert [b for b, _ in score.tempos] == [0.0, 3.0]
    np.testing.assert_allclose([q for _, q in score.tempos], [120.0, 200.0], rtol=1e-5)


METERS = {
    "none written": ([], [(0.0, 4, 4)]),
    "one": ([(0.0, 3, 4)], [(0.0, 3, 4)]),
    "changes": ([(0.0, 4, 4), (4.0, 3, 8), (5.5, 6, 8), (8.5, 2, 2)],
                [(0.0, 4, 4), (4.0, 3, 8), (5.5, 6, 8), (8.5, 2, 2)]),
    "pickup": ([(0.0, 1, 8), (0.5, 4, 4)], [(0.0, 1, 8), (0.5, 4, 4)]),
    "first late": ([(2.0, 3, 4)], [(0.0, 4, 4), (2.0, 3, 4)]),
    "two at one tick": ([(0.0, 2, 4), (0.0, 3, 4), (3.0, 5, 8)], [(0.0, 3, 4), (3.0, 5, 8)]),
}


@pytest.mark.parametrize("ticks_per_beat", [96, 480])
@pytest.mark.parametrize("meter", METERS)
def test_time_signatures_are_read_at_their_beat(tmp_path, meter, ticks_per_beat):
    written, expected = METERS[meter]
    score = read_midi(write_midi(tmp_path / "m.mid", MELODY, time_signatures=written, ticks_per_beat=ticks_per_beat,
                                 tempos=TEMPO_MAPS["changes"]))
    assert score.time_signatures == expected


@pytest.mark.parametrize("meta_track", [0, -1], ids=["conductor-track", "last-track"])
def test_tempo_and_meter_are_read_from_whichever_track_holds_them(tmp_path, meta_track):
    """The midi.py docstring promises type-1 files whose meta events are not on the first track."""
    tempos, meters = TEMPO_MAPS["changes"], METERS["changes"][0]
    score = read_midi(write_midi(tmp_path / "m.mid", MELODY, tempos=tempos, time_signatures=meters,
                                 meta_track=meta_track))
    assert note_list(score.notes) == sorted(MELODY)
    assert score.time_signatures == meters
    assert [b for b, _ in score.tempos] == [b for b, _ in tempos]
    np.testing.assert_allclose([q for _, q in score.tempos], [q for _, q in tempos], rtol=1e-5)


SPREAD = [N(60, 0, 1, channel=0, track=0), N(64, 0, 2, channel=1, track=0), N(67, 1, 3, channel=2, track=1),
          N(72, 2, 4, channel=15, track=2), N(48, 0.5, 1.5, channel=3, track=2), N(60, 2, 3, channel=1, track=1)]


@pytest.mark.parametrize("midi_type", [0, 1])
def test_notes_of_every_track_and_channel_are_merged(tmp_path, midi_type):
    score = read_midi(write_midi(tmp_path / "s.mid", SPREAD, midi_type=midi_type))
    assert note_list(score.notes) == sorted((n.pitch, n.start, n.end) for n in SPREAD)
    assert score.drum_notes == 0


def test_type_0_and_type_1_give_the_same_score(tmp_path):
    kwargs = dict(tempos=TEMPO_MAPS["changes"], time_signatures=METERS["changes"][0], ticks_per_beat=220)
    type0 = read_midi(write_midi(tmp_path / "0.mid", SPREAD, midi_type=0, **kwargs))
    type1 = read_midi(write_midi(tmp_path / "1.mid", SPREAD, midi_type=1, **kwargs))
    assert note_list(type0.notes) == note_list(type1.notes)
    assert type0.time_signatures == type1.time_signatures
    assert type0.tempos == type1.tempos


@pytest.mark.parametrize("midi_type", [0, 1])
def test_drums_are_ignored_and_counted(tmp_path, midi_type):
    drums = [N(36, b, b + 0.25, channel=DRUMS, track=1) for b in np.arange(0, 4, 0.5)]
    score = read_midi(write_midi(tmp_path / "d.mid", SPREAD + drums, midi_type=midi_type))
    assert note_list(score.notes) == sorted((n.pitch, n.start, n.end) for n in SPREAD)
    assert score.drum_notes == len(drums)


def test_notes_overlapping_on_one_key_in_different_channels_are_all_read(tmp_path):
    written = [N(60, 0, 4, channel=0), N(60, 1, 2, channel=1), N(60, 0, 1, channel=2), N(62, 0, 1, channel=3)]
    score = read_midi(write_midi(tmp_path / "o.mid", written, midi_type=0))
    assert note_list(score.notes) == sorted(n[:3] for n in written)
    assert note_list(keyboard_reference(score.notes)) == [(60, 0, 1), (60, 1, 2), (62, 0, 1)]


KEYBOARD_RULES = {
    "distinct keys untouched": ([(60, 0, 1), (62, 0, 2), (64, 0.5, 3)], [(60, 0, 1), (62, 0, 2), (64, 0.5, 3)]),
    "same onset keeps the longer": ([(60, 0, 1), (60, 0, 2.5), (60, 0, 2)], [(60, 0, 2.5)]),
    "struck again ends the sounding note": ([(60, 0, 4), (60, 1, 2)], [(60, 0, 1), (60, 1, 2)]),
    "struck again while still longer": ([(60, 0, 2), (60, 1, 3)], [(60, 0, 1), (60, 1, 3)]),
    "three strikes": ([(60, 0, 8), (60, 2, 8), (60, 5, 6)], [(60, 0, 2), (60, 2, 5), (60, 5, 6)]),
    "merge then cut": ([(60, 0, 1), (60, 0, 3), (60, 2, 4)], [(60, 0, 2), (60, 2, 4)]),
    "touching notes untouched": ([(60, 0, 1), (60, 1, 2)], [(60, 0, 1), (60, 1, 2)]),
    "zero length dropped": ([(60, 1, 1), (62, 0, 1)], [(62, 0, 1)]),
    "negative length dropped": ([(60, 2, 1), (62, 0, 1)], [(62, 0, 1)]),
    "zero length does not cut": ([(60, 0, 4), (60, 2, 2)], [(60, 0, 4)]),
    "empty": ([], []),
}


def as_notes(triples) -> Notes:
    triples = list(triples)
    return Notes(*(np.array([t[i] for t in triples]) for i in range(3))) if triples else Notes([], [], [])


@pytest.mark.parametrize("rule", KEYBOARD_RULES)
def test_keyboard_reference_rules(rule):
    given_notes, expected = KEYBOARD_RULES[rule]
    assert note_list(keyboard_reference(as_notes(given_notes))) == sorted(expected)


note_triples = st.lists(st.tuples(st.integers(58, 62), st.integers(0, 16), st.integers(-2, 8)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(note_triples)
def test_keyboard_reference_matches_its_definition(triples):
    """One note per key and onset, lasting as long as the longest there or until the key's next onset."""
    notes = as_notes([(p, s / 4, (s + d) / 4) for p, s, d in triples])
    played = [(p, s, e) for p, s, e in note_list(notes) if e > s]
    longest = {}
    for p, s, e in played:
        longest[p, s] = max(longest.get((p, s), e), e)
    expected = []
    for (p, s), e in sorted(longest.items()):
        later = [t for q, t in longest if q == p and t > s]
        expected.append((p, s, min([e] + later)))
    ref = note_list(keyboard_reference(notes))
    assert ref == expected
    assert note_list(keyboard_reference(keyboard_reference(notes))) == ref


def _valid_bytes(tmp_path) -> bytes:
    return write_midi(tmp_path / "valid.mid", MELODY).read_bytes()


def _header(fmt: int, ntrks: int, division: int, length: int = 6) -> bytes:
    fields = [(length, 4), (fmt, 2), (ntrks, 2), (division, 2)]
    return b"MThd" + b"".join(value.to_bytes(size, "big") for value, size in fields)


def _no_notes(tmp_path):
    return write_midi(tmp_path / "bad.mid", [], tempos=TEMPO_MAPS["changes"]).read_bytes()


def _only_drums(tmp_path):
    return write_midi(tmp_path / "bad.mid", [N(36, 0, 1, channel=DRUMS), N(38, 1, 2, channel=DRUMS)]).read_bytes()


def _zero_tempo(tmp_path):
    mid = mido.MidiFile(write_midi(tmp_path / "valid.mid", MELODY))
    for message in mid.tracks[0]:
        if message.type == "set_tempo":
            message.tempo = 0
    mid.save(tmp_path / "zero-tempo.mid")
    return (tmp_path / "zero-tempo.mid").read_bytes()


BAD_FILES = {  # name: (bytes of the file, or None for no file, or "dir"; a word the reason must contain)
    "missing": (lambda tmp: None, "no such file"),
    "directory": (lambda tmp: "dir", "directory"),
    "empty file": (lambda tmp: b"", "not a MIDI file"),
    "text": (lambda tmp: b"this is not a MIDI file\n", "not a MIDI file"),
    "RIFF MIDI": (lambda tmp: b"RIFF" + _valid_bytes(tmp), "not a MIDI file"),
    "truncated header": (lambda tmp: _valid_bytes(tmp)[:10], "corrupt or truncated"),
    "truncated track": (lambda tmp: _valid_bytes(tmp)[:-7], "corrupt or truncated"),
    "header only": (lambda tmp: _valid_bytes(tmp)[:14], "corrupt or truncated"),
    "corrupt header length": (lambda tmp: _header(1, 2, 480, length=2) + _valid_bytes(tmp)[14:],
                              "corrupt or truncated"),
    "zero ticks per beat": (lambda tmp: _header(1, 2, 0) + _valid_bytes(tmp)[14:], "corrupt or truncated"),
    "too many tracks": (lambda tmp: _header(1, 9, 480) + _valid_bytes(tmp)[14:], "corrupt or truncated"),
    "garbage track chunk": (lambda tmp: _valid_bytes(tmp)[:14] + b"MTrk" + (8).to_bytes(4, "big") + b"\xff" * 8,
                            "corrupt or truncated"),
    "zero tempo": (_zero_tempo, "corrupt or truncated"),
    "no notes": (_no_notes, "no notes"),
    "only drums": (_only_drums, "drum"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_input_raises_midi_error_naming_the_file(tmp_path, case):
    make, words = BAD_FILES[case]
    content = make(tmp_path)
    path = tmp_path / "bad.mid"
    if content == "dir":
        path.mkdir()
    elif content is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(content)
    with pytest.raises(MidiError) as caught:
        read_midi(path)
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value) and caught.value.reason
    if words:
        assert words in caught.value.reason


def _score_or_midi_error(path) -> None:
    try:
        score = read_midi(path)
    except MidiError as e:
        assert e.path == str(path)
        return
    assert isinstance(score, Score) and len(score.notes) > 0
    assert np.all(score.notes.end >= score.notes.start)
    assert np.all(np.isfinite(score.notes.start)) and np.all(np.isfinite(score.notes.end))


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_give_a_score_or_a_midi_error(tmp_path, data):
    path = tmp_path / "fuzz.mid"
    path.write_bytes(data)
    _score_or_midi_error(path)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_after_a_midi_header_give_a_score_or_a_midi_error(tmp_path, data):
    path = tmp_path / "fuzz.mid"
    path.write_bytes(b"MThd" + data)
    _score_or_midi_error(path)


@FUZZ
@given(st.data())
def test_damaged_midi_files_give_a_score_or_a_midi_error(tmp_path, data):
    content = bytearray(write_midi(tmp_path / "valid.mid", SPREAD, tempos=TEMPO_MAPS["changes"],
                                   time_signatures=METERS["changes"][0]).read_bytes())
    for _ in range(data.draw(st.integers(1, 6), label="damaged bytes")):
        index = data.draw(st.integers(0, len(content) - 1), label="where")
        content[index] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(14, len(content)), label="length")
    path = tmp_path / "fuzz.mid"
    path.write_bytes(bytes(content[:cut]))
    _score_or_midi_error(path)
