"""Calling a command line in-process as a user would, and checking its one-line errors."""
from __future__ import annotations


def run(main, capsys, *argv) -> tuple:
    """(exit code, stdout, stderr) of `main` on `argv`, every argument given as text."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, prog: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: ")
    for fragment in fragments:
        assert fragment in lines[0]
