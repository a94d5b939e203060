"""The bundled styles: the Goldberg model by default, Bach's chorales beside it, on one VQ-VAE."""
import pytest

from bachsformer.errors import CheckpointError
from bachsformer.generation import Bachsformer
from bachsformer.pair import load_pair
from bachsformer.paths import BUNDLED_CHECKPOINTS, DEFAULT_STYLE, available_styles


def test_both_styles_are_bundled_and_the_goldberg_one_is_the_default():
    assert available_styles() == ["goldberg", "chorales"] and DEFAULT_STYLE == "goldberg"


def test_each_style_knows_its_form_meter_and_tempo():
    goldberg, chorales = (load_pair(BUNDLED_CHECKPOINTS, "cpu", style) for style in ("goldberg", "chorales"))
    assert (goldberg.style.form, tuple(goldberg.style.meter)) == ("binary", (3, 4))
    assert (chorales.style.form, tuple(chorales.style.meter)) == ("through", (4, 4))
    assert chorales.style.qpm < goldberg.style.qpm  # a chorale moves slower than a variation
    assert goldberg.vae_state["model"].keys() == chorales.vae_state["model"].keys()


def test_a_chorale_is_through_composed_in_four_four():
    piece = Bachsformer.from_checkpoints(style="chorales", device="cpu").generate(bars=2, seed=0)[0]
    signature = piece.midi.time_signature_changes[0]
    assert (signature.numerator, signature.denominator) == (4, 4) and len(piece.frames) == 8


def test_a_style_a_folder_lacks_is_refused_by_name(tiny_pair):
    with pytest.raises(CheckpointError, match="holds no chorales style"):
        Bachsformer.from_checkpoints(tiny_pair, "cpu", style="chorales")
    with pytest.raises(CheckpointError, match="no style 'jazz'"):
        Bachsformer.from_checkpoints(style="jazz")
