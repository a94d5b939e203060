"""The README as a new user follows it, in a fresh virtual environment on a fresh clone: the quick
start, training a small pair on ten pieces of one's own, and the installed wheel with its
`bachsformer` command run from another folder. Fails if any documented command does."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDBERG_DIR

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _block_after(readme: str, heading: str) -> list:
    """The command lines of the first ```bash block after `heading`, continuations joined."""
    section = readme[readme.index(heading):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _run(command: str, cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"`{command}` failed in {cwd}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(clone, environment) of a clone of this repository with a new virtual environment first on PATH."""
    if shutil.which("git") is None:
        pytest.skip("the README walk clones the repository with git")
    base = tmp_path_factory.mktemp("walk")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{base / 'venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run("python -m pip install --quiet torch==2.13.0", base, env)  # as .ci/run does: the CPU wheel
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(base / "clone")], check=True)
    return base / "clone", env


def test_the_quick_start_writes_a_piece(fresh):
    clone, env = fresh
    readme = (clone / "README.md").read_text()
    (command,) = _block_after(readme, "## Install and run")
    assert "generate.py" in command
    _run(command, clone, env)
    assert list((clone / "generated").glob("*.mid"))


@pytest.mark.skipif(not GOLDBERG_DIR.is_dir(), reason="needs ten pieces of the Goldberg corpus (../shared)")
def test_train_on_your_own_music_as_the_readme_says(fresh):
    clone, env = fresh
    readme = (clone / "README.md").read_text()
    lines = _block_after(readme, "## Train on your own music")
    mine = clone / "data" / "midi" / "mine"
    mine.mkdir(parents=True)
    for path in sorted(GOLDBERG_DIR.glob("*.mid"))[:10]:
        shutil.copy(path, mine / path.name)
    quick = re.search(r"add `([^`]+)`\s+to the second line and `([^`]+)` to the fourth", readme.replace("\n", " "))
    assert quick, "the README's quick recipe changed; update this walk"
    lines[1] += f" {quick.group(1)} --train.threads=1"
    lines[3] += f" {quick.group(2)} --train.threads=1"
    before = set((clone / "generated").glob("*.mid"))
    for line in lines:
        _run(line, clone, env)
    assert (clone / "checkpoints" / "mine" / "vae.pt").exists()
    (written,) = set((clone / "generated").glob("*.mid")) - before
    import pretty_midi
    assert sum(len(i.notes) for i in pretty_midi.PrettyMIDI(str(written)).instruments) > 0, "the quick pair plays no note"


def test_the_wheel_carries_its_weights_and_command(fresh, tmp_path):
    clone, env = fresh
    _run(f"python -m pip wheel --quiet --no-deps --no-build-isolation -w {tmp_path / 'dist'} .", clone, env)
    _run("python -m pip uninstall --quiet -y bachsformer", clone, env)
    wheel = next((tmp_path / "dist").glob("bachsformer-*.whl"))
    _run(f"python -m pip install --quiet {wheel}", tmp_path, env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _run("bachsformer generate --seed 5 --out piece.mid", elsewhere, env)
    assert (elsewhere / "piece.mid").exists() and "piece.mid" in done.stdout
    where = _run("python -c \"import bachsformer.paths as p; print(p.BUNDLED_CHECKPOINTS)\"", elsewhere, env).stdout
    assert "site-packages" in where
