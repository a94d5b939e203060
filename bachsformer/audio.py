"""Audio: a piece rendered to a stereo WAV through a SoundFont synthesizer, an optional extra.

TinySoundFont (the `tinysoundfont` wheel) needs no system library; FluidSynth (pyfluidsynth and its
system library) is used where TinySoundFont is missing. Both play the General MIDI SoundFont that
pretty_midi ships unless another is given.
"""
from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from ludovico_vae.files import atomic_write

from .errors import CommandError, MissingExtraError

SAMPLE_RATE = 44100
RELEASE_S = 1.5  # the last notes ring on after their note-off
DRUM_CHANNEL = 9
INSTALL_HINT = ("audio needs a SoundFont synthesizer: pip install tinysoundfont --no-deps "
                "(or pyfluidsynth with the FluidSynth library)")


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


def _channel(number: int, instrument) -> int:
    """The MIDI channel of the `number`th instrument: drums on theirs, the rest on the other 15."""
    return DRUM_CHANNEL if instrument.is_drum else [c for c in range(16) if c != DRUM_CHANNEL][number % 15]


def _note_events(midi) -> list:
    """(seconds, is_on, channel, program, pitch, velocity), note-offs before note-ons at one time."""
    events = []
    for number, instrument in enumerate(midi.instruments):
        channel = _channel(number, instrument)
        for note in instrument.notes:
            events.append((note.start, 1, channel, instrument.program, note.pitch, note.velocity))
            events.append((note.end, 0, channel, instrument.program, note.pitch, 0))
    return sorted(events)


def render_tinysoundfont(midi, soundfont: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(samples, 2) float32 stereo audio of `midi` (a PrettyMIDI), rendered event by event."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    font = synth.sfload(str(soundfont))
    for number, instrument in enumerate(midi.instruments):
        synth.program_select(_channel(number, instrument), font, 128 if instrument.is_drum else 0, instrument.program,
                             is_drums=instrument.is_drum)
    chunks, position = [], 0
    for seconds, is_on, channel, _, pitch, velocity in _note_events(midi):
        frames = int(round(seconds * sample_rate)) - position
        if frames > 0:
            chunks.append(np.frombuffer(synth.generate(frames), dtype=np.float32).reshape(-1, 2).copy())
            position += frames
        if is_on:
            synth.noteon(channel, pitch, velocity)
        else:
            synth.noteoff(channel, pitch)
    chunks.append(np.frombuffer(synth.generate(int(RELEASE_S * sample_rate)), dtype=np.float32).reshape(-1, 2).copy())
    return np.concatenate(chunks)


def render(midi, soundfont=None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(samples, 2) float32 stereo audio of `midi`, through whichever synthesizer is installed."""
    font = find_soundfont(soundfont)
    try:
        import tinysoundfont  # noqa: F401
        return render_tinysoundfont(midi, font, sample_rate)
    except ImportError:
        pass
    try:
        import fluidsynth  # noqa: F401  (pretty_midi renders through it)
    except (ImportError, OSError):
        raise MissingExtraError(INSTALL_HINT) from None
    mono = midi.fluidsynth(fs=sample_rate, sf2_path=str(font)).astype(np.float32)
    return np.stack([mono, mono], axis=1)


def write_wav(midi, path, soundfont=None, sample_rate: int = SAMPLE_RATE) -> None:
    """Render `midi` (a PrettyMIDI) to a 16-bit stereo WAV file, peak-normalised, written atomically."""
    audio = render(midi, soundfont, sample_rate)
    peak = float(np.abs(audio).max()) or 1.0
    pcm = (audio / peak * 0.9 * 32767).astype("<i2")
    with atomic_write(path) as f:
        with wave.open(f, "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm.tobytes())
