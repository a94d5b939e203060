"""Invariants of the VQ-VAE and its EMA quantizer, on random sparse frames (no corpus needed)."""
from __future__ import annotations

import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ludovico_vae.frames import FrameGrid
from ludovico_vae.model import VQVAE, VQVAEConfig
from ludovico_vae.quantizer import VectorQuantizer


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test, restored afterwards.

    These models are tiny: a second thread only adds synchronisation, which on a shared,
    oversubscribed CPU made the overfitting test ten times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# small, on the design's first layout: 8 key bands by 2 steps, 16 codes, band by band
TINY = dict(widths=(8, 16), code_dim=8, n_res_blocks=1, latent_keys=8, latent_steps=2, patch=(4, 4),
            codebook_size=16, index_order="band")
CONFIGS = {
    "default": {},
    "tiny": TINY,
    "one-channel, 61 keys, 12 steps": dict(TINY, channels=1, n_keys=61, steps=12, patch=(4, 2),
                                            pos_weight=3.0),
    "odd keys, 4x3 grid, 8 codes": dict(TINY, n_keys=87, latent_keys=4, latent_steps=3, patch=(2, 2),
                                        codebook_size=8),
    "global mix": dict(TINY, mix="global"),
    "codes on the unit sphere": dict(TINY, normalize_codes=True),
    "patch mix": dict(TINY, mix="patch"),
    "patch mix, odd keys, 4x3 grid": dict(TINY, mix="patch", n_keys=87, latent_keys=4, latent_steps=3,
                                          patch=(2, 2)),
    "time-major indices, 4x3 grid": dict(TINY, n_keys=87, latent_keys=4, latent_steps=3, patch=(2, 2),
                                         index_order="time"),
    "codebook-usage penalty": dict(TINY, usage_weight=0.1),
}


FRAME = CHANNELS, N_KEYS, STEPS = FrameGrid().frame_shape
FRAME_KEYS = ("channels", "n_keys", "steps")  # overrides of the frame's shape, which the grid owns


def sparse_frames(batch: int, shape: tuple = FRAME, seed: int = 0, density: float = 0.03) -> torch.Tensor:
    """{0, 1} frames with about `density` of cells on; channel 0 (onsets) inside the last one."""
    g = torch.Generator().manual_seed(seed)
    channels, keys, steps = shape
    sounding = (torch.rand(batch, 1, keys, steps, generator=g) < density).float()
    onsets = sounding * (torch.rand(sounding.shape, generator=g) < 0.3)
    return torch.cat([onsets] * (channels - 1) + [sounding], dim=1)


def random_chords(batch: int, notes: int = 3, seed: int = 0) -> torch.Tensor:
    """Frames of `notes` random keys struck together at the start or middle and held to the end.

    Unlike cell noise, a batch of these is well within what 16 indices of 16 codes can tell
    apart, so a model that cannot fit it has a bug rather than too narrow a bottleneck.
    """
    g = torch.Generator().manual_seed(seed)
    frames = torch.zeros(batch, CHANNELS, N_KEYS, STEPS)
    for b in range(batch):
        keys = torch.randperm(N_KEYS, generator=g)[:notes]
        start = int(torch.randint(2, (), generator=g)) * STEPS // 2
        frames[b, -1, keys, start:] = 1
        frames[b, 0, keys, start] = 1
    return frames


def make_model(seed: int = 0, **overrides) -> VQVAE:
    """A model of `overrides`; channels, n_keys and steps set the frame's shape, the rest the config."""
    shape = dict(zip(FRAME_KEYS, FRAME))
    shape.update({k: overrides.pop(k) for k in FRAME_KEYS if k in overrides})
    torch.manual_seed(seed)
    return VQVAE(VQVAEConfig(**overrides), tuple(shape[k] for k in FRAME_KEYS))


def train_steps(model: VQVAE, frames: torch.Tensor, steps: int, lr: float = 3e-3) -> list:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        out = model(frames)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    return losses


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_shapes(overrides):
    model = make_model(**overrides)
    cfg = model.config
    frames = sparse_frames(3, model.frame_shape)
    out = model(frames)
    assert out["logits"].shape == frames.shape
    assert out["indices"].shape == (3, cfg.latent_keys * cfg.latent_steps)
    assert out["indices"].dtype == torch.long
    for key in ("loss", "recon_loss", "vq_loss", "perplexity"):
        assert out[key].dim() == 0 and torch.isfinite(out[key]), key
    assert 1 <= out["codes_used"] <= min(cfg.codebook_size, 3 * cfg.n_indices)
    assert 1 <= out["perplexity"] <= out["codes_used"] + 1e-4
    indices = model.encode_indices(frames)
    assert indices.shape == (3, cfg.n_indices) and indices.dtype == torch.long
    assert 0 <= indices.min() and indices.max() < cfg.codebook_size
    binary = model.decode_indices(indices, binary=True)
    assert binary.shape == frames.shape and set(binary.unique().tolist()) <= {0.0, 1.0}


def test_default_grid_and_size():
    model = make_model()
    cfg = model.config
    assert model.frame_shape == (CHANNELS, N_KEYS, STEPS) == (2, 88, 24)
    assert cfg.latent_shape == (4, 4) and cfg.n_indices == 16 and cfg.codebook_size == 512
    z = model.encoder(sparse_frames(2))
    assert z.shape == (2, cfg.code_dim, 4, 4)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert weights < 5 * 2**20


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_decode_of_encode_is_eval_forward(overrides):
    model = make_model(**overrides)
    frames = sparse_frames(8, model.frame_shape)
    train_steps(model, frames, 2)  # move the codebook off its initial values first
    model.eval()
    out = model(frames)
    indices = model.encode_indices(frames)
    assert torch.equal(indices, out["indices"])
    assert torch.equal(model.train().encode_indices(frames), indices), "encoding depends on the mode"
    model.eval()
    assert torch.equal(model.decode_indices(indices), out["logits"])
    threshold = torch.tensor(model.config.pos_weight).log().view(-1, 1, 1)  # p = 1/2 under the weighted loss
    assert torch.equal(model.decode_indices(indices, binary=True), (out["logits"] > threshold).float())


@pytest.mark.parametrize("mix, local", [("patch", True), ("local", False)])
def test_patch_mix_codes_each_patch_on_its_own(mix, local):
    """With mix="patch" a change inside one latent cell's patch moves only that cell's vector,
    and that cell's code changes only its own patch of the output (the "local" mix leaks into
    neighbours through its 3x3 convolutions)."""
    cfg = VQVAEConfig(**TINY, mix=mix)
    model = VQVAE(cfg).eval()
    frames = sparse_frames(2)
    changed = frames.clone()
    changed[:, :, 8:12, 12:] = 1 - changed[:, :, 8:12, 12:]  # keys 8-11 (padded 12-15): latent row 1, column 1
    moved = (model.encoder(frames) - model.encoder(changed)).abs().sum(1) > 0  # (B, 8, 2)
    expected = torch.zeros_like(moved)
    expected[:, 1, 1] = True
    assert torch.equal(moved, expected) == local
    indices = model.encode_indices(frames)
    other = indices.clone()
    other[:, 3] = (other[:, 3] + 1) % cfg.codebook_size  # row-major: cell (1, 1)
    diff = (model.decode_indices(indices) - model.decode_indices(other)).abs().sum((0, 1, 3)) > 0  # per key
    outside = torch.ones(N_KEYS, dtype=torch.bool)
    outside[8:20] = False  # padded keys 12-23 = keys 8-19
    assert bool(diff[outside].any()) != local


def test_index_order_only_reorders_a_frames_indices():
    """The same weights read with index_order "time" give the "band" indices transposed over the
    latent grid, decode them to the same logits, and index_of says where each cell went."""
    cfg = dict(TINY, latent_keys=4, latent_steps=3, n_keys=87, patch=(2, 2))
    band = make_model(**cfg).eval()
    time = make_model(**dict(cfg, index_order="time")).eval()
    time.load_state_dict(band.state_dict())
    frames = sparse_frames(5, band.frame_shape)
    by_band, by_time = band.encode_indices(frames), time.encode_indices(frames)
    assert not torch.equal(by_band, by_time)
    assert torch.equal(by_time, by_band.view(5, 4, 3).transpose(1, 2).reshape(5, 12))
    assert torch.equal(time(frames)["indices"], by_time)
    assert torch.equal(time.decode_indices(by_time), band.decode_indices(by_band))
    for k in range(4):
        for t in range(3):
            assert torch.equal(by_time[:, time.config.index_of(k, t)], by_band[:, band.config.index_of(k, t)])
    with pytest.raises(ValueError, match="index_order"):
        VQVAEConfig(index_order="diagonal")


def test_uint8_frames_are_accepted():
    model = make_model(**TINY).eval()
    frames = sparse_frames(4)
    assert torch.equal(model(frames.to(torch.uint8))["logits"], model(frames)["logits"])


def test_ema_state_lives_in_buffers():
    model = make_model(**TINY)
    buffers = dict(model.quantizer.named_buffers())
    assert set(buffers) == {"codebook", "cluster_size", "embed_sum"}
    assert list(model.quantizer.parameters()) == []
    assert all(not b.requires_grad for b in buffers.values())
    state = model.state_dict()
    assert {f"quantizer.{name}" for name in buffers} <= set(state)


def test_ema_updates_only_in_train_mode():
    model = make_model(**TINY)
    frames = sparse_frames(16)
    before = {k: v.clone() for k, v in model.quantizer.named_buffers()}
    model.eval()
    model(frames)
    for name, value in model.quantizer.named_buffers():
        assert torch.equal(value, before[name]), name
    model.train()
    with torch.no_grad():
        model(frames)
    for name, value in model.quantizer.named_buffers():
        assert not torch.equal(value, before[name]), name
        assert value.dtype == torch.float32


def test_codebook_stays_fp32_under_autocast():
    model = make_model(**TINY).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(sparse_frames(8))
    assert out["vq_loss"].dtype == torch.float32
    assert all(b.dtype == torch.float32 for b in model.quantizer.buffers())
    out["loss"].backward()


def test_optimizer_never_touches_the_codebook():
    """Gradients flow to the encoder through the straight-through estimator, not to the codes."""
    model = make_model(**TINY).train()
    out = model(sparse_frames(8))
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert model.quantizer.codebook.grad is None


def quantizer_with(codebook: torch.Tensor, **kwargs) -> VectorQuantizer:
    vq = VectorQuantizer(codebook.shape[0], codebook.shape[1], **kwargs)
    vq.load_state_dict({"codebook": codebook, "cluster_size": torch.full((codebook.shape[0],), 100.0),
                        "embed_sum": codebook * 100.0})
    return vq


@pytest.mark.parametrize("threshold", [1.0, 0.0], ids=["restart", "no-restart"])
def test_dead_codes_are_restarted_from_the_batch(threshold):
    torch.manual_seed(0)
    live = torch.randn(4, 3)
    dead = torch.full((4, 3), 1e3)  # far from every input: never chosen
    vq = quantizer_with(torch.cat([live, dead]), decay=0.5, dead_code_threshold=threshold).train()
    z = live.repeat(64, 1) + 0.01 * torch.randn(256, 3)
    for _ in range(10):  # 100 * 0.5^n falls below 1 after 7 steps
        out = vq(z)
    codebook = vq.decode_indices(torch.arange(8))
    nearest_input = torch.cdist(codebook[4:], z).min(1).values
    if threshold:
        assert (nearest_input < 0.1).all(), "restarted codes sit on encoder outputs"
        assert vq.cluster_size[4:].min() > 0
    else:
        assert (nearest_input > 100).all()
        assert out["codes_used"] == 4


def test_normalized_codes_match_by_angle_and_stay_on_the_sphere():
    torch.manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    vq = quantizer_with(directions, normalize=True, decay=0.5).train()
    lengths = torch.tensor([0.1, 1.0, 10.0, 100.0]).repeat_interleave(16).unsqueeze(1)
    z = directions.repeat(16, 1) * lengths + 0.01 * torch.randn(64, 3)
    out = vq(z)
    # only a vector's direction matters: lengths from 0.1 to 100 find the code they point at
    assert torch.equal(out["indices"], torch.arange(4).repeat(16))
    assert torch.allclose(out["quantized"].norm(dim=1), torch.ones(64))
    assert torch.allclose(vq.decode_indices(torch.arange(4)).norm(dim=1), torch.ones(4)), "EMA step"
    assert out["loss"] < 0.25 * 0.01, "the commitment loss compares unit vectors"


@pytest.mark.parametrize("restart", ["uniform", "error"])
def test_restart_picks_distinct_vectors(restart):
    vq = quantizer_with(torch.full((8, 2), 1e3), dead_code_threshold=1.0, decay=0.01, restart=restart).train()
    vq(torch.randn(64, 2))
    assert len(torch.unique(vq.decode_indices(torch.arange(8)), dim=0)) == 8


def test_error_restart_goes_to_the_worst_served_vectors():
    """One live code sits on a crowd of inputs; a few outliers far from it must get the dead codes."""
    torch.manual_seed(0)
    codebook = torch.cat([torch.zeros(1, 2), torch.full((3, 2), 1e3)])  # code 0 live, 1-3 dead
    crowd = 0.01 * torch.randn(250, 2)
    outliers = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0], [0.0, -5.0], [5.0, 5.0], [-5.0, -5.0]])
    z = torch.cat([crowd, outliers])
    restarted = {}
    for restart in ("uniform", "error"):
        torch.manual_seed(1)
        vq = quantizer_with(codebook.clone(), dead_code_threshold=1.0, decay=0.01, restart=restart).train()
        vq(z)
        restarted[restart] = vq.decode_indices(torch.arange(1, 4))
    on_outliers = {k: int((torch.cdist(v, outliers).min(1).values < 1e-4).sum()) for k, v in restarted.items()}
    assert on_outliers["error"] == 3  # 3 dead codes, all on outliers (together nearly all of the error)
    assert on_outliers["uniform"] < 3  # 6 outliers of 256 inputs: a uniform draw almost never hits one


def test_quantizer_rejects_an_unknown_restart():
    with pytest.raises(ValueError, match="restart must be one of uniform, error"):
        VectorQuantizer(8, 2, restart="farthest")


@pytest.mark.parametrize("n_used", [1, 3, 8])
def test_perplexity_and_codes_used(n_used):
    codebook = torch.eye(8)
    vq = quantizer_with(codebook).eval()
    z = codebook[torch.arange(48) % n_used]  # uniform over the first n_used codes
    out = vq(z)
    assert out["codes_used"] == n_used
    assert out["perplexity"].item() == pytest.approx(n_used, rel=1e-4)
    assert torch.equal(out["indices"], torch.arange(48) % n_used)
    assert torch.equal(out["quantized"], z) and out["loss"].item() == 0.0


def test_usage_loss_falls_as_the_batch_spreads_over_the_codebook():
    codebook = 4.0 * torch.eye(8)
    vq = quantizer_with(codebook, usage_weight=1.0, usage_temperature=0.5)
    one_code = vq.usage_loss(codebook[torch.zeros(48, dtype=torch.long)])
    four_codes = vq.usage_loss(codebook[torch.arange(48) % 4])
    all_codes = vq.usage_loss(codebook[torch.arange(48) % 8])
    assert one_code > four_codes > all_codes
    assert all_codes.item() == pytest.approx(0.0, abs=1e-4)
    assert four_codes.item() == pytest.approx(1 - 2 / 3, abs=1e-3)  # entropy log 4 of log 8
    assert one_code.item() == pytest.approx(1.0, abs=1e-3)


def test_usage_loss_trains_the_encoder_not_the_codebook_and_only_in_training():
    codebook = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    z = torch.zeros(16, 4)  # every vector at the origin: one code wins

    def loss(train: bool, **kwargs) -> torch.Tensor:
        vq = quantizer_with(codebook, dead_code_threshold=0.0, **kwargs).train(train)
        return vq(z)["loss"].item()

    assert loss(False, usage_weight=1.0) == loss(False)
    assert loss(True, usage_weight=1.0) > loss(True) + 0.1
    vq = quantizer_with(codebook, usage_weight=1.0)
    encoded = z.clone().requires_grad_()
    vq.train()(encoded)["loss"].backward()
    assert encoded.grad.abs().sum() > 0
    assert not any(b.requires_grad for b in vq.buffers()) and not list(vq.parameters())


def test_quantizer_rejects_bad_input():
    vq = VectorQuantizer(4, 3)
    with pytest.raises(ValueError, match="components"):
        vq.encode_indices(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        vq.decode_indices(torch.tensor([0, 4]))


@pytest.mark.parametrize("indices, match", [
    (torch.zeros(2, 15, dtype=torch.long), "shape"),
    (torch.full((2, 16), 16, dtype=torch.long), r"\[0, 16\)"),
    (torch.full((2, 16), -1, dtype=torch.long), r"\[0, 16\)"),
])
def test_decode_rejects_bad_indices(indices, match):
    with pytest.raises(ValueError, match=match):
        make_model(**TINY).decode_indices(indices)


def test_forward_rejects_wrong_frame_shape():
    with pytest.raises(ValueError, match=r"\(B, 2, 88, 24\)"):
        make_model(**TINY)(torch.zeros(2, 2, 88, 16))


@pytest.mark.parametrize("overrides, field", [
    (dict(steps=20), "steps"),  # 20 steps do not split into 4 latent columns of 2-step patches
    (dict(latent_steps=5), "steps"),
    (dict(channels=0), "channels"),
    (dict(n_keys=-88), "keys"),
    (dict(codebook_size=1), "codebook_size"),
    (dict(code_dim=0), "code_dim"),
    (dict(widths=(32,)), "widths"),
    (dict(widths=(32, 0)), "widths"),
    (dict(patch=(4, 4, 4)), "patch"),
    (dict(n_res_blocks=-1), "n_res_blocks"),
    (dict(latent_keys=100), "latent_keys"),
    (dict(patch=4), "patch"),
    (dict(pos_weight="4"), "pos_weight"),
    (dict(ema_decay="0.99"), "ema_decay"),
    (dict(ema_decay=1.0), "ema_decay"),
    (dict(commitment_weight=-0.1), "commitment_weight"),
    (dict(dead_code_threshold=-1.0), "dead_code_threshold"),
    (dict(focal_gamma=-2.0), "focal_gamma"),
    (dict(pos_weight=(1.0, 2.0, 3.0)), "pos_weight"),
    (dict(pos_weight=0.0), "pos_weight"),
    (dict(mix="everywhere"), "mix"),
    (dict(dead_code_restart="farthest"), "dead_code_restart"),
    (dict(normalize_codes="yes"), "normalize_codes"),
    (dict(note_cost=-1.0), "note_cost"),
    (dict(note_cost="2"), "note_cost"),
    (dict(usage_weight=-0.1), "usage_weight"),
    (dict(usage_temperature=0.0), "usage_temperature"),
    (dict(search_candidates=-1), "search_candidates"),
    (dict(search_sweeps=1.5), "search_sweeps"),
    (dict(search_bf16=1), "search_bf16"),
])
def test_config_validation_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        make_model(**overrides)


def test_config_round_trips_and_rejects_unknown_keys():
    cfg = VQVAEConfig(widths=[16, 32], pos_weight=2)
    assert cfg.widths == (16, 32) and cfg.pos_weight == 2.0
    assert VQVAEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="codebok_size"):
        VQVAEConfig.from_dict({"codebok_size": 16})
    with pytest.raises(ValueError, match="steps"):
        VQVAE(cfg, (2, 88, 25))


@pytest.mark.parametrize("loss", [{}, dict(focal_gamma=2.0, pos_weight=1.0)], ids=["weighted-bce", "focal"])
def test_overfits_one_batch(loss):
    model = make_model(widths=(16, 32), code_dim=16, n_res_blocks=1, **loss)
    frames = random_chords(8)
    losses = train_steps(model, frames, 250, lr=1e-2)
    assert losses[-1] < 0.05 * losses[0]
    model.eval()
    recon = model.decode_indices(model.encode_indices(frames), binary=True).bool()
    on = frames.bool()
    assert recon[on].float().mean() > 0.9, "recall of on cells"
    assert on[recon].float().mean() > 0.8, "precision of on cells"


def trained_on_chords(search_candidates: int = 0, **overrides) -> tuple:
    """(model, frames): a small model trained briefly on random chords, rebuilding them imperfectly."""
    model = make_model(widths=(16, 32), code_dim=16, n_res_blocks=1, **overrides)
    frames = random_chords(16, seed=1)
    train_steps(model, frames, 60, lr=1e-2)
    model.eval()
    model.config.search_candidates = search_candidates
    return model, frames


@pytest.mark.parametrize("overrides", [{}, dict(index_order="band", latent_keys=8, latent_steps=2, patch=(4, 4))],
                         ids=["default grid", "8x2 band by band"])
def test_search_never_rebuilds_a_frame_worse_than_the_nearest_codes(overrides):
    from ludovico_vae.search import frame_losses
    model, frames = trained_on_chords(**overrides)
    nearest = model.encode_indices(frames)
    model.config.search_candidates, model.config.search_sweeps = 8, 2
    searched = model.encode_indices(frames)
    assert searched.shape == nearest.shape and searched.dtype == nearest.dtype
    before = frame_losses(model, model.decode_indices(nearest), frames)
    after = frame_losses(model, model.decode_indices(searched), frames)
    assert (after <= before + 1e-4).all()
    assert after.sum() < before.sum(), "the search should find better codes for an under-trained model"
    changed = (searched != nearest).any(1)
    assert (after[changed] < before[changed]).all(), "a frame's codes change only for a lower loss"
    assert torch.equal(model.encode_indices(frames), searched), "the search is deterministic"


def test_search_in_bf16_rebuilds_better_than_the_nearest_codes_and_repeats():
    from ludovico_vae.search import frame_losses
    model, frames = trained_on_chords()
    nearest = model.encode_indices(frames)
    model.config.search_candidates, model.config.search_sweeps = 8, 2
    in_fp32 = frame_losses(model, model.decode_indices(model.encode_indices(frames)), frames).sum()
    model.config.search_bf16 = True
    searched = model.encode_indices(frames)
    before = frame_losses(model, model.decode_indices(nearest), frames).sum()
    after = frame_losses(model, model.decode_indices(searched), frames).sum()  # judged in fp32
    assert after < before and after < in_fp32 + 0.2 * (before - in_fp32), "about as good as the fp32 search"
    assert torch.equal(model.encode_indices(frames), searched), "the bf16 search is deterministic"


def test_search_of_one_candidate_or_an_exact_frame_keeps_the_nearest_codes():
    model, frames = trained_on_chords()
    nearest = model.encode_indices(frames)
    model.config.search_candidates = 1
    assert torch.equal(model.encode_indices(frames), nearest)
    # a frame the nearest codes rebuild cell for cell is not searched: a model's own decodings
    # are mostly such frames
    model.config.search_candidates = 0
    rebuilt = model.decode_indices(nearest, binary=True)
    again = model.encode_indices(rebuilt)
    exact = (model.decode_indices(again, binary=True) == rebuilt).flatten(1).all(1)
    assert exact.any()
    model.config.search_candidates = 8
    assert torch.equal(model.encode_indices(rebuilt)[exact], again[exact])


def test_seeded_training_is_repeatable():
    frames = sparse_frames(8)
    runs = []
    for _ in range(2):
        model = make_model(seed=123, **TINY)
        losses = train_steps(model, frames, 3)
        runs.append((losses, model.state_dict(), model.eval()(frames)["logits"]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())
    assert torch.equal(runs[0][2], runs[1][2])


needs_gloo = pytest.mark.skipif(not dist.is_available() or sys.platform != "linux",
                                reason="needs torch.distributed (gloo) and fork")


def on_ranks(worker, folder, world: int = 2) -> list:
    """Run `worker(rank, world, folder)` on `world` forked ranks; what each returned, in rank order.

    Each rank joins a gloo process group first and leaves it afterwards; fork, as DataLoader
    workers do, so the children need not import torch again.
    """
    mp.start_processes(_on_rank, args=(worker, world, str(folder)), nprocs=world, start_method="fork")
    return [torch.load(folder / f"rank{r}.pt") for r in range(world)]


def _on_rank(rank: int, worker, world: int, folder: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=world)
    try:
        torch.save(worker(rank), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _ema_worker(rank: int) -> tuple:
    torch.manual_seed(0)  # same initial codebook on every rank, as DDP would broadcast
    synced = VectorQuantizer(8, 4, decay=0.5, dead_code_threshold=0.0).train()
    restarting = VectorQuantizer(8, 4, decay=0.5, dead_code_threshold=1.0).train()
    restarting.codebook.fill_(1e3)  # every code dead: all are replaced at the first step
    data = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
    for _ in range(3):
        z = torch.randn(32, 4, generator=data)
        synced(z)
        restarting(z)
    return synced.state_dict(), restarting.state_dict()


@needs_gloo
def test_ema_is_all_reduced_across_ranks(tmp_path):
    """Two ranks end with the codebook one process gets from both ranks' batches together."""
    world = 2
    (synced0, restart0), (synced1, restart1) = on_ranks(_ema_worker, tmp_path, world)
    for name in synced0:
        assert torch.equal(synced0[name], synced1[name]), name
        assert torch.equal(restart0[name], restart1[name]), name
    assert restart0["codebook"].abs().max() < 100, "dead codes restarted identically on both ranks"

    torch.manual_seed(0)
    single = VectorQuantizer(8, 4, decay=0.5, dead_code_threshold=0.0).train()
    gens = [torch.Generator().manual_seed(100 + r) for r in range(world)]
    for _ in range(3):
        single(torch.cat([torch.randn(32, 4, generator=g) for g in gens]))
    for name, value in single.state_dict().items():
        torch.testing.assert_close(synced0[name], value, rtol=1e-5, atol=1e-5)


def _usage_quantizer() -> VectorQuantizer:
    return quantizer_with(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), usage_weight=1.0)


def _usage_batch(rank: int) -> torch.Tensor:
    return torch.randn(16, 4, generator=torch.Generator().manual_seed(100 + rank))


def _usage_worker(rank: int) -> tuple:
    z = _usage_batch(rank).requires_grad_()
    loss = _usage_quantizer().usage_loss(z)
    loss.backward()
    return loss.detach(), z.grad


@needs_gloo
def test_usage_loss_spans_every_ranks_batch(tmp_path):
    """Each rank's loss is the whole batch's, and DDP's mean of the ranks' gradients is one process's."""
    world = 2
    (loss0, grad0), (loss1, grad1) = on_ranks(_usage_worker, tmp_path, world)
    z = torch.cat([_usage_batch(r) for r in range(world)]).requires_grad_()
    loss = _usage_quantizer().usage_loss(z)
    loss.backward()
    torch.testing.assert_close(loss0, loss.detach())
    torch.testing.assert_close(loss1, loss.detach())
    torch.testing.assert_close(torch.cat([grad0, grad1]) / world, z.grad)
