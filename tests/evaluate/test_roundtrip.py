"""`python -m bachsformer.evaluate roundtrip`: the frame format's own losses, file by file."""
from __future__ import annotations

import json
import shutil

import command_line
from bachsformer.evaluate.commands import main
from conftest import GOLDBERG_DIR
from ludovico_vae.midi import read_midi
from synthetic_midi import PICKUP_IN_THREE, good_midi, truncated_midi, write_midi

import pytest

needs_goldberg = pytest.mark.skipif(not any(GOLDBERG_DIR.glob("988-v16.mid")),
                                    reason=f"Goldberg corpus not found at {GOLDBERG_DIR}")


def run(capsys, *argv) -> tuple:
    return command_line.run(main, capsys, *argv)


def assert_one_error_line(err: str, *fragments: str) -> None:
    command_line.assert_one_error_line(err, "bachsformer.evaluate", *fragments)


def test_a_missing_folder_is_one_line_and_exit_code_2(tmp_path, capsys):
    code, _, err = run(capsys, "roundtrip", tmp_path / "missing")
    assert code == 2
    assert_one_error_line(err, "no such file or directory")


def test_roundtrip_of_synthetic_files_is_exact(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    good_midi(src / "chords.mid")
    write_midi(src / "pickup.mid", PICKUP_IN_THREE, qpm=90.0, resolution=96, meters=((0.0, 1, 8), (0.5, 3, 4)))
    code, out, err = run(capsys, "roundtrip", src, "--out", tmp_path / "out", "--json", tmp_path / "rt.json")
    assert code == 0, err
    report = json.loads((tmp_path / "rt.json").read_text())
    assert [r["file"] for r in report["files"]] == ["chords.mid", "pickup.mid"]
    assert all(r["onset_f1"] == 1.0 and r["note_f1"] == 1.0 for r in report["files"])
    assert report["summary"]["min_note_f1"] == 1.0 and report["summary"]["mean_note_f1"] == 1.0
    assert "min" in out and "mean" in out
    back = read_midi(tmp_path / "out" / "pickup.mid")
    assert [(n, d) for _, n, d in back.time_signatures] == [(1, 8), (3, 4)]

    code, _, err = run(capsys, "roundtrip", src, "--out", tmp_path / "out")
    assert code == 2
    assert_one_error_line(err, "--force")
    assert run(capsys, "roundtrip", src, "--out", tmp_path / "out", "--force")[0] == 0


def test_roundtrip_refuses_to_write_over_its_input(tmp_path, capsys):
    good_midi(tmp_path / "a.mid")
    code, _, err = run(capsys, "roundtrip", tmp_path, "--out", tmp_path, "--force")
    assert code == 2
    assert_one_error_line(err, "input folder")


def test_roundtrip_keeps_going_past_bad_files(tmp_path, capsys):
    good_midi(tmp_path / "good.mid")
    truncated_midi(tmp_path / "bad.mid")
    code, out, _ = run(capsys, "roundtrip", tmp_path)
    assert code == 0
    assert "2 files: 1 ok, 1 bad; note F1 min 1.000, mean 1.000" in out


@needs_goldberg
def test_roundtrip_of_goldberg_files_is_exact(tmp_path, capsys):
    for name in ("988-aria.mid", "988-v16.mid", "988-v30.mid"):  # meter changes and a pickup
        shutil.copy(GOLDBERG_DIR / name, tmp_path / name)
    code, out, err = run(capsys, "roundtrip", tmp_path, "--json", tmp_path / "rt.json")
    assert code == 0, err
    files = json.loads((tmp_path / "rt.json").read_text())["files"]
    assert len(files) == 3
    assert all(r["onset_f1"] == 1.0 and r["note_f1"] == 1.0 for r in files)


