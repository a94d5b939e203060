"""bachsformer: new music in the style of J.S. Bach.

    from bachsformer import Bachsformer
    model = Bachsformer.from_checkpoints()          # the bundled weights
    piece = model.generate(bars=16, seed=3)[0]      # a `Generated`: MIDI, frames, tokens
    piece.midi.write("new.mid")

`help(bachsformer.Bachsformer.generate)` lists the options. The package is the inference path
(pair, tokens, generation, rendering); `bachsformer.train`, `bachsformer.evaluate` and
`bachsformer.corpus` are the other commands, which generation never imports.
"""
from .errors import BachsformerError

__all__ = ["Bachsformer", "Generated", "BachsformerError"]


def __getattr__(name):
    # torch loads only when the model is asked for, so `bachsformer.errors` and the command
    # lines' --help stay quick
    if name in ("Bachsformer", "Generated"):
        from . import generation
        return getattr(generation, name)
    raise AttributeError(f"module 'bachsformer' has no attribute {name!r}")
