"""The measures: frame-format and VQ-VAE fidelity, transformer likelihood, and generated music
against real music. `python -m bachsformer.evaluate` is the command line (`commands`); the
definitions are in docs/evaluation.md."""
