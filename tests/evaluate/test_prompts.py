"""`python -m bachsformer.evaluate prompts`: openings of pieces continued and measured."""
from __future__ import annotations

import json

import numpy as np

from bachsformer.evaluate.commands import main
from bachsformer.evaluate.prompts import opening
from conftest import write_midi
from ludovico_vae.midi import Notes, Score


def test_an_opening_is_cut_at_its_last_beat():
    score = Score(Notes([60, 62, 64], [0.0, 3.0, 5.0], [4.0, 4.0, 6.0]), 480, [(0.0, 90.0), (4.5, 60.0)],
                  [(0.0, 4, 4), (4.0, 3, 4)])
    cut = opening(score, 4)
    assert cut.notes.pitch.tolist() == [60, 62] and cut.notes.end.tolist() == [4.0, 4.0]
    assert cut.tempos == [(0.0, 90.0)] and cut.time_signatures == [(0.0, 4, 4)]


def test_openings_are_continued_in_their_meter_and_tempo(tiny_plan_pair, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name, meter, qpm in (("waltz", (3, 4), 80.0), ("march", (2, 4), 110.0)):
        notes = [(60 + (i % 7), i * 0.5, i * 0.5 + 0.5) for i in range(48)]
        write_midi(tmp_path / "in" / f"{name}.mid", notes, time_signatures=((0.0, *meter),), tempos=((0.0, qpm),))
    write_midi(tmp_path / "in" / "silent.mid", [(60, 30.0, 31.0)])  # nothing in its opening
    out = tmp_path / "p.json"
    assert main(["prompts", str(tmp_path / "in"), "--checkpoint-dir", str(tiny_plan_pair), "--beats", "8",
                 "--bars", "2", "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert sorted(p["piece"] for p in report["pieces"]) == ["march.mid", "waltz.mid"]
    assert report["summary"]["same_meter"] == 1.0 and report["summary"]["same_tempo"] == 1.0
    assert set(report["errors"]) == {"silent.mid"} and "no note in its first 8 beats" in report["errors"]["silent.mid"]
    assert all(np.isclose(p["seam_beats"], 8.0) for p in report["pieces"])
