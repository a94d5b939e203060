"""Write a new piece in the style of Bach with the bundled weights (checkpoints/): the command
line of `generate.py` and of `bachsformer generate`.
"""
import gc
import math
import sys
from pathlib import Path

from ludovico_vae.midi import HARPSICHORD

from .cli import CommandParser, positive_int, run_main
from .errors import CommandError
from .paths import BUNDLED_CHECKPOINTS, DEFAULT_STYLE, STYLES

DEFAULT_BARS = 32
PROG = "generate.py"  # `bachsformer generate` names itself so


def _meter(text: str) -> tuple:
    from .errors import GenerationError
    from .generation import parse_meter
    try:
        return parse_meter(text)
    except GenerationError as e:
        raise CommandError(f"--{e}") from None


def _bar_range(text: str) -> tuple:
    from .editing import parse_bar_range
    from .errors import GenerationError
    try:
        return parse_bar_range(text)
    except GenerationError as e:
        raise CommandError(f"--regenerate: {e}") from None


def output_paths(args, names: list) -> list:
    """Where each sample goes: `--out` (a file for one sample, a folder for several), else generated/."""
    if args.out and len(names) == 1 and Path(args.out).suffix.lower() in (".mid", ".midi"):
        paths = [Path(args.out)]
    else:
        folder = Path(args.out) if args.out else Path("generated")
        paths = [folder / name for name in names]
    for path in paths:
        drawings = ([path.with_suffix(".png")] * args.png + [path.with_suffix(".wav")] * args.wav
                    + [path.with_suffix(".musicxml")] * args.musicxml + [path.with_suffix(".svg")] * args.svg)
        for target in [path] + drawings:
            if target.exists() and not args.force:
                raise CommandError(f"{target}: already exists; pass --force to replace it, or choose --seed or --out")
    return paths


def sample_names(args) -> list:
    """One file name per sample, naming its own seed and every option that changes the music."""
    if args.harmonise or args.variation:
        source, what = (args.harmonise, f"harmonised-{args.voice}") if args.harmonise else (
            args.variation, f"variation-{args.keep}")
        return [f"{Path(source).stem}-seed{args.seed + i}-{what}-t{args.temperature:g}.mid"
                for i in range(args.num_samples)]
    if args.regenerate:
        bars = "_".join(f"{a}-{b}" if a != b else str(a) for a, b in sorted(args.regenerate))
        settings = [f"bars{bars}", f"t{args.temperature:g}"] + ([f"k{args.top_k}"] if args.top_k else []) + (
            [f"p{args.top_p:g}"] if args.top_p else [])
        return [f"{Path(args.input).stem}-seed{args.seed + i}-{'-'.join(settings)}.mid" for i in range(args.num_samples)]
    settings = [args.style if args.style != DEFAULT_STYLE else "", args.form or "",
                args.key.replace(" ", "-") if args.key else ""]
    settings += [] if args.form == "binary" else [f"{args.bars}bars"]
    settings += [f"t{args.temperature:g}"]
    settings += [f"k{args.top_k}"] if args.top_k else []
    settings += [f"p{args.top_p:g}"] if args.top_p else []
    settings += [f"g{args.key_guidance:g}"] if args.key_guidance is not None else []
    settings += [f"plan-{args.key_plan}"] if args.key_plan else []
    settings += [f"last{args.prompt_bars}bars"] if args.prompt and args.prompt_bars else []
    settings += [f"meter{args.meter[0]}-{args.meter[1]}"] if args.meter else []
    settings += [f"{args.bpm:g}bpm"] if args.bpm else []
    settings += [f"transpose{args.transpose:+d}"] if args.transpose else []
    settings += [f"program{args.program}"] if args.program != HARPSICHORD else []
    stem = Path(args.prompt).stem if args.prompt else "bachsformer"
    settings = "-".join(s for s in settings if s)
    return [f"{stem}-seed{args.seed + i}-{settings}.mid" for i in range(args.num_samples)]


def run(args, prog: str = PROG) -> None:
    """Write the pieces the parsed `args` ask for, and their pictures, scores and audio."""
    try:
        _run(args, prog)
    finally:
        gc.unfreeze()  # a caller in the same process (the tests) gets its collector back whole


def _run(args, prog: str) -> None:
    from .generation import Bachsformer, fresh_seed
    from ludovico_vae.files import atomic_write

    chosen_seed = args.seed is None
    if chosen_seed:
        args.seed = fresh_seed()
    if args.temperature <= 0:
        raise CommandError(f"--temperature must be positive, got {args.temperature:g}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise CommandError(f"--top-p must lie in (0, 1], got {args.top_p:g}")
    if args.bpm is not None and not 1 <= args.bpm <= 1000:
        raise CommandError(f"--bpm must lie between 1 and 1000, got {args.bpm:g}")
    if not 0 <= args.program <= 127:
        raise CommandError(f"--program must be a General MIDI program 0-127, got {args.program}")
    if not -48 <= args.transpose <= 48:
        raise CommandError(f"--transpose must lie between -48 and 48 semitones, got {args.transpose}")
    own = [name for name, value in (("--harmonise", args.harmonise), ("--variation", args.variation),
                                    ("--input", args.input), ("--prompt", args.prompt)) if value]
    if len(own) > 1:
        raise CommandError(f"{' and '.join(own)} each take a file of their own: choose one")
    if bool(args.input) != bool(args.regenerate):
        raise CommandError("--regenerate needs --input FILE.mid" if args.regenerate else
                           "--input needs --regenerate A:B (the bars to write anew); to continue a piece use --prompt")
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, args.device, args.style)
    # torch, the libraries and the loaded pair are never garbage: frozen, the collections while
    # the piece is written do not walk them (0.15 s of a 2.5 s run on the development CPU)
    gc.freeze()
    if args.form is None:  # named in the file: a binary piece has no --bars; asking for bars means through
        binary = model.plans and not args.prompt and args.bars is None and model.pair.style.form == "binary"
        args.form = "binary" if binary else None
    if args.form == "binary" and args.bars is not None:
        raise CommandError("--bars applies to a through-composed piece; a binary variation is 2 x 16 bars "
                           "(drop --bars, or add --form through)")
    args.bars = DEFAULT_BARS if args.bars is None else args.bars
    if args.key_plan and "local_key" not in model.extra_inputs:
        raise CommandError("--key-plan needs a model trained with local keys; this one plans its own keys "
                           "(ask for one with --key)")
    if args.key_guidance is not None and not model.guided_key_input:
        raise CommandError("--key-guidance needs a model with a key input (the transposition or the piece's key); "
                           "this one has neither")
    paths = output_paths(args, sample_names(args))
    prompt = None
    if args.prompt:
        from ludovico_vae.frames import reading_warnings, score_to_piece
        from ludovico_vae.midi import read_midi
        prompt = score_to_piece(read_midi(args.prompt), model.grid)
        for warning in reading_warnings(prompt.stats):
            print(f"{prog}: warning: {args.prompt}: {warning}", file=sys.stderr)
    if args.key_guidance is not None and not (math.isfinite(args.key_guidance) and args.key_guidance >= 0):
        raise CommandError(f"--key-guidance must be a non-negative number, got {args.key_guidance:g}")
    nucleus = {} if args.top_p is None else {"top_p": args.top_p}  # None: the API's default
    if args.key_guidance is not None:
        nucleus["key_guidance"] = args.key_guidance
    if args.variation:
        pieces = model.variation(args.variation, args.keep, seed=args.seed, num_samples=args.num_samples,
                                 temperature=args.temperature)
    elif args.harmonise:
        pieces = model.harmonise(args.harmonise, args.voice, seed=args.seed, num_samples=args.num_samples,
                                 temperature=args.temperature)
    elif args.regenerate:
        pieces = model.regenerate(args.input, args.regenerate, seed=args.seed, num_samples=args.num_samples,
                                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    else:
        pieces = model.generate(bars=args.bars, seed=args.seed, temperature=args.temperature, top_k=args.top_k,
                                num_samples=args.num_samples, meter=args.meter, bpm=args.bpm, prompt=prompt,
                                prompt_bars=args.prompt_bars, transpose=args.transpose, program=args.program,
                                key_plan=args.key_plan, key=args.key, form=args.form, **nucleus)
    if args.png or args.musicxml or args.svg:
        from .plots import describe, piano_roll_png
    for piece, path in zip(pieces, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            piece.midi.write(f)
        print(path)
        if not any(instrument.notes for instrument in piece.midi.instruments):
            print(f"warning: {path} has no notes: the model wrote silence (is it trained?)", file=sys.stderr)
        if args.png:
            piano_roll_png(piece.midi, path.with_suffix(".png"), describe(piece.midi, path.stem), piece.prompt_beats)
            print(path.with_suffix(".png"))
        if args.musicxml:
            piece.to_musicxml(path.with_suffix(".musicxml"), describe(piece.midi, path.stem))
            print(path.with_suffix(".musicxml"))
        if args.svg:
            for page in piece.to_svg(path.with_suffix(".svg"), describe(piece.midi, path.stem)):
                print(page)
        if args.wav:
            from .audio import write_wav
            write_wav(piece.midi, path.with_suffix(".wav"), args.soundfont)
            print(path.with_suffix(".wav"))
    if chosen_seed:  # after the files, so an error is still the only line on stderr
        print(f"seed {args.seed}: --seed {args.seed} writes {'this' if args.num_samples == 1 else 'these'} again",
              file=sys.stderr)


def build_parser(prog: str = PROG) -> CommandParser:
    """The options of generate.py (and `bachsformer generate`)."""
    parser = CommandParser(prog=prog, description="Write a new piece in the style of Bach (by default a Goldberg "
                           "variation in binary form, with the bundled weights), continue yours, or regenerate bars of it.")
    parser.add_argument("--form", choices=("binary", "through"),
                        help="binary: A twice, then B twice, 16 bars each, as a Goldberg variation (the default for "
                             "a model that knows the form); through: --bars bars straight on (the default with --prompt)")
    parser.add_argument("--key", help="the key to write in, such as 'D minor' or 'F# major' (default: the prompt's, "
                        "else the corpus'; models that know keys)")
    parser.add_argument("--bars", type=positive_int,
                        help="bars to write straight on (through-composed, the form --bars implies), or after the "
                             f"prompt's own bars with --prompt (default: {DEFAULT_BARS})")
    parser.add_argument("--seed", type=int, help="write the piece of this seed again: the same seed and options "
                        "give the same MIDI; with --num-samples N, seeds SEED to SEED+N-1 (default: a new one each run)")
    parser.add_argument("--temperature", type=float, default=1.0, help="> 0; lower is safer (default: %(default)s)")
    parser.add_argument("--top-k", type=positive_int, help="sample among the k likeliest codes only")
    parser.add_argument("--top-p", type=float,
                        help="sample among the likeliest codes holding this probability; 1: all codes "
                             "(default: the API's, 1)")
    parser.add_argument("--num-samples", type=positive_int, default=1,
                        help="pieces written in one batch (default: %(default)s)")
    parser.add_argument("--meter", type=_meter, help="time signature such as 3/4 (default: the corpus' most common)")
    parser.add_argument("--bpm", type=float, help="quarter notes per minute (default: the corpus' median tempo)")
    parser.add_argument("--transpose", type=int, default=0, help="semitones to shift the output by")
    parser.add_argument("--program", type=int, default=HARPSICHORD,
                        help="General MIDI program, 0-based (default: %(default)s, harpsichord; 0: piano)")
    parser.add_argument("--key-guidance", type=float, metavar="W",
                        help="pull toward the key the piece is written in, away from a whole tone off it; 0 turns it off "
                             "(try 0.7: more notes in the key, 1.5x the time; default 0 for a model told its "
                             "piece's key and with --prompt, else 0.7)")
    parser.add_argument("--key-plan", metavar="PIECE", help="follow the local keys of this training piece, e.g. "
                        "988-v01 (models trained with local keys; default: one the seed picks)")
    parser.add_argument("--prompt", metavar="FILE.mid", help="continue this piece")
    parser.add_argument("--input", metavar="FILE.mid", help="your own piece, to work on with --regenerate")
    parser.add_argument("--regenerate", metavar="A:B", type=_bar_range, action="append",
                        help="write bars A to B of --input anew (from 1, both included; repeatable), keeping every "
                             "other note exactly")
    parser.add_argument("--harmonise", metavar="FILE.mid", help="keep this file's top line (or --voice bottom: its "
                        "bass) note for note and write the other voices around it")
    parser.add_argument("--voice", choices=("top", "bottom"), default="top",
                        help="the line --harmonise keeps (default: %(default)s)")
    parser.add_argument("--variation", metavar="FILE.mid", help="a new piece on this file's rhythm (every onset "
                        "and length kept, new pitches) or, with --keep bass, on its bass line")
    parser.add_argument("--keep", choices=("rhythm", "bass"), default="rhythm",
                        help="what --variation keeps (default: %(default)s)")
    parser.add_argument("--prompt-bars", type=positive_int, help="use only the prompt's last N bars")
    parser.add_argument("--out", help="a .mid file for one sample, or a folder (default: generated/)")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument("--png", action="store_true", help="also draw the piano roll as PNG")
    parser.add_argument("--musicxml", action="store_true",
                        help="also write the score as MusicXML (opens in MuseScore, Finale, Sibelius, Dorico)")
    parser.add_argument("--svg", action="store_true", help="also engrave the score as SVG (needs the [score] extra)")
    parser.add_argument("--wav", action="store_true", help="also render audio (stereo WAV, General MIDI SoundFont unless --soundfont)")
    parser.add_argument("--soundfont", help="SoundFont (.sf2) for --wav")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, else CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--checkpoint-dir", default=str(BUNDLED_CHECKPOINTS), help="holds vae.pt and transformer.pt")
    parser.add_argument("--style", choices=tuple(STYLES), default=DEFAULT_STYLE,
                        help="which bundled model writes: %(choices)s (default: %(default)s)")
    parser.set_defaults(run=lambda args: run(args, prog))
    return parser


def main(argv=None, prog: str = PROG) -> int:
    """Run the command line; a user error is one line and exit code 2."""
    return run_main(prog, lambda: build_parser(prog), argv)


if __name__ == "__main__":
    sys.exit(main())
