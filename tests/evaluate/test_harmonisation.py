"""`evaluate harmonise`: outer voices, parallel fifths and octaves, the command's figures."""
import json

from bachsformer.evaluate.commands import main as evaluate_main
from bachsformer.evaluate.harmonisation import outer_voices
from bachsformer.tonality import parallel_perfect
from conftest import N, write_midi
from ludovico_vae.midi import Notes


def _notes(notes) -> Notes:
    return Notes([n.pitch for n in notes], [n.start for n in notes], [n.end for n in notes])


def test_parallel_fifths_and_octaves_are_counted_among_similar_motions():
    # C-G to D-A: parallel fifths; D-A to E-C: similar motion to a sixth; E-C to E-G: the top holds
    assert parallel_perfect([(67, 60), (69, 62), (72, 64), (72, 67)]) == (1, 2)
    assert parallel_perfect([(72, 60), (74, 62)]) == (1, 1)  # octaves (compound)
    assert parallel_perfect([(67, 60), (65, 62)]) == (0, 0)  # contrary motion
    assert parallel_perfect([(72, 48), (71, 47)]) == (1, 1)  # two octaves apart, both down a step
    # the top alone (its own lowest note) is one voice: no similar motion into, out of or along it
    assert parallel_perfect([(72, 72), (74, 74), (76, 64), (77, 77)]) == (0, 0)


def test_outer_voices_pair_the_line_with_the_lowest_sounding_note():
    line = _notes([N(72, 0, 1), N(74, 1, 2)])
    everything = _notes([N(72, 0, 1), N(74, 1, 2), N(48, 0, 2), N(55, 1, 2)])
    assert outer_voices(line, everything) == [(72, 48), (74, 48)]


def test_the_command_keeps_the_line_and_reports_key_and_parallels(tiny_plan_pair, tmp_path, capsys):
    folder = tmp_path / "tunes"
    folder.mkdir()
    write_midi(folder / "tune.mid", [N(60 + (k * 2) % 12, k, k + 1) for k in range(16)] + [N(48, 0, 16)])
    assert evaluate_main(["harmonise", str(folder), "--checkpoint-dir", str(tiny_plan_pair), "--device", "cpu",
                          "--json", str(tmp_path / "h.json")]) == 0
    summary = json.loads((tmp_path / "h.json").read_text())["summary"]
    assert summary["line_present"] == 1.0 and summary["harmonisations"] == 1
    assert "harmonisations: the line kept 100%" in capsys.readouterr().out
