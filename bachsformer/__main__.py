"""The `bachsformer` command (and `python -m bachsformer`): every tool of the project from any folder.

    bachsformer generate [...]            a new piece (the options of generate.py)
    bachsformer app [...]                 compose in the browser
    bachsformer train-vae [...]           train the VQ-VAE (train_vq_vae.py)
    bachsformer train-transformer [...]   train the transformer (train_transformer.py)
    bachsformer evaluate COMMAND [...]    measures (python -m bachsformer.evaluate)
    bachsformer corpus COMMAND [...]      corpora (python -m bachsformer.corpus)
"""
import sys


def _generate(argv):
    from .generate_command import main
    return main(argv, prog="bachsformer generate")


def _app(argv):
    from .app.__main__ import main
    return main(argv)


def _train_vae(argv):
    from .train.main import vae_main
    return vae_main(argv, prog="bachsformer train-vae")


def _train_transformer(argv):
    from .train.main import transformer_main
    return transformer_main(argv, prog="bachsformer train-transformer")


def _evaluate(argv):
    from .evaluate.commands import main
    return main(argv)


def _corpus(argv):
    from .corpus.commands import main
    return main(argv)


COMMANDS = {"generate": _generate, "app": _app, "train-vae": _train_vae, "train-transformer": _train_transformer,
            "evaluate": _evaluate, "corpus": _corpus}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"bachsformer: no command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
