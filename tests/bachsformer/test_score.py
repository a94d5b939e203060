"""The score: MusicXML read back by music21 gives the MIDI's notes, bars, key and meter; verovio
engraves it."""
import collections

import pretty_midi
import pytest

from bachsformer.score import DIVISIONS, engrave_svg, musicxml_text, piece_notes, _spelling
from bachsformer.tonality import estimate_key, fifths
from conftest import N, write_midi

music21 = pytest.importorskip("music21", reason="reading MusicXML back needs music21 (the [corpus] extra)")


def _read_back(xml: str, tmp_path):
    path = tmp_path / "score.musicxml"
    path.write_text(xml)
    return music21.converter.parse(str(path))


def _notes_of(score) -> collections.Counter:
    """(MIDI pitch, start, end) in divisions of every note, ties joined."""
    joined = score.stripTies()
    return collections.Counter(
        (p.midi, round(float(n.getOffsetInHierarchy(joined)) * DIVISIONS),
         round(float(n.getOffsetInHierarchy(joined) + n.quarterLength) * DIVISIONS))
        for n in joined.recurse().notes for p in n.pitches)


# chords, a note tied over the bar line, dotted values, triplet eighths, a rest, a bass in two
# voices, a note held off the beat across beats, and a change from 3/4 to 2/4
NOTES = ([N(67, 0, 1), N(71, 0, 1), N(74, 0, 1), N(72, 1, 2.5), N(74, 2.5, 4.5)]
         + [N(76 + k, 4.5 + k / 3, 4.5 + (k + 1) / 3) for k in range(3)]
         + [N(79, 5.5, 6), N(43, 0, 3), N(50, 0.5, 1), N(47, 1, 1.5), N(55, 3.25, 5.25), N(48, 6, 8), N(60, 6, 7.5)])


@pytest.fixture
def midi(tmp_path):
    path = write_midi(tmp_path / "score.mid", NOTES, time_signatures=((0.0, 3, 4), (6.0, 2, 4)))
    return pretty_midi.PrettyMIDI(str(path))


def test_musicxml_reads_back_with_the_midis_notes(midi, tmp_path):
    score = _read_back(musicxml_text(midi, "test piece"), tmp_path)
    pitch, start, end = piece_notes(midi)
    assert _notes_of(score) == collections.Counter(zip(pitch.tolist(), start.tolist(), end.tolist()))
    assert score.metadata.title == "test piece"


def test_musicxml_has_two_staves_bars_key_and_meter(midi, tmp_path):
    score = _read_back(musicxml_text(midi), tmp_path)
    upper, lower = score.parts
    assert {p.midi for p in upper.pitches} == {p for p, *_ in NOTES if p >= 60}
    assert {p.midi for p in lower.pitches} == {p for p, *_ in NOTES if p < 60}
    measures = upper.getElementsByClass("Measure")
    assert len(measures) == 3  # two bars of 3/4, one of 2/4
    signatures = [ts.ratioString for ts in upper.recurse().getElementsByClass("TimeSignature")]
    assert signatures == ["3/4", "2/4"]
    pitch, start, end = piece_notes(midi)
    key = estimate_key(pitch, start / DIVISIONS, end / DIVISIONS)
    assert upper.recurse().getElementsByClass("KeySignature")[0].sharps == fifths(key)
    clefs = [c.sign for part in score.parts for c in part.recurse().getElementsByClass("Clef")]
    assert clefs == ["G", "F"]


def test_durations_are_written_as_notation(midi, tmp_path):
    score = _read_back(musicxml_text(midi), tmp_path)
    upper = score.parts[0].recurse().notes
    kinds = {(n.duration.type, n.duration.dots, bool(n.duration.tuplets)) for n in upper}
    assert ("quarter", 1, False) in kinds  # the dotted quarter on beat 2
    assert ("eighth", 0, True) in kinds  # the triplet
    assert any(n.tie is not None for n in upper)  # the note over the bar line


@pytest.mark.parametrize("fifths, pitch, name", [(1, 66, ("F", 1)), (-1, 70, ("B", -1)), (-3, 68, ("A", -1)),
                                                  (2, 73, ("C", 1)), (7, 65, ("E", 1)), (-6, 71, ("C", -1)),
                                                  (0, 70, ("A", 1)), (-2, 66, ("G", -1))])
def test_pitches_are_spelt_as_the_key_writes_them(fifths, pitch, name):
    assert _spelling(pitch, fifths) == name


def test_a_generated_piece_reads_back_exactly(tiny_pair, tmp_path):
    from bachsformer.generation import Bachsformer
    piece = Bachsformer.from_checkpoints(tiny_pair, "cpu").generate(bars=4, seed=0)[0]
    piece.to_musicxml(tmp_path / "piece.musicxml")
    pitch, start, end = piece_notes(piece.midi)
    score = music21.converter.parse(str(tmp_path / "piece.musicxml"))
    assert _notes_of(score) == collections.Counter(zip(pitch.tolist(), start.tolist(), end.tolist()))


def test_verovio_engraves_the_score(midi):
    pytest.importorskip("verovio", reason="engraving needs verovio (the [score] extra)")
    pages = engrave_svg(musicxml_text(midi, "test piece"))
    assert len(pages) == 1 and pages[0].lstrip().startswith("<svg") or "<svg" in pages[0][:500]
    assert "test piece" in pages[0]


def _binary_piece(tmp_path, last_bar_differs: bool):
    """8 bars of 3/4 played twice, then 8 more played twice (their last bar different the second
    time if `last_bar_differs`), at 90 then 60 quarter notes a minute; triplets in every bar."""
    def section(first_beat, base, last_pitch):
        notes = []
        for bar in range(8):
            at = first_beat + 3 * bar
            notes += [N(base + bar, at, at + 1), N(base - 12, at, at + 3)]
            notes += [N(base + 2 + k, at + 1 + k / 3, at + 1 + (k + 1) / 3) for k in range(3)]
            notes.append(N(last_pitch if bar == 7 else base + 4, at + 2, at + 3))
        return notes
    notes = (section(0, 67, 71) + section(24, 67, 71) + section(48, 72, 74)
             + section(72, 72, 72 if last_bar_differs else 74))
    path = write_midi(tmp_path / "binary.mid", notes, tempos=((0.0, 90.0), (48.0, 60.0)),
                      time_signatures=((0.0, 3, 4),))
    return pretty_midi.PrettyMIDI(str(path))


@pytest.mark.parametrize("last_bar_differs", [False, True])
def test_a_section_written_out_twice_is_written_once_between_repeat_signs(tmp_path, last_bar_differs):
    from bachsformer.score import written_score
    midi = _binary_piece(tmp_path, last_bar_differs)
    xml = written_score(midi).musicxml
    assert xml.count("<measure ") == (8 + 7 + 2 if last_bar_differs else 16)
    assert xml.count('<repeat direction="forward"/>') == 2 and xml.count('<repeat direction="backward"/>') == 2
    assert xml.count('<ending number="1" type="start"/>') == int(last_bar_differs)
    assert xml.count('<ending number="2" type="start"/>') == int(last_bar_differs)
    score = _read_back(xml, tmp_path).expandRepeats()  # played as written: every note of the MIDI
    pitch, start, end = piece_notes(midi)
    assert _notes_of(score) == collections.Counter(zip(pitch.tolist(), start.tolist(), end.tolist()))


def test_a_piece_without_repeats_is_written_bar_for_bar(midi):
    xml = musicxml_text(midi)
    assert xml.count("<measure ") == 3 and "<repeat" not in xml and "<ending" not in xml


def test_triplets_are_bracketed(tmp_path):
    import re
    xml = musicxml_text(_binary_piece(tmp_path, True))
    notes = re.findall(r"<note[ >].*?</note>", xml)
    opened = 0
    for note in notes:
        if '<tuplet type="start"' in note:
            opened += 1
        if "<time-modification>" in note and "<chord/>" not in note:
            assert opened == 1, note  # every triplet inside a bracket
        if '<tuplet type="stop"' in note:
            opened -= 1
        assert opened in (0, 1)
    assert opened == 0 and xml.count('<tuplet type="start"') == 17  # one bracket a written bar


def test_the_timemap_marks_each_written_note_when_the_midi_plays_it(tmp_path):
    import re
    from bachsformer.score import written_score
    midi = _binary_piece(tmp_path, True)
    score = written_score(midi)
    ids = set(re.findall(r'<note id="([^"]+)"', score.musicxml))
    on = collections.Counter((round(e["ms"]), i) for e in score.timemap for i in e["on"])
    off = collections.Counter((round(e["ms"]), i) for e in score.timemap for i in e["off"])
    assert {i for _, i in on} == ids  # every written note is marked, and nothing else
    assert [e["ms"] for e in score.timemap] == sorted(e["ms"] for e in score.timemap)
    starts = collections.Counter(round(1000 * n.start) for inst in midi.instruments for n in inst.notes)
    assert collections.Counter(ms for ms, _ in on) == starts  # a note at each of the MIDI's onsets
    assert sum(off.values()) == sum(on.values())
    assert max(e["ms"] for e in score.timemap) == pytest.approx(1000 * midi.get_end_time(), abs=1)


def test_the_bundled_models_binary_piece_reads_back_with_its_repeats_as_played(tmp_path):
    """A real piece (voices, triplets, ties, first and second endings): its MusicXML, read back by
    music21 and played through its repeats, sounds every key exactly when the MIDI does."""
    import numpy as np
    from bachsformer.generation import Bachsformer
    from bachsformer.score import written_score
    piece = Bachsformer.from_checkpoints(device="cpu").generate(seed=1)[0]
    xml = written_score(piece.midi).musicxml
    assert xml.count("<measure ") < 40 and '<repeat direction="backward"/>' in xml  # 64 bars played, about 33 written
    score = _read_back(xml, tmp_path).expandRepeats()
    pitch, start, end = piece_notes(piece.midi)
    wanted, written = np.zeros((128, int(end.max())), bool), np.zeros((128, int(end.max()) + 1), bool)
    onsets = collections.Counter()
    for p, s, e in zip(pitch, start, end):
        wanted[p, s:e] = True
    for part in score.parts:  # ties are not joined: music21 may join them across voices
        for note in part.recurse().notes:
            at = round(float(note.getOffsetInHierarchy(part)) * DIVISIONS)
            for p in note.pitches:
                written[p.midi, at:at + round(float(note.quarterLength) * DIVISIONS)] = True
                if note.tie is None or note.tie.type == "start":
                    onsets[(p.midi, at)] += 1
    assert (written[:, :wanted.shape[1]] == wanted).all() and not written[:, wanted.shape[1]:].any()
    assert onsets == collections.Counter(zip(pitch.tolist(), start.tolist()))
