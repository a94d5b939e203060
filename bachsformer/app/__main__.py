"""python -m bachsformer.app [--host 127.0.0.1] [--port 8000] [--checkpoint-dir DIR] [--out DIR]"""
import sys

from ..cli import CommandParser, run_main
from ..errors import CommandError
from ..paths import BUNDLED_CHECKPOINTS

PROG = "python -m bachsformer.app"


def run(args) -> None:
    from .server import App, cleanup, make_server
    from .studio import Studio

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must lie between 0 and 65535, got {args.port}")
    app = App(Studio(args.checkpoint_dir, args.device), args.out)
    try:
        server = make_server(app, args.host, args.port)
    except OSError as e:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    host, port = server.server_address[:2]
    print(f"bachsformer: open http://{host}:{port}/ in your browser (Ctrl+C stops); pieces go to {app.out_dir}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
        cleanup(app, owned=args.out is None)


def build_parser() -> CommandParser:
    parser = CommandParser(prog=PROG, description="Compose in the browser: a local page with a Compose button.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this computer only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--checkpoint-dir", default=str(BUNDLED_CHECKPOINTS), help="the models (default: bundled)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, else CPU), cpu, cuda or mps")
    parser.add_argument("--out", help="keep the pieces in this folder (default: a temporary one, removed on exit)")
    parser.set_defaults(run=run)
    return parser


def main(argv=None) -> int:
    return run_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
