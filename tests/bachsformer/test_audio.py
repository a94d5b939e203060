"""Audio: the SoundFont player sounds each note at its pitch and time, in stereo, with nothing to
install but pretty_midi's General MIDI SoundFont."""
import wave

import numpy as np
import pretty_midi
import pytest

from bachsformer import synth
from bachsformer.audio import RELEASE_S, SAMPLE_RATE, find_soundfont, render, write_wav
from bachsformer.errors import CommandError
from conftest import N, write_midi


@pytest.fixture(scope="module")
def font():
    return synth.load(find_soundfont())


def _midi(notes, program=6):
    midi = pretty_midi.PrettyMIDI(initial_tempo=60)
    instrument = pretty_midi.Instrument(program=program)
    instrument.notes = [pretty_midi.Note(100, p, s, e) for p, s, e in notes]
    midi.instruments.append(instrument)
    return midi


def _pitch_of(audio: np.ndarray) -> float:
    """The frequency of the strongest peak of the mono mix, in Hz."""
    mono = audio.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(mono))


def test_the_general_midi_soundfont_has_every_key_of_the_harpsichord_and_piano(font):
    for program in (6, 0):
        zones = font.zones(program)
        assert zones
        assert all(any(z.covers(key, 100) for z in zones) for key in range(21, 109))


@pytest.mark.parametrize("pitch", [48, 60, 69, 76])
def test_a_note_sounds_at_its_pitch(pitch):
    audio = render(_midi([(pitch, 0.0, 1.0)]))
    expected = 440 * 2 ** ((pitch - 69) / 12)
    found = _pitch_of(audio[: SAMPLE_RATE])
    # the strongest partial is the fundamental or an octave above it (a harpsichord's bright tone)
    assert min(abs(found / expected - k) for k in (1, 2)) < 0.03, (found, expected)


def test_notes_sound_when_they_are_played_in_stereo(font):
    audio = render(_midi([(60, 1.0, 1.5), (67, 3.0, 3.2)]))
    assert audio.shape == (int((3.2 + RELEASE_S) * SAMPLE_RATE) + 1, 2) and audio.dtype == np.float32
    loud = lambda a, b: float(np.abs(audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)]).max())  # noqa: E731
    assert loud(0, 0.99) == 0  # nothing before the first note
    assert loud(1.0, 1.2) > 0.01 and loud(3.0, 3.1) > 0.01
    assert loud(2.3, 2.9) < loud(1.0, 1.2) / 100  # let go at 1.5 s: silent well before the next


def test_a_piece_sounds_as_the_sum_of_its_notes_alone(font):
    """The player keeps each pitched sample and sums notes on shared buses: the same key struck
    short, then long (past the cached length), then short again, and a chord on two programs, must
    each sound exactly as if played alone."""
    notes = [(0.0, 0.2, 0, 60, 100, False), (0.5, 10.0, 0, 60, 90, False), (11.0, 11.3, 0, 60, 100, False),
             (1.0, 2.0, 6, 67, 80, False), (1.0, 2.5, 6, 72, 127, False), (3.0, 3.5, 0, 36, 64, False)]
    together = synth.render(notes, font, 22050, RELEASE_S)
    alone = np.zeros_like(together)
    for note in notes:
        sound = synth.render([note], font, 22050, RELEASE_S)
        alone[:len(sound)] += sound[:len(alone)]
    assert float(np.abs(together).max()) > 0.05
    np.testing.assert_allclose(together, alone, atol=2e-6)


def test_write_wav_is_16_bit_stereo(tmp_path):
    path = write_midi(tmp_path / "two.mid", [N(60, 0, 1), N(64, 1, 2)])
    write_wav(pretty_midi.PrettyMIDI(str(path)), tmp_path / "two.wav")
    with wave.open(str(tmp_path / "two.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, SAMPLE_RATE)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert 0.85 * 32767 < np.abs(frames).max() <= 0.9 * 32767 + 1  # peak-normalised
    assert w.getnframes() == pytest.approx((1.0 + RELEASE_S) * SAMPLE_RATE, abs=SAMPLE_RATE * 0.02)


def test_a_file_that_is_not_a_soundfont_is_refused_by_name(tmp_path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnothing")
    with pytest.raises(CommandError, match="bad.sf2"):
        render(_midi([(60, 0, 1)]), soundfont=bad)
    with pytest.raises(CommandError, match="no such SoundFont"):
        render(_midi([(60, 0, 1)]), soundfont=tmp_path / "missing.sf2")
