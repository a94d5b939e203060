"""Every command that reads MIDI says when a file is a performance rather than a score, and when
the drum channel took away a part that was not drums."""
import subprocess
import sys
from pathlib import Path

import pretty_midi

from bachsformer.evaluate.commands import main as evaluate_main
from ludovico_vae.frames import reading_warnings, score_to_piece
from ludovico_vae.midi import read_midi
from synthetic_midi import good_midi, unquantised_midi

ROOT = Path(__file__).resolve().parents[2]


def viola_on_channel_10(path) -> Path:
    """A keyboard part, and a viola (program 41) that a careless export put on the drum channel."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    keys = pretty_midi.Instrument(program=6)
    keys.notes = [pretty_midi.Note(90, 60 + k % 5, k * 0.5, k * 0.5 + 0.5) for k in range(16)]
    viola = pretty_midi.Instrument(program=41, is_drum=True, name="Viola")
    viola.notes = [pretty_midi.Note(90, 55 + k % 3, k * 0.5, k * 0.5 + 0.5) for k in range(6)]
    midi.instruments += [keys, viola]
    midi.write(str(path))
    return Path(path)


def test_reading_counts_a_melodic_part_on_the_drum_channel(tmp_path):
    score = read_midi(viola_on_channel_10(tmp_path / "brandenburg.mid"))
    assert (score.drum_notes, score.melodic_drum_notes) == (6, 6)
    warnings = reading_warnings(score_to_piece(score).stats)
    assert warnings == ["6 notes on the drum channel (10) left out, 6 of them in a track with a melodic program: "
                        "a part put on channel 10 by mistake? Move it to another channel to keep it"]


def test_a_score_reads_without_warnings_and_a_performance_is_named(tmp_path):
    assert reading_warnings(score_to_piece(read_midi(good_midi(tmp_path / "score.mid"))).stats) == []
    warnings = reading_warnings(score_to_piece(read_midi(unquantised_midi(tmp_path / "played.mid"))).stats)
    assert len(warnings) == 1 and warnings[0].startswith("a performance, not a score: only ")


def test_the_round_trip_names_a_performance_though_it_scores_well(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    unquantised_midi(folder / "played.mid")
    assert evaluate_main(["roundtrip", str(folder)]) == 0
    assert "played.mid: a performance, not a score" in capsys.readouterr().out


def test_a_prompt_that_is_a_performance_is_said_on_stderr(tiny_pair, tmp_path):
    prompt = unquantised_midi(tmp_path / "played.mid")
    done = subprocess.run([sys.executable, str(ROOT / "generate.py"), "--checkpoint-dir", str(tiny_pair), "--prompt",
                           str(prompt), "--bars", "1", "--seed", "0", "--out", str(tmp_path / "out"), "--device", "cpu"],
                          capture_output=True, text=True)
    assert done.returncode == 0
    assert f"generate.py: warning: {prompt}: a performance, not a score" in done.stderr


def test_check_and_training_say_what_the_drum_channel_took(tmp_path, capsys):
    from bachsformer.corpus.commands import main as corpus_main
    from bachsformer.train.data import DataConfig, load_corpus
    from ludovico_vae.frames import FrameGrid

    folder = tmp_path / "corpus"
    folder.mkdir()
    viola_on_channel_10(folder / "brandenburg.mid")
    assert corpus_main(["check", str(folder)]) == 0
    assert "a part put on channel 10 by mistake?" in capsys.readouterr().out
    lines = []
    load_corpus(DataConfig(midi_dir=str(folder), cache_dir=str(tmp_path / "cache")), FrameGrid(), lines.append)
    assert any(line.startswith(str(folder / "brandenburg.mid")) and "channel 10" in line for line in lines)
