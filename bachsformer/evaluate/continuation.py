"""Does a continuation keep its prompt's key, meter and tempo? The prompt's key (by key profiles),
its meter as written in the body of the piece (the time signature that spans the most beats, not
a short final bar) and its tempo (the median over its beats, not a closing ritardando), against
the same of the notes that start after the prompt in the generated file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ludovico_vae.midi import Score, body_meter, median_tempo, read_midi

from ..tonality import closely_related, estimate_key, key_name

TEMPO_TOLERANCE = 0.01  # a tempo within 1% is the same tempo


@dataclass
class Continuation:
    """A prompt's key, meter and tempo beside its continuation's."""

    prompt_key: int | None
    key: int | None
    prompt_meter: tuple
    meter: tuple
    prompt_qpm: float
    qpm: float
    seam_beats: float  # where the continuation starts in the generated file

    @property
    def same_key(self) -> bool:
        return self.key is not None and self.key == self.prompt_key

    @property
    def related_key(self) -> bool:
        """The same key or a closely related one (signatures at most one accidental apart)."""
        return None not in (self.key, self.prompt_key) and closely_related(self.key, self.prompt_key)

    @property
    def same_meter(self) -> bool:
        return self.meter == self.prompt_meter

    @property
    def same_tempo(self) -> bool:
        return abs(self.qpm - self.prompt_qpm) <= TEMPO_TOLERANCE * self.prompt_qpm

    def row(self) -> dict:
        row = asdict(self)
        row.update(prompt_key=key_name(self.prompt_key), key=key_name(self.key),
                   prompt_meter="/".join(map(str, self.prompt_meter)), meter="/".join(map(str, self.meter)),
                   same_key=self.same_key, related_key=self.related_key, same_meter=self.same_meter,
                   same_tempo=self.same_tempo)
        return row


def compare_continuation(prompt: Score, generated: Score) -> Continuation:
    """The prompt's key, meter and tempo against those of what follows it in `generated`, which
    holds the prompt first (as generate.py writes it) and the continuation from the next beat on."""
    seam = float(np.ceil(_end(prompt) - 1e-9))
    notes = generated.notes
    after = notes.start >= seam - 1e-9
    key = estimate_key(notes.pitch[after], notes.start[after], notes.end[after]) if after.any() else None
    p, end = prompt.notes, _end(generated)
    return Continuation(estimate_key(p.pitch, p.start, p.end), key, body_meter(prompt.time_signatures, 0.0, _end(prompt)),
                        body_meter(generated.time_signatures, seam, end), median_tempo(prompt.tempos, 0.0, _end(prompt)),
                        median_tempo(generated.tempos, seam, end), seam)


def _end(score: Score) -> float:
    return float(score.notes.end.max()) if len(score.notes) else 0.0


def pair_files(prompts: list, outputs: list) -> list:
    """(prompt, output) pairs: each output with the prompt whose name is the longest prefix of its
    own, as generate.py names a continuation `<prompt>-seed...`."""
    pairs = []
    for output in outputs:
        matches = [p for p in prompts if output.stem.startswith(Path(p).stem)]
        if matches:
            pairs.append((max(matches, key=lambda p: len(Path(p).stem)), output))
    return pairs


def summarise(results: list) -> dict:
    """Shares of continuations that keep the prompt's key (or a closely related one), meter and tempo."""
    if not results:
        return {}
    return {name: float(np.mean([getattr(r, name) for r in results]))
            for name in ("same_key", "related_key", "same_meter", "same_tempo")}


def read_pair(prompt_path, output_path) -> Continuation:
    return compare_continuation(read_midi(prompt_path), read_midi(output_path))
