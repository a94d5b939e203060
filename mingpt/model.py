"""A small decoder-only GPT: config, model, and a key/value-cached sampler for long sequences.

Owns `GPTConfig`, the transformer (`GPT`), rotary position embeddings, and `KVCacheDecoder`,
the incremental decoder that `GPT.generate` runs. It knows nothing about what the tokens mean:
an application passes token indices and, optionally, extra categorical per-token inputs (such
as a position inside some repeating unit), each with its own embedding table.

Positions are rotary (RoPE), applied to queries and keys at their absolute positions. A score
then depends only on the distance between query and key, so a key cached at position n stays
valid however far the window slides, and nothing is recomputed when it does. Learned absolute
position embeddings cannot do that: sliding the window would shift every cached key's position,
so each step would have to re-run the whole window (minGPT's sampler does), or the model would
see positions past `block_size` it never trained on.

Attention span is `block_size` tokens, the current one included, in training and in sampling:
a forward over more than `block_size` tokens uses sliding-window (banded causal) attention, which
is exactly what the rolling key/value cache of `KVCacheDecoder` computes, step by step.

Shapes: B batch, T time, C n_embd, nh heads, nkv key/value heads, hs = C // nh head size,
V vocab_size, L block_size.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    """Model shape and regularisation; the defaults are the shipped transformer's (about 1.7M
    parameters with a 512-entry vocabulary). Width is what costs when sampling on a small CPU:
    `benchmarks/sampling.py --sweep` measures the whole curve."""

    vocab_size: int = 16
    block_size: int = 192  # attention span, in tokens, the current one included
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = 1  # key/value heads shared by groups of query heads; None: n_head
    n_embd: int = 192
    dropout: float = 0.1  # on the embeddings and on each residual branch
    bias: bool = False  # biases in linear layers and layer norms
    extra_vocab_sizes: tuple[int, ...] = ()  # one embedding table per extra per-token input
    token_feature_dim: int = 0  # fixed features of each token (the `token_features` buffer), projected in
    rope_base: float = 10000.0  # rotary wavelengths run from 2 pi up to 2 pi * rope_base positions

    def __post_init__(self):
        self.extra_vocab_sizes = tuple(self.extra_vocab_sizes)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _check_positive_int(name, getattr(self, name))
        if self.n_kv_head is not None:
            _check_positive_int("n_kv_head", self.n_kv_head)
            if self.n_head % self.n_kv_head:
                raise ValueError(f"n_head={self.n_head} must be divisible by n_kv_head={self.n_kv_head}")
        for v in self.extra_vocab_sizes:
            _check_positive_int("extra_vocab_sizes", v)
        if (not isinstance(self.token_feature_dim, int) or isinstance(self.token_feature_dim, bool)
                or self.token_feature_dim < 0):
            raise ValueError(f"token_feature_dim must be a non-negative integer, got {self.token_feature_dim!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd // n_head = {self.n_embd // self.n_head} must be even: rotary "
                             "embeddings turn pairs of channels")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not self.rope_base > 1.0:
            raise ValueError(f"rope_base must be greater than 1, got {self.rope_base}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Build from a dict (a checkpoint, YAML); an unknown key is an error naming it."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown GPTConfig key(s): {', '.join(unknown)}")
        return cls(**d)


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def rope_rotations(positions: torch.Tensor, head_size: int, base: float) -> torch.Tensor:
    """(T,) integer positions -> (T, hs/2) unit complex64 rotations e^(i * angle).

    Angles are computed in float64 because positions grow without bound while sampling: in
    float32 the angle of position 100,000 would be off by up to 0.004 rad, and the
    relative-position property with it.
    """
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
    angles = positions.detach().to("cpu", torch.float64)[:, None] * inv_freq
    return torch.polar(torch.ones_like(angles), angles).to(device=positions.device, dtype=torch.complex64)


def apply_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x by the angles of their position.

    x (B, T, n, hs) with rot (T, 1, hs/2) -> (B, T, n, hs). One complex multiply: fewer passes
    over the activations than the `rotate_half` form.
    """
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * rot).flatten(-2).type_as(x)


def sliding_window_mask(T: int, window: int, device=None) -> torch.Tensor:
    """(T, T) bool, True where query t may attend to key s: t - window < s <= t."""
    t = torch.arange(T, device=device)
    offset = t[:, None] - t[None, :]
    return (offset >= 0) & (offset < window)


class CausalSelfAttention(nn.Module):
    """Causal self-attention with rotary positions, one fused q, k, v projection, and grouped
    key/value heads.

    n_kv_head < n_head shares each key/value head among n_head / n_kv_head query heads (GQA;
    MQA at 1). Sampling a batch reads every cached key and value once per token, and at batch
    32 that memory traffic bounds the step: for 4 layers of n_embd 128, attention over the cache
    took 2.2 ms a step with 4 key/value heads and 0.4 ms with one.
    There is no dropout on the attention probabilities: on the CPU it takes scaled dot-product
    attention off its fused kernel and makes attention about three times slower to train; the
    embeddings and residual branches keep theirs.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.kv_heads, config.head_size
        kv = self.n_kv_head * self.head_size
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rot, mask=None, cache=None):
        """x (B, T, C), rot (T, 1, hs/2); mask None (causal) or (T, T) bool; cache receives k, v."""
        B, T, C = x.shape
        nh, nkv, hs = self.n_head, self.n_kv_head, self.head_size
        qkv = self.c_attn(x)  # (B, T, C + 2 nkv hs)
        qk = apply_rope(qkv[..., :C + nkv * hs].view(B, T, nh + nkv, hs), rot)  # rotate q and k at once
        q = qk[:, :, :nh].transpose(1, 2)  # (B, nh, T, hs)
        k = qk[:, :, nh:].transpose(1, 2)  # (B, nkv, T, hs)
        v = qkv[..., C + nkv * hs:].view(B, T, nkv, hs).transpose(1, 2)
        if cache is not None:
            cache.write_prompt(k, v)
        if nkv != nh:  # repeat rather than enable_gqa, which needs torch >= 2.5
            k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        # the tanh GELU of GPT-2 and minGPT: five times cheaper than erf on one token at a time,
        # which is what sampling runs (erf is twice as fast on big training batches; sampling wins)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, rot, mask=None, cache=None):
        x = x + self.attn(self.ln_1(x), rot, mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token (+ extra) embeddings -> n_layer blocks -> layer norm -> logits over the vocabulary."""

    def __init__(self, config: GPTConfig | None = None):
        super().__init__()
        self.config = config = config or GPTConfig()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wxe=nn.ModuleList(nn.Embedding(n, config.n_embd) for n in config.extra_vocab_sizes),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        if config.token_feature_dim:
            # what the application knows of each token (e.g. a codebook vector): tokens with
            # similar features start out near each other, so rare tokens learn from common ones
            self.register_buffer("token_features", torch.zeros(config.vocab_size, config.token_feature_dim))
            self.transformer.wfe = nn.Linear(config.token_feature_dim, config.n_embd, bias=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # tied: a token's input and output vectors agree (Press & Wolf 2017); saves V * C weights
        self.lm_head.weight = self.transformer.wte.weight
        self._rot_cache = {}  # device -> rotations of positions 0 .. block_size-1; not a buffer, so
        # that model.to(dtype) cannot cast the complex table to a real one
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale the residual branches by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Distinct parameters; the tied head and token embedding count once."""
        return sum(p.numel() for p in self.parameters())

    def _rotations(self, T: int, start: int = 0, device=None) -> torch.Tensor:
        """(T, 1, hs/2) rotations of positions start .. start + T - 1."""
        device = torch.device(device or "cpu")
        if start == 0 and T <= self.config.block_size:
            if device not in self._rot_cache:
                with torch.inference_mode(False):  # a normal tensor, usable in training afterwards
                    self._rot_cache[device] = self._rope(0, self.config.block_size, device)
            return self._rot_cache[device][:T]
        return self._rope(start, T, device)

    def _rope(self, start: int, T: int, device) -> torch.Tensor:
        positions = torch.arange(start, start + T, device=device)
        return rope_rotations(positions, self.config.head_size, self.config.rope_base)[:, None, :]

    def _check_inputs(self, idx: torch.Tensor, extras: torch.Tensor | None) -> None:
        n_extra = len(self.config.extra_vocab_sizes)
        if idx.dim() != 2:
            raise ValueError(f"idx must be (B, T), got shape {tuple(idx.shape)}")
        if n_extra and extras is None:
            raise ValueError(f"extras (B, T, {n_extra}) required: the config has extra_vocab_sizes "
                             f"{self.config.extra_vocab_sizes}")
        if not n_extra and extras is not None:
            raise ValueError("extras given, but the config has no extra_vocab_sizes")
        if extras is not None and (extras.dim() != 3 or extras.shape[-1] != n_extra):
            raise ValueError(f"extras must be (B, T, {n_extra}), got shape {tuple(extras.shape)}")

    def embed(self, idx: torch.Tensor, extras: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T), extras (B, T, n_extra) -> (B, T, C): the sum of all embeddings."""
        x = self.transformer.wte(idx)
        if self.config.token_feature_dim:
            x = x + self.transformer.wfe(self.token_features[idx])
        for i, table in enumerate(self.transformer.wxe):
            x = x + table(extras[..., i])
        return x

    def forward(self, idx, targets=None, extras=None, cache=None) -> dict:
        """idx (B, T) -> {"logits": (B, T, V) with targets, else (B, 1, V) of the last position;
        "loss": cross entropy over targets (B, T) (-1 ignored), or None}.

        T may exceed block_size: attention is then a sliding window of block_size tokens, the
        reference the cached decoder matches. `cache` (a `KVCacheDecoder`) receives the keys and
        values of every layer; it is how the decoder prefills.
        """
        self._check_inputs(idx, extras)
        if extras is not None and extras.shape[:2] != idx.shape:
            raise ValueError(f"extras {tuple(extras.shape)} do not match idx {tuple(idx.shape)}")
        T = idx.shape[1]
        mask = None if T <= self.config.block_size else sliding_window_mask(T, self.config.block_size, idx.device)
        rot = self._rotations(T, device=idx.device)
        x = self.transformer.drop(self.embed(idx, extras))
        for i, block in enumerate(self.transformer.h):
            x = block(x, rot, mask, None if cache is None else cache.layers[i])
        x = self.transformer.ln_f(x)
        if targets is None:
            return {"logits": self.lm_head(x[:, [-1], :]), "loss": None}
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return {"logits": logits, "loss": loss}

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 generator=None, extras=None, *,
                 num_threads: int | None = 1, guidance: float = 0.0, contrast_extras=None) -> torch.Tensor:
        """Continue idx (B, T0), T0 >= 1, by max_new_tokens sampled tokens -> (B, T0 + max_new_tokens).

        extras, when the config has extra inputs, is (B, T0 + max_new_tokens, n_extra): extras[:, t]
        goes with token t, so the last row is never read (no token follows it). To condition a
        prediction on the slot of the token being predicted, pass the extras shifted by one.

        The prompt's last block_size tokens are the context (a longer prompt is cut); they are
        prefilled in one forward, then each new token costs one cached step whose attention spans
        the last block_size tokens, as in training, however long the sequence grows. An empty prompt
        is refused: there is no start token in a generic vocabulary, so the caller supplies one.

        Sampling draws from softmax(logits / temperature) restricted to the top_k tokens and to the
        smallest set holding top_p of the probability, by inverting its cumulative distribution
        at one uniform draw per sequence (from `generator`, 256 steps' worth at a time; a list of B
        generators gives each sequence its own, so what it draws does not depend on its batch). The
        Gumbel-max trick that torch.multinomial uses draws a number and takes two logarithms for
        every token of the vocabulary, every step: at a vocabulary of 1,024 and batch 32 that cost
        three times what the softmax and cumulative sum do here (400 against 120 us a step).
        A seeded generator repeats a run exactly.

        Guidance (classifier-free guidance over the extra inputs): with `contrast_extras`
        (K, B, T0 + max_new_tokens, n_extra), other values of the extras, each step draws from
        log p + guidance * (log p - mean_k log p_k), where p_k is the model's distribution under the
        k-th contrast. It steers away from what the model would write under those conditions;
        the K contrasts run beside the sequences in one batch, so a step costs a batch of B(1 + K).

        num_threads: torch's intra-op threads while sampling (restored afterwards; None keeps the
        current setting). A step's ops are tiny, and each one that forks threads waits for all of
        them at its end: on a machine whose cores are busy with anything else, that wait is a
        scheduler tick, and sampling ran 20 times slower on two threads than on one (batch 1:
        ~400 against ~7,000 tokens/s). Since torch's setting is process-wide, it also holds for
        other threads of the process while this runs.
        """
        self._check_inputs(idx, extras)
        B, T0 = idx.shape
        if T0 < 1:
            raise ValueError("idx must hold at least one token (B, T0 >= 1)")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or isinstance(num_threads, bool)
                                        or num_threads < 1):
            raise ValueError(f"num_threads must be None or a positive integer, got {num_threads!r}")
        if extras is not None and extras.shape[:2] != (B, T0 + max_new_tokens):
            raise ValueError(f"extras must be (B, T0 + max_new_tokens, n_extra) = ({B}, {T0 + max_new_tokens}, "
                             f"{extras.shape[-1]}), got {tuple(extras.shape)}")
        if not (isinstance(guidance, (int, float)) and not isinstance(guidance, bool) and math.isfinite(guidance)
                and guidance >= 0):
            raise ValueError(f"guidance must be a non-negative number, got {guidance!r}")
        if contrast_extras is not None and (extras is None or contrast_extras.dim() != 4
                                            or contrast_extras.shape[1:] != extras.shape):
            raise ValueError(f"contrast_extras must be (K, *extras.shape) = (K, {', '.join(map(str, extras.shape))})"
                             if extras is not None else "contrast_extras needs extras to contrast with")
        if not guidance or contrast_extras is None or len(contrast_extras) == 0:
            contrast_extras = None
        if max_new_tokens == 0:
            return idx.clone()
        top_k = None if top_k is None or top_k >= self.config.vocab_size else top_k
        top_p = None if top_p is None or top_p >= 1 else float(top_p)
        was_training, threads = self.training, torch.get_num_threads()
        self.eval()
        if num_threads is not None and num_threads != threads:
            torch.set_num_threads(num_threads)
        try:
            with torch.inference_mode():
                new = self._sample(idx, max_new_tokens, float(temperature), top_k, top_p, generator, extras,
                                   float(guidance), contrast_extras)
        finally:
            self.train(was_training)
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        return torch.cat([idx, new], dim=1)  # made outside inference mode: an ordinary tensor

    def _sample(self, idx, n_new, temperature, top_k, top_p, generator, extras, guidance=0.0,
                contrast_extras=None) -> torch.Tensor:
        """The sampling loop of `generate`: (B, n_new) new tokens."""
        B, T0 = idx.shape
        start = max(0, T0 - self.config.block_size)
        copies = 1
        if contrast_extras is not None:  # the contrasts ride along as more rows of one batch
            copies = 1 + len(contrast_extras)
            extras = torch.cat([extras[None], contrast_extras]).flatten(0, 1)  # (copies * B, T, n_extra)
            idx = idx.repeat(copies, 1)
        decoder = KVCacheDecoder(self, copies * B, temperature)
        logits = decoder.prefill(idx[:, start:], None if extras is None else extras[:, start:T0])
        logits = _guided(logits, B, guidance) if copies > 1 else logits
        filtered = top_k is not None or top_p is not None
        chunk = min(n_new, 256)  # steps of uniform draws and extra embeddings made at a time
        tokens, done, extra_rows = [], [], None
        for i in range(n_new):
            if i % chunk == 0:
                draws = uniform_draws(chunk, B, generator, idx.device).unbind(0)
                if extras is not None:  # new token i sits at T0 + i and is fed with its extras
                    extra_rows = decoder.embed_extras(extras[:, T0 + i:T0 + i + chunk]).unbind(1)
            if filtered:
                logits = filter_logits(logits, top_k, top_p)
            tok = draw_tokens(logits, draws[i % chunk])  # (B,)
            tokens.append(tok)
            if len(tokens) == chunk:  # one tensor per chunk: a tensor per token costs ~1 KB each
                done.append(torch.stack(tokens, dim=1))
                tokens = []
            if i + 1 < n_new:
                extra = None if extra_rows is None else extra_rows[i % chunk]
                if copies == 1:
                    logits = decoder.fast_step(tok, extra)
                else:
                    logits = _guided(decoder.fast_step(tok.repeat(copies), extra), B, guidance)
        return torch.cat(done + ([torch.stack(tokens, dim=1)] if tokens else []), dim=1)


def uniform_draws(steps: int, B: int, generator, device) -> torch.Tensor:
    """(steps, B, 1) uniform draws in [0, 1 - 2^-22) for `draw_tokens`: from one generator, or
    column b from the b-th of a list.

    Below 1 - 2^-22, u * total always rounds to below the total (the largest float32 under 1 times
    a total near 1 can round up to it), so the draw lands on a token of positive probability; the
    last token's chance shrinks by 2e-7."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != B:
            raise ValueError(f"one generator per sequence: {B} sequences, {len(generator)} generators")
        u = torch.stack([torch.rand(steps, 1, generator=g, device=g.device) for g in generator], dim=1).to(device)
    else:
        u = torch.rand(steps, B, 1, generator=generator, device=device)
    return u.mul_(1 - 2 ** -22)


def draw_tokens(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B, V) logits, (B, 1) uniform draws from `uniform_draws` -> (B,) tokens drawn from the
    softmax: the first token whose cumulative probability passes u times the total. Never one of
    probability 0 (a filtered token), whose cumulative equals its predecessor's, which passed first.
    One softmax, one running sum and one search: cheaper than torch.multinomial for one draw."""
    cdf = torch.softmax(logits, dim=-1).cumsum_(dim=-1)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]


def _guided(logits: torch.Tensor, B: int, guidance: float) -> torch.Tensor:
    """(copies * B, V) logits, the sequences' rows first -> (B, V) guided log-probabilities."""
    logp = torch.log_softmax(logits, dim=-1).unflatten(0, (-1, B))  # (copies, B, V)
    return logp[0] + guidance * (logp[0] - logp[1:].mean(dim=0))


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """(B, V) logits with everything outside the top_k and the top_p nucleus set to -inf."""
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p  # the mass before a token already suffices
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(outside, float("-inf")))
    return logits


def _detached(p: torch.Tensor | None) -> torch.Tensor | None:
    return None if p is None else p.detach()


def _layer_norm_args(ln: nn.LayerNorm) -> tuple:
    """(weight, bias, eps) for F.layer_norm."""
    return _detached(ln.weight), _detached(ln.bias), ln.eps


class _CachedLayer:
    """One block's weights, laid out for one-token steps, and its rolling key/value cache.

    Weights: the fused q, k, v projection with its q rows scaled by 1/sqrt(hs), so attention
    needs no scaling op, its k and v rows interleaved per head to match the cache, and every
    projection transposed so that the residual ones add into x in place (`addmm_`).
    Cache: (B, nkv, L, 2 hs), each key beside its value; position p lives in slot p % L. One
    complex multiply rotates the new key (its value is multiplied by 1) and writes both into
    their slot. Every op writes into buffers made once here, through views made once here: at
    batch 1 a step costs its number of ops and the weights it streams from memory, not its
    arithmetic.
    """

    def __init__(self, block: Block, config: GPTConfig, batch_size: int):
        B, C, nh, nkv = batch_size, config.n_embd, config.n_head, config.kv_heads
        hs, L = config.head_size, config.block_size
        self.C, self.L, self.half = C, L, hs // 2
        attn, mlp = block.attn, block.mlp

        def qkv_rows(t: torch.Tensor) -> torch.Tensor:
            """Rows q, k, v -> q scaled, then k and v of each key/value head side by side."""
            q, k, v = t.split([C, nkv * hs, nkv * hs])
            kv = torch.stack([k.reshape(nkv, hs, -1), v.reshape(nkv, hs, -1)], dim=1)
            return torch.cat([q / math.sqrt(hs), kv.reshape(2 * nkv * hs, -1)]).reshape(-1, *t.shape[1:])

        self.w_qkv = qkv_rows(attn.c_attn.weight.detach()).t().contiguous()  # (C, C + 2 nkv hs) for h @ w
        self.b_qkv = None if attn.c_attn.bias is None else qkv_rows(attn.c_attn.bias.detach()[:, None])[:, 0]
        self.w_o, self.b_o = attn.c_proj.weight.detach().t().contiguous(), _detached(attn.c_proj.bias)  # (C, C)
        self.w_fc, self.b_fc = mlp.c_fc.weight.detach().t().contiguous(), _detached(mlp.c_fc.bias)  # (C, 4C)
        self.w_proj, self.b_proj = mlp.c_proj.weight.detach().t().contiguous(), _detached(mlp.c_proj.bias)
        self.ln_1, self.ln_2 = _layer_norm_args(block.ln_1), _layer_norm_args(block.ln_2)
        new = dict(dtype=self.w_qkv.dtype, device=self.w_qkv.device)
        self.kv = torch.zeros(B, nkv, L, 2 * hs, **new)
        kv3 = self.kv.view(B * nkv, L, 2 * hs)
        self.kT3, self.v3 = kv3[..., :hs].transpose(1, 2), kv3[..., hs:]  # (B*nkv, hs, L), (B*nkv, L, hs)
        self.kv_slots = [torch.view_as_complex(s.view(B, nkv, hs, 2)) for s in self.kv.unbind(2)]
        self.qkv = torch.empty(B, C + 2 * nkv * hs, **new)
        self.q_new = torch.view_as_complex(self.qkv[:, :C].view(B, nh, hs // 2, 2))
        self.kv_new = torch.view_as_complex(self.qkv[:, C:].view(B, nkv, hs, 2))
        q = torch.empty(B, nh, hs, **new)
        self.q_rot = torch.view_as_complex(q.view(B, nh, hs // 2, 2))
        self.q3 = q.view(B * nkv, nh // nkv, hs)  # the query heads of each key/value head
        self.att = torch.empty(B * nkv, nh // nkv, L, **new)
        self.y = torch.empty(B * nkv, nh // nkv, hs, **new)
        self.y2 = self.y.view(B, C)
        self.filled = 0  # positions written so far, up to L
        self.prompt_rows = None  # set by `KVCacheDecoder.prefill` when sequences share a context

    def write_prompt(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v (B', nkv, T, hs) of positions 0 .. T-1, T <= L, from the prefill forward: one row per
        sequence, or per distinct context, which `prompt_rows` (B,) then spreads to the sequences."""
        if self.prompt_rows is not None:
            k, v = k[self.prompt_rows], v[self.prompt_rows]
        T, hs = k.shape[2], k.shape[3]
        self.kv[:, :, :T, :hs] = k
        self.kv[:, :, :T, hs:] = v
        self.filled = T

    def step(self, x: torch.Tensor, rot: torch.Tensor, slot: int) -> torch.Tensor:
        """x (B, C) of the token at the position of `slot`, rot (hs,) its key-and-value rotation
        (hs/2 angles, then hs/2 ones) -> x, updated in place."""
        h = F.layer_norm(x, (self.C,), *self.ln_1)
        if self.b_qkv is None:
            torch.mm(h, self.w_qkv, out=self.qkv)  # (B, C + 2 nkv hs)
        else:
            torch.addmm(self.b_qkv, h, self.w_qkv, out=self.qkv)
        torch.mul(self.q_new, rot[:self.half], out=self.q_rot)  # rope, (B, nh, hs/2) complex
        torch.mul(self.kv_new, rot, out=self.kv_slots[slot])  # rope on k, v as is, into the cache
        if self.filled < self.L:
            self.filled += 1
            n = self.filled
            att = torch.bmm(self.q3, self.kT3[..., :n]).softmax(dim=-1)  # (B*nkv, nh/nkv, n)
            torch.bmm(att, self.v3[:, :n], out=self.y)
        else:
            torch.bmm(self.q3, self.kT3, out=self.att)  # (B*nkv, nh/nkv, L): the window, in slot order
            torch.bmm(self.att.softmax(dim=-1), self.v3, out=self.y)  # (B*nkv, nh/nkv, hs)
        x.addmm_(self.y2, self.w_o)
        if self.b_o is not None:
            x.add_(self.b_o)
        h = F.layer_norm(x, (self.C,), *self.ln_2)
        h = torch.mm(h, self.w_fc) if self.b_fc is None else torch.addmm(self.b_fc, h, self.w_fc)
        x.addmm_(F.gelu(h, approximate="tanh"), self.w_proj)
        if self.b_proj is not None:
            x.add_(self.b_proj)
        return x


class KVCacheDecoder:
    """Incremental decoding with a rolling key/value cache of the last block_size positions.

    `prefill(idx)` runs the model's own forward over a context of up to block_size tokens and
    keeps every layer's keys and values; each `step(token)` then costs one token's worth of work,
    attending to the cached block_size positions. Once the cache is full the oldest position is
    overwritten in place; cached keys carry their absolute rotary positions and stay valid.

    Logits equal the model's forward over the whole sequence with sliding-window attention (see
    `GPT.forward`), up to float rounding. They equal a fresh forward over the last block_size
    tokens only for one layer or within the first block_size positions: deeper cached keys were
    computed with their own full windows, so information reaches back further than one window,
    as in any sliding-window transformer. Weights are read when the decoder is made: make a new
    one after training further.
    """

    def __init__(self, model: GPT, batch_size: int, temperature: float = 1.0):
        self.model, self.config, self.batch_size = model, model.config, batch_size
        self.wte = model.transformer.wte.weight.detach()
        if self.config.token_feature_dim:  # fold the projected features into one input table
            self.wte = self.wte + model.transformer.wfe(model.token_features).detach()
        self.device, self.dtype = self.wte.device, self.wte.dtype
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"the cached decoder runs in float32 or float64, the model is {self.dtype}: "
                             "call model.float() first")
        self.layers = [_CachedLayer(block, self.config, batch_size) for block in model.transformer.h]
        self.ln_f = _layer_norm_args(model.transformer.ln_f)
        self.temperature = temperature
        self.w_head = (model.lm_head.weight.detach() / temperature).t().contiguous()  # (C, V)
        self.pos = 0  # position of the next token
        self._rows_agree_until = 0  # every sequence holds the same keys and values before this position
        self._table_start, self._table = 0, ()

    def embed_extras(self, extras: torch.Tensor) -> torch.Tensor:
        """(B, T, n_extra) -> (B, T, C): the summed extra embeddings, added to a token's."""
        x = torch.zeros(*extras.shape[:2], self.config.n_embd, dtype=self.dtype, device=self.device)
        for i, table in enumerate(self.model.transformer.wxe):
            x += F.embedding(extras[..., i], table.weight)
        return x

    @torch.inference_mode()
    def prefill(self, idx: torch.Tensor, extras: torch.Tensor | None = None) -> torch.Tensor:
        """Context idx (B, T), 1 <= T <= block_size, -> logits (B, V) for the token after it.

        Sequences with the same context (tokens and extras) are read in once and their keys and
        values copied to each: a batch of candidates drawn after the same bars costs one prefill."""
        if idx.dim() != 2 or idx.shape[0] != self.batch_size or not 1 <= idx.shape[1] <= self.config.block_size:
            raise ValueError(f"idx must be ({self.batch_size}, T) with 1 <= T <= block_size="
                             f"{self.config.block_size}, got {tuple(idx.shape)}")
        context = idx if extras is None else torch.cat([idx[..., None], extras], dim=-1).flatten(1)
        distinct, rows = torch.unique(context, dim=0, return_inverse=True)
        self._rows_agree_until = idx.shape[1] if len(distinct) == 1 else 0
        if len(distinct) < len(idx):
            first = torch.full((len(distinct),), len(idx), device=idx.device)
            first.scatter_reduce_(0, rows, torch.arange(len(idx), device=idx.device), "amin")
            for layer in self.layers:
                layer.prompt_rows = rows
            try:
                logits = self.model(idx[first], extras=None if extras is None else extras[first],
                                    cache=self)["logits"][rows, -1]
            finally:
                for layer in self.layers:
                    layer.prompt_rows = None
        else:
            logits = self.model(idx, extras=extras, cache=self)["logits"][:, -1]  # (B, V)
        self.pos = idx.shape[1]
        return logits / self.temperature

    @torch.inference_mode()
    def step(self, idx: torch.Tensor, extras: torch.Tensor | None = None) -> torch.Tensor:
        """Append tokens idx (B,) (and their extras (B, n_extra)) -> logits (B, V) for the next."""
        if self.pos == 0:
            raise ValueError("prefill a context before stepping")
        if idx.shape != (self.batch_size,):
            raise ValueError(f"idx must be ({self.batch_size},), got {tuple(idx.shape)}")
        if (extras is None) != (not self.config.extra_vocab_sizes):
            raise ValueError(f"extras must be given exactly when the config has extra_vocab_sizes "
                             f"({self.config.extra_vocab_sizes})")
        extra = None if extras is None else self.embed_extras(extras[:, None])[:, 0]
        return self.fast_step(idx, extra)

    def _rotation(self, pos: int) -> torch.Tensor:
        """(hs,) complex: the rotation of position `pos` (hs/2), then hs/2 ones for the value.

        From a table made 1024 positions at a time."""
        if not 0 <= pos - self._table_start < len(self._table):
            table = self.model._rotations(1024, start=pos, device=self.device)[:, 0]  # (1024, hs/2)
            table = torch.cat([table, torch.ones_like(table)], dim=1)
            self._table_start, self._table = pos, table.unbind(0)
        return self._table[pos - self._table_start]

    def keep_row(self, row: int) -> None:
        """Make every sequence of the batch a copy of sequence `row` (its cached keys and values):
        a search that draws several continuations, keeps the best and draws on from it.

        Only the positions written since the sequences last agreed are copied: after a shared
        prefill or the last keep_row, the tokens of one drawn frame rather than the whole window."""
        L = self.config.block_size
        first, n = self._rows_agree_until % L, self.pos - self._rows_agree_until  # first slot, positions to copy
        if n >= L:
            slots = [slice(0, L)]
        elif first + n <= L:
            slots = [slice(first, first + n)]
        else:  # the positions wrap around the rolling cache
            slots = [slice(first, L), slice(0, first + n - L)]
        for layer in self.layers:
            for s in slots:
                layer.kv[:, :, s].copy_(layer.kv[row:row + 1, :, s].expand_as(layer.kv[:, :, s]))
        self._rows_agree_until = self.pos

    def fast_step(self, idx: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """`step` without checks, extra already embedded (B, C); run it under inference mode."""
        x = F.embedding(idx, self.wte)  # (B, C)
        if extra is not None:
            x += extra
        rot, slot = self._rotation(self.pos), self.pos % self.config.block_size
        for layer in self.layers:
            x = layer.step(x, rot, slot)
        self.pos += 1
        return torch.mm(F.layer_norm(x, (self.config.n_embd,), *self.ln_f), self.w_head)
