"""`evaluate regenerate`: spans inside a piece, kept notes measured, key and speed reported."""
import json

import numpy as np

from bachsformer.evaluate.commands import main as evaluate_main
from bachsformer.evaluate.regeneration import CONTEXT_BARS, SEAM_BEATS, random_windows, spans_of
from ludovico_vae.midi import Notes
from conftest import N, write_midi


def test_spans_lie_inside_the_piece_with_context_on_both_sides():
    assert spans_of(32, 4, 3) == [(10, 13), (15, 18), (20, 23)]
    for a, b in spans_of(32, 4, 3):
        assert b - a == 3 and a > CONTEXT_BARS and b <= 32 - CONTEXT_BARS
    assert spans_of(10, 4, 2) == []  # no room for 4 bars with 4 on each side


def test_random_windows_are_distinct_beat_windows_inside_their_pieces():
    pieces = [Notes(np.arange(n) + 30 * i, np.arange(n, dtype=float), np.arange(n) + 1.0)
              for i, n in enumerate((12, 20))]  # 5 and 13 windows of 8 beats starting on a beat
    windows = random_windows(pieces, 18, np.random.default_rng(0))
    assert len({(tuple(w.pitch), tuple(w.start)) for w in windows}) == 18  # all 18 there are, once each
    assert all(w.start.min() >= 0 and w.end.max() <= SEAM_BEATS for w in windows)
    assert len(random_windows(pieces, 30, np.random.default_rng(0))) == 30  # more than there are: some twice


def _pieces(folder, count, bars=16):
    folder.mkdir()
    for k in range(count):
        write_midi(folder / f"p{k}.mid", [N(60 + (b * 5 + k) % 12, b / 2, b / 2 + 0.5) for b in range(8 * bars)]
                   + [N(48 - k % 5, 4 * b, 4 * b + 4) for b in range(bars)])
    return folder


def test_the_command_keeps_every_note_and_reports_key_and_speed(tiny_pair, tmp_path, capsys):
    folder = _pieces(tmp_path / "pieces", 2)  # 16 bars: room for two spans
    code = evaluate_main(["regenerate", str(folder), "--checkpoint-dir", str(tiny_pair), "--device", "cpu",
                          "--spans", "2", "--samples", "2", "--json", str(tmp_path / "r.json")])
    assert code == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["summary"]["spans"] == 2 * 2 * 2 and result["summary"]["kept"] == 1.0
    assert result["summary"]["seconds_per_call"] > 0
    assert "regenerated spans of 4 bars: kept notes 100%" in capsys.readouterr().out


def test_seams_are_tested_beside_windows_of_the_same_pieces_as_written(tiny_pair, tmp_path, capsys):
    folder, reference = _pieces(tmp_path / "pieces", 2), _pieces(tmp_path / "reference", 10, bars=6)
    code = evaluate_main(["regenerate", str(folder), "--checkpoint-dir", str(tiny_pair), "--device", "cpu",
                          "--spans", "2", "--samples", "2", "--reference", str(reference),
                          "--json", str(tmp_path / "r.json")])
    assert code == 0
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert 0 <= summary["seam_balanced_accuracy"] <= 1 and 0 <= summary["own_balanced_accuracy"] <= 1
    assert "16 windows of 8 beats told from the reference at" in capsys.readouterr().out
