"""Configs: dataclass defaults, YAML and command-line overrides, every key and type checked."""
from dataclasses import dataclass, field
from typing import Optional

import pytest

from bachsformer.errors import ConfigError
from bachsformer.train.config import build_config, config_to_dict, parse_override, save_config
from ludovico_vae.frames import FrameGrid


@dataclass
class Train:
    lr: float = 3e-4
    steps: int = 10
    amp: bool = False
    name: str = "run"
    betas: tuple[float, float] = (0.9, 0.95)
    held_out: list[str] = field(default_factory=lambda: ["a"])
    limit: Optional[int] = None

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class Recipe:
    grid: FrameGrid = field(default_factory=FrameGrid)
    train: Train = field(default_factory=Train)


def test_defaults_come_from_the_dataclasses():
    config = build_config(Recipe)
    assert config.train == Train() and config.grid == FrameGrid()


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1.0e-3\n  steps: 5\ngrid:\n  steps_per_quarter: 12\n")
    config = build_config(Recipe, path, ["--train.steps=7", "--train.betas=[0.8, 0.9]", "--train.limit=3"])
    assert config.train.lr == 1e-3 and config.train.steps == 7
    assert config.train.betas == (0.8, 0.9) and config.train.limit == 3
    assert config.grid.steps_per_quarter == 12


def test_int_is_accepted_where_a_float_is_expected():
    assert build_config(Recipe, overrides=["--train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize("override, words", [
    ("--train.lrr=0.1", ["train.lrr", "unknown"]),
    ("--model.lr=0.1", ["model", "unknown section"]),
    ("--train.steps=2.5", ["train.steps", "integer"]),
    ("--train.steps=true", ["train.steps", "integer"]),
    ("--train.amp=1", ["train.amp", "true or false"]),
    ("--train.lr=fast", ["train.lr", "number"]),
    ("--train.betas=[0.9]", ["train.betas", "2 values"]),
    ("--train.lr=-1", ["train.lr: must be positive"]),
    ("--grid.out_of_range=wrap", ["out_of_range"]),
    ("--grid.steps_per_quarter=0", ["steps_per_quarter"]),
    ("train.lr", ["expected --section.key=value"]),
])
def test_bad_overrides_name_the_key_and_reason(override, words):
    with pytest.raises(ConfigError) as info:
        build_config(Recipe, overrides=[override])
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("text, words", [
    ("train:\n  nope: 1\n", ["c.yaml", "train.nope"]),
    ("optimizer:\n  lr: 1\n", ["c.yaml", "unknown section"]),
    ("- 1\n- 2\n", ["c.yaml", "top level"]),
    ("train: [1, 2]\n", ["c.yaml", "mapping"]),
    ("train: {lr: [\n", ["c.yaml", "not valid YAML"]),
])
def test_bad_yaml_files_are_named(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        build_config(Recipe, path)
    for word in words:
        assert word in str(info.value)


def test_missing_yaml_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        build_config(Recipe, tmp_path / "missing.yaml")


def test_saved_config_reloads_to_the_same_values(tmp_path):
    config = build_config(Recipe, overrides=["--train.steps=3", "--grid.steps_per_quarter=12"])
    save_config(config, tmp_path / "config.yaml")
    assert build_config(Recipe, tmp_path / "config.yaml") == config
    assert config_to_dict(config)["train"]["betas"] == [0.9, 0.95]


def test_override_values_are_yaml_scalars():
    assert parse_override("--train.name=fast run") == ("train", "name", "fast run")
    assert parse_override("--train.lr=3e-4") == ("train", "lr", 3e-4)
