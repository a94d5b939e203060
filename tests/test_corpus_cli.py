"""The corpus command line, called in-process through `main(argv)`.

Downloads go to a local HTTP server serving a temporary copy of the shared Goldberg corpus, so
checksums, partial files and 404s are tested without the network. Broken and unquantised MIDI
files are built here with pretty_midi.
"""
from __future__ import annotations

import functools
import http.server
import json
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from bachsformer.corpus import main
from bachsformer.download import GOLDBERG_SHA256
from ludovico_vae.files import sha256_file
from ludovico_vae.frames import on_grid_share
from ludovico_vae.midi import read_midi

GOLDBERG = (Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora" / "goldberg").resolve()
needs_goldberg = pytest.mark.skipif(not (GOLDBERG / "SHA256SUMS").is_file(),
                                    reason=f"shared Goldberg corpus not found at {GOLDBERG}")


def run(capsys, *argv) -> tuple:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bachsformer.corpus: ")
    for fragment in fragments:
        assert fragment in lines[0]


def write_midi(path, notes, qpm=120.0, resolution=480, drums=False, meters=((0.0, 4, 4),)) -> Path:
    """A one-instrument MIDI file of (pitch, start beat, end beat) notes."""
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=qpm)
    seconds = 60.0 / qpm
    instrument = pretty_midi.Instrument(program=6, is_drum=drums)
    instrument.notes = [pretty_midi.Note(80, int(p), s * seconds, e * seconds) for p, s, e in notes]
    pm.instruments.append(instrument)
    pm.time_signature_changes = [pretty_midi.TimeSignature(n, d, b * seconds) for b, n, d in meters]
    pm.write(str(path))
    return Path(path)


CHORDS_AND_TRIPLETS = ([(60, 0, 1), (64, 0, 1), (67, 0, 2), (60, 1, 1.5), (60, 1.5, 2), (48, 0, 6)]
                       + [(72, 2 + k / 3, 2 + (k + 1) / 3) for k in range(3)]
                       + [(76, 3 + k / 4, 3 + (k + 1) / 4) for k in range(4)]
                       + [(79, 4 + k / 6, 4 + (k + 1) / 6) for k in range(6)])
PICKUP_IN_THREE = [(67, 0, 0.5)] + [(60 + (k % 7), 0.5 + k, 1.5 + k) for k in range(12)]


def good_midi(path) -> Path:
    return write_midi(path, CHORDS_AND_TRIPLETS)


def unquantised_midi(path, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0, 32, 200))
    pitches = rng.integers(40, 80, 200)
    return write_midi(path, [(p, s, s + 0.3) for p, s in zip(pitches, starts)])


def text_file(path) -> Path:
    Path(path).write_text("not a MIDI file\n")
    return Path(path)


def truncated_midi(path) -> Path:
    data = good_midi(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return Path(path)


def empty_midi(path) -> Path:
    return write_midi(path, [])


def drums_only_midi(path) -> Path:
    return write_midi(path, [(36, k, k + 0.5) for k in range(8)], drums=True)


BAD_FILES = {"text.mid": (text_file, "not a MIDI file"),
             "truncated.mid": (truncated_midi, "corrupt or truncated"),
             "empty.mid": (empty_midi, "no notes"),
             "drums.mid": (drums_only_midi, "only drum notes")}


# ---------------------------------------------------------------- check

@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_check_reports_a_bad_file_and_goes_on(tmp_path, capsys, name):
    make, reason = BAD_FILES[name]
    good_midi(tmp_path / "good.mid")
    make(tmp_path / name)
    code, out, err = run(capsys, "check", tmp_path, "--json", tmp_path / "check.json")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith(name))
    assert "ERROR" in row and reason in row
    assert "2 files: 1 ok, 1 bad" in out
    report = json.loads((tmp_path / "check.json").read_text())
    by_file = {r["file"]: r for r in report["files"]}
    assert by_file["good.mid"]["ok"] and by_file["good.mid"]["onsets_on_grid"] == 1.0
    assert not by_file[name]["ok"] and reason in by_file[name]["error"]


def test_check_table_of_good_and_bad_files(tmp_path, capsys):
    good_midi(tmp_path / "good.mid")
    write_midi(tmp_path / "pickup.mid", PICKUP_IN_THREE, meters=((0.0, 1, 8), (0.5, 3, 4)))
    for name, (make, _) in BAD_FILES.items():
        make(tmp_path / name)
    code, out, err = run(capsys, "check", tmp_path)
    assert code == 0 and err == ""
    assert "6 files: 2 ok, 4 bad" in out
    assert out.count("ERROR") == 4
    pickup = next(line for line in out.splitlines() if line.startswith("pickup.mid"))
    assert "1/8,3/4" in pickup and "100.0%" in pickup


def test_check_counts_merged_and_out_of_range_notes(tmp_path, capsys):
    write_midi(tmp_path / "odd.mid", [(60, 0, 1), (60, 0, 2), (10, 1, 2), (120, 2, 3)])
    code, out, _ = run(capsys, "check", tmp_path / "odd.mid", "--json", tmp_path / "c.json")
    assert code == 0
    warnings = json.loads((tmp_path / "c.json").read_text())["files"][0]["warnings"]
    assert "2 notes outside A0-C8 folded" in warnings
    assert "1 note merged by the keyboard reference" in warnings


def test_check_flags_an_unquantised_file(tmp_path, capsys):
    unquantised_midi(tmp_path / "performance.mid")
    good_midi(tmp_path / "quantised.mid")
    code, out, _ = run(capsys, "check", tmp_path, "--json", tmp_path / "check.json")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "not quantised (" in rows["performance.mid"] and "% of onsets near the grid)" in rows["performance.mid"]
    assert "not quantised" not in rows["quantised.mid"]
    report = {r["file"]: r for r in json.loads((tmp_path / "check.json").read_text())["files"]}
    assert report["performance.mid"]["onsets_near_grid"] < 0.9
    assert any(w.startswith("not quantised") for w in report["performance.mid"]["warnings"])


@pytest.mark.parametrize("argv, fragment", [
    (["check", "{tmp}/missing"], "no such file or directory"),
    (["check", "{tmp}/empty_dir"], "no MIDI files"),
    (["check", "{tmp}/only_bad"], "no usable MIDI file"),
    (["check", "{tmp}/only_bad", "--steps-per-quarter", "0"], "--steps-per-quarter"),
    (["roundtrip", "{tmp}/missing"], "no such file or directory"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, fragment):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "only_bad").mkdir()
    text_file(tmp_path / "only_bad" / "a.mid")
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert_one_error_line(err, fragment)


# ---------------------------------------------------------------- roundtrip

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
        shutil.copy(GOLDBERG / name, tmp_path / name)
    code, out, err = run(capsys, "roundtrip", tmp_path, "--json", tmp_path / "rt.json")
    assert code == 0, err
    files = json.loads((tmp_path / "rt.json").read_text())["files"]
    assert len(files) == 3
    assert all(r["onset_f1"] == 1.0 and r["note_f1"] == 1.0 for r in files)


# ---------------------------------------------------------------- goldberg download

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def mirror(server, monkeypatch):
    """A fresh copy of the Goldberg corpus on the local server: (its folder, its base URL)."""
    if not (GOLDBERG / "SHA256SUMS").is_file():
        pytest.skip(f"shared Goldberg corpus not found at {GOLDBERG}")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    root, url = server
    folder = Path(tempfile.mkdtemp(dir=root))
    for name in GOLDBERG_SHA256:
        shutil.copy(GOLDBERG / name, folder / name)
    return folder, f"{url}/{folder.name}/"


def leftovers(dest: Path) -> list:
    return sorted(p.name for p in dest.iterdir() if p.name not in GOLDBERG_SHA256)


def test_goldberg_downloads_verifies_and_skips_on_rerun(mirror, tmp_path, capsys):
    _, url = mirror
    dest = tmp_path / "goldberg"
    code, out, err = run(capsys, "goldberg", "--dest", dest, "--base-url", url, "--json", tmp_path / "g.json")
    assert code == 0, err
    assert f"{len(GOLDBERG_SHA256)} downloaded" in out
    assert {p.name: sha256_file(p) for p in dest.iterdir()} == GOLDBERG_SHA256
    assert all(r["status"] == "downloaded" for r in json.loads((tmp_path / "g.json").read_text())["files"])

    mtimes = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    code, out, _ = run(capsys, "goldberg", "--dest", dest, "--base-url", "http://127.0.0.1:9/unused")
    assert code == 0
    assert f"{len(GOLDBERG_SHA256)} present" in out
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == mtimes


def test_goldberg_corrupted_file_leaves_nothing_behind(mirror, tmp_path, capsys):
    folder, url = mirror
    data = bytearray((folder / "988-v03.mid").read_bytes())
    data[100] ^= 0xFF
    (folder / "988-v03.mid").write_bytes(bytes(data))
    dest = tmp_path / "goldberg"
    code, _, err = run(capsys, "goldberg", "--dest", dest, "--base-url", url)
    assert code == 2
    assert_one_error_line(err, "988-v03.mid", "checksum mismatch")
    assert not (dest / "988-v03.mid").exists()
    assert len(list(dest.glob("*.mid"))) == len(GOLDBERG_SHA256) - 1
    assert leftovers(dest) == []


def test_goldberg_missing_file_keeps_the_others(mirror, tmp_path, capsys):
    folder, url = mirror
    (folder / "988-v05.mid").unlink()
    dest = tmp_path / "goldberg"
    code, out, err = run(capsys, "goldberg", "--dest", dest, "--base-url", url)
    assert code == 2
    assert_one_error_line(err, "988-v05.mid", "404")
    assert sorted(p.name for p in dest.iterdir()) == sorted(set(GOLDBERG_SHA256) - {"988-v05.mid"})
    assert "1 failed" in out


def test_goldberg_wrong_existing_file_needs_force(mirror, tmp_path, capsys):
    _, url = mirror
    dest = tmp_path / "goldberg"
    dest.mkdir()
    (dest / "988-aria.mid").write_bytes(b"my own aria")
    code, _, err = run(capsys, "goldberg", "--dest", dest, "--base-url", url)
    assert code == 2
    assert_one_error_line(err, "988-aria.mid", "--force")
    assert (dest / "988-aria.mid").read_bytes() == b"my own aria"
    assert len(list(dest.glob("*.mid"))) == len(GOLDBERG_SHA256)

    code, out, err = run(capsys, "goldberg", "--dest", dest, "--base-url", url, "--force")
    assert code == 0, err
    assert sha256_file(dest / "988-aria.mid") == GOLDBERG_SHA256["988-aria.mid"]
    assert "1 downloaded" in out and f"{len(GOLDBERG_SHA256) - 1} present" in out


def test_goldberg_unreachable_server_stops_early(tmp_path, capsys):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run(capsys, "goldberg", "--dest", tmp_path / "g", "--base-url", f"http://127.0.0.1:{port}",
                         "--timeout", "5")
    assert code == 2
    assert_one_error_line(err, "cannot reach")
    assert f"{len(GOLDBERG_SHA256) - 1} skipped" in out
    assert list((tmp_path / "g").iterdir()) == []


def test_goldberg_rejects_other_url_schemes(tmp_path, capsys):
    code, _, err = run(capsys, "goldberg", "--dest", tmp_path, "--base-url", "ftp://example.org/midi")
    assert code == 2
    assert_one_error_line(err, "--base-url")


# ---------------------------------------------------------------- chorales

def test_chorales_export_offline_quantised(tmp_path, capsys, monkeypatch):
    pytest.importorskip("music21")

    def no_network(*args, **kwargs):
        raise AssertionError("the chorale export tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    dest = tmp_path / "chorales"
    code, out, err = run(capsys, "chorales", "--dest", dest, "--limit", "2")
    assert code == 0, err
    files = sorted(dest.glob("*.mid"))
    assert len(files) == 2 and "2 written" in out
    for path in files:
        score = read_midi(path)
        assert len(score.notes) > 50
        assert on_grid_share(score.notes, 24, score.ticks_per_beat) == (1.0, 1.0)
        assert score.time_signatures[0][0] == 0.0 and score.tempos[0][1] > 0
    code, out, _ = run(capsys, "chorales", "--dest", dest, "--limit", "2")
    assert code == 0 and "2 present" in out
    assert run(capsys, "check", dest)[0] == 0


def test_chorales_without_music21_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)
    code, _, err = run(capsys, "chorales", "--dest", tmp_path / "c", "--limit", "1")
    assert code == 2
    assert_one_error_line(err, "pip install 'bachsformer[corpus]'")
