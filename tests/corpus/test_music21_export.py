"""`python -m bachsformer.corpus music21` and the held-out rule of exports, offline.

Exports are kept to a few chorales (`--limit`), which music21 converts in well under a second
each; the network is cut off in every test that exports, so a download would fail loudly.
"""
from __future__ import annotations

import json
import random
import socket
import sys

import pytest

import command_line
from bachsformer.corpus import music21_export
from bachsformer.corpus.commands import main
from bachsformer.corpus.split import HELD_OUT_FILE, held_out_names, is_held_out
from bachsformer.errors import ExportError
from ludovico_vae.frames import FrameGrid, on_grid_share
from ludovico_vae.midi import read_midi


def run(capsys, *argv) -> tuple:
    return command_line.run(main, capsys, *argv)


@pytest.fixture
def offline(monkeypatch):
    """music21 present, and any attempt to open a connection an error."""
    pytest.importorskip("music21")

    def no_network(*args, **kwargs):
        raise AssertionError("the music21 export tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)


def export(capsys, dest, *extra, limit=3) -> tuple:
    return run(capsys, "music21", "--composer", "bach", "--limit", str(limit), "--dest", dest, *extra)


def snapshot(folder) -> dict:
    """Every file of `folder`, hidden ones included, with its modification time."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def failing_parse(monkeypatch, error: Exception, which=lambda work: True):
    """Make music21's parse raise `error` for the works `which` selects; the others parse as usual."""
    parse = music21_export.parse_work

    def parse_or_fail(work):
        if which(work):
            raise error
        return parse(work)

    monkeypatch.setattr(music21_export, "parse_work", parse_or_fail)


# ---------------------------------------------------------------- export

def test_export_writes_quantised_midi_and_the_held_out_list(offline, tmp_path, capsys):
    dest = tmp_path / "music21"
    code, out, err = export(capsys, dest, "--json", tmp_path / "export.json")
    assert code == 0 and err == ""
    folder = dest / "bach"
    files = sorted(folder.glob("*.mid"))
    assert len(files) == 3 and "bach: 3 works" in out and "3 written" in out
    for path in files:
        score = read_midi(path)
        assert len(score.notes) > 50
        assert on_grid_share(score.notes, FrameGrid.steps_per_quarter, score.ticks_per_beat) == (1.0, 1.0)
        assert score.time_signatures[0][0] == 0.0 and score.tempos[0][1] > 0
    held_out = held_out_names(p.stem for p in files)
    assert (folder / HELD_OUT_FILE).read_text().splitlines() == held_out
    report = json.loads((tmp_path / "export.json").read_text())["composers"][0]
    assert report["composer"] == "bach" and report["held_out"] == held_out
    assert [r["status"] for r in report["files"]] == ["written"] * 3
    assert all(r["source"].startswith("bach/") and r["notes"] > 50 for r in report["files"])


def test_a_rerun_writes_nothing_and_parses_nothing(offline, tmp_path, capsys, monkeypatch):
    dest = tmp_path / "music21"
    assert export(capsys, dest)[0] == 0
    before = snapshot(dest / "bach")
    failing_parse(monkeypatch, AssertionError("an unchanged work was parsed again"))
    code, out, err = export(capsys, dest)
    assert code == 0, err
    assert "3 exists" in out and "written" not in out
    assert snapshot(dest / "bach") == before


def test_the_export_is_deterministic_without_its_record(offline, tmp_path, capsys):
    dest = tmp_path / "music21"
    assert export(capsys, dest, limit=2)[0] == 0
    (dest / "bach" / music21_export.RECORD_FILE).unlink()
    midi_before = {p.name: p.read_bytes() for p in (dest / "bach").glob("*.mid")}
    code, out, _ = export(capsys, dest, limit=2)
    assert code == 0 and "2 exists" in out
    assert {p.name: p.read_bytes() for p in (dest / "bach").glob("*.mid")} == midi_before


@pytest.mark.parametrize("error", [ValueError("measure 3 is corrupt"), ExportError("bach/bwv10.7.mxl: no notes")])
def test_a_bad_score_is_reported_and_skipped(offline, tmp_path, capsys, monkeypatch, error):
    works = music21_export.composer_works("bach", limit=3)
    bad = works[1]
    failing_parse(monkeypatch, error, lambda work: work == bad)
    dest = tmp_path / "music21"
    code, out, err = export(capsys, dest)
    assert code == 0 and err == ""
    row = next(line for line in out.splitlines() if line.startswith(f"bach/{bad.name}.mid"))
    assert "failed" in row and str(error) in row
    assert "2 written, 1 failed" in out
    assert sorted(p.stem for p in (dest / "bach").glob("*.mid")) == sorted(w.name for w in works if w != bad)


def test_nothing_exported_is_exit_code_2_and_one_line(offline, tmp_path, capsys, monkeypatch):
    failing_parse(monkeypatch, ValueError("unreadable"))
    code, out, err = export(capsys, tmp_path / "music21", limit=2)
    assert code == 2
    command_line.assert_one_error_line(err, "bachsformer.corpus", "nothing exported", "2 works failed", "unreadable")
    assert out.count("failed") >= 2


def test_a_different_file_is_kept_without_force(offline, tmp_path, capsys):
    dest = tmp_path / "music21"
    first = music21_export.composer_works("bach", limit=1)[0]
    (dest / "bach").mkdir(parents=True)
    mine = dest / "bach" / f"{first.name}.mid"
    mine.write_bytes(b"my own edit")
    code, out, _ = export(capsys, dest, limit=2)
    assert code == 0 and "1 written, 1 failed" in out and "--force" in out
    assert mine.read_bytes() == b"my own edit"
    code, out, _ = export(capsys, dest, "--force", limit=2)
    assert code == 0 and "1 written, 1 exists" in out
    assert len(read_midi(mine).notes) > 50


@pytest.mark.parametrize("argv, fragments", [
    (["--composer", "bch"], ["--composer bch", "known composers", "bach", "palestrina"]),
    (["--composer", "bach", "--limit", "0"], ["--limit"]),
])
def test_bad_options_are_one_line_and_exit_code_2(offline, tmp_path, capsys, argv, fragments):
    code, _, err = run(capsys, "music21", "--dest", tmp_path / "music21", *argv)
    assert code == 2
    command_line.assert_one_error_line(err, "bachsformer.corpus", *fragments)
    assert not (tmp_path / "music21").exists()


def test_without_music21_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)
    code, _, err = run(capsys, "music21", "--composer", "bach", "--dest", tmp_path / "m")
    assert code == 2
    command_line.assert_one_error_line(err, "bachsformer.corpus", "pip install 'bachsformer[corpus]'")


# ---------------------------------------------------------------- the corpus listing

def test_the_listing_skips_analyses_and_exports_each_work_once(offline):
    bach = music21_export.composer_works("bach")
    assert not any(w.path.suffix == ".rntxt" for w in bach)
    assert len({w.name for w in bach}) == len(bach)
    by_name = {w.name: w for w in bach}
    assert by_name["bwv277"].path.suffix == ".mxl"  # also stored as .krn
    quartets = music21_export.composer_works("beethoven")
    assert "opus18no1-movement1" in {w.name for w in quartets}
    assert {"bach", "palestrina", "monteverdi"} <= set(music21_export.composers())


# ---------------------------------------------------------------- the held-out rule

NAMES = [f"piece-{i:04d}" for i in range(3000)]


def test_held_out_does_not_move_when_other_names_come_or_go():
    held = set(held_out_names(NAMES))
    fewer = NAMES[::7]
    assert set(held_out_names(fewer)) == held & set(fewer)
    more = NAMES + [f"new-{i}" for i in range(500)]
    assert set(held_out_names(more)) & set(NAMES) == held
    shuffled = random.Random(1).sample(NAMES, len(NAMES))
    assert held_out_names(shuffled) == sorted(held)


@pytest.mark.parametrize("share", [0.05, 0.1, 0.5])
def test_held_out_takes_about_the_share(share):
    n = len(NAMES)
    spread = 4 * (n * share * (1 - share)) ** 0.5  # four standard deviations of a binomial count
    assert abs(len(held_out_names(NAMES, share)) - n * share) < spread


def test_held_out_edge_shares_and_a_pinned_example():
    assert held_out_names(NAMES, 0.0) == [] and held_out_names(NAMES, 1.0) == sorted(NAMES)
    assert held_out_names(["bwv1.6", "bwv10.7", "bwv101.7", "bwv10.7"]) == ["bwv10.7"]  # the rule never changes
    with pytest.raises(ValueError, match="share"):
        is_held_out("bwv10.7", 1.5)



def test_every_chorale_the_list_names_is_found_even_where_its_file_is_spelled_otherwise(offline, monkeypatch):
    """music21 10 lists `bach/bwv18.5-l` for the file bwv18.5-lz.mxl: found as music21 finds it."""
    monkeypatch.setattr(music21_export, "chorale_names", lambda limit=None: ["bach/bwv269", "bach/bwv18.5-l"])
    works = music21_export.chorale_works()
    assert works[0].path.stem == "bwv269" and works[1].path.stem.startswith("bwv18.5-l")
    assert len(music21_export.chorale_names()) == len(music21_export.chorale_works())  # the whole list resolves
