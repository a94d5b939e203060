"""A trained pair, the VQ-VAE and the transformer that learned its codes, loaded from checkpoints.

Everything generation and evaluation need to rebuild the models comes from the files: vocabulary,
context, latent shape and frame grid are read, never assumed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ludovico_vae.files import sha256_file
from ludovico_vae.frames import FrameGrid
from ludovico_vae.model import VQVAE, VQVAEConfig
from mingpt.model import GPT, GPTConfig

from .checkpoints import load_checkpoint
from .errors import CheckpointError
from .paths import BUNDLED_CHECKPOINTS, DEFAULT_STYLE, STYLES, VAE_FILE, available_styles

VAE_KIND, TRANSFORMER_KIND = "vae", "transformer"  # the `kind` entry of each stage's checkpoints


@dataclass
class Style:
    """What the training corpus sounds like by default: its commonest meter, its median tempo, its
    commonest key, and each training piece's key plan (`{"name", "meter", "keys"}`) for a model
    with local keys."""

    meter: tuple = (4, 4)
    qpm: float = 100.0
    key_plans: list = field(default_factory=list)
    key: int | None = None  # the key most training pieces are in (0-23, as `tonality`), if known
    form: str = "binary"  # what a model that knows the form writes by default: "binary" or "through"

    @classmethod
    def from_dict(cls, d: dict) -> "Style":
        """From a checkpoint's `style` entry."""
        return cls(tuple(d.get("meter", cls.meter)), float(d.get("qpm", cls.qpm)), list(d.get("key_plans", [])),
                   d.get("key"), d.get("form", cls.form))

    def to_dict(self) -> dict:
        """As a checkpoint stores it."""
        return {"meter": list(self.meter), "qpm": self.qpm, "key_plans": self.key_plans, "key": self.key,
                "form": self.form}


@dataclass
class Pair:
    """A VQ-VAE and its transformer, on one device, in eval mode."""

    vae: VQVAE
    transformer: GPT
    grid: FrameGrid
    extra_inputs: tuple  # names of the per-token inputs beside the codes (`tokens.EXTRA_INPUTS`)
    beat_slots: int  # eighth-note slots of the beat-position input
    style: Style
    vae_state: dict  # the checkpoints' other entries (epoch, step, metrics, hashes), for reports
    transformer_state: dict


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def load_vae(path, device="cpu") -> tuple:
    """(model, grid, checkpoint state): a VQ-VAE on `device`, in eval mode, and its frame grid."""
    state = load_checkpoint(path, VAE_KIND)
    try:
        grid = FrameGrid(**state["grid"])
        model = VQVAE(VQVAEConfig.from_dict(state["model_config"]), grid.frame_shape)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"does not hold a VQ-VAE this version can build ({_first_line(e)})") from None
    return model.to(device).eval(), grid, state


def load_transformer(path, vae_path=None, device="cpu") -> tuple:
    """(model, checkpoint state) on `device`, in eval mode; refuses a VAE it was not trained with."""
    state = load_checkpoint(path, TRANSFORMER_KIND)
    if vae_path is not None and sha256_file(vae_path) != state["vae_sha256"]:
        raise CheckpointError(path, f"was trained on the codes of another VQ-VAE than {vae_path} "
                                    "(its vae_sha256 differs); use the VAE it names or retrain")
    try:
        model = GPT(GPTConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"does not hold a transformer this version can build ({_first_line(e)})") from None
    return model.to(device).eval(), state


def load_pair(checkpoint_dir=BUNDLED_CHECKPOINTS, device="cpu", style: str = DEFAULT_STYLE) -> Pair:
    """The pair of a checkpoint folder (`vae.pt` and the transformer of `style`, `transformer.pt`
    for the default); by default the bundled one.

    The pair must belong together: the transformer names the hash of the VAE whose codes it
    learned, and any other VAE is refused rather than decoded into noise.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise CheckpointError(folder, "no such checkpoint folder")
    if style not in STYLES:
        raise CheckpointError(folder, f"no style {style!r}; the styles are {', '.join(STYLES)}")
    vae_path, transformer_path = folder / VAE_FILE, folder / STYLES[style]
    if style != DEFAULT_STYLE and not transformer_path.exists():
        raise CheckpointError(folder, f"holds no {style} style ({STYLES[style]}); it has "
                                      f"{', '.join(available_styles(folder)) or 'none'}")
    for path in (vae_path, transformer_path):
        if not path.exists():
            raise CheckpointError(path, "missing: train one (train_vq_vae.py, train_transformer.py) "
                                        "and export it here with --export")
    vae, grid, vae_state = load_vae(vae_path, device)
    transformer, state = load_transformer(transformer_path, vae_path, device)
    return Pair(vae, transformer, grid, tuple(state["extra_inputs"]), int(state["beat_slots"]),
                Style.from_dict(state.get("style", {})), vae_state, state)
