"""Audio rendering of MIDI through FluidSynth, an optional extra."""
from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from ludovico_vae.files import atomic_write

INSTALL_HINT = ("--wav needs FluidSynth and a SoundFont: pip install 'bachsformer[audio]' (pyfluidsynth), "
                "the FluidSynth library (apt install fluidsynth, or brew install fluid-synth), and a General "
                "MIDI SoundFont such as apt's fluid-soundfont-gm, passed as --soundfont FILE.sf2")
SAMPLE_RATE = 44100
KNOWN_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2",
                    "/usr/share/sounds/sf2/default-GM.sf2")


def find_soundfont(explicit=None) -> Path:
    candidates = [explicit] if explicit else [os.environ.get("BACHSFORMER_SOUNDFONT"), *KNOWN_SOUNDFONTS]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if explicit:
        raise ValueError(f"{explicit}: no such SoundFont file")
    raise ImportError(INSTALL_HINT)


def write_wav(midi, path, soundfont=None) -> None:
    """Render `midi` (a PrettyMIDI) to a 16-bit WAV file, written atomically."""
    try:
        import fluidsynth  # noqa: F401  (pretty_midi renders through it)
    except (ImportError, OSError):
        raise ImportError(INSTALL_HINT) from None
    audio = midi.fluidsynth(fs=SAMPLE_RATE, sf2_path=str(find_soundfont(soundfont)))
    peak = np.abs(audio).max() or 1.0
    pcm = (audio / peak * 0.9 * 32767).astype(np.int16)
    with atomic_write(path) as f:
        with wave.open(f, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(pcm.tobytes())
