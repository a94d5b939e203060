"""The command lines report what a user can fix in one line with exit code 2, and nothing else:
any other exception is a bug and keeps its traceback."""
from __future__ import annotations

import errno

import pytest

from bachsformer.cli import CommandParser, run_main
from bachsformer.errors import BachsformerError, CheckpointError, ConfigError, MissingExtraError
from ludovico_vae.midi import MidiError


def main_raising(error):
    def build_parser():
        parser = CommandParser(prog="tool")

        def run(args):
            raise error
        parser.set_defaults(run=run)
        return parser
    return lambda: run_main("tool", build_parser, [])


@pytest.mark.parametrize("error", [BachsformerError("x.mid: too short"), ConfigError("train.lr: must be positive"),
                                   CheckpointError("a.pt", "corrupt checkpoint"), MidiError("b.mid", "no notes"),
                                   MissingExtraError("install the [eval] extra"),
                                   PermissionError(errno.EACCES, "Permission denied", "out/x.mid")])
def test_a_users_mistake_is_one_line_and_exit_code_2(capsys, error):
    assert main_raising(error)() == 2
    err = capsys.readouterr().err
    assert err.startswith("tool: ") and err.count("\n") == 1


@pytest.mark.parametrize("error", [ValueError("operands could not be broadcast together"), ImportError("numpy._core"),
                                   KeyError("step"), OSError("a socket error that names no file")])
def test_a_bug_keeps_its_traceback(error):
    with pytest.raises(type(error)):
        main_raising(error)()


def test_an_unknown_option_is_a_users_mistake(capsys):
    assert run_main("tool", lambda: CommandParser(prog="tool"), ["--frobnicate"]) == 2
    assert "--frobnicate" in capsys.readouterr().err
