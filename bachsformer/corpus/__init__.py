"""Corpus tools: fetching the Goldberg files (`goldberg`), exporting any composer of music21's
corpus as quantised MIDI (`music21_export`), a stable held-out rule for exported parts (`split`),
checking MIDI files and fuzzing the reader (`fuzz`). `python -m bachsformer.corpus` is the
command line (`commands`)."""
