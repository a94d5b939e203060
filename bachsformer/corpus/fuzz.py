"""Fuzz the MIDI loader for a bounded time: every input must give a piece or a `MidiError`.

    python -m bachsformer.fuzz --seconds 60 [--seed 0] [--corpus DIR] [--crashes DIR]

Inputs are small MIDI files built here (type 0 and 1, tempo and meter changes, drums, running
status, sysex, pitch bends) and any files under --corpus, each put through a few random
mutations of the kind coverage fuzzers use: flipped bits, bytes set to boundary values, chunk
lengths and delta times made huge, ranges deleted, duplicated or spliced from another file,
truncation; some inputs are random bytes. Variants the loader accepts join the pool and are
mutated again, so edits compound. Each goes through the whole loader (`read_midi`, then
`score_to_piece`), and ends in one of three ways: *accepted* (a piece), *rejected* (a
`MidiError` naming the reason) or *crashed* (any other exception, or more than --timeout seconds).
The command prints the counts and exits 1 if anything crashed, saving those inputs to --crashes.
It needs no fuzzing library, so a run is repeatable from its seed; tests run a few seconds of it.
"""
from __future__ import annotations

import io
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import mido

from ludovico_vae.dataset import find_midi_files
from ludovico_vae.frames import FrameGrid, score_to_piece
from ludovico_vae.midi import MidiError, read_midi

from ..cli import CommandParser, run_main

PROG = "bachsformer.corpus.fuzz"
BOUNDARY_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xF0, 0xF7, 0xFF)
BOUNDARY_INTS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
HUGE_DELTA = b"\xff\xff\xff\x7f"  # the largest variable-length quantity a MIDI delta time can hold
MAX_INPUT = 1 << 16  # bytes; a mutated input is cut to this
MAX_POOL = 256  # accepted variants kept to mutate again, so edits compound


class InputTimeout(Exception):
    """One input took longer than the time allowed to it: counted as a crash (a hang)."""


@dataclass
class FuzzReport:
    tried: int = 0
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0
    crashes: list = field(default_factory=list)  # (input bytes, "ExceptionType: message")


def seed_files() -> list:
    """Valid MIDI files, as bytes, that between them use most of what the format offers."""
    def save(mid: mido.MidiFile) -> bytes:
        buffer = io.BytesIO()
        mid.save(file=buffer)
        return buffer.getvalue()

    def track(*messages) -> mido.MidiTrack:
        return mido.MidiTrack(list(messages) + [mido.MetaMessage("end_of_track", time=0)])

    def notes(pitches, length=240, channel=0):
        out = []
        for p in pitches:
            out += [mido.Message("note_on", note=p, velocity=80, channel=channel, time=0),
                    mido.Message("note_off", note=p, velocity=0, channel=channel, time=length)]
        return out

    simple = mido.MidiFile(type=0, ticks_per_beat=480)
    simple.tracks.append(track(mido.MetaMessage("set_tempo", tempo=500000), *notes([60, 62, 64, 65, 67])))

    layered = mido.MidiFile(type=1, ticks_per_beat=96)
    layered.tracks.append(track(mido.MetaMessage("time_signature", numerator=3, denominator=4),
                                mido.MetaMessage("set_tempo", tempo=600000),
                                mido.MetaMessage("set_tempo", tempo=400000, time=288),
                                mido.MetaMessage("key_signature", key="G")))
    layered.tracks.append(track(mido.Message("program_change", program=6), *notes([55, 59, 62], 48)))
    layered.tracks.append(track(mido.Message("pitchwheel", pitch=1000, channel=1),
                                mido.Message("control_change", control=64, value=127, channel=1),
                                *notes([43, 47, 50], 96, channel=1)))
    layered.tracks.append(track(*notes([36, 38, 42], 24, channel=9)))  # drums

    odd = mido.MidiFile(type=1, ticks_per_beat=7)
    odd.tracks.append(track(mido.MetaMessage("time_signature", numerator=7, denominator=8),
                            mido.MetaMessage("time_signature", numerator=5, denominator=16, time=21)))
    odd.tracks.append(track(mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01]),
                            *notes([21, 108, 20, 109, 60, 60], 3),
                            mido.Message("note_on", note=72, velocity=80, time=1),
                            mido.Message("note_on", note=72, velocity=0, time=0)))  # zero length
    return [save(simple), save(layered), save(odd)]


def mutate(data: bytes, rng: random.Random, seeds: list) -> bytes:
    """A random variant of `data`: its messages edited, its bytes edited, or random bytes."""
    roll = rng.random()
    if roll < 0.03:
        return rng.randbytes(rng.randrange(0, 512))
    if roll < 0.06:
        return b"MThd" + rng.randbytes(rng.randrange(0, 512))
    if roll < 0.5:
        edited = edit_messages(data, rng)
        if edited is not None:
            return edited
    buf = edit_bytes(data, rng, seeds)
    return fix_track_lengths(buf) if rng.random() < 0.5 else buf


def edit_messages(data: bytes, rng: random.Random) -> bytes | None:
    """Well-formed MIDI with strange content: extreme times, tempi, meters, stray notes.

    Byte edits mostly break the file's structure and stop at the parser; these reach the code
    that turns notes into beats and frames. None if `data` does not parse.
    """
    try:
        mid = mido.MidiFile(file=io.BytesIO(data))
    except Exception:
        return None
    if rng.random() < 0.2:
        mid.ticks_per_beat = rng.choice((1, 2, 3, 7, 24, 480, 960, 32767))
    for _ in range(rng.randint(1, 4)):
        track = rng.choice(mid.tracks)
        i = rng.randrange(len(track) + 1)
        kind = rng.randrange(6)
        if kind == 0 and i < len(track):
            track[i] = track[i].copy(time=rng.choice((0, 1, rng.randrange(1 << 16), (1 << 28) - 1)))
        elif kind == 1:
            note = rng.choice((0, 20, 21, 60, 108, 109, 127))
            on = rng.random() < 0.5
            track.insert(i, mido.Message("note_on" if on else "note_off", note=note, velocity=rng.choice((0, 1, 127)),
                                         channel=rng.choice((0, 9, 15)), time=rng.randrange(1 << 12)))
        elif kind == 2:
            track.insert(i, mido.MetaMessage("set_tempo", tempo=rng.choice((1, 1000, 500000, (1 << 24) - 1)),
                                             time=rng.randrange(1 << 12)))
        elif kind == 3:
            track.insert(i, mido.MetaMessage("time_signature", numerator=rng.choice((1, 3, 255)),
                                             denominator=rng.choice((1, 2, 4, 32, 128)), time=rng.randrange(1 << 12)))
        elif kind == 4 and i < len(track):
            del track[i]
        elif i < len(track):
            track.insert(rng.randrange(len(track) + 1), track[i].copy())
    buffer = io.BytesIO()
    try:
        mid.save(file=buffer)
    except Exception:
        return None
    return buffer.getvalue()


def fix_track_lengths(buf: bytes) -> bytes:
    """Make each MTrk chunk's length run to the next chunk, so the parser reads the edited events."""
    buf = bytearray(buf)
    starts = [i for i in range(len(buf) - 3) if buf[i:i + 4] == b"MTrk"]
    for start, end in zip(starts, starts[1:] + [len(buf)]):
        if start + 8 <= end:
            buf[start + 4:start + 8] = (end - start - 8).to_bytes(4, "big")
    return bytes(buf)


def edit_bytes(data: bytes, rng: random.Random, seeds: list) -> bytes:
    """One to four byte-level edits of the kind coverage fuzzers make."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(buf) + 1)
        kind = rng.randrange(9)
        if kind == 0 and buf:
            buf[min(i, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:
            buf[min(i, len(buf) - 1)] = rng.choice(BOUNDARY_BYTES)
        elif kind == 2 and len(buf) >= 4:
            j, size = rng.randrange(len(buf) - 1), rng.choice((2, 4))
            buf[j:j + size] = (rng.choice(BOUNDARY_INTS) & ((1 << 8 * size) - 1)).to_bytes(size, "big")
        elif kind == 3:
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif kind == 4:
            del buf[i:i + rng.randint(1, 32)]
        elif kind == 5 and buf:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j:j + rng.randint(1, 64)]
        elif kind == 6:
            buf[i:i] = HUGE_DELTA
        elif kind == 7:
            other = rng.choice(seeds)
            j = rng.randrange(len(other))
            buf[i:] = other[j:j + rng.randint(1, 256)] + buf[i:]
        else:
            del buf[i:]
    return bytes(buf[:MAX_INPUT])


def load(path, grid: FrameGrid):
    """The loader under test: what a corpus scan does with each file, without the cache."""
    return score_to_piece(read_midi(path), grid)


def _on_alarm(signum, frame):
    raise InputTimeout


def fuzz(seconds: float, seed: int = 0, corpus=None, max_inputs: int | None = None,
         timeout: float = 10.0, grid: FrameGrid = FrameGrid()) -> FuzzReport:
    """Try inputs until `seconds` (or `max_inputs`) run out; see the module docstring."""
    rng = random.Random(seed)
    seeds = seed_files() + ([p.read_bytes() for p in find_midi_files(corpus)] if corpus else [])
    report, started = FuzzReport(), time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        with tempfile.TemporaryDirectory(prefix="bachsformer-fuzz-") as scratch:
            path = Path(scratch) / "input.mid"
            while time.perf_counter() - started < seconds and (max_inputs is None or report.tried < max_inputs):
                data = mutate(rng.choice(seeds), rng, seeds)
                path.write_bytes(data)
                report.tried += 1
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    load(path, grid)
                    report.accepted += 1
                    if len(seeds) < MAX_POOL:  # an accepted variant is mutated further later on
                        seeds.append(data)
                except MidiError:
                    report.rejected += 1
                except InputTimeout:
                    report.crashes.append((data, f"hang: more than {timeout:g} s"))
                except Exception as e:  # anything but a MidiError is a bug in the loader
                    report.crashes.append((data, f"{type(e).__name__}: {e}"))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    report.seconds = time.perf_counter() - started
    return report


def run(args) -> int:
    report = fuzz(args.seconds, args.seed, args.corpus, args.max_inputs, args.timeout)
    print(f"{report.tried} inputs in {report.seconds:.1f} s ({report.tried / max(report.seconds, 1e-9):.0f}/s): "
          f"{report.accepted} accepted, {report.rejected} rejected cleanly with a MidiError, "
          f"{len(report.crashes)} crashed")
    if not report.crashes:
        return 0
    folder = Path(args.crashes)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (data, error) in enumerate(report.crashes):
        (folder / f"crash-{args.seed}-{i:04d}.mid").write_bytes(data)
        print(f"crash-{args.seed}-{i:04d}.mid: {error.splitlines()[0][:200] if error else ''}")
    print(f"crashing inputs saved in {folder}")
    return 1


def build_parser() -> CommandParser:
    parser = CommandParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed tries the same inputs")
    parser.add_argument("--max-inputs", type=int, help="stop after this many inputs")
    parser.add_argument("--corpus", help="also mutate the MIDI files under this folder")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take (default: %(default)s)")
    parser.add_argument("--crashes", default="runs/fuzz-crashes", help="where crashing inputs are saved")
    parser.set_defaults(run=run)
    return parser


def main(argv=None) -> int:
    return run_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
