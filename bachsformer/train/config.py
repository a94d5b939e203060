"""Configuration of a training run: each component's dataclass owns its defaults, YAML files and `--section.key=value`
overrides only change them, and every key and type is checked before any work starts.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from ludovico_vae.files import atomic_write
from mingpt.trainer import TrainerConfig

from ..errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `3e-4` as a string; people write learning rates that way, so read a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"),
    list("-+0123456789."))


def _load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def _coerce(value, kind, key: str):
    """Check `value` against the annotation `kind`, converting only where no meaning is lost."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind in (tuple, list):  # a bare annotation: any items
        origin = kind
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        item = args[0] if args else typing.Any
        return origin(_coerce(v, item, key) for v in value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if kind is typing.Any:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: cannot set a value of type {kind}")


def _apply(section: str, cls, values: dict, where: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    checked = {}
    for name, value in values.items():
        key = f"{section}.{name}"
        if name not in fields:
            raise ConfigError(f"{where}unknown key {key!r} (known: {', '.join(sorted(fields))})")
        try:
            checked[name] = _coerce(value, hints[name], key)
        except ConfigError as e:
            raise ConfigError(f"{where}{e}") from None
    try:
        return cls(**checked)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}{_name_the_key(section, fields, str(e))}") from None


def _name_the_key(section: str, fields: set, message: str) -> str:
    """A dataclass's `lr must be positive` becomes `train.lr: must be positive`, naming the key."""
    name = re.match(r"\w+", message)
    if not name or name.group() not in fields:
        return f"{section}: {message}"
    rest = message[name.end():]
    if rest.startswith((": ", " must ")):
        return f"{section}.{name.group()}: {rest.removeprefix(':').strip()}"
    return f"{section}.{name.group()}: {message}"


def parse_override(text: str) -> tuple:
    """`--train.lr=3e-4` -> ("train", "lr", 0.0003); values are read as YAML scalars."""
    body = text[2:] if text.startswith("--") else text
    if "=" not in body or "." not in body.split("=", 1)[0]:
        raise ConfigError(f"cannot read override {text!r}: expected --section.key=value")
    dotted, raw = body.split("=", 1)
    section, name = dotted.split(".", 1)
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return section, name, value


def sections_of(recipe) -> dict:
    """A recipe's sections, name -> dataclass: the fields of the recipe dataclass."""
    hints = typing.get_type_hints(recipe)
    return {f.name: hints[f.name] for f in dataclasses.fields(recipe)}


def build_config(recipe, yaml_path=None, overrides=()):
    """A `recipe` (a dataclass of sections): each section's defaults, then the YAML file, then the overrides."""
    sections = sections_of(recipe)
    values = {name: {} for name in sections}
    if yaml_path is not None:
        path = Path(yaml_path)
        try:
            loaded = _load_yaml(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected sections {', '.join(sections)} at the top level")
        for section, entries in loaded.items():
            if section not in sections:
                raise ConfigError(f"{path}: unknown section {section!r} (known: {', '.join(sections)})")
            if not isinstance(entries, dict):
                raise ConfigError(f"{path}: section {section!r} must be a mapping of keys to values")
            values[section].update(entries)
    for text in overrides:
        section, name, value = parse_override(text)
        if section not in sections:
            raise ConfigError(f"unknown section {section!r} in {text!r} (known: {', '.join(sections)})")
        values[section][name] = value
    where = f"{yaml_path}: " if yaml_path is not None and not overrides else ""
    return recipe(**{name: _apply(name, cls, values[name], where) for name, cls in sections.items()})


def config_to_dict(config) -> dict:
    return _plain(dataclasses.asdict(config))


def _plain(value):
    """Tuples become lists so the YAML stays readable by `yaml.safe_load`."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_config(config, path) -> None:
    with atomic_write(path) as f:
        f.write(yaml.safe_dump(config_to_dict(config), sort_keys=False).encode())


@dataclass
class RunConfig(TrainerConfig):
    """What every training run has beside its optimiser: batches, evaluation, seed, device, folder."""

    batch_size: int = 64  # the global batch: a distributed run splits it evenly over its processes
    eval_every: int = 1  # evaluations (and checkpoints) come this many epochs or steps apart
    monitor_pieces: int = 3  # training pieces also scored at each evaluation, to show overfitting
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    out_dir: str = "runs/run"

    def __post_init__(self):
        super().__post_init__()
        self.require(at_least_one=("batch_size", "eval_every"), non_negative=("monitor_pieces", "threads"))
