"""New pieces from a trained pair: the transformer samples codes frame after frame, the VQ-VAE
decodes them, and the frames become MIDI with real bar lines and tempo.

    from bachsformer import Bachsformer
    piece = Bachsformer.from_checkpoints().generate(bars=32, seed=0)[0]
    piece.midi.write("new.mid")
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from ludovico_vae.files import atomic_write
from ludovico_vae.frames import (ONSET, SOUNDING, Piece, bar_per_frame, frames_to_roll, meter_per_frame, roll_to_notes,
                                 score_to_piece, shift_keys)
from ludovico_vae.midi import HARPSICHORD, DEFAULT_VELOCITY, body_meter, median_tempo, read_midi, score_to_midi

from .errors import GenerationError
from .pair import Pair, load_pair
from .paths import BUNDLED_CHECKPOINTS, DEFAULT_STYLE
from .runtime import resolve_device
from .tokens import KEYS, PIECE_KEYS, beat_slots, key_of_frames, progress_bins, select_extras, silent_frame_codes, token_extras
from .tonality import NO_KEY, closes_on_i_or_v, estimate_key, is_minor, local_keys, on_tonic_chord, parse_key

MAX_BARS = 10_000
MAX_SEED = 2**31  # fresh seeds stay short enough to type
FORMS = ("binary", "through")
SECTION_BARS = 16  # each half of a binary piece, as in the Goldberg variations
DEFAULT_CANDIDATES = 4  # at most, for each half of a binary piece: drawn until one is in the key asked for
# a half in a minor key may draw this many times as many: 3 of the 28 training pieces are minor, and
# with 4 candidates 77% of minor pieces were in the key asked for, against 98% of major ones
MINOR_KEY_DRAWS = 2
# Key guidance (classifier-free guidance over the key input, `guided_key_input`): each step draws from
# log p(key K) + w * (log p(key K) - mean log p(key K +-2)), away from what the model would write a
# whole tone higher or lower, a bias its samples share (notes outside the key). w = 0.7, chosen on
# seeds 10-12 (transposition input) and 10-29 (the piece's key) and reported on others
# (docs/results.md); 0 turns it off. A prompt may be in another key than the one the model is
# told, so a continuation is unguided unless asked.
DEFAULT_KEY_GUIDANCE = 0.7
DEFAULT_TOP_P = 1.0  # no nucleus: with key guidance, cutting the tail only cuts the bass
KEY_CONTRASTS = (2, -2)
DECODE_CHUNK = 64  # frames decoded at once; bounds the decoder's memory on long pieces
CLOSING_BARS = 2  # a half's closing bars, drawn again among candidates for the best cadence
CLOSING_SALT = 1_000  # candidate numbers of the redrawn closes, apart from the halves' own
CLOSING_DRAWS = 2  # closes drawn per candidate of a half in each round: short, so cheap
CLOSING_ROUNDS = 3  # rounds of closes drawn while a half still has no right cadence
CLOSING_CONTEXT_BARS = 4  # bars a close is drawn after: enough for its phrase, cheap to read in


@dataclass
class Generated:
    """One generated piece: the MIDI, and the frames and tokens it was made from."""

    midi: pretty_midi.PrettyMIDI
    frames: np.ndarray  # (N, 2, 88, T) uint8, the prompt's frames first
    tokens: np.ndarray  # (N_generated * indices_per_frame,) codes of the generated frames
    prompt_frames: int  # how many of the frames are the prompt's
    seed: int  # generate(seed=seed) alone writes this piece again
    key_plan: str | None = None  # the training piece whose local keys the continuation followed
    prompt_beats: float = 0.0  # where the continuation begins in the MIDI, in beats

    def write(self, path) -> None:
        """Write the MIDI file, atomically: a crash never leaves half a file."""
        with atomic_write(path) as f:
            self.midi.write(f)

    def to_wav(self, path, soundfont=None, sample_rate: int | None = None) -> None:
        """Render stereo audio through the SoundFont player (see `bachsformer.audio`), at 44,100 Hz
        unless `sample_rate` says otherwise."""
        from .audio import SAMPLE_RATE, write_wav
        write_wav(self.midi, path, soundfont, sample_rate or SAMPLE_RATE)

    def to_musicxml(self, path, title: str | None = None) -> None:
        """Write the score as MusicXML: two staves, bars, key and time signature (see `bachsformer.score`)."""
        from .plots import describe
        from .score import write_musicxml
        write_musicxml(self.midi, path, title if title is not None else describe(self.midi, f"seed {self.seed}"))

    def to_svg(self, path, title: str | None = None) -> list:
        """Engrave the score as SVG (needs the [score] extra): `path` for one page, else path-1.svg,
        path-2.svg, ...; returns the files written."""
        from .plots import describe
        from .score import engrave_svg, musicxml_text
        pages = engrave_svg(musicxml_text(self.midi, title if title is not None else describe(self.midi, f"seed {self.seed}")))
        path = Path(path)
        paths = [path] if len(pages) == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, len(pages) + 1)]
        for page, target in zip(pages, paths):
            with atomic_write(target) as f:
                f.write(page.encode())
        return paths

    def to_png(self, path, title: str | None = None) -> None:
        """Draw the piece in systems of bars, the prompt in blue (see `bachsformer.plots`)."""
        from .plots import describe, piano_roll_png
        piano_roll_png(self.midi, path, title if title is not None else describe(self.midi, f"seed {self.seed}"),
                       self.prompt_beats)


class Bachsformer:
    """A VQ-VAE and the transformer trained on its codes, ready to write music."""

    def __init__(self, pair: Pair, device):
        self.vae, self.transformer, self.grid = pair.vae, pair.transformer, pair.grid
        self.pair, self.device = pair, device
        self.indices_per_frame = self.vae.config.n_indices
        self.extra_inputs = list(pair.extra_inputs)
        self.n_slots = pair.beat_slots
        self.meter, self.bpm, self.key_plans = tuple(pair.style.meter), pair.style.qpm, pair.style.key_plans
        sizes = dict(zip(self.extra_inputs, self.transformer.config.extra_vocab_sizes))
        # trained with key dropout, "no key" is a class of the key input: guidance contrasts with it
        trained = pair.transformer_state.get("config", {}).get("data", {})
        self.unkeyed = sizes.get("key") == KEYS + 1 or ("piece_key" in sizes and bool(trained.get("key_dropout")))

    @classmethod
    def from_checkpoints(cls, checkpoint_dir=BUNDLED_CHECKPOINTS, device: str = "auto",
                         style: str = DEFAULT_STYLE) -> "Bachsformer":
        """Load the pair in `checkpoint_dir` (`vae.pt` and the transformer of `style`; by default the
        bundled weights in the Goldberg style; `bachsformer.paths.available_styles` lists the others)
        onto `device`: "auto" (CUDA, then MPS, then the CPU), "cpu", "cuda", "cuda:N" or "mps"."""
        device = resolve_device(device)
        return cls(load_pair(checkpoint_dir, device, style), device)

    def _silence(self) -> torch.Tensor:
        """The codes of an empty frame: the prompt of a piece that starts from nothing."""
        return torch.from_numpy(silent_frame_codes(self.vae, self.grid.frame_shape, self.device)).to(self.device)

    def _extras(self, n_frames: int, slots: np.ndarray, progress: np.ndarray, keys: np.ndarray,
                bars: np.ndarray | None = None, n_bars: int | None = None, piece_key: int = NO_KEY) -> torch.Tensor | None:
        """(batch, n_frames * 16, n_extra) the inputs beside the tokens; `keys` (batch, n_frames) the local keys."""
        extras = np.stack([token_extras(n_frames, self.indices_per_frame, slots, progress=progress, keys=k, bars=bars,
                                        n_bars=n_bars, piece_key=piece_key) for k in keys])
        extras = select_extras(torch.from_numpy(extras), self.extra_inputs)
        return None if extras is None else extras.to(self.device)

    @property
    def guided_key_input(self) -> str | None:
        """The input key guidance moves: the transposition, else the key the piece is written in."""
        return next((name for name in ("key", "piece_key") if name in self.extra_inputs), None)

    @property
    def guided_by_default(self) -> bool:
        """Whether a piece without a prompt is key-guided unless asked otherwise: for a model with the
        transposition input. A model told its piece's key is guided when asked (`key_guidance`): the
        Goldberg style then keeps more notes in its key (scale consistency 0.865 -> 0.910) but
        samples about 1.5 times as long, and the chorale style is told from real chorales more
        easily (0.693 -> 0.724-0.742); docs/results.md."""
        return self.guided_key_input == "key"

    @property
    def plans(self) -> bool:
        """Whether the transformer knows the form and key of the piece it writes."""
        return {"piece_key", "section"} <= set(self.extra_inputs)

    def _key_plans(self, seeds: list, n_out: int, context: np.ndarray | None, meter: tuple,
                   plan_name: str | None) -> tuple:
        """(names, keys (num_samples, n_out)): the local keys each sample is told, and whose they are.

        The continuation follows the key plan of a training piece (in the output's meter where one
        is, chosen by the seed, or named by `plan_name`) stretched over the whole output; a
        prompt's frames keep their own keys, and the plan moves to the prompt's home key.
        """
        if "local_key" not in self.extra_inputs or not self.key_plans:
            if plan_name is not None:
                raise GenerationError(f"a key plan ({plan_name}) needs a transformer trained with the local_key input; "
                                 "this one was not")
            return [None] * len(seeds), np.full((len(seeds), n_out), NO_KEY)
        if plan_name is not None:
            plans = [p for p in self.key_plans if p["name"] == plan_name]
            if not plans:
                raise GenerationError(f"no key plan named {plan_name!r}; the checkpoint has "
                                 f"{', '.join(p['name'] for p in self.key_plans)}")
        else:
            plans = [p for p in self.key_plans if tuple(p["meter"]) == tuple(meter)] or self.key_plans
        chosen = [plans[np.random.default_rng(s).integers(len(plans))] for s in seeds]
        prompt_keys = None if context is None else local_keys(context)
        keys = np.empty((len(seeds), n_out), dtype=np.int64)
        for row, plan in zip(keys, chosen):
            plan_keys = np.asarray(plan["keys"], dtype=np.int64)
            row[:] = plan_keys[np.arange(n_out) * len(plan_keys) // n_out]
            if prompt_keys is not None:
                row[:] = _rotate_keys(row, _home(prompt_keys) - _home(plan_keys))
                row[:len(prompt_keys)] = prompt_keys
        return [p["name"] for p in chosen], keys

    def generate(self, bars: int = 32, seed: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = DEFAULT_TOP_P, num_samples: int = 1, meter: tuple | None = None,
                 bpm: float | None = None, prompt: Piece | None = None, prompt_bars: int | None = None,
                 transpose: int = 0, program: int = HARPSICHORD, velocity: int = DEFAULT_VELOCITY,
                 key_plan: str | None = None, key_guidance: float | None = None, key=None,
                 form: str | None = None, candidates: int = DEFAULT_CANDIDATES) -> list:
        """`num_samples` new pieces, as `Generated`.

        `prompt` is a `Piece` or the path of a MIDI file; `meter` a tuple or text such as "3/4".
        `form` "binary" (the default for a model that knows the form, without a prompt) writes a
        Goldberg variation's plan: a section A of SECTION_BARS bars played twice, then B played
        twice, in the corpus' meter; `bars` is not used. "through" writes `bars` bars straight on
        (after the prompt, if one is given). `key` ("D minor", or 0-23 as `tonality`) is the key to
        write in, for a model that knows keys; by default the prompt's own, else the corpus'.
        Without a prompt a piece starts from the codes of one silent frame placed just before a
        downbeat, which is then dropped. With a prompt, its last `prompt_bars` bars (all, if None)
        are the context and the output holds those frames unchanged, then the continuation, in the
        prompt's meter (as written in its body) and its median tempo unless `meter` or `bpm` (quarter
        notes a minute, as everywhere in bachsformer) say otherwise. The same seed and options give the same tokens and so the same MIDI; no seed
        draws a fresh one. Sample i of a batch is the piece `seed + i` alone gives, and says so in
        its `seed`. In a binary piece, each half is the first of up to `candidates` drawn for it that
        is in the key asked for (MINOR_KEY_DRAWS times as many in a minor key), and its last bars are drawn again until they cadence (A's last bar on
        I or V, B's on the tonic chord in root position); 1 takes what the model writes first. The piece then ends on its last bar's
        downbeat chord, held. `top_p` defaults to `DEFAULT_TOP_P` (1: the whole distribution). A model trained
        with local keys follows the key plan of a training piece: `key_plan` names one, else the
        seed picks. `key_guidance` (see DEFAULT_KEY_GUIDANCE) applies to a model with a key input (the
        transposition or the piece's key); None means DEFAULT_KEY_GUIDANCE without a prompt where the
        model is `guided_by_default`, else 0.
        """
        form = form or (self.pair.style.form if self.plans and prompt is None else "through")
        if key_guidance is None:
            key_guidance = DEFAULT_KEY_GUIDANCE if prompt is None and self.guided_by_default else 0.0
        if form not in FORMS:
            raise GenerationError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        if form == "binary" and (prompt is not None or not self.plans):
            raise GenerationError("a binary form needs a model that knows the form (this one does not), and no prompt"
                                  if not self.plans else "a continuation is through-composed: drop the prompt or use form 'through'")
        if not isinstance(bars, int) or not 1 <= bars <= MAX_BARS:
            raise GenerationError(f"bars must be an integer from 1 to {MAX_BARS}, got {bars!r}")
        if not isinstance(candidates, int) or candidates < 1:
            raise GenerationError(f"candidates must be a positive integer, got {candidates!r}")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise GenerationError(f"num samples must be a positive integer, got {num_samples!r}")
        if not (isinstance(key_guidance, (int, float)) and math.isfinite(key_guidance) and key_guidance >= 0):
            raise GenerationError(f"key guidance must be a non-negative number, got {key_guidance!r}")
        if isinstance(meter, str):
            meter = parse_meter(meter)
        if isinstance(prompt, (str, Path)):
            prompt = score_to_piece(read_midi(prompt), self.grid)
        if prompt is not None and prompt_bars is not None and prompt_bars < 1:
            raise GenerationError(f"prompt bars must be a positive integer, got {prompt_bars!r}")
        if key is not None and not self.plans:
            raise GenerationError("this model does not know keys; --transpose moves its music instead")
        seed = fresh_seed() if seed is None else int(seed)
        # sample i is the piece `seed + i` alone would give: each has its own random numbers
        seeds = [seed + i for i in range(num_samples)]
        options = dict(temperature=temperature, top_k=top_k, top_p=top_p, key_guidance=key_guidance,
                       candidates=candidates)
        if form == "binary":
            frames, tokens, signatures, tempos, n_prompt, plan_names, lead_in = self._binary(
                seeds, meter or self.meter, bpm or self.bpm, self._key(key, None), options)
        else:
            frames, tokens, signatures, tempos, n_prompt, plan_names, lead_in = self._through(
                seeds, bars, meter, bpm, prompt, prompt_bars, key, key_plan, options)
        results = []
        for i in range(num_samples):
            piece_frames = shift_keys(frames[i], transpose) if transpose else frames[i]
            piece = Piece(piece_frames, self.grid, lead_in, tempos, signatures, "bachsformer")
            midi = score_to_midi(piece.score(), program=program, velocity=velocity)
            results.append(Generated(midi, piece_frames, tokens[i], n_prompt, seeds[i], plan_names[i],
                                     max(0.0, n_prompt - lead_in)))
        return results

    def regenerate(self, source, bars, seed: int | None = None, num_samples: int = 1, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None) -> list:
        """The MIDI file `source` with the bars of each `(first, last)` in `bars` (counted from 1, both
        included) written anew, every note starting outside them kept exactly; see `bachsformer.editing`."""
        from .editing import regenerate
        return regenerate(self, source, bars, seed=seed, num_samples=num_samples, temperature=temperature,
                          top_k=top_k, top_p=top_p)

    def harmonise(self, source, voice: str = "top", seed: int | None = None, num_samples: int = 1,
                  temperature: float = 1.0) -> list:
        """The top (or bottom) line of the MIDI file `source` kept note for note, the other voices
        written around it; see `bachsformer.harmonise`."""
        from .harmonise import harmonise
        return harmonise(self, source, voice, seed=seed, num_samples=num_samples, temperature=temperature)

    def variation(self, source, keep: str = "rhythm", seed: int | None = None, num_samples: int = 1,
                  temperature: float = 1.0) -> list:
        """A new piece keeping the rhythm (every onset and length) or the bass line of the MIDI file
        `source`; see `bachsformer.variation`."""
        from .variation import variation
        return variation(self, source, keep, seed=seed, num_samples=num_samples, temperature=temperature)

    def _key(self, key, context: np.ndarray | None) -> int:
        """The key to write in: the one asked for, else the prompt's, else the corpus'."""
        if isinstance(key, str):
            try:
                return parse_key(key)
            except ValueError as e:
                raise GenerationError(str(e)) from None
        if key is not None:
            if not (isinstance(key, int) and 0 <= key < PIECE_KEYS):
                raise GenerationError(f"key must be a key name or 0-{PIECE_KEYS - 1}, got {key!r}")
            return key
        if context is not None:
            return key_of_frames(context)
        return self.pair.style.key if self.pair.style.key is not None else parse_key("G major")

    def _sample(self, prompt_tokens: torch.Tensor, n_new_frames: int, extras, seeds: list, options: dict) -> torch.Tensor:
        """(S, n_new_frames * 16) tokens after `prompt_tokens` (S, T0), each sample with its own seed."""
        generator = [torch.Generator().manual_seed(s) for s in seeds]
        guidance = {}
        if options["key_guidance"] and self.guided_key_input:
            column = self.extra_inputs.index(self.guided_key_input)
            contrasts = _with_keys(extras, column, self.unkeyed) if self.guided_key_input == "key" \
                else _with_piece_keys(extras, column, self.unkeyed)
            guidance = {"guidance": float(options["key_guidance"]), "contrast_extras": contrasts}
        out = self.transformer.generate(prompt_tokens, n_new_frames * self.indices_per_frame,
                                        temperature=options["temperature"], top_k=options["top_k"],
                                        top_p=options["top_p"], generator=generator, extras=extras, **guidance)
        return out[:, prompt_tokens.shape[1]:]

    def _binary(self, seeds: list, meter: tuple, bpm: float, key: int, options: dict) -> tuple:
        """A: SECTION_BARS bars, played twice; then B, played twice. Each is written as its second
        statement, whose ending is the one that goes on (A's closes the first half, B's the piece),
        and played twice; the piece is decoded whole, seams included."""
        num, den = meter
        per_section = math.ceil(SECTION_BARS * num * 4 / den - 1e-9)  # frames
        signatures = [(0.0, num, den)]
        starts = np.arange(4 * per_section, dtype=np.float64)
        _, _, beat_in_bar = meter_per_frame(signatures, starts)
        slots, bars = beat_slots(beat_in_bar, self.n_slots), bar_per_frame(signatures, starts)
        progress = progress_bins(np.arange(len(starts)), 4 * per_section)
        keys = np.full((len(seeds), len(starts)), NO_KEY)

        def extras(frames: np.ndarray):  # frames: positions in the piece
            return self._extras(len(frames), slots[frames], progress[frames], keys[:, frames], bars[frames],
                                4 * SECTION_BARS, key)

        # Each half: the first of `candidates` in the key asked for, then its closing bars drawn again
        # for the best cadence (`_closing`); a cadence is decided there, so redrawing it is cheap.
        # A as the second statement (section 1), after one silent frame: the piece's start
        k, per = options["candidates"] * (MINOR_KEY_DRAWS if is_minor(key) else 1), self.indices_per_frame
        silence = self._silence()[None].reshape(1, -1)
        a_extras = extras(np.arange(per_section - 1, 2 * per_section))
        last_bar = float((SECTION_BARS - 1) * num * 4 / den)
        in_key = lambda p, s, e: estimate_key(p, s, e) == key  # noqa: E731
        a_closes = lambda p, s, e: closes_on_i_or_v(p, s, e, key, last_bar)  # noqa: E731
        a = self._choose(lambda rows, j: self._sample(silence.expand(len(rows), -1), per_section, _rows(a_extras, rows),
                                                      [candidate_seed(seeds[r], j) for r in rows], options),
                         k, [in_key], len(seeds))
        a = self._closing(a, per_section, per_section, round(num * 4 / den), [a_closes], seeds, extras, options)
        # B as the last statement (section 3), after A's closing bars where B's first statement ends
        context = min(per_section, self.transformer.config.block_size // per)
        b_extras = extras(np.arange(3 * per_section - context, 4 * per_section))
        b_closes = lambda p, s, e: on_tonic_chord(p, s, e, key, last_bar)  # noqa: E731
        b = self._choose(lambda rows, j: self._sample(a[rows, -context * per:], per_section, _rows(b_extras, rows),
                                                      [candidate_seed(seeds[r], j) for r in rows], options),
                         k, [in_key], len(seeds))
        b = self._closing(b, 3 * per_section, per_section, round(num * 4 / den), [b_closes], seeds, extras, options)
        tokens = torch.cat([a, a, b, b], dim=1)  # (S, 4 * per_section * 16)
        decoded = self._decode(tokens.reshape(len(seeds), 4 * per_section, self.indices_per_frame), None)
        for frames in decoded:  # the piece ends on its last bar's downbeat chord, held
            hold_last_bar(frames, round(num * 4 / den))
        new = torch.cat([a, b], dim=1).cpu().numpy()
        return decoded, new, signatures, [(0.0, float(bpm))], 0, [None] * len(seeds), 0.0

    def _choose(self, draw, k: int, checks: list, n: int) -> torch.Tensor:
        """(n, T): for each of n samples, the first of its candidates 0..k-1 that passes the most of
        `checks` (callables of pitch, start and end, the more important first). `draw(rows, j)`
        writes candidate j of those samples; a sample whose candidate passes every check has no
        later one drawn, so choosing costs little where the model gets it right at once."""
        best = draw(list(range(n)), 0)
        scores = self._scores(best, checks)
        for j in range(1, k):
            rows = [r for r in range(n) if not all(scores[r])]
            if not rows:
                break
            drawn = draw(rows, j)
            for r, tokens, score in zip(rows, drawn, self._scores(drawn, checks)):
                if score > scores[r]:
                    best[r], scores[r] = tokens, score
        return best

    def _scores(self, tokens: torch.Tensor, checks: list, last_frames: int | None = None) -> list:
        """[(check, ...) as bools] of each row of codes (S, n), decoded: the whole row, or only its
        `last_frames` frames (a close), its notes placed where they stand in the row."""
        frames = tokens.reshape(len(tokens), -1, self.indices_per_frame)
        skipped = 0 if last_frames is None else max(0, frames.shape[1] - last_frames)
        decoded = self.vae.decode_pieces(frames[:, skipped:], chunk=DECODE_CHUNK)
        notes = [roll_to_notes(frames_to_roll(f), self.grid.steps_per_quarter).shifted(skipped) for f in decoded]
        return [tuple(check(n.pitch, n.start, n.end) for check in checks) for n in notes]

    def _first(self, tokens: torch.Tensor, k: int, checks: list, last_frames: int | None = None) -> torch.Tensor:
        """(S, n): of each sample's k candidates (S * k, n), the first that passes the most of `checks`."""
        passed = self._scores(tokens, checks, last_frames)
        return tokens[[sample * k + max(range(k), key=lambda j: (passed[sample * k + j], -j))
                       for sample in range(len(tokens) // k)]]

    def _closing(self, section: torch.Tensor, first_frame: int, per_section: int, frames_per_bar: int, checks: list,
                 seeds: list, extras, options: dict) -> torch.Tensor:
        """(S, n) `section` (placed at frame `first_frame` of the piece) with its last CLOSING_BARS
        bars drawn again, after its own earlier bars, until a close passes every check: up to
        CLOSING_ROUNDS rounds of CLOSING_DRAWS x `candidates` closes for the samples still without one,
        the best kept (the one already written first among equals): a half's cadence is where it is
        heard, and a close costs a few bars where a half costs sixteen."""
        k, per = CLOSING_DRAWS * options["candidates"], self.indices_per_frame
        tail = min(per_section - 1, CLOSING_BARS * frames_per_bar, self.transformer.config.block_size // per - 1)
        if options["candidates"] < 2 or tail < 1:  # one candidate: what the model writes first
            return section
        kept = per_section - tail
        context = min(kept, self.transformer.config.block_size // per - tail, CLOSING_CONTEXT_BARS * frames_per_bar)
        positions = np.arange(first_frame + kept - context, first_frame + per_section)
        heard = tail + CLOSING_BARS * frames_per_bar  # what a cadence check decodes: the close and the bars before
        section, scores = section.clone(), self._scores(section, checks, heard)
        for round_ in range(CLOSING_ROUNDS):
            rows = [r for r, score in enumerate(scores) if not all(score)]
            if not rows:
                break
            tries = [candidate_seed(seeds[r], CLOSING_SALT * (round_ + 1) + j) for r in rows for j in range(k)]
            tails = self._sample(section[rows, (kept - context) * per:kept * per].repeat_interleave(k, dim=0), tail,
                                 _repeat_rows(_rows(extras(positions), rows), k), tries, options)
            redrawn = torch.cat([section[rows, :kept * per].repeat_interleave(k, dim=0), tails], dim=1)
            candidates = torch.cat([section[rows, None], redrawn.view(len(rows), k, -1)], dim=1).flatten(0, 1)
            section[rows] = self._first(candidates, k + 1, checks, heard)
            for r, score in zip(rows, self._scores(section[rows], checks, heard)):
                scores[r] = score
        return section

    def _through(self, seeds: list, bars: int, meter, bpm, prompt, prompt_bars, key, key_plan, options) -> tuple:
        """`bars` bars straight on, after the prompt's last `prompt_bars` bars if there is a prompt."""
        if prompt is not None:
            context, signatures, tempos, lead_in = self._prompt_context(prompt, prompt_bars, meter, bpm)
        else:
            num, den = meter or self.meter
            signatures, tempos = [(0.0, num, den)], [(0.0, bpm or self.bpm)]
            context, lead_in = None, 1.0  # the silent frame sits on the last beat before bar 1
        num, den = signatures[-1][1:]
        n_prompt = 0 if context is None else len(context)
        n_new = math.ceil(bars * num * 4 / den - 1e-9)
        starts = np.arange(n_prompt + n_new + (context is None), dtype=np.float64) - lead_in
        _, _, beat_in_bar = meter_per_frame(signatures, starts)
        slots, frame_bars = beat_slots(beat_in_bar, self.n_slots), bar_per_frame(signatures, starts)
        # the output (prompt, then continuation) is the piece whose progress and form the model is told
        progress = progress_bins(np.arange(len(starts)) - (context is None), n_prompt + n_new)
        plan_names, keys = self._key_plans(seeds, n_prompt + n_new, context, (num, den), key_plan)
        if context is None:  # the silent lead-in frame is told the plan's first key
            keys = np.concatenate([keys[:, :1], keys], axis=1)
        piece_key = self._key(key, context) if self.plans else NO_KEY

        if context is None:
            first = self._silence()[None]  # (1, 16)
        else:  # only the frames the transformer can see: a long prompt costs no more memory than a short one
            seen = context[-(self.transformer.config.block_size // self.indices_per_frame):]
            first = self.vae.encode_indices(torch.from_numpy(seen).float().to(self.device))
        prompt_tokens = first.reshape(1, -1).expand(len(seeds), -1)
        window = slice(-(len(first) + n_new), None)
        extras = self._extras(len(first) + n_new, slots[window], progress[window], keys[:, window], frame_bars[window],
                              int(frame_bars[-1]) + 1, piece_key)
        new_tokens = self._sample(prompt_tokens, n_new, extras, seeds, options)
        decoded = self._decode(new_tokens.reshape(len(seeds), n_new, self.indices_per_frame), context)
        frames = decoded if context is None else np.concatenate([np.broadcast_to(context, (len(seeds), *context.shape)),
                                                                 decoded], axis=1)
        return frames, new_tokens.cpu().numpy(), signatures, tempos, n_prompt, plan_names, lead_in if context is not None else 0.0

    def _decode(self, indices: torch.Tensor, context: np.ndarray | None) -> np.ndarray:
        """Codes (S, N, 16) -> frames (S, N, 2, 88, T) uint8, each piece decoded note by note.

        A note the prompt holds at its end may go on into the continuation. The decoder runs
        DECODE_CHUNK frames at a time, so memory grows only by the output, however long the piece.
        """
        carry = None
        if context is not None:
            held = context[-1, SOUNDING, :, -1].astype(bool)  # (88,) keys sounding at the seam
            carry = np.broadcast_to(held, (len(indices), len(held)))
        return self.vae.decode_pieces(indices, carry=carry, chunk=DECODE_CHUNK)

    def _prompt_context(self, prompt: Piece, prompt_bars: int | None, meter: tuple | None, bpm: float | None) -> tuple:
        """The prompt's last bars as frames, with the meter, tempo and lead-in that place them. The
        continuation goes on in the meter of the prompt's body (not a short final bar) and at its
        median tempo (not a closing ritardando), or in `meter` and at `bpm` where given."""
        if prompt.grid != self.grid:
            raise GenerationError(f"the prompt was cut on grid {prompt.grid}, the VAE on {self.grid}")
        frames, lead_in = prompt.frames, prompt.lead_in
        signatures, tempos = list(prompt.time_signatures), list(prompt.tempos)
        end = len(frames) - lead_in  # the seam, in the prompt's beats
        body = tuple(meter) if meter else body_meter(signatures, 0.0, end)
        pace = float(bpm) if bpm else median_tempo(tempos, 0.0, end)
        if prompt_bars is not None:
            keep = min(len(frames), math.ceil(prompt_bars * body[0] * 4 / body[1] - 1e-9))
            origin = len(frames) - keep - lead_in  # source beat where the kept frames begin
            frames, lead_in, end = frames[len(frames) - keep:], 0.0, keep
            signatures, tempos = _rebase(signatures, origin), _rebase(tempos, origin)
        if tuple(signatures[-1][1:]) != body:
            signatures.append((float(end), *body))
        if tempos[-1][1] != pace:
            tempos.append((float(end), pace))
        return frames, signatures, tempos, lead_in


def hold_last_bar(frames: np.ndarray, frames_per_bar: int) -> None:
    """Hold the chord sounding at the last bar's downbeat to the end, in place: the final chord a
    binary piece closes on, as the Goldberg variations do, instead of figuration that stops."""
    bar = frames[-frames_per_bar:]  # (frames_per_bar, 2, 88, T), a view
    chord = bar[0, SOUNDING, :, 0].astype(bool)  # (88,) keys sounding at the downbeat
    struck = bar[0, ONSET, :, 0].copy()
    bar[:] = 0
    bar[:, SOUNDING, chord, :] = 1
    bar[0, ONSET, :, 0] = struck * chord


def parse_meter(text: str) -> tuple:
    """ "3/4" -> (3, 4); GenerationError naming the text otherwise."""
    try:
        num, den = (int(x) for x in text.split("/"))
    except ValueError:
        raise GenerationError(f"meter: expected N/D such as 3/4, got {text!r}") from None
    if num < 1 or den not in (1, 2, 4, 8, 16, 32):
        raise GenerationError(f"meter: {text} is not a time signature")
    return num, den


def candidate_seed(seed: int, j: int) -> int:
    """The seed of a sample's j-th candidate: the sample's own first, so one candidate is the plain piece."""
    return seed if j == 0 else (seed * 1_000_003 + j) % 2**63


def _rows(extras: torch.Tensor | None, rows: list) -> torch.Tensor | None:
    return None if extras is None else extras[rows]


def _repeat_rows(extras: torch.Tensor | None, k: int) -> torch.Tensor | None:
    return None if extras is None else extras.repeat_interleave(k, dim=0)


def fresh_seed() -> int:
    """A seed nobody chose, for a new piece each run; printed and kept so it can be played again."""
    return secrets.randbelow(MAX_SEED)


def _with_keys(extras: torch.Tensor, column: int, unkeyed: bool = False) -> torch.Tensor:
    """(K, *extras.shape): the extras with the key input moved by each of KEY_CONTRASTS, or, for a
    model trained with key dropout, set to its "no key" class."""
    if unkeyed:
        contrast = extras[None].clone()
        contrast[..., column] = KEYS
        return contrast
    contrasts = extras[None].repeat(len(KEY_CONTRASTS), 1, 1, 1)
    for i, semitones in enumerate(KEY_CONTRASTS):
        contrasts[i, ..., column] = (extras[..., column] + semitones) % KEYS
    return contrasts


def _with_piece_keys(extras: torch.Tensor, column: int, unkeyed: bool = False) -> torch.Tensor:
    """(K, *extras.shape): the extras with the piece's key moved by each of KEY_CONTRASTS, its
    mode kept (D minor -> E minor, C minor), "no key" left as it is; or, for a model trained with
    key dropout, set to "no key"."""
    if unkeyed:
        contrast = extras[None].clone()
        contrast[..., column] = PIECE_KEYS
        return contrast
    keys = extras[..., column]
    contrasts = extras[None].repeat(len(KEY_CONTRASTS), 1, 1, 1)
    for i, semitones in enumerate(KEY_CONTRASTS):
        moved = (keys % KEYS + semitones) % KEYS + KEYS * (keys // KEYS)
        contrasts[i, ..., column] = torch.where(keys < PIECE_KEYS, moved, keys)
    return contrasts


def _home(keys: np.ndarray) -> int:
    """The tonic pitch class of the commonest local key (0 if none is known)."""
    known = keys[keys != NO_KEY]
    return int(np.bincount(known).argmax() % 12) if len(known) else 0


def _rotate_keys(keys: np.ndarray, semitones: int) -> np.ndarray:
    """Local keys moved by `semitones`, each keeping its mode; NO_KEY stays."""
    moved = keys // 12 * 12 + (keys % 12 + semitones) % 12
    return np.where(keys == NO_KEY, NO_KEY, moved)


def _rebase(events: list, origin: float) -> list:
    """Events `(beat, ...)` seen from `origin`: the one in force there moves to 0, earlier ones go."""
    in_force = [e for e in events if e[0] <= origin]
    later = [(e[0] - origin, *e[1:]) for e in events if e[0] > origin]
    return ([(0.0, *in_force[-1][1:])] if in_force else []) + later
