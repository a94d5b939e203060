"""bachsformer: new music in the style of J.S. Bach.

    from bachsformer import Bachsformer
    model = Bachsformer.from_checkpoints()          # the bundled weights
    piece = model.generate(seed=3, key="E minor")[0]  # a `Generated`: MIDI, frames, tokens, seed
    piece.write("new.mid")                          # also to_wav, to_png, to_musicxml, to_svg
    mine = model.regenerate("mine.mid", [(5, 8)])[0]  # bars 5-8 of your piece written anew

`help(bachsformer.Bachsformer.generate)` lists the options, `help(bachsformer.Generated)` what a
piece can do. The package is the inference path (pair, tokens, generation, editing, score, audio);
`bachsformer.app` is the browser page, and `bachsformer.train`, `bachsformer.evaluate` and
`bachsformer.corpus` are the other commands, which generation never imports. The `bachsformer`
command (`python -m bachsformer`) leads to all of them.
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
