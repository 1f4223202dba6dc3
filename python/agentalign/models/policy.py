"""GPT-style pixel policy: a CNN token per frame, a causal transformer over the context, a head per
action branch, and a KV cache for acting one decision at a time.

Each timestep is one token: the CNN embedding of its frame plus the embedding of the action taken
just before it (one embedding per branch, with an extra "no previous action" index for the first
decision of an episode). The transformer sees at most `context` tokens.

Positions are rotary (RoPE), counted from the first token of the window the transformer sees. RoPE
makes attention depend only on how far apart two steps are, which is what matters to an agent that
is trained on windows cut from anywhere in an episode; it adds no parameters and no input the
engine would have to send.

Acting uses a KV cache that slides by re-encoding: when a row's cache holds `context` tokens, the
oldest `context - context // 2` are dropped and the kept `context // 2` tokens are run through the
transformer again from their cached input tokens (no CNN), with positions restarting at 0. Dropping
only the oldest token would keep layer >= 2 keys computed from states that attended to tokens no
longer in the window: a computation training never performs. With re-encoding the cache is exact:
at decision `t` of an episode the cached logits equal
`forward(frames[s:t+1], prev_actions[s:t+1])[:, -1]` with `s = window_start(t, context)`, to float
rounding (tested to 1e-5), i.e. exactly what training computes for a window starting at step s.
Amortised, a slide costs about one extra token per decision, so acting costs ~2 tokens per decision
instead of `context`.

Every cache tensor of a fresh episode is zero (length 0 = empty), so the cache can travel in
ML-Agents' per-agent `recurrent_in`/`recurrent_out` memory, which Unity zeroes at episode start.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from agentalign.spec import ACTION_BRANCHES, OBS_CHANNELS, OBS_HEIGHT, OBS_WIDTH

ROPE_BASE = 10_000.0


def conv_geometry(layer: int) -> tuple[int, int, int]:
    """(kernel, stride, padding) of conv `layer`: 8x8 stride 4 first (cheap on big frames), then
    4x4 stride 2, so each further conv halves the image."""
    return (8, 4, 2) if layer == 0 else (4, 2, 1)


def cnn_sizes(config: PolicyConfig) -> list[tuple[int, int]]:
    """(height, width) of the image after each conv."""
    h, w, sizes = config.obs_height, config.obs_width, []
    for i in range(len(config.cnn_channels)):
        k, s, p = conv_geometry(i)
        h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        sizes.append((h, w))
    return sizes


@dataclass(frozen=True)
class PolicyConfig:
    """Everything that fixes the network's shape; saved as JSON beside the weights."""

    name: str = "tiny"
    obs_height: int = OBS_HEIGHT
    obs_width: int = OBS_WIDTH
    context: int = 16  # K: past timesteps (tokens) the transformer sees, the current one included
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    # Conv widths; 64x64 frames are 16, 8, 4 pixels wide after three convs (see conv_geometry).
    cnn_channels: tuple[int, ...] = (16, 32, 32)
    dropout: float = 0.0
    action_branches: tuple[int, ...] = ACTION_BRANCHES

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd {self.n_embd} must split into {self.n_head} even-sized heads")
        if self.context < 2:
            raise ValueError(f"context must be >= 2, got {self.context}")
        if min(cnn_sizes(self)[-1]) < 1:
            raise ValueError(f"{self.obs_height}x{self.obs_width} frames too small for the CNN")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        if unknown := set(data) - known:
            raise ValueError(f"unknown PolicyConfig fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


CONFIGS: dict[str, PolicyConfig] = {
    # Trains on a 2-core laptop CPU in minutes (0.69M parameters, ~10k frames/s on 2 cores).
    "tiny": PolicyConfig(),
    # A mid-size model for longer CPU runs or a small GPU (3.5M parameters).
    "small": PolicyConfig(
        name="small", context=32, n_layer=4, n_head=4, n_embd=256, cnn_channels=(32, 64, 64)
    ),
    # The paper's size (103.5M parameters vs its 103M): 128x128 frames, a wide CNN (18.4M) and a
    # GPT-2-small-sized trunk (85M).
    "paper": PolicyConfig(
        name="paper", obs_height=128, obs_width=128, context=32, n_layer=12, n_head=12,
        n_embd=768, cnn_channels=(128, 256, 512, 768), dropout=0.1,
    ),
}


def get_config(name: str = "tiny", **overrides: Any) -> PolicyConfig:
    """A named config, with any fields overridden (e.g. `get_config("tiny", context=8)`)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown policy config {name!r}; valid names: {', '.join(CONFIGS)}")
    try:
        return replace(CONFIGS[name], **overrides)
    except TypeError as err:
        raise ValueError(f"bad override for policy config {name!r}: {err}") from None


def window_start(t: int, context: int) -> int:
    """First step of the window the cached logits at decision `t` (0 = episode start) cover.

    The window grows to `context` tokens, then keeps its newest `context // 2` and grows again.
    """
    keep = context // 2
    return max(0, (context - keep) * ((t - keep) // (context - keep)))


def no_previous_action(batch_size: int, action_branches: tuple[int, ...] = ACTION_BRANCHES,
                       device: torch.device | str | None = None) -> Tensor:
    """The previous action to feed at the first decision of an episode: index = branch size."""
    return torch.tensor(action_branches, dtype=torch.long, device=device).repeat(batch_size, 1)


def sample(logits: list[Tensor], greedy: bool = False, generator: torch.Generator | None = None
           ) -> Tensor:
    """Actions long [..., n_branches] from per-branch logits [..., n_b]: argmax or a sample."""
    actions = []
    for branch in logits:
        if greedy:
            actions.append(branch.argmax(-1))
        else:
            probs = F.softmax(branch.float().reshape(-1, branch.shape[-1]), dim=-1)
            drawn = torch.multinomial(probs, 1, generator=generator)
            actions.append(drawn.view(branch.shape[:-1]))
    return torch.stack(actions, dim=-1)


def sample_from(logits: list[Tensor], uniforms: Tensor) -> Tensor:
    """Actions long [B, n_branches] by inverse CDF: branch b's action is the first whose
    cumulative probability exceeds uniforms[:, b] (float64 in [0, 1)), so given draws give the
    same actions whatever else is in the batch (up to the logits' own float rounding)."""
    actions = []
    for b, branch in enumerate(logits):
        cdf = torch.softmax(branch.double(), dim=-1).cumsum(-1)
        draws = uniforms[:, b:b + 1].contiguous().to(cdf)
        drawn = torch.searchsorted(cdf, draws, right=True)[:, 0]
        actions.append(drawn.clamp_(max=branch.shape[-1] - 1))
    return torch.stack(actions, dim=-1)


def action_loss(logits: list[Tensor], actions: Tensor) -> Tensor:
    """Imitation loss: cross-entropy per branch, summed over branches, mean over steps."""
    losses = [F.cross_entropy(b.flatten(0, -2), actions[..., i].flatten())
              for i, b in enumerate(logits)]
    return torch.stack(losses).sum()


def _shape(x: object) -> str:
    return str(list(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def rope_tables(context: int, head_dim: int) -> tuple[Tensor, Tensor]:
    inv_freq = ROPE_BASE ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)  # [context, head_dim]
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


@dataclass
class KVCache:
    """Acting state of a batch of environments; rows are independent episodes.

    Written in place by `Policy.step`. All zeros (length 0) means an empty context.
    """

    keys: Tensor  # [n_layer, B, n_head, context, head_dim], RoPE applied at the slot's position
    values: Tensor  # [n_layer, B, n_head, context, head_dim]
    tokens: Tensor  # [B, context, n_embd] transformer inputs, kept to re-encode on a slide
    lengths: Tensor  # long [B]: tokens held; the next token goes into slot lengths[b]

    @property
    def batch_size(self) -> int:
        return self.lengths.shape[0]

    @property
    def visible(self) -> Tensor:
        """bool [B, 1, 1, context]: the slots a new token in slot lengths[b] may attend to."""
        slots = torch.arange(self.keys.shape[3], device=self.lengths.device)
        return (slots <= self.lengths[:, None])[:, None, None, :]

    def reset_rows(self, done: Tensor) -> None:
        """Empty the rows whose episode ended, so their next step starts a fresh context."""
        done = torch.as_tensor(done, dtype=torch.bool, device=self.lengths.device)
        if done.shape != self.lengths.shape:
            raise ValueError(f"done mask shape {tuple(done.shape)} != ({self.batch_size},)")
        self.keys[:, done] = 0
        self.values[:, done] = 0
        self.tokens[done] = 0
        self.lengths[done] = 0


class SelfAttention(nn.Module):
    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.n_embd // config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Causal attention over a window. Returns the output and the window's rotated keys and
        values."""
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        (q, k), v = apply_rope(qkv[:2], cos, sin), qkv[2]
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        y = self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))
        return y, k, v

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor,
             at: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """One new token per row [B, C] against the row's cached keys and values
        [B, n_head, context, head_dim] (this layer's), writing its own into slot `at[1]` first;
        `at` = (row indices, slots, visibility mask), shared by every layer of a step."""
        rows, slots, visible = at
        B, C = x.shape
        qkv = self.qkv(x).view(B, 3, self.n_head, self.head_dim)
        qk = apply_rope(qkv[:, :2], cos, sin)  # [B, 2, n_head, head_dim]
        keys[rows, :, slots] = qk[:, 1]
        values[rows, :, slots] = qkv[:, 2]
        y = F.scaled_dot_product_attention(qk[:, 0, :, None], keys, values, attn_mask=visible)
        return self.proj(y.view(B, C))


class Block(nn.Module):
    """Pre-LN transformer block, as in GPT-2."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd), nn.Dropout(config.dropout),
        )

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y, k, v = self.attn(self.ln_1(x), cos, sin)
        x = x + y
        return x + self.mlp(self.ln_2(x)), k, v

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor,
             at: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """`forward` for one new token per row [B, C] (acting; no dropout: call eval())."""
        x = x + self.attn.step(self.ln_1(x), cos, sin, keys, values, at)
        fc, act, out = self.mlp[0], self.mlp[1], self.mlp[2]
        return x + out(act(fc(self.ln_2(x))))


class Policy(nn.Module):
    """Frames and previous actions in, logits per action branch out."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        convs, c_in = [], OBS_CHANNELS
        for i, c_out in enumerate(config.cnn_channels):
            convs += [nn.Conv2d(c_in, c_out, *conv_geometry(i)), nn.ReLU()]
            c_in = c_out
        h, w = cnn_sizes(config)[-1]
        self.cnn = nn.Sequential(*convs, nn.Flatten(), nn.Linear(c_in * h * w, config.n_embd))
        self.action_emb = nn.ModuleList(nn.Embedding(n + 1, config.n_embd)
                                        for n in config.action_branches)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, sum(config.action_branches))  # split per branch
        cos, sin = rope_tables(config.context, config.n_embd // config.n_head)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def summary(self) -> str:
        c, cnn = self.config, sum(p.numel() for p in self.cnn.parameters())
        trunk = sum(p.numel() for p in self.blocks.parameters())
        return (f"policy {c.name!r}: {self.num_params() / 1e6:.2f}M parameters "
                f"(cnn {cnn / 1e6:.2f}M, transformer {trunk / 1e6:.2f}M), "
                f"{c.obs_height}x{c.obs_width} frames, context {c.context}, "
                f"{c.n_layer} layers x {c.n_embd} wide")

    # --- inputs ---------------------------------------------------------------------------------

    def _check(self, frames: Tensor, prev_actions: Tensor) -> None:
        """One-line errors for the mistakes a caller makes, before they become shape soup."""
        if not isinstance(frames, Tensor) or not isinstance(prev_actions, Tensor):
            raise ValueError(f"frames and prev_actions must be torch tensors, got "
                             f"{_shape(frames)} and {_shape(prev_actions)}")
        c = self.config
        frame_shape = (c.obs_height, c.obs_width, OBS_CHANNELS)
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 pixels, got {frames.dtype}")
        if frames.dim() != 5 or tuple(frames.shape[2:]) != frame_shape:
            raise ValueError(f"frames must be [B, T, {', '.join(map(str, frame_shape))}], "
                             f"got {list(frames.shape)}")
        if frames.shape[1] > c.context:
            raise ValueError(f"sequence of {frames.shape[1]} steps exceeds context {c.context}")
        if prev_actions.dtype != torch.long:
            raise ValueError(f"prev_actions must be int64 (long), got {prev_actions.dtype}")
        want = (*frames.shape[:2], len(c.action_branches))
        if tuple(prev_actions.shape) != want:
            raise ValueError(f"prev_actions must be [B, T, n_branches] = {list(want)}, "
                             f"got {list(prev_actions.shape)}")

    def encode_frames(self, frames: Tensor) -> Tensor:
        """uint8 [B, T, H, W, 3] -> [B, T, n_embd]; one token per frame, frames independent."""
        B, T = frames.shape[:2]
        # Scale while contiguous (several times faster than on the permuted view); the permuted
        # view is then channels-last in memory, the layout oneDNN's convs run fastest on.
        x = frames.flatten(0, 1).to(self.rope_cos.dtype).div_(255.0).permute(0, 3, 1, 2)
        return self.cnn(x).view(B, T, -1)

    def embed_actions(self, prev_actions: Tensor) -> Tensor:
        """long [..., n_branches] -> [..., n_embd]: the previous action's part of a token."""
        return sum(emb(prev_actions[..., i]) for i, emb in enumerate(self.action_emb))

    def embed(self, frames: Tensor, prev_actions: Tensor) -> Tensor:
        """The transformer's input tokens [B, T, n_embd]: frame embedding + previous action's."""
        return self.encode_frames(frames) + self.embed_actions(prev_actions)

    def _logits(self, x: Tensor) -> list[Tensor]:
        return list(self.head(self.ln_f(x)).split(self.config.action_branches, dim=-1))

    # --- training: whole windows ----------------------------------------------------------------

    def forward(self, frames: Tensor, prev_actions: Tensor, hidden: bool = False
                ) -> list[Tensor] | tuple[list[Tensor], Tensor]:
        """frames uint8 [B, T, H, W, 3], prev_actions long [B, T, n_branches] (T <= context)
        -> logits [B, T, n_b] per branch; step t sees steps 0..t of the window only. With
        `hidden`, also the last block's output [B, T, n_embd] (what a reward model's head reads),
        for pre-training's auxiliary objective (train.future)."""
        self._check(frames, prev_actions)
        x = self.trunk(self.embed(frames, prev_actions))
        return (self._logits(x), x) if hidden else self._logits(x)

    def trunk(self, tokens: Tensor) -> Tensor:
        """The transformer blocks alone: tokens [B, T, n_embd] -> the last block's output."""
        T = tokens.shape[1]
        x, cos, sin = self.drop(tokens), self.rope_cos[:T], self.rope_sin[:T]
        for block in self.blocks:
            x, _, _ = block(x, cos, sin)
        return x

    def forward_tokens(self, tokens: Tensor) -> list[Tensor]:
        """The transformer and heads alone, from already-encoded tokens [B, T, n_embd]."""
        return self._logits(self.trunk(tokens))

    def configure_optimizer(self, weight_decay: float = 0.1, lr: float = 3e-4,
                            betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
        """AdamW that decays matrices, conv kernels and embeddings, not biases or norms."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)

    def flops_per_frame(self) -> int:
        """Model FLOPs to train on one frame (forward + backward = 3x forward, 2 FLOPs a MAC),
        for a full window: each token attends on average to (context + 1) / 2 tokens."""
        c, macs, c_in = self.config, 0, OBS_CHANNELS
        for i, (c_out, (h, w)) in enumerate(zip(c.cnn_channels, cnn_sizes(c), strict=True)):
            macs += h * w * c_out * c_in * conv_geometry(i)[0] ** 2
            c_in = c_out
        macs += self.cnn[-1].weight.numel()
        macs += c.n_layer * (12 * c.n_embd**2 + c.n_embd * (c.context + 1))  # QK^T and AV
        macs += self.head.weight.numel()
        return 3 * 2 * macs

    # --- acting: one decision at a time --------------------------------------------------------

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty cache for `batch_size` environments, on the model's device and dtype."""
        c, like = self.config, self.rope_cos
        kv = (c.n_layer, batch_size, c.n_head, c.context, c.n_embd // c.n_head)
        return KVCache(
            keys=like.new_zeros(kv), values=like.new_zeros(kv),
            tokens=like.new_zeros(batch_size, c.context, c.n_embd),
            lengths=torch.zeros(batch_size, dtype=torch.long, device=like.device),
        )

    @torch.no_grad()
    def step(self, frames: Tensor, prev_actions: Tensor, cache: KVCache
             ) -> tuple[list[Tensor], KVCache]:
        """One decision for every env: frames uint8 [B, H, W, 3], prev_actions long [B, n_branches]
        (use `no_previous_action` after a reset) -> logits [B, n_b] per branch, and the cache
        (updated in place). For a row at decision t of its episode the logits equal
        `forward(frames[s:t+1], prev_actions[s:t+1])[:, -1]`, s = `window_start(t, context)`.
        Call `eval()` first: acting should not use dropout."""
        if not (isinstance(frames, Tensor) and frames.dim() == 4
                and isinstance(prev_actions, Tensor) and prev_actions.dim() == 2):
            raise ValueError("step takes frames [B, H, W, 3] and prev_actions [B, n_branches], "
                             f"got {_shape(frames)} and {_shape(prev_actions)}")
        self._check(frames[:, None], prev_actions[:, None])
        if frames.shape[0] != cache.batch_size:
            raise ValueError(f"batch of {frames.shape[0]} != cache of {cache.batch_size} rows")
        return self.step_encoded(self.encode_frames(frames[:, None])[:, 0], prev_actions, cache)

    @torch.no_grad()
    def step_encoded(self, features: Tensor, prev_actions: Tensor, cache: KVCache
                     ) -> tuple[list[Tensor], KVCache]:
        """`step` from frames already through the CNN (`encode_frames`, [B, n_embd]): for a
        caller that keeps each frame's encoding (RL reuses acting's in its update)."""
        if (full := cache.lengths >= self.config.context).any():
            self._slide(cache, full.nonzero().squeeze(1))
        x = features + self.embed_actions(prev_actions)  # [B, n_embd]
        slots = cache.lengths
        at = (torch.arange(x.shape[0], device=x.device), slots, cache.visible)
        cache.tokens[at[0], slots] = x
        pos = slots[:, None, None]  # [B, 1, 1] -> tables [B, 1, 1, head_dim], one per row
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]
        for layer, block in enumerate(self.blocks):
            x = block.step(x, cos, sin, cache.keys[layer], cache.values[layer], at)
        cache.lengths += 1
        return self._logits(x), cache

    def _slide(self, cache: KVCache, rows: Tensor) -> None:
        """Keep the newest context // 2 tokens of full rows and re-encode them from position 0."""
        keep = self.config.context // 2
        x = cache.tokens[rows, -keep:]  # advanced indexing copies, so the writes below are safe
        cache.tokens[rows, :keep] = x
        cos, sin = self.rope_cos[:keep], self.rope_sin[:keep]
        for layer, block in enumerate(self.blocks):
            x, k, v = block(x, cos, sin)
            cache.keys[layer, rows, :, :keep] = k
            cache.values[layer, rows, :, :keep] = v
        cache.lengths[rows] = keep
