"""Harmonise a melody (or a bass line): the given line is kept note for note and the model writes
the other voices around it, frame by frame.

    piece = Bachsformer.from_checkpoints().harmonise("tune.mid", voice="top", seed=0)[0]

At each quarter-note frame the transformer draws `candidates` continuations (16 codes each) from
the same past; the VQ-VAE decodes them, and the one that plays the line's notes in that frame
(its pitches at its onsets) with the fewest notes above it (below it, for a bass) is kept, and the
next frame is drawn from there. The notes written at or beyond the line are then left out, so the
line stays the top (or bottom) voice, and the line itself is written exactly as the file has it.
"""
from __future__ import annotations

import copy

import numpy as np
import pretty_midi
import torch

from ludovico_vae.frames import (ONSET, SOUNDING, frames_to_roll, notes_to_roll, roll_to_frames,
                                 roll_to_notes)
from ludovico_vae.midi import DEFAULT_VELOCITY, LOWEST_PITCH, Notes, beats_of_seconds, parse_midi
from mingpt.model import KVCacheDecoder, draw_tokens, uniform_draws

from .editing import NEW_TRACK, piece_extras, read_own_piece
from .errors import GenerationError
from .generation import Generated, fresh_seed
from .tokens import PIECE_KEY, select_extras
from .tonality import estimate_key, parallel_perfect

VOICES = ("top", "bottom")
DEFAULT_CANDIDATES = 4
ABOVE_COST = 0.25  # a note struck beyond the line costs a quarter of a note of the line played
PARALLEL_COST = 3.0  # a parallel fifth or octave of the outer voices costs three notes of the line


def line_of(notes: Notes, voice: str) -> np.ndarray:
    """Indices of the notes forming the top (or bottom) line: at each onset the highest (lowest)
    note that starts there, unless a note of the line already sounding is higher (lower)."""
    sign = 1 if voice == "top" else -1
    order = np.lexsort((-sign * notes.pitch, notes.start))
    line, last_start = [], None
    for i in order:
        start = notes.start[i]
        if start == last_start:
            continue  # a lower (higher) note of the same onset
        sounding = [j for j in line if notes.start[j] < start < notes.end[j]]
        if any(sign * notes.pitch[j] > sign * notes.pitch[i] for j in sounding):
            continue
        line.append(i)
        last_start = start
    return np.array(sorted(line, key=lambda i: (notes.start[i], notes.pitch[i])), dtype=np.int64)


def harmonise(model, source, voice: str = "top", seed: int | None = None, num_samples: int = 1,
              temperature: float = 1.0, candidates: int = DEFAULT_CANDIDATES) -> list:
    """`num_samples` harmonisations of the top or bottom line of the MIDI file `source`, as
    `Generated` (sample i is seed + i's)."""
    if voice not in VOICES:
        raise GenerationError(f"voice must be top or bottom, got {voice!r}")
    if not isinstance(candidates, int) or candidates < 1:
        raise GenerationError(f"candidates must be a positive integer, got {candidates!r}")
    path, score, piece = read_own_piece(model, source)
    chosen = line_of(score.notes, voice)
    line = score.notes.select(chosen)
    if not len(line):
        raise GenerationError(f"{path}: its {voice} line has no notes to harmonise")
    key = estimate_key(line.pitch, line.start, line.end)  # a line weighing every pitch class alike has none:
    if key is None:  # then the whole piece's, else the style's
        key = estimate_key(score.notes.pitch, score.notes.start, score.notes.end)
    if key is None:
        key = model.pair.style.key if model.pair.style.key is not None else 7
    steps = model.grid.steps_per_quarter
    roll = notes_to_roll(line.shifted(piece.lead_in), steps, len(piece) * steps)
    line_frames = roll_to_frames(roll, steps)[:len(piece)]  # (N, 2, 88, T)
    extras = piece_extras(model, piece)
    extras[:, PIECE_KEY] = key  # written in the key of the line
    seed = fresh_seed() if seed is None else int(seed)
    results, threads = [], torch.get_num_threads()
    for i in range(num_samples):
        torch.set_num_threads(1)  # one token at a time: a second thread only waits (as in sampling)
        try:
            tokens, frames = search(model, extras, _LineScorer(line_frames, voice), len(line_frames), candidates,
                                    temperature, seed + i)
        finally:
            torch.set_num_threads(threads)
        notes = roll_to_notes(frames_to_roll(frames), steps).shifted(-piece.lead_in)
        midi = _harmonised_midi(parse_midi(path), score.notes, chosen, _around(notes, line, voice))
        results.append(Generated(midi, frames, tokens.reshape(-1), 0, seed + i))
    return results


@torch.no_grad()
def search(model, extras: np.ndarray, best, n: int, k: int, temperature: float, seed: int) -> tuple:
    """(codes (n, 16), frames (n, 2, 88, T)): at each frame k candidates drawn from the same past,
    decoded, and the one that `best(frame, decoded (k, 1, 2, 88, T))` names kept; `extras` (n * 16,
    10) the inputs beside them. The frames are the chosen candidates as they were judged."""
    per = model.indices_per_frame
    selected = select_extras(torch.from_numpy(extras), model.extra_inputs)
    decoder = KVCacheDecoder(model.transformer, k, temperature)
    generator = torch.Generator().manual_seed(seed)
    silence = model._silence()[None].expand(k, -1)
    first = None if selected is None else selected[None, :per].expand(k, -1, -1)
    with torch.inference_mode():
        logits = decoder.prefill(silence, first)  # a silent frame before the first, as a piece begins
        embedded = None if selected is None else decoder.embed_extras(selected[None]).expand(k, -1, -1)
        out = np.empty((n, per), dtype=np.int64)
        frames = np.empty((n, *model.grid.frame_shape), dtype=np.uint8)
        carry = None
        for frame in range(n):
            drawn = torch.empty(k, per, dtype=torch.int64)
            draws = uniform_draws(per, k, generator, logits.device)
            for t in range(per):
                tok = draw_tokens(logits, draws[t])
                drawn[:, t] = tok
                extra = None if embedded is None else embedded[:, frame * per + t]
                logits = decoder.fast_step(tok, extra)
            # decoded after the frame chosen before, the keys sounding at its end carried: a held
            # note goes on rather than being struck anew, and the piece is written of the frames
            # as they were judged (decoded whole again, a later frame could change an earlier one)
            held = None if carry is None else np.broadcast_to(carry, (k, len(carry)))
            decoded = model.vae.decode_pieces(drawn[:, None].to(model.device), carry=held)
            kept = best(frame, decoded)
            decoder.keep_row(kept)
            logits = logits[kept:kept + 1].expand(k, -1).clone()
            out[frame], frames[frame] = drawn[kept].numpy(), decoded[kept, 0]
            carry = frames[frame, SOUNDING, :, -1].astype(bool)
    return out, frames


class _LineScorer:
    """Chooses each frame's candidate (`_line_scores`), less PARALLEL_COST for each parallel fifth or
    octave its outer voices make, counted on from the frames already chosen."""

    def __init__(self, line_frames: np.ndarray, voice: str):
        self.line_frames, self.voice, self.previous = line_frames, voice, None

    def __call__(self, frame: int, candidates: np.ndarray) -> int:
        line = self.line_frames[frame]
        scores = _line_scores(candidates, line, self.voice)
        pairs = [outer_pairs(c[0], line, self.voice) for c in candidates]
        chains = [([self.previous] if self.previous else []) + p for p in pairs]
        scores = scores - PARALLEL_COST * np.array([parallel_perfect(c)[0] for c in chains])
        best = int(np.argmax(scores))
        if pairs[best]:
            self.previous = pairs[best][-1]
        return best


def outer_pairs(frame: np.ndarray, line: np.ndarray, voice: str) -> list:
    """[(top, bass)] keys at each onset of the line in one frame (2, 88, T), in time order: the line
    and the candidate's lowest (highest, for a bass line) key sounding beyond it then."""
    pairs = []
    keys, steps = np.nonzero(line[ONSET])
    order = np.argsort(steps, kind="stable")  # nonzero runs key by key: a falling line would come out reversed
    for key, step in zip(keys[order], steps[order]):
        sounding = np.flatnonzero(frame[SOUNDING, :, step])
        other = sounding[sounding < key] if voice == "top" else sounding[sounding > key]
        if len(other):
            pairs.append((int(key), int(other.min())) if voice == "top" else (int(other.max()), int(key)))
    return pairs


def _best(candidates: np.ndarray, line: np.ndarray, voice: str) -> int:
    """Index of the candidate frame that plays the line best (`_line_scores`)."""
    return int(np.argmax(_line_scores(candidates, line, voice)))


def _line_scores(candidates: np.ndarray, line: np.ndarray, voice: str) -> np.ndarray:
    """(k,) how well each candidate frame (k, 1, 2, 88, T) strikes the line's notes (its onsets in
    `line` (2, 88, T), one step either way), less ABOVE_COST for each onset beyond it."""
    onsets = candidates[:, 0, ONSET].astype(bool)  # (k, 88, T)
    near = onsets.copy()
    near[..., 1:] |= onsets[..., :-1]
    near[..., :-1] |= onsets[..., 1:]
    wanted = line[ONSET].astype(bool)
    hits = (near & wanted).sum(axis=(1, 2))
    sounding = line[SOUNDING].astype(bool)  # the line's key at each step, where it sounds
    keys = np.arange(sounding.shape[0])[:, None]
    edge = np.where(sounding.any(axis=0), (keys * sounding).max(axis=0) if voice == "top"
                    else np.where(sounding, keys, 10**6).min(axis=0), -1)
    beyond = (keys > edge) if voice == "top" else (keys < edge)
    beyond &= sounding.any(axis=0)[None, :]
    extra = (onsets & beyond[None]).sum(axis=(1, 2))
    return hits - ABOVE_COST * extra


def _around(notes: Notes, line: Notes, voice: str) -> Notes:
    """The written notes that stay below (above) the line wherever it sounds, and apart from it."""
    keep = np.ones(len(notes), dtype=bool)
    for i in range(len(notes)):
        sounding = (line.start <= notes.start[i] + 1e-9) & (line.end > notes.start[i] + 1e-9)
        overlapping = (line.start < notes.end[i] - 1e-9) & (line.end > notes.start[i] + 1e-9)
        if sounding.any():
            edge = line.pitch[sounding].min() if voice == "top" else line.pitch[sounding].max()
            keep[i] = notes.pitch[i] < edge if voice == "top" else notes.pitch[i] > edge
        if keep[i] and np.any(overlapping & (line.pitch == notes.pitch[i])):
            keep[i] = False  # a doubling of the line on its own key would merge with it
    return notes.select(keep)


def _harmonised_midi(original: pretty_midi.PrettyMIDI, notes: Notes, chosen: np.ndarray, written: Notes):
    """The source's tempo and meter, its line as it is written there, and the new voices."""
    midi = copy.deepcopy(original)
    line_keys = {(int(notes.pitch[i]), round(float(notes.start[i]), 6)) for i in chosen}
    programs = []
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        starts = beats_of_seconds(midi, [n.start for n in instrument.notes])
        instrument.notes = [n for n, s in zip(instrument.notes, starts) if (n.pitch, round(float(s), 6)) in line_keys]
        programs.append(instrument.program)
    midi.instruments = [i for i in midi.instruments if i.notes and not i.is_drum]
    for instrument in midi.instruments:
        instrument.name = instrument.name or "line"
    track = pretty_midi.Instrument(program=programs[0] if programs else 0, name=NEW_TRACK)
    tick = lambda beat: midi.tick_to_time(int(round(beat * midi.resolution)))  # noqa: E731
    for p, s, e in zip(written.pitch.tolist(), written.start.tolist(), written.end.tolist()):
        if p >= LOWEST_PITCH:
            track.notes.append(pretty_midi.Note(DEFAULT_VELOCITY, p, tick(s), tick(e)))
    midi.instruments.append(track)
    return midi
