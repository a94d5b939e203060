"""Checkpoints describe themselves: their format is read back, an old one upgraded or refused by
name, and the shipped recipes are what made the bundled weights."""
from __future__ import annotations

import pytest
import torch

from bachsformer.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from bachsformer.errors import CheckpointError
from bachsformer.paths import BUNDLED_CHECKPOINTS, TRANSFORMER_RECIPE, VAE_RECIPE
from bachsformer.train.config import build_config, config_to_dict
from bachsformer.train.transformer import TransformerRecipe
from bachsformer.train.vae import VAERecipe

VAE = BUNDLED_CHECKPOINTS / "vae.pt"
TRANSFORMER = BUNDLED_CHECKPOINTS / "transformer.pt"
# settings of a run that say where and how it ran, not what it learnt
WHERE_IT_RAN = {"out_dir", "device", "threads", "midi_dir", "vae", "keep_snapshots", "held_out"}


def test_a_format_1_checkpoint_is_read_without_its_copy_of_the_grid():
    raw = torch.load(VAE, map_location="cpu", weights_only=True)
    assert raw["format"] == 1 and raw["model_config"]["steps"] == 24
    state = load_checkpoint(VAE, "vae")
    assert state["format"] == CHECKPOINT_FORMAT
    assert not {"channels", "n_keys", "steps"} & set(state["model_config"])
    assert not {"channels", "n_keys", "steps"} & set(load_checkpoint(TRANSFORMER)["vae_model_config"])


@pytest.mark.parametrize("found, words", [(CHECKPOINT_FORMAT + 1, "newer than this bachsformer reads"),
                                          (0, "older than this bachsformer reads"),
                                          (None, "older than this bachsformer reads")])
def test_another_format_is_refused_by_name(tmp_path, found, words):
    state = load_checkpoint(VAE, "vae")
    state["format"] = found
    save_checkpoint(state, tmp_path / "vae.pt")
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(tmp_path / "vae.pt", "vae")
    assert str(tmp_path / "vae.pt") in str(info.value)


def test_a_format_1_checkpoint_whose_grid_disagrees_is_refused(tmp_path):
    raw = torch.load(VAE, map_location="cpu", weights_only=True)
    raw["grid"]["steps_per_quarter"] = 12
    torch.save(raw, tmp_path / "vae.pt")
    with pytest.raises(CheckpointError, match="frames of 24 steps but its grid has 12"):
        load_checkpoint(tmp_path / "vae.pt", "vae")


def _learnt(sections: dict, keys_of: dict | None = None) -> dict:
    """The settings that shape what a run learns; with `keys_of`, only those it has (a setting
    added since a checkpoint was written keeps its default there)."""
    return {name: {k: v for k, v in values.items() if k not in WHERE_IT_RAN and (keys_of is None or k in keys_of[name])}
            for name, values in sections.items()}


def test_the_vae_recipe_is_what_made_the_bundled_vae():
    recipe = config_to_dict(build_config(VAERecipe, VAE_RECIPE))
    bundled = load_checkpoint(VAE, "vae")["config"]
    assert _learnt(recipe, bundled) == _learnt(bundled)


def test_the_transformer_recipe_is_what_made_the_bundled_transformer():
    recipe = config_to_dict(build_config(TransformerRecipe, TRANSFORMER_RECIPE))
    bundled = load_checkpoint(TRANSFORMER, "transformer")["config"]
    # vocabulary, context and the extra inputs' sizes follow the VAE and the data, never the config
    for config in (recipe, bundled):
        for derived in ("vocab_size", "block_size", "extra_vocab_sizes", "token_feature_dim"):
            config["model"].pop(derived)
    assert _learnt(recipe, bundled) == _learnt(bundled)


def test_the_default_held_out_rule_holds_out_what_the_bundled_runs_did():
    from bachsformer.corpus.goldberg import GOLDBERG_SHA256
    from bachsformer.corpus.split import default_held_out

    goldberg = [name.rsplit(".", 1)[0] for name in GOLDBERG_SHA256]
    assert default_held_out(goldberg) == load_checkpoint(VAE, "vae")["held_out"] == ["988-v10", "988-v15", "988-v26"]
    assert default_held_out(goldberg) == load_checkpoint(TRANSFORMER, "transformer")["held_out"]
    mine = [f"piece{i}" for i in range(200)]
    assert 10 <= len(default_held_out(mine)) <= 30, "about a tenth of any other corpus"
    assert set(default_held_out(mine + goldberg)) == set(default_held_out(mine)) | {"988-v10", "988-v15", "988-v26"}
