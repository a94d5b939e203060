"""Your own music: new bars written into a MIDI file between what comes before and after them.

    from bachsformer import Bachsformer
    model = Bachsformer.from_checkpoints()
    piece = model.regenerate("my_piece.mid", [(5, 8)], seed=0)[0]   # bars 5 to 8, counted from 1
    piece.write("my_piece-new-5-8.mid")

Every note that starts outside the chosen bars is kept exactly as the file has it (pitch, start
and end, its track, program and velocity); a note held into a chosen bar is cut where the bar
begins, unless the new bars hold it on, when it stays whole. The transformer writes the bars'
codes knowing the music before them and, when it was trained to fill gaps (the `future` input),
the frames after them; the VQ-VAE decodes them after the bar before, as the piece sounds. New
bars that wander off the key of the bars around them are drawn again (a few times at most).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from ludovico_vae.frames import (ONSET, QUANTISED_SHARE, SOUNDING, bar_per_frame, frames_to_roll, meter_per_frame,
                                 roll_to_notes, score_to_piece)
from ludovico_vae.midi import DEFAULT_VELOCITY, LOWEST_PITCH, Notes, bar_lines, beats_of_seconds, parse_midi, read_midi

from .errors import GenerationError
from .generation import Generated, candidate_seed, fresh_seed
from .tonality import closely_related, estimate_key
from .tokens import (SLOTS_PER_BEAT, beat_slots, encode, future_first, key_of_frames, progress_bins,
                     select_extras, token_extras)

CONTEXT_BARS = 4  # bars on each side of a span whose key the new bars keep (or a closely related one)
SPAN_DRAWS = 4  # at most, for each span of each version: drawn until one keeps the context's key
SPAN_SALT = 7919  # seeds of later draws of a span, apart from every other candidate's
FUTURE_FRAMES = 8  # frames after a gap shown to the model; it trained with 1 to 12
NEW_TRACK = "bachsformer (new)"  # the track the model's notes join a user's file as
PAST_FRAMES = 8  # frames before a gap kept in view while its last frames are written
EPS = 1e-6


def read_own_piece(model, source) -> tuple:
    """(path, Score, Piece) of a user's MIDI file on the model's grid; a performance (not quantised)
    is refused by name, since its bars and onsets cannot be kept on the grid."""
    path = Path(source)
    score = read_midi(path)
    piece = score_to_piece(score, model.grid)
    if piece.stats["onsets_near_grid"] < QUANTISED_SHARE:
        raise GenerationError(f"{path}: a performance, not a score: only {100 * piece.stats['onsets_near_grid']:.0f}% "
                              "of its onsets lie near the beat grid (quantise it first)")
    return path, score, piece


def parse_bar_range(text: str) -> tuple:
    """ "5:8" -> (5, 8); "5" -> (5, 5). Bars count from 1; both ends are included."""
    parts = text.split(":")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
    except ValueError:
        first = last = None
    if first is None:
        raise GenerationError(f"bars: expected A:B such as 5:8, got {text!r}")
    return first, last


def regenerate(model, source, ranges, seed: int | None = None, num_samples: int = 1, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None) -> list:
    """`num_samples` versions of the MIDI file `source` with the bars of each `(first, last)` of
    `ranges` written anew (bars from 1, both included), as `Generated`; sample i is seed + i's.
    A span whose new music leaves the key of the bars around it (`context_key`; a closely related
    key is kept) is drawn again, up to SPAN_DRAWS times; the first that keeps it, else the first."""
    path, score, piece = read_own_piece(model, source)
    end_beat = len(piece) - piece.lead_in
    meters = {(num, den) for _, num, den in score.time_signatures}
    too_long = [f"{n}/{d}" for n, d in sorted(meters) if n * 4 / d * SLOTS_PER_BEAT > model.n_slots]
    if too_long:
        raise GenerationError(f"{path}: its meter {', '.join(too_long)} has bars longer than the model has seen "
                              f"({model.n_slots // SLOTS_PER_BEAT} beats at most)")
    bar_starts = bar_lines(score.time_signatures, end_beat)
    spans = bar_spans(path, ranges, bar_starts, end_beat)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise GenerationError(f"num samples must be a positive integer, got {num_samples!r}")
    seed = fresh_seed() if seed is None else int(seed)
    seeds = [seed + i for i in range(num_samples)]

    codes = encode(model.vae, piece.frames, model.device)  # (N, 16)
    tokens = np.broadcast_to(codes, (num_samples, *codes.shape)).copy()
    extras = piece_extras(model, piece)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    frames = np.broadcast_to(piece.frames, (num_samples, *piece.frames.shape)).copy()
    new_notes = [[] for _ in seeds]
    held_on = [{} for _ in seeds]  # span start -> keys the new music holds on from before it
    bounds = np.append(bar_starts, max(end_beat, bar_starts[-1]))
    for n_span, (start, end) in enumerate(spans):
        first = int(np.floor(start + piece.lead_in + EPS))  # frames that hold any of the span
        last = min(len(piece), int(np.ceil(end + piece.lead_in - EPS)))
        # decoded after the frame before, as the piece sounds: a note held into the span may go on
        carry = frames[:, first - 1, SOUNDING, :, -1].astype(bool) if first > 0 else None
        home = context_key(score.notes, bounds, start, end)
        decoded = np.empty((num_samples, last - first, *frames.shape[2:]), dtype=frames.dtype)
        rows, draw = list(range(num_samples)), 0
        while rows and draw < SPAN_DRAWS:  # the first draw from each version's own generator
            drawing = [generators[i] if draw == 0 else torch.Generator().manual_seed(
                candidate_seed(seeds[i], SPAN_SALT * (n_span + 1) + draw)) for i in rows]
            new = _fill(model, tokens[rows], extras, first, last, drawing, options)
            drawn = model.vae.decode_pieces(torch.from_numpy(new).to(model.device),
                                            carry=None if carry is None else carry[rows])
            passed = [home is None or _keeps_key(gap, home, first - piece.lead_in, start, end, model) for gap in drawn]
            for r, codes_drawn, gap, ok in zip(rows, new, drawn, passed):
                if draw == 0 or ok:  # a later draw replaces the first only if it keeps the key
                    tokens[r, first:last], decoded[r] = codes_drawn, gap
            rows = [r for r, ok in zip(rows, passed) if not ok]
            draw += 1
        frames[:, first:last] = decoded
        at_frame = abs(first - piece.lead_in - start) < EPS  # the span begins where its first frame does
        for i, gap in enumerate(decoded):
            roll = frames_to_roll(gap)
            notes = roll_to_notes(roll, model.grid.steps_per_quarter).shifted(first - piece.lead_in)
            goes_on = set()
            if carry is not None and at_frame:  # keys sounding from the first step without a new stroke
                goes_on = set((np.flatnonzero(roll[SOUNDING, :, 0].astype(bool) & ~roll[ONSET, :, 0].astype(bool)
                                              & carry[i]) + LOWEST_PITCH).tolist())
            inside = (notes.start >= start - EPS) & (notes.start < end - EPS)
            inside &= ~((np.abs(notes.start - start) < EPS) & np.isin(notes.pitch, list(goes_on)))
            new_notes[i].append(Notes(notes.pitch[inside], notes.start[inside], np.minimum(notes.end[inside], end)))
            held_on[i][start] = goes_on
    original = parse_midi(path)
    return [Generated(_edited_midi(original, spans, new_notes[i], held_on[i]), frames[i],
                      np.concatenate([tokens[i, int(np.floor(a + piece.lead_in + EPS)):
                                                int(np.ceil(b + piece.lead_in - EPS))] for a, b in spans]).reshape(-1),
                      0, seeds[i]) for i in range(num_samples)]


def context_key(notes: Notes, bounds: np.ndarray, start: float, end: float) -> int | None:
    """The key of the CONTEXT_BARS bars before the span start..end (beats) and the CONTEXT_BARS
    after it, of `notes` (beats); `bounds` the piece's bar lines and its end. None if silent."""
    first, last = np.searchsorted(bounds, [start - EPS, end - EPS])  # the span's first bar line, its end's
    before, after = bounds[max(0, first - CONTEXT_BARS)], bounds[min(len(bounds) - 1, last + CONTEXT_BARS)]
    sides = [_clipped(notes, before, start), _clipped(notes, end, after)]
    pitch, on, off = (np.concatenate(column) for column in zip(*sides))
    return estimate_key(pitch, on, off) if len(pitch) else None


def _clipped(notes: Notes, start: float, end: float) -> tuple:
    """(pitch, start, end) of what of `notes` sounds between start and end."""
    keep = (notes.start < end) & (notes.end > start)
    return notes.pitch[keep], np.maximum(notes.start[keep], start), np.minimum(notes.end[keep], end)


def _keeps_key(gap: np.ndarray, home: int, offset: float, start: float, end: float, model) -> bool:
    """Whether what sounds between start and end (beats) of the decoded frames `gap`, whose first
    frame starts at beat `offset`, is in the key `home` or a closely related one."""
    notes = roll_to_notes(frames_to_roll(gap), model.grid.steps_per_quarter).shifted(offset)
    pitch, on, off = _clipped(notes, start, end)
    key = estimate_key(pitch, on, off) if len(pitch) else None
    return key is not None and closely_related(key, home)


def bar_spans(path, ranges, bar_starts: np.ndarray, end_beat: float) -> list:
    """[(start, end)] in beats of the bars of each (first, last); GenerationError naming the file
    for a range outside the piece, reversed, or overlapping another."""
    ranges = sorted((int(a), int(b)) for a, b in ranges)
    if not ranges:
        raise GenerationError(f"{path}: no bars to regenerate")
    n_bars = len(bar_starts)
    for (a, b), following in zip(ranges, ranges[1:] + [None]):
        if not 1 <= a <= b <= n_bars:
            raise GenerationError(f"{path}: bars {a}:{b} lie outside the piece, which has bars 1 to {n_bars}"
                                  if a <= b else f"{path}: bars {a}:{b} run backwards; write {b}:{a}")
        if following is not None and following[0] <= b:
            raise GenerationError(f"{path}: bars {a}:{b} and {following[0]}:{following[1]} overlap")
    bounds = np.append(bar_starts, max(end_beat, bar_starts[-1]))
    return [(float(bounds[a - 1]), float(bounds[b])) for a, b in ranges]


def piece_extras(model, piece) -> np.ndarray:
    """(N * 16, 10) the inputs beside the codes of a user's piece: its beats, its form read from its
    own bars, its key."""
    _, _, beat_in_bar = meter_per_frame(piece.time_signatures, piece.frame_starts)
    bars = bar_per_frame(piece.time_signatures, piece.frame_starts)
    n = len(piece)
    return token_extras(n, model.indices_per_frame, beat_slots(beat_in_bar, model.n_slots),
                        progress=progress_bins(np.arange(n), n), bars=bars, n_bars=int(bars.max(initial=0)) + 1,
                        piece_key=key_of_frames(piece.frames))


def _fill(model, tokens: np.ndarray, extras: np.ndarray, first: int, last: int, generators, options) -> np.ndarray:
    """(S, last - first, 16) new codes for frames first..last-1 of `tokens` (S, N, 16).

    With a model that knows the future input, the frames after the gap come first in its
    context, as in training (`future_first`); the gap's first frames are written as a plain
    continuation where the whole gap, the future and some past would not fit in one context.
    """
    per_frame, n = model.indices_per_frame, tokens.shape[1]
    block = model.transformer.config.block_size // per_frame
    future = min(FUTURE_FRAMES, n - last, block // 4) if "future" in model.extra_inputs else 0
    out = []
    position = first
    while position < last:
        left, keep = last - position, min(PAST_FRAMES, block // 4, position)
        if future and left + keep + future <= block:  # the rest, seeing the future
            n_future, n_new = future, left
            past = min(position, block - left - future)
        else:  # straight on, until what is left fits beside the future and some past
            n_future, n_new = 0, left - (block - future - keep) if future else left
            past = min(position, block)
        seq = tokens[:, position - past:position].reshape(len(tokens), -1)
        ex = extras[(position - past) * per_frame:position * per_frame]
        if n_future:  # past then future, reordered as in training: the future first
            ahead = tokens[:, last:last + n_future].reshape(len(tokens), -1)
            ex = np.concatenate([ex, extras[last * per_frame:(last + n_future) * per_frame]])
            rows = [future_first(np.concatenate([row, after]), ex, n_future, per_frame) for row, after in zip(seq, ahead)]
            seq, ex = np.stack([r[0] for r in rows]), rows[0][1]
        ex = np.concatenate([ex, extras[position * per_frame:(position + n_new) * per_frame]])
        if seq.shape[1] == 0:  # nothing before and nothing after: start from an empty frame
            seq = np.broadcast_to(model._silence().cpu().numpy(), (len(tokens), per_frame))
            ex = np.concatenate([extras[position * per_frame:(position + 1) * per_frame], ex])
        selected = select_extras(torch.from_numpy(np.broadcast_to(ex, (len(tokens), *ex.shape)).copy()),
                                 model.extra_inputs)
        prompt = torch.from_numpy(np.array(seq)).to(model.device)
        new = model.transformer.generate(prompt, n_new * per_frame, generator=generators,
                                         extras=None if selected is None else selected.to(model.device), **options)
        new = new[:, prompt.shape[1]:].cpu().numpy().reshape(len(tokens), n_new, per_frame)
        tokens[:, position:position + n_new] = new  # later steps of a long gap see what was written
        out.append(new)
        position += n_new
    return np.concatenate(out, axis=1)


def _edited_midi(original: pretty_midi.PrettyMIDI, spans: list, notes: list, held_on: dict) -> pretty_midi.PrettyMIDI:
    """`original` with the notes starting in `spans` (beats) removed, those held into a span cut
    at its start unless the new music holds their key on from before it (`held_on`: span start ->
    keys), and `notes` (Notes in beats, one per span) added as a track of their own."""
    midi = copy.deepcopy(original)
    tick_time = midi.tick_to_time
    for instrument in midi.instruments:
        if instrument.is_drum or not instrument.notes:
            continue
        starts = beats_of_seconds(midi, [note.start for note in instrument.notes])
        ends = beats_of_seconds(midi, [note.end for note in instrument.notes])
        kept = []
        for note, start, end in zip(instrument.notes, starts, ends):
            if any(a - EPS <= start < b - EPS for a, b in spans):
                continue
            cut = [a for a, _ in spans if start < a - EPS < end - EPS and note.pitch not in held_on.get(a, ())]
            if cut:
                note.end = tick_time(int(round(min(cut) * midi.resolution)))
            kept.append(note)
        instrument.notes = kept
    pitched = [i for i in original.instruments if not i.is_drum]
    track = pretty_midi.Instrument(program=pitched[0].program if pitched else 0, name=NEW_TRACK)
    velocity = int(np.median([n.velocity for i in pitched for n in i.notes])) if pitched else DEFAULT_VELOCITY
    for span in notes:
        for p, s, e in zip(span.pitch.tolist(), span.start.tolist(), span.end.tolist()):
            track.notes.append(pretty_midi.Note(velocity, p, tick_time(int(round(s * midi.resolution))),
                                                tick_time(int(round(e * midi.resolution)))))
    midi.instruments.append(track)
    return midi
