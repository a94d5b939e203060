"""Invariants of the small GPT: shapes, causality, the cached decoder against full forwards,
sampling (seeded, filtered, distributed as the softmax says), extra inputs, config checks, and
training (a tiny model overfits one batch; no 1-D parameter is decayed).

Models are tiny (block_size 8, n_embd 16-32) so that the whole file runs in a few seconds; the
cached-decoder tests run far past block_size to cover the rolling window.
"""
from __future__ import annotations

import pytest
import torch

from mingpt.model import GPT, GPTConfig, KVCacheDecoder
from mingpt.trainer import Trainer, TrainerConfig, make_optimizer

TINY = dict(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=16, dropout=0.0)


@pytest.fixture(autouse=True)
def one_thread():
    """Tensors this small only wait on intra-op threads, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0, std: float = 0.3, **overrides) -> GPT:
    """A tiny GPT in eval mode with large random weights, so that logits differ clearly by input."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
        if model.config.token_feature_dim:
            model.token_features.normal_(0.0, 1.0)
    return model


def random_extras(config: GPTConfig, B: int, T: int, seed: int = 1) -> torch.Tensor | None:
    if not config.extra_vocab_sizes:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, n, (B, T), generator=g) for n in config.extra_vocab_sizes], dim=-1)


def random_tokens(config: GPTConfig, B: int, T: int, seed: int = 2) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ config

@pytest.mark.parametrize("field, value", [
    ("vocab_size", 0), ("block_size", -1), ("n_layer", 0), ("n_head", 0), ("n_embd", 0),
    ("n_embd", 18),  # not divisible by n_head=4
    ("n_embd", 12),  # head size 3 is odd: rope turns pairs
    ("n_kv_head", 3),  # does not divide n_head=4
    ("n_kv_head", 0), ("dropout", 1.0), ("dropout", -0.1), ("extra_vocab_sizes", (4, 0)),
    ("rope_base", 1.0), ("vocab_size", 2.5), ("token_feature_dim", -1), ("token_feature_dim", True),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GPTConfig(**{**TINY, field: value})


def test_config_round_trips_and_rejects_unknown_keys():
    config = GPTConfig(**TINY, extra_vocab_sizes=[16, 4])
    assert config.extra_vocab_sizes == (16, 4)
    assert GPTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="n_layers"):
        GPTConfig.from_dict({"n_layers": 3})


# ------------------------------------------------------------------------------------------ forward

@pytest.mark.parametrize("T", [1, 5, 8, 13])  # 13 > block_size: sliding-window attention
def test_forward_shapes(T):
    model = tiny_model()
    idx = random_tokens(model.config, 3, T)
    out = model(idx)
    assert out["logits"].shape == (3, 1, 11) and out["loss"] is None
    out = model(idx, targets=idx)
    assert out["logits"].shape == (3, T, 11) and out["loss"].shape == ()
    assert torch.allclose(model(idx)["logits"][:, 0], out["logits"][:, -1], atol=1e-5)


@pytest.mark.parametrize("T, t", [(8, 3), (8, 0), (20, 11)])
def test_changing_a_future_token_leaves_earlier_logits_alone(T, t):
    model = tiny_model()
    idx = random_tokens(model.config, 2, T)
    changed = idx.clone()
    changed[:, t] = (changed[:, t] + 1) % model.config.vocab_size
    a, b = model(idx, targets=idx)["logits"], model(changed, targets=changed)["logits"]
    assert torch.equal(a[:, :t], b[:, :t])
    assert not torch.allclose(a[:, t], b[:, t])


def test_attention_span_is_block_size():
    """A token block_size or more positions back no longer reaches a 1-layer model's logits."""
    model = tiny_model(n_layer=1)
    idx = random_tokens(model.config, 1, 20)
    changed = idx.clone()
    changed[:, 4] = (changed[:, 4] + 1) % model.config.vocab_size
    a, b = model(idx, targets=idx)["logits"], model(changed, targets=changed)["logits"]
    L = model.config.block_size
    assert not torch.allclose(a[:, 4 + L - 1], b[:, 4 + L - 1])
    assert torch.allclose(a[:, 4 + L:], b[:, 4 + L:], atol=1e-5)


def test_changing_dtype_keeps_the_rotations():
    model = tiny_model()
    idx = random_tokens(model.config, 2, 8)
    expected = model(idx, targets=idx)["logits"]
    assert torch.allclose(model.double()(idx, targets=idx)["logits"].float(), expected, atol=1e-5)
    assert torch.allclose(model.to(torch.float32)(idx, targets=idx)["logits"], expected, atol=1e-5)


def test_num_params_counts_the_tied_head_once():
    model = GPT(GPTConfig(**TINY))
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.num_params() == sum(p.numel() for p in model.parameters())
    assert model.num_params() < sum(p.numel() for p in model.state_dict().values())


# ------------------------------------------------------------------------------- the cached decoder

def cached_logits(model: GPT, idx: torch.Tensor, extras, T0: int) -> torch.Tensor:
    """Prefill idx[:, :T0], then step through the rest: (B, T - T0 + 1, V) logits, one per step."""
    decoder = KVCacheDecoder(model, idx.shape[0])
    out = [decoder.prefill(idx[:, :T0], None if extras is None else extras[:, :T0])]
    for t in range(T0, idx.shape[1]):
        out.append(decoder.step(idx[:, t], None if extras is None else extras[:, t]))
    return torch.stack(out, dim=1)


DECODER_CASES = [
    dict(),
    dict(n_kv_head=1),
    dict(n_kv_head=2, bias=True),
    dict(n_layer=3, extra_vocab_sizes=(4, 3)),
    dict(token_feature_dim=3),
]


@pytest.mark.parametrize("overrides", DECODER_CASES)
@pytest.mark.parametrize("T0", [1, 5, 8])
def test_cached_steps_equal_the_sliding_window_forward(overrides, T0):
    """Every cached step, far past block_size, equals the full forward with windowed attention."""
    model = tiny_model(**overrides)
    B, T = 2, 30
    idx, extras = random_tokens(model.config, B, T), random_extras(model.config, B, T)
    steps = cached_logits(model, idx, extras, T0)
    full = model(idx, targets=idx, extras=extras)["logits"][:, T0 - 1:]
    assert torch.allclose(steps, full, atol=1e-4), (steps - full).abs().max()


@pytest.mark.parametrize("overrides", DECODER_CASES)
def test_cached_steps_equal_a_fresh_forward_over_the_context(overrides):
    """Within the first block_size tokens (any depth), and at any length for one layer, a cached
    step equals a fresh forward over the last block_size tokens: nothing is recomputed, and
    nothing differs from what training saw."""
    model = tiny_model(**overrides)
    one_layer = tiny_model(**{**overrides, "n_layer": 1})
    B, T, L = 2, 25, model.config.block_size
    idx, extras = random_tokens(model.config, B, T), random_extras(model.config, B, T)
    for m, last in ((model, L), (one_layer, T)):
        steps = cached_logits(m, idx[:, :last], None if extras is None else extras[:, :last], 1)
        for t in range(1, last + 1):
            s = max(0, t - L)
            fresh = m(idx[:, s:t], extras=None if extras is None else extras[:, s:t])["logits"][:, -1]
            assert torch.allclose(steps[:, t - 1], fresh, atol=1e-4), (m.config.n_layer, t)


@pytest.mark.parametrize("overrides", DECODER_CASES)
def test_sequences_sharing_a_context_are_prefilled_once_and_step_as_if_alone(overrides, monkeypatch):
    """Candidates drawn after the same bars share their context: it is read in once (the forward
    runs on the distinct rows only) and every sequence then steps exactly as on its own."""
    model = tiny_model(**overrides)
    T0, T = 5, 20
    idx, extras = random_tokens(model.config, 2, T), random_extras(model.config, 2, T)
    rows = [0, 1, 0, 0, 1]  # two distinct contexts, each repeated; what follows them differs
    batch = idx[rows].clone()
    batch[:, T0:] = random_tokens(model.config, len(rows), T - T0, seed=9)
    batch_extras = None if extras is None else extras[rows]
    forward_batches = []
    forward = GPT.forward
    monkeypatch.setattr(GPT, "forward", lambda self, idx, *a, **k: forward_batches.append(len(idx)) or forward(self, idx, *a, **k))
    together = cached_logits(model, batch, batch_extras, T0)
    assert forward_batches == [2]
    for i in range(len(rows)):
        alone = cached_logits(model, batch[i:i + 1], None if extras is None else batch_extras[i:i + 1], T0)
        assert torch.allclose(together[i], alone[0], atol=1e-5), i


@pytest.mark.parametrize("overrides", [dict(), dict(n_kv_head=1, extra_vocab_sizes=(4, 3))])
@pytest.mark.parametrize("shared_context", [True, False])
def test_keep_row_makes_every_sequence_step_on_as_the_kept_one_alone(overrides, shared_context):
    """A search draws several continuations, keeps one and draws on from it: after keep_row every
    sequence steps exactly as a decoder that was fed the kept tokens alone, whether the rows shared
    their context or not, and with rounds shorter and longer than the window, wrapping around it."""
    model = tiny_model(**overrides)
    config, B, T0 = model.config, 3, 3
    contexts = random_tokens(config, 1 if shared_context else B, T0).expand(B, -1)
    rounds, kept_rows = [2, 5, 8, 1, 11, 3], [1, 0, 2, 2, 1, 0]  # 8 = block_size: one round fills it
    T = T0 + sum(rounds) + 4
    extras = random_extras(config, 1, T)
    extras = None if extras is None else extras.expand(B, -1, -1)
    decoder = KVCacheDecoder(model, B)
    decoder.prefill(contexts, None if extras is None else extras[:, :T0])
    path, t, seed = [contexts[kept_rows[0], :]], T0, 20
    for n, row in zip(rounds, kept_rows):
        drawn = random_tokens(config, B, n, seed=seed)  # each sequence its own tokens
        seed += 1
        for i in range(n):
            decoder.step(drawn[:, i], None if extras is None else extras[:, t + i])
        decoder.keep_row(row)
        for layer in decoder.layers:
            assert torch.equal(layer.kv, layer.kv[row:row + 1].expand_as(layer.kv))
        path.append(drawn[row])
        t += n
    after = random_tokens(config, 1, 4, seed=99)[0]
    alone = KVCacheDecoder(model, 1)
    alone.prefill(path[0][None], None if extras is None else extras[:1, :T0])
    for i, tok in enumerate(torch.cat(path[1:])):
        alone.step(tok[None], None if extras is None else extras[:1, T0 + i])
    for i in range(len(after)):
        x = None if extras is None else extras[:, t + i]
        together = decoder.step(after[i].expand(B), x)
        single = alone.step(after[i][None], None if x is None else x[:1])
        assert torch.allclose(together, single.expand(B, -1), atol=1e-5), i


@pytest.mark.parametrize("T0", [1, 3, 12])  # 12 > block_size: the prompt is cut to its last 8
def test_greedy_generation_equals_uncached_recomputation(T0):
    model = tiny_model(n_kv_head=2, extra_vocab_sizes=(5,))
    B, n = 3, 40
    idx = random_tokens(model.config, B, T0)
    extras = random_extras(model.config, B, T0 + n)
    out = model.generate(idx, n, top_k=1, extras=extras)
    assert out.shape == (B, T0 + n) and torch.equal(out[:, :T0], idx)
    seq = idx[:, -model.config.block_size:]
    offset = T0 - seq.shape[1]
    for _ in range(n):  # recompute everything from scratch for every token
        logits = model(seq, targets=seq, extras=extras[:, offset:offset + seq.shape[1]])["logits"][:, -1]
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out[:, T0:], seq[:, -n:])


def test_a_long_prompt_is_cut_to_its_last_block_size_tokens():
    model = tiny_model()
    idx = random_tokens(model.config, 2, 20)
    a = model.generate(idx, 10, generator=torch.Generator().manual_seed(5))
    b = model.generate(idx[:, -8:], 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[:, 20:], b[:, 8:])


# ------------------------------------------------------------------------------------------ sampling

def sample(model, seed, n=30, B=2, **kwargs):
    idx = random_tokens(model.config, B, 3)
    return model.generate(idx, n, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_seeded_sampling_repeats_and_seeds_differ():
    model = tiny_model(std=0.1)
    assert torch.equal(sample(model, 0), sample(model, 0))
    assert not torch.equal(sample(model, 0), sample(model, 1))


@pytest.mark.parametrize("kwargs", [dict(top_k=1), dict(top_p=1e-6), dict(top_k=1, temperature=5.0)])
def test_a_filter_keeping_one_token_is_greedy(kwargs):
    model = tiny_model()
    greedy = sample(model, 0, top_k=1)
    assert torch.equal(sample(model, 3, **kwargs), greedy)


@pytest.mark.parametrize("kwargs", [dict(top_k=11), dict(top_k=1000), dict(top_p=1.0)])
def test_filters_keeping_every_token_have_no_effect(kwargs):
    model = tiny_model(std=0.1)
    assert torch.equal(sample(model, 4, **kwargs), sample(model, 4))


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, None, None), (0.5, None, None), (2.0, 3, None),
                                                       (1.0, None, 0.6)])
def test_sampling_follows_the_filtered_softmax(temperature, top_k, top_p):
    """One new token for a batch of 20,000 copies of one prompt: frequencies match the softmax."""
    model = tiny_model(std=0.15)
    prompt = random_tokens(model.config, 1, 4)
    B = 20_000
    new = model.generate(prompt.expand(B, -1), 1, temperature=temperature, top_k=top_k, top_p=top_p,
                         generator=torch.Generator().manual_seed(0))[:, -1]
    logits = model(prompt)["logits"][0, -1] / temperature
    order = logits.argsort(descending=True)
    keep = torch.zeros_like(logits, dtype=torch.bool)
    if top_k is not None:
        keep[order[:top_k]] = True
    else:
        keep[:] = True
    if top_p is not None:
        probs = logits[order].softmax(-1)
        keep[order[(probs.cumsum(-1) - probs) >= top_p]] = False
    expected = logits.masked_fill(~keep, float("-inf")).softmax(-1)
    freq = torch.bincount(new, minlength=model.config.vocab_size).float() / B
    assert torch.all(freq[~keep] == 0)
    assert torch.allclose(freq, expected, atol=0.015), (freq, expected)


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"), (dict(max_new_tokens=-1), "max_new_tokens"), (dict(num_threads=0), "num_threads"),
])
def test_invalid_sampling_arguments_raise(kwargs, match):
    model = tiny_model()
    idx = random_tokens(model.config, 1, 2)
    with pytest.raises(ValueError, match=match):
        model.generate(idx, **{"max_new_tokens": 3, **kwargs})


def test_generate_rejects_an_empty_prompt_and_restores_train_mode_and_threads():
    model = tiny_model().train()
    with pytest.raises(ValueError, match="at least one token"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    torch.set_num_threads(2)
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 3)
    assert model.training and not out.is_inference() and torch.get_num_threads() == 2
    model.eval().generate(torch.zeros(1, 1, dtype=torch.long), 3, num_threads=None)
    assert not model.training
    assert torch.equal(model.generate(out, 0), out)


def test_the_decoder_refuses_reduced_precision():
    with pytest.raises(ValueError, match="float32"):
        KVCacheDecoder(tiny_model().to(torch.bfloat16), 1)


# ------------------------------------------------------------------------------------ extra inputs

def test_extras_are_used_and_checked():
    model = tiny_model(extra_vocab_sizes=(4, 3))
    idx = random_tokens(model.config, 2, 6)
    extras = random_extras(model.config, 2, 6)
    for i in range(2):
        changed = extras.clone()
        changed[:, -1, i] = (changed[:, -1, i] + 1) % model.config.extra_vocab_sizes[i]
        assert not torch.allclose(model(idx, extras=extras)["logits"], model(idx, extras=changed)["logits"])
    with pytest.raises(ValueError, match="extras"):
        model(idx)
    with pytest.raises(ValueError, match="extras"):
        model(idx, extras=extras[..., :1])
    with pytest.raises(ValueError, match="extras"):
        model.generate(idx, 4, extras=extras)  # covers the prompt only, not the new tokens
    with pytest.raises(ValueError, match="extras"):
        tiny_model()(idx, extras=extras)


def test_token_features_are_part_of_a_tokens_embedding_and_saved():
    model = tiny_model(token_feature_dim=3)
    idx = random_tokens(model.config, 2, 6)
    logits = model(idx)["logits"]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert "token_features" in state
    with torch.no_grad():
        model.token_features[idx[:, -1]] += 1.0
    assert not torch.allclose(model(idx)["logits"], logits)
    again = GPT(model.config).eval()
    again.load_state_dict(state)
    assert torch.allclose(again(idx)["logits"], logits)


def test_extras_steer_generation():
    model = tiny_model(extra_vocab_sizes=(4,))
    idx = random_tokens(model.config, 2, 3)
    extras = random_extras(model.config, 2, 23)
    a = model.generate(idx, 20, top_k=1, extras=extras)
    b = model.generate(idx, 20, top_k=1, extras=(extras + 1) % 4)
    assert not torch.equal(a, b)


def test_guided_greedy_generation_equals_recomputing_the_guided_log_probabilities():
    model = tiny_model(extra_vocab_sizes=(4, 3))
    B, T0, n, guidance = 2, 3, 12, 0.7
    idx = random_tokens(model.config, B, T0)
    extras = random_extras(model.config, B, T0 + n)
    contrast = torch.stack([extras.clone(), extras.clone()])
    contrast[0, ..., 0], contrast[1, ..., 0] = (extras[..., 0] + 1) % 4, (extras[..., 0] + 3) % 4
    out = model.generate(idx, n, top_k=1, extras=extras, guidance=guidance, contrast_extras=contrast)
    seq = idx
    for _ in range(n):

        def logp(e):
            return torch.log_softmax(model(seq, targets=seq, extras=e[:, :seq.shape[1]])["logits"][:, -1], dim=-1)

        guided = logp(extras) + guidance * (logp(extras) - (logp(contrast[0]) + logp(contrast[1])) / 2)
        seq = torch.cat([seq, guided.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)
    assert not torch.equal(out, model.generate(idx, n, top_k=1, extras=extras))  # guidance changed something


def test_guidance_without_effect_leaves_sampling_alone():
    model = tiny_model(extra_vocab_sizes=(4,))
    idx, extras = random_tokens(model.config, 2, 3), random_extras(model.config, 2, 23)
    plain = model.generate(idx, 20, extras=extras, generator=torch.Generator().manual_seed(5))
    contrast = ((extras + 1) % 4)[None]
    off = model.generate(idx, 20, extras=extras, generator=torch.Generator().manual_seed(5), guidance=0.0,
                         contrast_extras=contrast)
    assert torch.equal(plain, off)  # guidance 0: the contrast is not even run
    same = model.generate(idx, 20, top_k=1, extras=extras, guidance=2.0, contrast_extras=extras[None])
    assert torch.equal(same, model.generate(idx, 20, top_k=1, extras=extras))  # contrast = condition: no pull


@pytest.mark.parametrize("kwargs, match", [
    (dict(guidance=-0.5), "guidance"), (dict(guidance=float("nan")), "guidance"), (dict(guidance=True), "guidance"),
    (dict(guidance=1.0, contrast_extras=torch.zeros(1, 2, 5, 1, dtype=torch.long)), "contrast_extras"),
])
def test_invalid_guidance_raises(kwargs, match):
    model = tiny_model(extra_vocab_sizes=(4,))
    idx, extras = random_tokens(model.config, 2, 3), random_extras(model.config, 2, 7)
    with pytest.raises(ValueError, match=match):
        model.generate(idx, 4, extras=extras, **kwargs)


# ------------------------------------------------------------------------------------------ training

def test_a_tiny_model_overfits_one_batch_with_the_trainer():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=8, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0,
                       extra_vocab_sizes=(16,))
    model = GPT(config)
    data = torch.randint(0, 8, (4, 17))
    data[:, 0] = torch.arange(4)  # distinct first tokens: every prefix names its sequence
    x, y = data[:, :-1], data[:, 1:]
    extras = torch.arange(16).expand(4, 16)[..., None]  # position as an extra input
    trainer = Trainer(model, TrainerConfig(lr=1e-2, warmup_steps=10, weight_decay=0.0), total_steps=150,
                      device="cpu")
    losses = [trainer.train_step(x, y, extras)["loss"] for _ in range(150)]
    assert losses[0] > 1.5 and losses[-1] < 0.05, (losses[0], losses[-1])
    assert torch.equal(model.generate(x[:, :1], 15, top_k=1, extras=extras[:, :16]), x)


@pytest.mark.parametrize("amp_cpu", [False, True])
def test_cpu_autocast_only_on_request_and_weights_stay_float32(amp_cpu):
    """amp_cpu runs the CPU forward under bfloat16 autocast (its products in bfloat16); the
    weights, gradients and optimizer state stay float32 either way."""
    model = tiny_model()
    products = []
    model.lm_head.register_forward_hook(lambda module, inputs, output: products.append(output.dtype))
    trainer = Trainer(model, TrainerConfig(warmup_steps=0, amp_cpu=amp_cpu), total_steps=2, device="cpu")
    idx = random_tokens(model.config, 2, 9)
    loss = trainer.train_step(idx[:, :-1], idx[:, 1:])["loss"]
    assert products == [torch.bfloat16 if amp_cpu else torch.float32] and loss == loss
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


def test_weight_decay_skips_every_one_dimensional_parameter():
    model = GPT(GPTConfig(**{**TINY, "bias": True, "extra_vocab_sizes": (4,)}))
    decay, no_decay = make_optimizer(model, TrainerConfig()).param_groups
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert ids(decay).isdisjoint(ids(no_decay))
    assert ids(decay) | ids(no_decay) == {id(p) for p in model.parameters()}
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) > 0
