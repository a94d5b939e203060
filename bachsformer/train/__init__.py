"""Training both stages: the VQ-VAE (`vae`) and the transformer on its codes (`transformer`), with
their data (`data`, `token_corpus`), run folders, typed configs and distributed runs.
`train_vq_vae.py` and `train_transformer.py` are the command lines (`main`)."""
