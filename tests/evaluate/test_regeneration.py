"""`evaluate regenerate`: spans inside a piece, kept notes measured, key and speed reported."""
import json

from bachsformer.evaluate.commands import main as evaluate_main
from bachsformer.evaluate.regeneration import CONTEXT_BARS, spans_of
from conftest import N, write_midi


def test_spans_lie_inside_the_piece_with_context_on_both_sides():
    assert spans_of(32, 4, 3) == [(10, 13), (15, 18), (20, 23)]
    for a, b in spans_of(32, 4, 3):
        assert b - a == 3 and a > CONTEXT_BARS and b <= 32 - CONTEXT_BARS
    assert spans_of(10, 4, 2) == []  # no room for 4 bars with 4 on each side


def test_the_command_keeps_every_note_and_reports_key_and_speed(tiny_pair, tmp_path, capsys):
    folder = tmp_path / "pieces"
    folder.mkdir()
    for k in range(2):
        write_midi(folder / f"p{k}.mid", [N(60 + (b * 5 + k) % 12, b / 2, b / 2 + 0.5) for b in range(128)]
                   + [N(48, 4 * b, 4 * b + 4) for b in range(16)])  # 16 bars: room for two spans
    code = evaluate_main(["regenerate", str(folder), "--checkpoint-dir", str(tiny_pair), "--device", "cpu",
                          "--spans", "2", "--samples", "2", "--json", str(tmp_path / "r.json")])
    assert code == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["summary"]["spans"] == 2 * 2 * 2 and result["summary"]["kept"] == 1.0
    assert result["summary"]["seconds_per_call"] > 0
    assert "regenerated spans of 4 bars: kept notes 100%" in capsys.readouterr().out
