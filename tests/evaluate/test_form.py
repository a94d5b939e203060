"""Keys, the tonal plan and form of a piece, and a continuation against its prompt, on pieces built
here whose key, cadences and repeats are known, and on the Goldberg corpus where it is present."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bachsformer.evaluate.commands import main as evaluate_main
from bachsformer.evaluate.continuation import compare_continuation, pair_files
from bachsformer.evaluate.form import form_of
from bachsformer.tonality import closely_related, estimate_key, fifths, key_name, parse_key
from conftest import write_midi
from ludovico_vae.midi import Notes, Score, read_midi

C, G, D, A, E, F = 60, 67, 62, 69, 64, 65
TRIADS = {"C": (48, 64, 67, 72), "G": (43, 62, 67, 71), "F": (41, 60, 65, 69), "D": (50, 66, 69, 74),
          "Am": (45, 60, 64, 69), "Dm": (50, 65, 69, 74), "E": (40, 56, 64, 68), "Em": (40, 59, 64, 67), "B": (47, 63, 66, 71)}


def chords(names, beats_each=3.0, start=0.0):
    """(pitch, start, end) of block chords, one after the other."""
    return [(p, start + i * beats_each, start + (i + 1) * beats_each) for i, name in enumerate(names) for p in TRIADS[name]]


def as_score(notes, meters=((0.0, 3, 4),), tempos=((0.0, 100.0),)) -> Score:
    pitch, start, end = (np.array(x) for x in zip(*notes))
    return Score(Notes(pitch, start, end), tempos=list(tempos), time_signatures=list(meters))


@pytest.mark.parametrize("progression, key", [(["C", "F", "G", "C"], "C major"), (["Am", "Dm", "E", "Am"], "A minor"),
                                              (["G", "C", "D", "G"], "G major"), (["Em", "Am", "B", "Em"], "E minor")])
def test_the_key_of_a_cadential_progression(progression, key):
    notes = as_score(chords(progression * 2)).notes
    assert key_name(estimate_key(notes.pitch, notes.start, notes.end)) == key


def test_the_goldberg_variations_are_in_g(goldberg_dir):
    minor = {"988-v15", "988-v21", "988-v25"}
    for path in sorted(goldberg_dir.glob("*.mid")):
        n = read_midi(path).notes
        assert key_name(estimate_key(n.pitch, n.start, n.end)) == ("G minor" if path.stem in minor else "G major"), path


@pytest.mark.parametrize("text, key", [("C major", 0), ("a minor", 21), ("Bb", 10), ("F# major", 6), ("eb minor", 15)])
def test_keys_are_read_as_musicians_write_them(text, key):
    assert parse_key(text) == key
    assert parse_key(key_name(key)) == key


@pytest.mark.parametrize("text", ["H major", "C dorian", "", "C major minor"])
def test_a_bad_key_names_the_text(text):
    with pytest.raises(ValueError, match="not a key"):
        parse_key(text)


def test_signatures_and_related_keys():
    assert [fifths(parse_key(k)) for k in ("C major", "G major", "F major", "E minor", "D minor")] == [0, 1, -1, 1, -1]
    related = {key_name(k) for k in range(24) if closely_related(parse_key("G major"), k)}
    assert related == {"G major", "C major", "D major", "E minor", "A minor", "B minor"}


def binary_piece(half_close: str, end: str, repeat: bool) -> Score:
    """8 bars of 3/4 in C: bars 1-4 close on `half_close`, bars 5-8 on `end`, a melody over them."""
    first = ["C", "F", "C", half_close]
    second = ["C", "F", "G", end] if not repeat else first[:3] + [end]
    notes = chords(first + second)
    notes += [(72 + (i % 4) * 2, 3.0 * i + 1, 3.0 * i + 2) for i in range(7)]  # a 4-bar tune; none in the last bar
    return as_score(notes)


def test_a_piece_that_ends_on_the_tonic_and_closes_its_first_half_on_v():
    form = form_of(binary_piece("G", "C", repeat=False))
    assert key_name(form.key) == "C major" and form.bars == 8
    assert form.ends_on_tonic and form.final_note_beats == 3.0
    assert form.half_cadence and form.half_root == G % 12
    assert form.key_path == [0, 0]


def test_a_piece_that_stops_elsewhere():
    form = form_of(binary_piece("Am", "G", repeat=False))
    assert not form.ends_on_tonic and form.final_root == G % 12
    assert not form.half_cadence and form.half_root == A % 12


def test_written_repeats_are_bars_that_recur_four_bars_away():
    assert form_of(binary_piece("G", "C", repeat=True)).repeated_bar_share == pytest.approx(6 / 8)  # bars 1-3, 5-7
    assert form_of(binary_piece("G", "C", repeat=False)).repeated_bar_share == pytest.approx(4 / 8)  # bars 1-2, 5-6


def test_the_goldberg_corpus_ends_on_its_tonic_and_repeats_itself(goldberg_dir):
    forms = [form_of(read_midi(p)) for p in sorted(goldberg_dir.glob("*.mid"))]
    assert np.mean([f.ends_on_tonic for f in forms]) >= 0.9
    assert np.mean([f.half_cadence for f in forms]) >= 0.9
    assert np.median([f.final_note_beats for f in forms]) == 1.0
    assert np.median([f.repeated_bar_share for f in forms]) == 1.0


def test_a_continuation_is_read_against_the_body_of_its_prompt():
    """The prompt's meter is the one of its body, not its short final bar; its tempo the median,
    not the closing ritardando."""
    prompt = as_score(chords(["C", "F", "G", "C"]) + [(C, 12.0, 12.5)], meters=((0.0, 3, 4), (12.0, 1, 8)),
                      tempos=((0.0, 90.0), (9.0, 40.0)))
    continuation = chords(["G", "D", "G", "D", "G"], start=13.0)
    generated = as_score(chords(["C", "F", "G", "C"]) + [(C, 12.0, 12.5)] + continuation,
                         meters=((0.0, 3, 4), (13.0, 3, 4)), tempos=((0.0, 90.0),))
    result = compare_continuation(prompt, generated)
    assert result.prompt_meter == (3, 4) and result.meter == (3, 4) and result.same_meter
    assert result.prompt_qpm == 90.0 and result.same_tempo
    assert key_name(result.prompt_key) == "C major" and key_name(result.key) == "G major"
    assert result.related_key and not result.same_key and result.seam_beats == 13.0


def test_continuations_are_paired_with_their_prompts_by_name(tmp_path):
    prompts = [tmp_path / "theme.mid", tmp_path / "theme-minor.mid"]
    outputs = [tmp_path / "out" / "theme-minor-seed1.mid", tmp_path / "out" / "theme-seed1.mid",
               tmp_path / "out" / "other.mid"]
    assert pair_files(prompts, outputs) == [(prompts[1], outputs[0]), (prompts[0], outputs[1])]


def test_the_commands_print_and_save_the_plan(tmp_path, capsys):
    (tmp_path / "gen").mkdir()
    (tmp_path / "ref").mkdir()
    write_midi(tmp_path / "gen" / "a.mid", chords(["C", "F", "G", "C"] * 2), time_signatures=((0.0, 3, 4),))
    for i, name in enumerate(["x", "y"]):
        write_midi(tmp_path / "ref" / f"{name}.mid", chords(["G", "C", "D", "G"] * 2 + ["G"] * i),
                   time_signatures=((0.0, 3, 4),))
    assert evaluate_main(["samples", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
                          "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "tonal plan and form" in out and "C major" in out
    form = json.loads((tmp_path / "s.json").read_text())["form"]
    assert form["summary"]["ends_on_tonic"] == 1.0 and form["reference_summary"]["keys"] == {"G major": 2}

    prompt = write_midi(tmp_path / "p.mid", chords(["C", "F", "G", "C"]), time_signatures=((0.0, 3, 4),))
    both = write_midi(tmp_path / "p-seed1.mid", chords(["C", "F", "G", "C", "C", "F", "G", "C"]),
                      time_signatures=((0.0, 3, 4),))
    assert evaluate_main(["continuation", str(prompt), str(both), "--json", str(tmp_path / "c.json")]) == 0
    summary = json.loads((tmp_path / "c.json").read_text())["summary"]
    assert summary == {"same_key": 1.0, "related_key": 1.0, "same_meter": 1.0, "same_tempo": 1.0}
    assert evaluate_main(["continuation", str(prompt), str(tmp_path / "gen")]) == 2
