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

import pytest

import command_line
from bachsformer.corpus.commands import main
from bachsformer.corpus.goldberg import GOLDBERG_SHA256
from ludovico_vae.files import sha256_file
from ludovico_vae.frames import on_grid_share
from ludovico_vae.midi import read_midi
from synthetic_midi import (BAD_FILES, PICKUP_IN_THREE, good_midi,
                            text_file, unquantised_midi, write_midi)

from conftest import GOLDBERG_DIR as GOLDBERG  # noqa: E402
needs_goldberg = pytest.mark.skipif(not (GOLDBERG / "SHA256SUMS").is_file(),
                                    reason=f"shared Goldberg corpus not found at {GOLDBERG}")


def run(capsys, *argv) -> tuple:
    return command_line.run(main, capsys, *argv)


def assert_one_error_line(err: str, *fragments: str) -> None:
    command_line.assert_one_error_line(err, "bachsformer.corpus", *fragments)


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
    assert "a performance, not a score: only" in rows["performance.mid"]
    assert "% of its onsets lie near the beat grid" in rows["performance.mid"]
    assert "performance" not in rows["quantised.mid"]
    report = {r["file"]: r for r in json.loads((tmp_path / "check.json").read_text())["files"]}
    assert report["performance.mid"]["onsets_near_grid"] < 0.9
    assert any(w.startswith("a performance, not a score") for w in report["performance.mid"]["warnings"])


@pytest.mark.parametrize("argv, fragment", [
    (["check", "{tmp}/missing"], "no such file or directory"),
    (["check", "{tmp}/empty_dir"], "no MIDI files"),
    (["check", "{tmp}/only_bad"], "no usable MIDI file"),
    (["check", "{tmp}/only_bad", "--steps-per-quarter", "0"], "--steps-per-quarter"),
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
