"""The held-out rule of exported corpora: which pieces no model may train on, decided by name.

Each name is held out on its own, by a hash of the name alone: sha256 of its UTF-8 bytes, the
first 8 bytes read as an integer, held out when below `share * 2**64`. So adding or removing other
files never moves a piece between training and held-out (a random draw over the whole list, or
"every tenth in sorted order", would reshuffle it), held-out figures stay comparable across
corpus versions, and nothing needs storing to repeat the split. The share is only approximate:
each name is a coin toss, so 10% of 9 pieces may well be none.

The Goldberg corpus keeps its hand-picked list (`goldberg.GOLDBERG_HELD_OUT`); `default_held_out`
applies both to any corpus, so training on your own folder holds out about a tenth of it.
"""
from __future__ import annotations

import hashlib

from .goldberg import GOLDBERG_HELD_OUT, GOLDBERG_SHA256

GOLDBERG_NAMES = frozenset(name.rsplit(".", 1)[0] for name in GOLDBERG_SHA256)

HELD_OUT_SHARE = 0.1
HELD_OUT_FILE = "held_out.txt"  # written beside an export: one name (file name without suffix) a line
_HASH_RANGE = 2 ** 64


def is_held_out(name: str, share: float = HELD_OUT_SHARE) -> bool:
    """Whether `name` is held out: depends on the name and the share only, never on other names."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    value = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    return value < share * _HASH_RANGE


def held_out_names(names, share: float = HELD_OUT_SHARE) -> list:
    """The held-out ones among `names`, sorted and each once: about `share` of them."""
    return sorted(name for name in set(names) if is_held_out(name, share))


def default_held_out(names) -> list:
    """The held-out pieces of a corpus when none are named: the Goldberg files follow their own
    list, every other piece `is_held_out` by its name."""
    names = set(names)
    return sorted((names & set(GOLDBERG_HELD_OUT)) | set(held_out_names(names - GOLDBERG_NAMES)))
