"""Corpus tools: fetching the Goldberg files (`goldberg`), exporting music21's chorales
(`music21_export`), checking MIDI files and fuzzing the reader (`fuzz`).
`python -m bachsformer.corpus` is the command line (`commands`)."""
