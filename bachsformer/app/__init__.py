"""Compose in the browser: `python -m bachsformer.app` serves a local page (offline, 127.0.0.1 by
default) with a Compose button, audio, a piano roll, the engraved score, downloads, and your own
MIDI files to continue or to regenerate bars of. `studio` turns requests into pieces, `jobs` runs
them one at a time off the request threads, `server` is the HTTP side.
"""
