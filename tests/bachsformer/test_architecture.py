"""The import rules of docs/architecture.md, read from every module's imports (lazy ones too), and
what generating a piece actually loads."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mingpt", "ludovico_vae", "bachsformer")
# rooms generation never enters; `bachsformer.__main__` is the command that leads to all of them
AWAY_FROM_INFERENCE = ("bachsformer.train", "bachsformer.evaluate", "bachsformer.corpus", "bachsformer.app",
                       "bachsformer.__main__")

# (modules the rule is about, module prefixes they may never import)
RULES = [
    ("mingpt", ("bachsformer", "ludovico_vae")),
    ("ludovico_vae", ("bachsformer", "mingpt")),
    ("bachsformer.<inference>", AWAY_FROM_INFERENCE),
    ("bachsformer.corpus", ("bachsformer.train", "bachsformer.evaluate")),
    ("bachsformer.evaluate", ("bachsformer.train",)),
    ("bachsformer.app", ("bachsformer.train", "bachsformer.evaluate", "bachsformer.corpus")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set:
    """Every module `path` imports, relative imports resolved, wherever in the file they stand."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import tokens`
    return found


def modules() -> dict:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def belongs(name: str, group: str) -> bool:
    if group == "bachsformer.<inference>":
        return name.startswith("bachsformer") and not belongs_any(name, AWAY_FROM_INFERENCE)
    return name == group or name.startswith(group + ".")


def belongs_any(name: str, groups) -> bool:
    return any(name == g or name.startswith(g + ".") for g in groups)


@pytest.mark.parametrize("group, forbidden", RULES, ids=[r[0] for r in RULES])
def test_imports_flow_one_way(group, forbidden):
    broken = [f"{name} imports {target}" for name, path in modules().items() if belongs(name, group)
              for target in sorted(imports_of(path)) if belongs_any(target, forbidden)]
    assert not broken, "\n".join(broken)


def test_the_rules_see_every_module():
    names = modules()
    assert {"mingpt.model", "ludovico_vae.model", "bachsformer.generation", "bachsformer.train.vae",
            "bachsformer.evaluate.commands", "bachsformer.corpus.commands"} <= set(names)
    assert "bachsformer.train.main" in {t for t in imports_of(ROOT / "train_transformer.py")}
    assert "bachsformer.train.transformer" in {t for t in imports_of(ROOT / "bachsformer" / "train" / "main.py")}


LOADED = """
import json, sys
from bachsformer.generate_command import main  # what generate.py runs (the script then ends the process)
assert main(["--bars", "1", "--out", sys.argv[1], "--device", "cpu"]) == 0
import bachsformer
bachsformer.Bachsformer.from_checkpoints(device="cpu").generate(bars=1)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("bachsformer"))))
"""


def test_generating_loads_no_training_evaluation_or_corpus_module(tmp_path):
    result = subprocess.run([sys.executable, "-c", LOADED, str(tmp_path / "piece.mid")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "bachsformer.generation" in loaded and (tmp_path / "piece.mid").exists()
    assert not [m for m in loaded if belongs_any(m, AWAY_FROM_INFERENCE)], loaded
