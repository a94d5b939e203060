"""Robustness: damaged checkpoints and MIDI files, outputs that cannot be written, long pieces.

Every fault is injected here (bytes cut or replaced, a pickle that would run code, a folder that
is read-only, a disk that is full) and the invariant is always the same: one line saying which
file and why, exit code 2 from a command, nothing half-written, nothing run that should not be.
"""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bachsformer.corpus import fuzz
from bachsformer.train.config import build_config
from bachsformer.corpus.commands import main as corpus_main
from bachsformer.generation import DECODE_CHUNK, Bachsformer
from bachsformer.checkpoints import load_checkpoint
from bachsformer.errors import CheckpointError
from bachsformer.train.vae import VAERecipe, train_vae
from conftest import TINY_VAE, N, write_midi, write_pretty_midi
from ludovico_vae.dataset import corpus_hash
from ludovico_vae.files import TEMPORARY_PREFIX

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import generate  # noqa: E402


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- bad MIDI files

def _scale(path) -> Path:
    return write_midi(path, [N(60 + i % 12, i / 2, i / 2 + 0.5) for i in range(64)])


def _huge(path, n_notes: int = 100_000, ticks_per_beat: int = 96) -> Path:
    """A quarter of a beat per note: 100,000 notes last 25,000 beats (written byte by byte: mido is slow)."""
    events = bytearray(b"\x00\x90")  # note-on, then running status
    for i in range(n_notes):
        pitch = 36 + i % 48
        events += bytes([pitch, 80, ticks_per_beat // 4, pitch, 0, 0])  # on, 1/4 beat, off (velocity 0)
    events[-1:] = b"\x00\xff\x2f\x00"  # the last delta starts the end-of-track event
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    path.write_bytes(header + ticks_per_beat.to_bytes(2, "big") + b"MTrk" + len(events).to_bytes(4, "big") + events)
    return path


def _unquantised(path) -> Path:
    """A performance: onsets anywhere, as played, not on any grid."""
    rng = np.random.default_rng(1)
    starts = np.cumsum(rng.uniform(0.2, 0.7, 80))
    return write_pretty_midi(path, [[(int(rng.integers(50, 80)), s, s + 0.4) for s in starts]])


BAD_MIDI = {  # name: (writer, words the reason must contain)
    "corrupt.mid": (lambda p: p.write_bytes(_scale(p).read_bytes()[:60]), "corrupt or truncated"),
    "empty.mid": (lambda p: p.write_bytes(b""), "not a MIDI file"),
    "drums.mid": (lambda p: write_midi(p, [N(36, i, i + 0.5, channel=9) for i in range(8)]), "drum"),
    "huge.mid": (_huge, "more than the limit"),
    "unquantised.mid": (_unquantised, "not quantised"),
    "notes.mid": (lambda p: p.write_text("these are not notes\n"), "not a MIDI file"),
}


@pytest.fixture(scope="module")
def mixed_corpus(tiny_corpus, tmp_path_factory) -> Path:
    """Three good pieces among every kind of bad file, and a stray text file."""
    folder = tmp_path_factory.mktemp("mixed-corpus")
    for name in ("p0.mid", "p1.mid", "p2.mid"):
        shutil.copy(tiny_corpus / name, folder / name)
    for name, (write, _) in BAD_MIDI.items():
        write(folder / name)
    (folder / "README.txt").write_text("not music\n")
    return folder


def test_a_corpus_with_bad_files_trains_on_the_good_ones_and_lists_the_rest(mixed_corpus, tmp_path):
    config = build_config(VAERecipe, overrides=[
        f"--data.midi_dir={mixed_corpus}", "--data.held_out=[p2]", f"--data.cache_dir={tmp_path / 'cache'}",
        f"--train.out_dir={tmp_path / 'run'}", "--train.epochs=1", "--train.batch_size=16", "--train.threads=1",
        *TINY_VAE])
    lines = []
    train_vae(config, log=lines.append, progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt", "vae")
    assert state["corpus_hash"] == corpus_hash([mixed_corpus / f"p{k}.mid" for k in range(3)])
    for name, (_, words) in BAD_MIDI.items():
        said = [line for line in lines if line.startswith(f"skipped {mixed_corpus / name}: ")]
        assert len(said) == 1 and words in said[0], (name, lines)
    assert f"{mixed_corpus}: 3 of 9 MIDI files used, 6 skipped (listed above); 1 other file ignored" in lines


@pytest.mark.parametrize("name", sorted(set(BAD_MIDI) - {"unquantised.mid"}))  # a played prompt is snapped, not refused
def test_a_bad_prompt_is_one_line_naming_it(tiny_pair, tmp_path, capsys, name):
    write, words = BAD_MIDI[name]
    prompt = tmp_path / name
    write(prompt)
    code = generate.main(["--checkpoint-dir", str(tiny_pair), "--out", str(tmp_path / "out"), "--prompt", str(prompt)])
    assert code == 2
    err = one_line(capsys)
    assert str(prompt) in err and words in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the loader under fuzzing

def test_a_few_seconds_of_fuzzing_find_no_crash():
    """The fast slice of `python -m bachsformer.corpus.fuzz --seconds 60`."""
    report = fuzz.fuzz(seconds=3, seed=1)
    assert report.crashes == []
    assert report.tried >= 100 and report.accepted > 0 and report.rejected > 0


def test_the_fuzz_command_reports_its_counts(capsys):
    assert fuzz.main(["--max-inputs", "40", "--seconds", "30"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("40 inputs in ") and "rejected cleanly with a MidiError, 0 crashed" in out


def test_a_crash_is_counted_and_its_input_saved(tmp_path, monkeypatch, capsys):
    def broken_loader(path, grid):
        raise IndexError("a bug")

    monkeypatch.setattr(fuzz, "load", broken_loader)
    assert fuzz.main(["--max-inputs", "3", "--crashes", str(tmp_path / "crashes")]) == 1
    assert "3 crashed" in capsys.readouterr().out
    assert len(list((tmp_path / "crashes").iterdir())) == 3


# ---------------------------------------------------------------- checkpoints

def _perturbed(source: Path, dest: Path) -> None:
    """The same VAE with one weight changed: a VAE the transformer was not trained with."""
    state = torch.load(source, weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] + 1e-3
    torch.save(state, dest)


def _other_grid(source: Path, dest: Path) -> None:
    state = torch.load(source, weights_only=True)
    state["grid"]["steps_per_quarter"] = 12
    torch.save(state, dest)


BAD_CHECKPOINTS = {  # name: (file, how it is made from the pair's own, words of the one-line error)
    "truncated": ("vae.pt", lambda src, dst: dst.write_bytes(src.read_bytes()[:len(src.read_bytes()) // 2]),
                  "corrupt or truncated"),
    "random bytes": ("vae.pt", lambda src, dst: dst.write_bytes(b"\x80" + np.random.default_rng(0).bytes(4096)),
                     "not a checkpoint"),
    "random bytes in a zip header": ("transformer.pt", lambda src, dst: dst.write_bytes(
        b"PK\x03\x04" + np.random.default_rng(1).bytes(4096)), "corrupt or truncated"),
    "empty": ("transformer.pt", lambda src, dst: dst.write_bytes(b""), "empty file"),
    "other stage": ("vae.pt", lambda src, dst: shutil.copy(src.parent / "transformer.pt", dst),
                    "is a transformer checkpoint, expected a vae checkpoint"),
    "pair that does not match": ("vae.pt", _perturbed, "another VQ-VAE"),
    "other frame grid": ("vae.pt", _other_grid, "the frame's 12 steps must be divisible"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_a_bad_checkpoint_is_one_line(tiny_pair, tmp_path, capsys, case):
    name, make, words = BAD_CHECKPOINTS[case]
    folder = tmp_path / "pair"
    shutil.copytree(tiny_pair, folder, ignore=shutil.ignore_patterns("run", "cache", "tokens"))
    make(tiny_pair / name, folder / name)
    assert generate.main(["--checkpoint-dir", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = one_line(capsys)
    assert str(folder / name) in err and words in err
    assert not (tmp_path / "out").exists()


class _RunsCode:
    """Unpickling this calls open(marker, "w"): the marker file shows whether code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tiny_pair, tmp_path, capsys):
    marker = tmp_path / "the-payload-ran"
    folder = tmp_path / "pair"
    shutil.copytree(tiny_pair, folder, ignore=shutil.ignore_patterns("run", "cache", "tokens"))
    state = torch.load(tiny_pair / "vae.pt", weights_only=True)
    torch.save({**state, "note": _RunsCode(marker)}, folder / "vae.pt")

    with pytest.raises(CheckpointError, match="refused: loading it would import io.open"):
        load_checkpoint(folder / "vae.pt")
    assert generate.main(["--checkpoint-dir", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "refused" in one_line(capsys)
    assert not marker.exists()
    torch.load(folder / "vae.pt", weights_only=False)  # what an unguarded loader would have done
    assert marker.exists()


# ---------------------------------------------------------------- outputs

def _generate(tiny_pair, out, *extra) -> int:
    return generate.main(["--checkpoint-dir", str(tiny_pair), "--out", str(out), "--bars", "1", *extra])


def test_output_folders_are_created(tiny_pair, tmp_path, capsys):
    assert _generate(tiny_pair, tmp_path / "a" / "b" / "piece.mid", "--png") == 0
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["piece.mid", "piece.png"]


def test_nothing_is_overwritten_without_force_not_even_a_drawing(tiny_pair, tmp_path, capsys):
    drawing = tmp_path / "piece.png"
    drawing.write_bytes(b"the user's own picture")
    assert _generate(tiny_pair, tmp_path / "piece.mid", "--png") == 2
    assert "piece.png: already exists; pass --force" in one_line(capsys)
    assert drawing.read_bytes() == b"the user's own picture" and not (tmp_path / "piece.mid").exists()
    assert _generate(tiny_pair, tmp_path / "piece.mid", "--png", "--force") == 0
    assert drawing.read_bytes().startswith(b"\x89PNG")


def _no_leftovers(folder: Path) -> list:
    return [p.name for p in folder.iterdir()] if folder.exists() else []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_line_and_leaves_nothing(tiny_pair, tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert _generate(tiny_pair, folder / "piece.mid") == 2
        err = one_line(capsys)
        assert str(folder / "piece.mid") in err and "Permission denied" in err
        assert _no_leftovers(folder) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("failure", [errno.EROFS, errno.EACCES], ids=["read-only file system", "no permission"])
def test_an_unwritable_folder_is_one_line_even_for_root(tiny_pair, tmp_path, capsys, monkeypatch, failure):
    def refuse(*args, **kwargs):
        raise OSError(failure, os.strerror(failure), str(tmp_path / f"{TEMPORARY_PREFIX}piece.mid-x"))

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    assert _generate(tiny_pair, tmp_path / "piece.mid") == 2
    assert f"{tmp_path / 'piece.mid'}: {os.strerror(failure)}" in one_line(capsys)
    assert _no_leftovers(tmp_path) == []


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tiny_pair, tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(os, "fsync", full)  # the bytes are written; flushing them to disk fails
    assert _generate(tiny_pair, out / "piece.mid") == 2
    assert f"{out / 'piece.mid'}: No space left on device" in one_line(capsys)
    assert _no_leftovers(out) == []


def test_a_full_device_is_reported_for_the_file_being_written(tmp_path):
    """/dev/full fails every write as a full disk does; the error names the file written to."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    from ludovico_vae.files import _naming

    with pytest.raises(OSError) as caught:
        with open("/dev/full", "wb") as f:
            f.write(b"x" * 65536)
            f.flush()
    named = _naming(caught.value, tmp_path / "piece.mid")
    assert named.errno == errno.ENOSPC and named.filename == str(tmp_path / "piece.mid")


def test_json_output_is_never_replaced_without_force_and_its_folder_is_made(tiny_corpus, tmp_path, capsys):
    report = tmp_path / "reports" / "check.json"
    assert corpus_main(["check", str(tiny_corpus), "--json", str(report)]) == 0
    capsys.readouterr()
    report.write_text("the user's notes")
    assert corpus_main(["check", str(tiny_corpus), "--json", str(report)]) == 2
    assert "already exists; pass --force" in one_line(capsys)
    assert report.read_text() == "the user's notes"
    assert corpus_main(["check", str(tiny_corpus), "--json", str(report), "--force"]) == 0
    assert report.read_text().startswith("{")


# ---------------------------------------------------------------- memory of long pieces

def test_a_long_piece_is_decoded_a_chunk_at_a_time(tiny_pair, monkeypatch):
    model = Bachsformer.from_checkpoints(tiny_pair, "cpu")
    sizes, decode = [], model.vae.decode_indices
    monkeypatch.setattr(model.vae, "decode_indices", lambda idx, **kw: sizes.append(len(idx)) or decode(idx, **kw))
    piece = model.generate(bars=3 * DECODE_CHUNK // 4 + 1, seed=0, meter=(4, 4))[0]
    assert max(sizes) == DECODE_CHUNK and sum(sizes) == len(piece.frames)


def test_a_long_prompt_is_encoded_only_as_far_as_the_context_reaches(tiny_pair, tmp_path, monkeypatch):
    model = Bachsformer.from_checkpoints(tiny_pair, "cpu")
    from ludovico_vae.frames import score_to_piece
    from ludovico_vae.midi import read_midi

    prompt = score_to_piece(read_midi(write_midi(tmp_path / "long.mid", [N(60 + i % 5, i, i + 1) for i in range(400)])),
                            model.grid)
    sizes, encode = [], model.vae.encode_indices
    monkeypatch.setattr(model.vae, "encode_indices", lambda x: sizes.append(len(x)) or encode(x))
    piece = model.generate(bars=1, seed=0, prompt=prompt)[0]
    assert sizes == [model.transformer.config.block_size // 16]
    assert np.array_equal(piece.frames[:len(prompt.frames)], prompt.frames)


SAMPLING_MEMORY = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from bachsformer.pair import load_transformer
model, _ = load_transformer({path!r})
n_extra = len(model.config.extra_vocab_sizes)
peaks = []
for n in (4_000, 64_000):  # tokens: 250 and 4,000 frames, 62 and 1,000 bars of 4/4
    extras = torch.zeros(1, 16 + n, n_extra, dtype=torch.long) if n_extra else None
    model.generate(torch.zeros(1, 16, dtype=torch.long), n, extras=extras)
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print((peaks[1] - peaks[0]) // 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux only")
def test_sampling_memory_does_not_grow_with_the_length_of_the_piece(tiny_pair):
    """The key/value cache is fixed in size and the tokens are kept as a few tensors, not one each."""
    script = SAMPLING_MEMORY.format(root=str(ROOT), path=str(tiny_pair / "transformer.pt"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    growth_mb = int(result.stdout.split()[-1])
    assert growth_mb < 16, f"peak memory grew by {growth_mb} MB from 4,000 to 64,000 tokens"
