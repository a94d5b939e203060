"""The `bachsformer` command: every tool from any folder, with the names of its subcommands."""
import subprocess
import sys

import pretty_midi


def bachsformer(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bachsformer", *args], capture_output=True, text=True, cwd=cwd)


def test_generate_runs_from_any_folder(tiny_pair, tmp_path):
    done = bachsformer("generate", "--checkpoint-dir", str(tiny_pair), "--form", "through", "--bars", "1",
                       "--seed", "3", "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = tmp_path / done.stdout.split()[0]
    assert written.parent.name == "generated" and pretty_midi.PrettyMIDI(str(written))
    bad = bachsformer("generate", "--bars", "0", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("bachsformer generate: ")


def test_every_subcommand_answers_help(tmp_path):
    for command in ("generate", "app", "train-vae", "train-transformer", "evaluate", "corpus"):
        done = bachsformer(command, "--help", cwd=tmp_path)
        assert done.returncode == 0 and "usage" in done.stdout.lower(), (command, done.stderr)


def test_an_unknown_command_is_named(tmp_path):
    done = bachsformer("compose", cwd=tmp_path)
    assert done.returncode == 2 and "no command 'compose'" in done.stderr and "generate" in done.stderr
    assert bachsformer(cwd=tmp_path).returncode == 2
    listing = bachsformer("--help", cwd=tmp_path)
    assert listing.returncode == 0 and "train-transformer" in listing.stdout
