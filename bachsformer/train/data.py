"""A training corpus: the MIDI files of a folder cut into frames (bad files reported and skipped),
split into training and held-out pieces by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ludovico_vae.dataset import corpus_hash, find_midi_files, find_other_files, load_pieces
from ludovico_vae.frames import QUANTISED_SHARE, FrameGrid, reading_warnings
from ludovico_vae.midi import MidiError

from ..corpus.split import default_held_out
from ..errors import ConfigError


@dataclass
class DataConfig:
    midi_dir: str = "data/midi/goldberg"  # where `python -m bachsformer.corpus goldberg` puts it
    # file names without suffix, never trained on; None: Goldberg's v10, v15 and v26 and about a
    # tenth of any other corpus, by a hash of each name (bachsformer.corpus.split)
    held_out: Optional[tuple[str, ...]] = None
    cache_dir: Optional[str] = None  # frame cache; None is ~/.cache/bachsformer/frames
    skip_unquantised: bool = True  # a performance has no beat grid to cut frames on


def split_pieces(pieces: list, held_out) -> tuple:
    """(training pieces, held-out pieces): `held_out` names them, None applies the default rule."""
    names = {p.name for p in pieces}
    if held_out is None:
        held_out = default_held_out(names)
    missing = [h for h in held_out if h not in names]
    if missing:
        raise ConfigError(f"data.held_out: {', '.join(missing)} not among the {len(pieces)} pieces of the "
                          "corpus; set --data.held_out=[name, ...] to pieces of your corpus, or [] for none")
    train = [p for p in pieces if p.name not in held_out]
    if not train:
        raise ConfigError("data.held_out leaves no piece to train on")
    return train, [p for p in pieces if p.name in held_out]


def load_corpus(data: DataConfig, grid: FrameGrid, log=print) -> tuple:
    """Pieces of the corpus, with bad files reported and skipped; returns (pieces, corpus hash)."""
    paths = find_midi_files(data.midi_dir)
    if not paths:
        raise ConfigError(f"data.midi_dir: no MIDI files in {data.midi_dir} "
                          "(fill it with `python -m bachsformer.corpus goldberg`)")
    pieces, failures = load_pieces(paths, grid, data.cache_dir)
    if data.skip_unquantised:
        performances = [p for p in pieces if p.stats["onsets_near_grid"] < QUANTISED_SHARE]
        pieces = [p for p in pieces if p.stats["onsets_near_grid"] >= QUANTISED_SHARE]
        failures += [MidiError(p.source, f"not quantised ({100 * p.stats['onsets_near_grid']:.0f}% of onsets near "
                                         "the grid; set data.skip_unquantised=false to use it)") for p in performances]
    for failure in failures:
        log(f"skipped {failure}")
    for piece in pieces:
        if piece.stats.get("melodic_drum_notes"):
            log(f"{piece.source}: {reading_warnings(piece.stats)[-1]}")
        if piece.stats.get("out_of_range"):
            verb = "dropped" if grid.out_of_range == "drop" else "folded onto the keyboard"
            log(f"{piece.source}: {piece.stats['out_of_range']} notes outside A0-C8 {verb}")
    others = len(find_other_files(data.midi_dir))
    log(f"{data.midi_dir}: {len(pieces)} of {len(paths)} MIDI files used"
        + (f", {len(failures)} skipped (listed above)" if failures else "")
        + (f"; {others} other file{'s' * (others != 1)} ignored" if others else ""))
    if not pieces:
        raise ConfigError(f"data.midi_dir: none of the {len(paths)} MIDI files in {data.midi_dir} can be used")
    good = [Path(p.source) for p in pieces]
    return pieces, corpus_hash(good)


def monitor_subset(pieces: list, n: int) -> list:
    """A fixed, spread-out handful of training pieces to score alongside the held-out ones."""
    if n == 0 or not pieces:
        return []
    order = sorted(pieces, key=lambda p: p.name)
    step = max(1, len(order) // n)
    return order[::step][:n]
