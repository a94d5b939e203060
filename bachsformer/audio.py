"""Audio: a piece rendered to a stereo WAV by the SoundFont player in `bachsformer.synth`, from
the General MIDI SoundFont that pretty_midi ships (or any .sf2 named), with nothing else to install.
"""
from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from ludovico_vae.files import atomic_write

from . import synth
from .errors import CommandError, MissingExtraError

SAMPLE_RATE = 44100
RELEASE_S = 1.5  # the last notes ring on after their note-off


def find_soundfont(explicit=None) -> Path:
    """`explicit`, else $BACHSFORMER_SOUNDFONT, else the General MIDI SoundFont pretty_midi ships."""
    if explicit:
        if not Path(explicit).is_file():
            raise CommandError(f"{explicit}: no such SoundFont file")
        return Path(explicit)
    candidates = [os.environ.get("BACHSFORMER_SOUNDFONT")]
    try:
        import pretty_midi
        candidates.append(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")
    except ImportError:
        pass
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise MissingExtraError("no SoundFont found: pass --soundfont FILE.sf2")


def render(midi, soundfont=None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(samples, 2) float32 stereo audio of `midi` (a PrettyMIDI)."""
    path = find_soundfont(soundfont)
    try:
        font = synth.load(path)
    except (OSError, ValueError, IndexError, KeyError) as e:  # a damaged or foreign .sf2
        raise CommandError(f"{path}: not a SoundFont this player can read ({e})") from None
    notes = [(n.start, n.end, inst.program, n.pitch, n.velocity, inst.is_drum)
             for inst in midi.instruments for n in inst.notes]
    return synth.render(notes, font, sample_rate, RELEASE_S)


def write_wav(midi, path, soundfont=None, sample_rate: int = SAMPLE_RATE) -> None:
    """Render `midi` (a PrettyMIDI) to a 16-bit stereo WAV file, peak-normalised, written atomically."""
    audio = render(midi, soundfont, sample_rate)
    peak = max(float(audio.max()), -float(audio.min())) or 1.0
    audio *= np.float32(0.9 * 32767 / peak)  # in place: a piece's audio is tens of megabytes
    pcm = audio.astype("<i2")
    with atomic_write(path) as f:
        with wave.open(f, "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm.tobytes())
