"""A small SoundFont sample player in NumPy: audio with nothing to install but what bachsformer
already needs, from the General MIDI SoundFont that pretty_midi ships.

It plays what a keyboard piece needs from a SoundFont 2 file: each note's sample zones (by key
and velocity), pitched by resampling, looped where the sample loops, shaped by the volume
envelope (delay, attack, hold, decay, sustain, release), attenuated and panned. Filters,
modulators, LFOs and effects are left out: FluidSynth (where installed) plays those.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# SoundFont 2.04 generator numbers used here
START_OFFSET, END_OFFSET, LOOP_START_OFFSET, LOOP_END_OFFSET, START_COARSE = 0, 1, 2, 3, 4
END_COARSE, PAN, DELAY, ATTACK, HOLD, DECAY, SUSTAIN, RELEASE = 12, 17, 33, 34, 35, 36, 37, 38
INSTRUMENT, KEY_RANGE, VEL_RANGE, LOOP_START_COARSE, ATTENUATION = 41, 43, 44, 45, 48
LOOP_END_COARSE, COARSE_TUNE, FINE_TUNE, SAMPLE_ID, SAMPLE_MODES, SCALE_TUNING, ROOT_KEY = 50, 51, 52, 53, 54, 56, 58
RANGES = (KEY_RANGE, VEL_RANGE)
TIMECENTS = (DELAY, ATTACK, HOLD, DECAY, RELEASE)
DEFAULTS = {DELAY: -12000, ATTACK: -12000, HOLD: -12000, DECAY: -12000, RELEASE: -12000, SCALE_TUNING: 100,
            ROOT_KEY: -1, KEY_RANGE: (0, 127), VEL_RANGE: (0, 127)}
SILENT_CB = 960  # centibels below full scale where a note is over (96 dB)


class SoundFontError(ValueError):
    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")


@dataclass
class Sample:
    start: int
    end: int
    loop_start: int
    loop_end: int
    rate: int
    root: int
    correction: int


@dataclass
class Zone:
    """One sample of an instrument with everything that shapes it (generators, preset offsets added)."""

    generators: dict
    sample: Sample

    def covers(self, key: int, velocity: int) -> bool:
        """Whether this zone sounds for `key` struck at `velocity`."""
        (klo, khi), (vlo, vhi) = self.generators[KEY_RANGE], self.generators[VEL_RANGE]
        return klo <= key <= khi and vlo <= velocity <= vhi


class SoundFont:
    """The samples and preset zones of a .sf2 file."""

    def __init__(self, path):
        self.path = Path(path)
        data = self.path.read_bytes()
        if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
            raise SoundFontError(path, "not a SoundFont 2 file")
        chunks = _riff_chunks(data, 12, len(data))
        lists = {name: body for name, body in chunks}
        if "sdta" not in lists or "pdta" not in lists:
            raise SoundFontError(path, "no sample or preset data")
        sdta = dict(_riff_chunks(data, *lists["sdta"]))
        pdta = dict(_riff_chunks(data, *lists["pdta"]))
        a, b = sdta["smpl"]
        self.samples = np.frombuffer(data, dtype="<i2", count=(b - a) // 2, offset=a).astype(np.float32) / 32768.0
        table = {name: data[a:b] for name, (a, b) in pdta.items()}
        self.presets = self._presets(table)

    def zones(self, program: int, bank: int = 0) -> list:
        """The zones of a General MIDI program (bank 0, else any bank's, else program 0's)."""
        for key in ((bank, program), (0, program)):
            if key in self.presets:
                return self.presets[key]
        same = [zones for (b, p), zones in self.presets.items() if p == program]
        return same[0] if same else next(iter(self.presets.values()))

    def _presets(self, t: dict) -> dict:
        headers = [struct.unpack_from("<20sHHH", t["phdr"], i) for i in range(0, len(t["phdr"]), 38)]
        pbag = [struct.unpack_from("<HH", t["pbag"], i) for i in range(0, len(t["pbag"]), 4)]
        pgen = [_generator(t["pgen"], i) for i in range(0, len(t["pgen"]), 4)]
        insts = [struct.unpack_from("<20sH", t["inst"], i) for i in range(0, len(t["inst"]), 22)]
        ibag = [struct.unpack_from("<HH", t["ibag"], i) for i in range(0, len(t["ibag"]), 4)]
        igen = [_generator(t["igen"], i) for i in range(0, len(t["igen"]), 4)]
        shdr = [struct.unpack_from("<20sIIIIIBbHH", t["shdr"], i) for i in range(0, len(t["shdr"]), 46)]
        samples = [Sample(s[1], s[2], s[3], s[4], s[5], s[6], s[7]) for s in shdr]
        instruments = []
        for n in range(len(insts) - 1):  # the last record is the terminal one
            bags = [igen[ibag[i][0]:ibag[i + 1][0]] for i in range(insts[n][1], insts[n + 1][1])]
            instruments.append(_zones_of(bags, SAMPLE_ID))
        presets = {}
        for n in range(len(headers) - 1):
            _, program, bank, first = headers[n]
            bags = [pgen[pbag[i][0]:pbag[i + 1][0]] for i in range(first, headers[n + 1][3])]
            zones = []
            for preset_zone in _zones_of(bags, INSTRUMENT):
                for zone in instruments[preset_zone[INSTRUMENT]]:
                    generators = dict(DEFAULTS)
                    generators.update(zone)
                    for op, value in preset_zone.items():  # a preset adds to its instrument's values
                        if op in RANGES:
                            lo, hi = generators[op]
                            generators[op] = (max(lo, value[0]), min(hi, value[1]))
                        elif op not in (INSTRUMENT, SAMPLE_ID, SAMPLE_MODES, ROOT_KEY):
                            generators[op] = generators.get(op, 0) + value
                    zones.append(Zone(generators, samples[zone[SAMPLE_ID]]))
            presets[(bank, program)] = zones
        return presets


def _riff_chunks(data: bytes, start: int, end: int) -> list:
    """[(name, (body start, body end))] of the chunks in data[start:end]; a LIST is named by its type."""
    chunks, at = [], start
    while at + 8 <= end:
        name, size = data[at:at + 4].decode("latin-1"), struct.unpack_from("<I", data, at + 4)[0]
        body = (at + 8, min(at + 8 + size, end))
        if name == "LIST":
            name, body = data[at + 8:at + 12].decode("latin-1"), (at + 12, body[1])
        chunks.append((name.strip(), body))
        at += 8 + size + (size & 1)
    return chunks


def _generator(table: bytes, at: int) -> tuple:
    op = struct.unpack_from("<H", table, at)[0]
    if op in RANGES:
        return op, tuple(table[at + 2:at + 4])
    return op, struct.unpack_from("<h", table, at + 2)[0]


def _zones_of(bags: list, terminal: int) -> list:
    """Zones (dicts of generators) ending in `terminal` (instrument or sample), each with the
    global zone's generators beneath its own."""
    zones, shared = [], {}
    for i, generators in enumerate(bags):
        values = dict(generators)
        if terminal in values:
            zones.append({**shared, **values})
        elif i == 0:
            shared = values
    return zones


@lru_cache(maxsize=2)
def load(path) -> SoundFont:
    return SoundFont(path)


def render(notes: list, font: SoundFont, sample_rate: int, release_s: float) -> np.ndarray:
    """(samples, 2) float32: `notes` [(start s, end s, program, pitch, velocity, is_drum)] played."""
    end = max((n[1] for n in notes), default=0.0) + release_s
    voices = _Voices(font, sample_rate, int(end * sample_rate) + 1)
    struck = [(zone, pitch, velocity, start, stop) for start, stop, program, pitch, velocity, is_drum in notes
              for zone in font.zones(program, 128 if is_drum else 0) if zone.covers(pitch, velocity)]
    voices.reserve(struck)
    for struck_zone in struck:
        voices.play(*struck_zone)
    return voices.mix()


class _Voices:
    """Plays zones, keeping each pitched sample and each envelope once: a piece strikes the same
    keys again and again, and resampling is most of the work. Each pitched sample is made as long
    as the longest note the piece holds on it (`reserve`), and notes are summed into one mono bus
    per pan position, made stereo once at the end (`mix`)."""

    CACHED_S = 8.0  # notes held longer are computed on their own

    def __init__(self, font: SoundFont, rate: int, length: int):
        self.font, self.rate, self.length = font, rate, length
        self.waves, self.shapes, self.needed, self.buses = {}, {}, {}, {}

    def _span(self, zone: Zone, start: float, stop: float) -> tuple:
        """(samples held, samples sounding with the release, release and envelope times in s)."""
        seconds = {op: 2.0 ** (zone.generators[op] / 1200) for op in TIMECENTS}
        held = max(stop - start, 0.0)
        return int(held * self.rate), int((held + seconds[RELEASE]) * self.rate) + 1, seconds

    def reserve(self, struck: list) -> None:
        """Note the longest sound each (zone, key) makes among `struck` [(zone, key, velocity, start, stop)]."""
        cap = int(self.CACHED_S * self.rate)
        for zone, key, _, start, stop in struck:
            n = min(self._span(zone, start, stop)[1], cap)
            if n > self.needed.get((id(zone), key), 0):
                self.needed[(id(zone), key)] = n

    def play(self, zone: Zone, key: int, velocity: int, start: float, stop: float) -> None:
        g = zone.generators
        held_n, n, seconds = self._span(zone, start, stop)
        cached = n <= int(self.CACHED_S * self.rate)
        wave = self._wave(zone, key, max(n, self.needed.get((id(zone), key), 0)) if cached else n)[:n]
        level, release = self._shape(zone, seconds, n if not cached else int(self.CACHED_S * self.rate))
        at = int(start * self.rate)
        n = min(len(wave), self.length - at)
        held_n = min(held_n, n)
        gain = np.float32(10 ** (-(g.get(ATTENUATION, 0) * 0.4) / 200) * (velocity / 127) ** 2)  # 0.4 dB steps, as FluidSynth
        sound = np.multiply(wave[:n], gain)
        sound[:held_n] *= level[:held_n]
        if held_n < n:
            sound[held_n:] *= level[held_n] * release[:n - held_n]
        pan = min(max(g.get(PAN, 0), -500), 500) / 1000 + 0.5
        bus = self.buses.get(pan)
        if bus is None:
            bus = self.buses[pan] = np.zeros(self.length, dtype=np.float32)
        bus[at:at + n] += sound

    def mix(self) -> np.ndarray:
        """(samples, 2) float32: the buses, each panned (constant power) to left and right."""
        out = np.zeros((self.length, 2), dtype=np.float32)
        for pan, bus in self.buses.items():
            out[:, 0] += bus * np.float32(np.cos(pan * np.pi / 2))
            out[:, 1] += bus * np.float32(np.sin(pan * np.pi / 2))
        return out

    def _wave(self, zone: Zone, key: int, n: int) -> np.ndarray:
        """The zone's sample pitched to `key`, looped where it loops: up to n output samples."""
        cached = self.waves.get((id(zone), key))
        if cached is not None and (len(cached) >= n or cached.ended):
            return cached
        g, s = zone.generators, zone.sample
        first = s.start + g.get(START_OFFSET, 0) + 32768 * g.get(START_COARSE, 0)
        last = s.end + g.get(END_OFFSET, 0) + 32768 * g.get(END_COARSE, 0)
        loop_a = s.loop_start + g.get(LOOP_START_OFFSET, 0) + 32768 * g.get(LOOP_START_COARSE, 0) - first
        loop_b = s.loop_end + g.get(LOOP_END_OFFSET, 0) + 32768 * g.get(LOOP_END_COARSE, 0) - first
        data = self.font.samples[first:last]
        root = g[ROOT_KEY] if g[ROOT_KEY] >= 0 else s.root
        cents = (key - root) * g[SCALE_TUNING] + 100 * g.get(COARSE_TUNE, 0) + g.get(FINE_TUNE, 0) + s.correction
        step = 2.0 ** (cents / 1200) * s.rate / self.rate  # source samples per output sample
        position = np.arange(n, dtype=np.float64) * step
        ended = False
        if g.get(SAMPLE_MODES, 0) in (1, 3) and 0 <= loop_a < loop_b <= len(data):
            beyond = position >= loop_b
            position[beyond] = loop_a + np.mod(position[beyond] - loop_a, loop_b - loop_a)
        else:
            ended = True
            position = position[:max(0, min(n, int((len(data) - 1) / step)))]
        whole = position.astype(np.int64)
        frac = (position - whole).astype(np.float32)
        wave = _Wave(data[whole] * (1 - frac) + data[np.minimum(whole + 1, len(data) - 1)] * frac) if len(data) > 1 \
            else _Wave(np.zeros(0, dtype=np.float32))
        wave.ended = ended
        self.waves[(id(zone), key)] = wave
        return wave

    def _shape(self, zone: Zone, seconds: dict, n: int) -> tuple:
        """(level while held, release curve from 1): n samples each, per zone."""
        cached = self.shapes.get(id(zone))
        if cached is not None and len(cached[0]) >= n:
            return cached
        t = np.arange(n, dtype=np.float32) / self.rate
        delay, attack, hold, decay, release = (seconds[op] for op in (DELAY, ATTACK, HOLD, DECAY, RELEASE))
        sustain_cb = min(max(zone.generators.get(SUSTAIN, 0), 0), SILENT_CB)
        after = t - delay - attack - hold  # decay: attenuation in centibels grows linearly to the sustain level
        cb = np.minimum(np.clip(after / max(decay, 1e-4), 0, 1) * SILENT_CB, sustain_cb)
        level = 10 ** (-cb / 200)
        level = np.where(t < delay, 0, np.where(t < delay + attack, (t - delay) / max(attack, 1e-4), level))
        fall = 10 ** (-np.minimum(t / max(release, 1e-4) * SILENT_CB, SILENT_CB) / 200)  # linear in decibels
        shape = (level.astype(np.float32), fall.astype(np.float32))
        self.shapes[id(zone)] = shape
        return shape


class _Wave(np.ndarray):
    """A pitched sample that remembers whether it ran out (a sample that does not loop)."""

    def __new__(cls, array):
        obj = np.asarray(array, dtype=np.float32).view(cls)
        obj.ended = False
        return obj
