"""`python -m bachsformer.evaluate keys`: a piece asked for in each of the 24 keys, and its key."""
from __future__ import annotations

import json

import numpy as np

from bachsformer.evaluate.commands import main
from bachsformer.evaluate.keys import key_accuracy
from bachsformer.generation import Bachsformer
from bachsformer.tonality import parse_key


def test_every_key_is_asked_for_and_its_pieces_are_read(tiny_plan_pair, tmp_path, capsys):
    out = tmp_path / "keys.json"
    assert main(["keys", "--checkpoint-dir", str(tiny_plan_pair), "--samples", "2", "--form", "through",
                 "--bars", "1", "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [row["asked"] for row in report["keys"]][:3] == ["C major", "C# major", "D major"]
    assert report["pieces"] == 48 and all(len(row["found"]) == 2 for row in report["keys"])
    assert 0 <= report["accuracy"] <= report["related"] <= 1
    assert "in the key asked for" in capsys.readouterr().out


def test_a_model_that_writes_in_c_is_right_only_in_c(tiny_plan_pair, monkeypatch):
    """Whatever key it is asked for, this stand-in writes a C major cadence: one hit in 24."""
    model = Bachsformer.from_checkpoints(tiny_plan_pair, "cpu")
    real = model.generate

    def c_major(**options):
        pieces = real(**{**options, "key": None})
        for piece in pieces:
            chords = [(48, 64, 67, 72), (41, 60, 65, 69), (43, 62, 67, 71), (48, 64, 67, 72)]
            import pretty_midi
            piece.midi.instruments[0].notes = [pretty_midi.Note(80, p, i, i + 1.0) for i, ch in enumerate(chords) for p in ch]
        return pieces

    monkeypatch.setattr(model, "generate", c_major)
    rows = key_accuracy(model, samples_per_key=1, form="through", bars=1)
    hits = np.array([row["hits"] for row in rows])
    assert hits.sum() == 1 and hits[parse_key("C major")] == 1
