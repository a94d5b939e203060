"""The install routes agree: pyproject.toml, the conda environment, the README and CI."""
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {_normalise(r.name): str(r.specifier) for r in reqs}


def _conda_requirements() -> dict:
    env = yaml.safe_load((ROOT / "bachsformer.yml").read_text())
    found = {}
    for entry in env["dependencies"]:
        specs = entry["pip"] if isinstance(entry, dict) else [entry]
        for spec in specs:
            if spec.startswith("-e") or spec.startswith("."):
                continue
            match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
            name, constraint = match.group(1), match.group(2).strip()
            if name in NOT_PACKAGES:
                continue
            found[_normalise(CONDA_TO_PIP.get(name, name))] = constraint
    return found


def test_conda_environment_matches_pyproject():
    assert _conda_requirements() == _pyproject_requirements()


def test_conda_environment_is_portable():
    text = (ROOT / "bachsformer.yml").read_text()
    env = yaml.safe_load(text)
    assert "python=3.11" in env["dependencies"]
    pinned_builds = [d for d in env["dependencies"] if isinstance(d, str) and d.count("=") >= 2 and "==" not in d]
    assert not pinned_builds, f"platform build strings make the environment unportable: {pinned_builds}"
    assert "prefix" not in env


def test_every_dependency_has_a_lower_bound():
    for name, constraint in _pyproject_requirements().items():
        assert ">=" in constraint, f"{name} needs a lower bound"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'python -m pip install -e ".[test]" && python -m pytest'
    assert command in readme
    assert command.replace("install -e", "install --quiet -e") in ci
    assert "torch==2.13.0" in ci


# what a reader makes themselves by following the README, not files of the repository
MADE_BY_THE_READER = ("runs/", "generated/", "data/midi/goldberg", "data/midi/chorales", "data/midi/mine",
                      "checkpoints/mine")
NAMED_PATH = re.compile(r"^[\w.\-]+(/[\w.\-]*)*\.(py|md|png|wav|yaml|yml|toml|pt|sh|sf2)$|^[\w.\-]+(/[\w.\-]+)*/$")


def _paths_named_in(markdown: str) -> set:
    links = re.findall(r"\]\(([^)#\s]+)\)", markdown)
    quoted = re.findall(r"`([^`\s]+)`", markdown)
    # a bare file name (`vae.pt`) is a name in a sentence; a path has a folder in it
    return {p for p in links + quoted if not p.startswith(("http", "mailto")) and "/" in p and NAMED_PATH.match(p)}


def test_every_path_the_readme_names_exists():
    named = _paths_named_in((ROOT / "README.md").read_text())
    assert "docs/evaluation.md" in named and "checkpoints/" in named
    missing = sorted(p for p in named if not p.startswith(MADE_BY_THE_READER) and not (ROOT / p).exists())
    assert not missing, f"README.md names paths a fresh clone lacks: {missing}"


def test_the_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_bytes()) <= 15_000


def test_every_package_folder_ships_and_the_bundled_folders_travel_in_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for top in ("mingpt", "ludovico_vae", "bachsformer")
               for p in (ROOT / top).rglob("__init__.py")}
    assert folders <= set(setuptools["packages"])
    assert setuptools["package-dir"] == {"bachsformer.checkpoints": "checkpoints", "bachsformer.configs": "configs"}
    assert {"*.pt"} <= set(setuptools["package-data"]["bachsformer.checkpoints"])
    assert "static/*" in setuptools["package-data"]["bachsformer.app"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"bachsformer": "bachsformer.__main__:main"}
