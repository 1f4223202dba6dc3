"""The policy as an ONNX graph for one decision, in the ML-Agents inference contract.

Unity calls the graph once per decision with `obs_0` (the camera, float NCHW 0..1),
`action_masks` and `recurrent_in`, and feeds `recurrent_out` back as the next `recurrent_in` of
the same agent; it feeds all zeros at an episode's first decision. So the graph is stateless and
the transformer's context travels in that memory, one float vector per agent.

Memory layout (floats, per agent; all zeros = empty context; `MemoryLayout` has the offsets):
  [0]                 L, the tokens in the window before this decision (0 = new episode)
  [1 : 1+n_branches]  previous action + 1 per branch (0 = none: the episode's first decision)
  main register       per layer, keys then values of the window's tokens, slot-major
                      [n_layer, 2, R, n_head, head_dim] with R = context - 1, oldest first and
                      the L valid ones last, RoPE applied at each token's window position
  shadow register     the same for `keep = context // 2` slots: the window's newest tokens
                      encoded again from position 0 as they arrive, ready for the next slide

Why keys and values, not the window's input tokens: with tokens in memory every decision runs
the transformer over the whole window (up to `context` tokens: 16 for `tiny`, 32 for `paper`);
with the cache it runs two (the main and the shadow stream below). benchmarks/inference.py
measures the token window 2-3x slower from 16 agents up (equal for one agent). The price is
size: `tiny` needs 17,667 floats (69 KB) per agent against 1,923 for tokens, `paper` 866,307
(3.3 MB) against 23,811. At `tiny` size and 10 decisions/s that is nothing for Unity to copy; a
`paper`-sized personality is better served by the agent server than by copying 3.3 MB per agent
per decision.

Why a shadow register: `Policy.step` slides its window when full, keeping the newest `keep`
tokens and re-encoding them from position 0 (the only way the cache stays exactly what training
computes, see policy.py). Re-encoding is a data-dependent burst of work, and ONNX has no cheap
branch-free way to run it only for the rows that slide. The tokens a slide keeps are known in
advance (window slots context-keep .. context-1), so each one also runs through the transformer
a second time as it arrives, at its future position, into the shadow register. On a slide the
shadow's tokens become the window: attention reads them where they lie and the memory write
moves them. Every decision costs exactly two tokens, slides cost nothing extra, and the logits
equal `Policy.step`'s to float rounding.

Why shift registers: each register drops its oldest slot and appends the new token, so the new
memory is a single Concat of pieces of the old one (cut by a single Split) and the new keys and
values. Writing the token into slot L instead takes a masked Where over the whole cache per
layer, a quarter of the graph's time at 64 agents. Keys carry their RoPE position, so where
a key sits in the register does not matter to attention.

Sampling: `discrete_actions` draws from each branch's masked logits with ONNX `Multinomial`
(opset 7), the op torch's own exporter uses and Unity's importer runs. The node has no `seed`
attribute, so every session draws its own seed; onnxruntime's `set_seed(n)` before creating a
session makes a run reproducible (the card's measurement does that). Masked actions get a logit
of -1e9, so their probability is exactly 0: they are never sampled nor taken as the argmax.
A draw outside the branch becomes the argmax before it is output or fed back, because Unity's
Inference Engine (2.2.1, CPU) returns -1 when its uniform draw is exactly 0.0.

Which action is fed back: the graph writes the previous action into the memory before Unity
picks an output, so it cannot know whether Unity reads `discrete_actions` (the default) or
`deterministic_discrete_actions` ("Deterministic Inference" ticked). A normal export feeds back
the sampled action; `feedback="greedy"` exports a personality whose both outputs are the argmax,
for the deterministic checkbox. Opset 9 (the official exporter's) expresses everything here:
LayerNorm, GELU and attention are written out in primitive ops.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict, dataclass

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import Tensor

from agentalign import __version__
from agentalign.models.policy import Policy, PolicyConfig

OPSET = 9
VERSION_NUMBER = 3  # ML-Agents model API version 2.x ("MLAgents2_0"), read by Unity's loader
MASKED_LOGIT = -1e9  # exp(-1e9 - max) is exactly 0 in float32: a masked action has probability 0
HIDDEN_SCORE = -1e9  # attention score of a slot outside the window (finite: no NaN when none)
FEEDBACK = ("sampled", "greedy")

# Tensor names of the contract (see FACTS.md, "ML-Agents ONNX inference contract").
OBS = "obs_0"
ACTION_MASKS = "action_masks"
RECURRENT_IN = "recurrent_in"
VERSION = "version_number"
MEMORY_SIZE = "memory_size"
DISCRETE_ACTIONS = "discrete_actions"
DETERMINISTIC_ACTIONS = "deterministic_discrete_actions"
DISCRETE_SHAPE = "discrete_action_output_shape"
RECURRENT_OUT = "recurrent_out"
DEBUG_LOGITS = "debug_logits"  # debug exports only; not part of the contract
INPUTS = (OBS, ACTION_MASKS, RECURRENT_IN)
OUTPUTS = (VERSION, MEMORY_SIZE, DISCRETE_ACTIONS, DISCRETE_SHAPE, DETERMINISTIC_ACTIONS,
           RECURRENT_OUT)


@dataclass(frozen=True)
class MemoryLayout:
    """Where each part of the per-agent memory lives; `size` floats in all."""

    context: int
    keep: int
    n_layer: int
    n_head: int
    head_dim: int
    n_branches: int

    @classmethod
    def of(cls, config: PolicyConfig) -> MemoryLayout:
        return cls(context=config.context, keep=config.context // 2, n_layer=config.n_layer,
                   n_head=config.n_head, head_dim=config.n_embd // config.n_head,
                   n_branches=len(config.action_branches))

    @property
    def main_slots(self) -> int:
        """Slots of the main register: a window never needs more than context - 1 stored keys,
        because a window that reaches `context` tokens slides before it is read again."""
        return max(self.context - 1, self.keep + 1)

    @property
    def slot(self) -> int:
        """Floats per slot: one key (or value) of every head."""
        return self.n_head * self.head_dim

    @property
    def main_start(self) -> int:
        return 1 + self.n_branches

    @property
    def shadow_start(self) -> int:
        return self.main_start + self.n_layer * 2 * self.main_slots * self.slot

    @property
    def size(self) -> int:
        return self.shadow_start + self.n_layer * 2 * self.keep * self.slot

    def describe(self) -> dict[str, object]:
        """The layout as the card and the graph's metadata state it."""
        return {**asdict(self), "main_slots": self.main_slots, "size": self.size, "parts": [
            {"name": "length", "start": 0, "size": 1,
             "meaning": "tokens in the window before this decision (float); 0 = empty"},
            {"name": "previous_action", "start": 1, "size": self.n_branches,
             "meaning": "previous action + 1 per branch; 0 = none (first decision)"},
            {"name": "main_register", "start": self.main_start,
             "size": self.shadow_start - self.main_start,
             "shape": [self.n_layer, 2, self.main_slots, self.n_head, self.head_dim],
             "meaning": "keys, values of the window per layer, oldest first, newest last; "
                        "RoPE applied at each token's position in the window"},
            {"name": "shadow_register", "start": self.shadow_start,
             "size": self.size - self.shadow_start,
             "shape": [self.n_layer, 2, self.keep, self.n_head, self.head_dim],
             "meaning": "the window's newest tokens encoded again from position 0, for the "
                        "next slide"},
        ]}


class _Multinomial(torch.autograd.Function):
    """One sample per row from logits [B, n]; exported as ONNX Multinomial on the logits
    themselves (torch's own symbolic takes probabilities and adds a Log)."""

    @staticmethod
    def forward(ctx: object, logits: Tensor) -> Tensor:  # only runs while tracing
        return torch.multinomial(F.softmax(logits, dim=-1), 1)

    @staticmethod
    def symbolic(g: torch.Graph, logits: torch.Value) -> torch.Value:
        return g.op("Multinomial", logits, dtype_i=TensorProto.INT64, sample_size_i=1)


class DecisionStep(nn.Module):
    """One decision of a Policy with its context carried in a flat memory (layout above).

    forward(obs_0 [B, 3, H, W] float 0..1, action_masks [B, sum(branches)],
    recurrent_in [B, 1, memory]) -> discrete_actions, deterministic_discrete_actions [B, n]
    int64, recurrent_out [B, 1, memory] (and the logits [B, sum(branches)] if `debug_logits`).
    Written without data-dependent Python branches so that tracing captures every case.
    """

    def __init__(self, policy: Policy, feedback: str = "sampled", debug_logits: bool = False):
        super().__init__()
        if feedback not in FEEDBACK:
            raise ValueError(f"feedback must be one of {FEEDBACK}, got {feedback!r}")
        self.policy = policy.eval()
        self.layout = MemoryLayout.of(policy.config)
        self.feedback, self.debug_logits = feedback, debug_logits
        lay = self.layout
        self.register_buffer("branch_sizes", torch.tensor(policy.config.action_branches))
        self.register_buffer("main_slots", torch.arange(lay.main_slots))
        self.register_buffer("shadow_slots", torch.arange(lay.keep))

    def forward(self, obs_0: Tensor, action_masks: Tensor, recurrent_in: Tensor
                ) -> tuple[Tensor, ...]:
        p, lay = self.policy, self.layout
        nh, hd, ctx, keep, R = lay.n_head, lay.head_dim, lay.context, lay.keep, lay.main_slots
        # One Split reads the whole memory, cut where the update at the end needs it: per
        # layer and key/value, the main register as [oldest slot, middle, the `keep` slots a
        # slide replaces (first one, rest)] and the shadow as [oldest slot, rest]; empty parts
        # are left out. Attention reads the pieces; one Concat of them writes the new memory.
        main_cut = [1, R - 1 - keep, 1, keep - 1]
        shadow_cut = [1, keep - 1]
        pairs = 2 * lay.n_layer  # (layer, key or value) pairs, in memory order
        cuts = [1, lay.n_branches] + [n * lay.slot for n in main_cut if n > 0] * pairs \
            + [n * lay.slot for n in shadow_cut if n > 0] * pairs
        pieces = iter(recurrent_in.split(cuts, dim=2))
        length, stored = next(pieces)[:, 0, 0].long(), next(pieces)[:, 0].long()
        # Per pair, {part index: [B, 1, slots * floats per slot]}.
        main = [{i: next(pieces) for i, n in enumerate(main_cut) if n > 0} for _ in range(pairs)]
        shadow = [{i: next(pieces) for i, n in enumerate(shadow_cut) if n > 0}
                  for _ in range(pairs)]

        # A full window slides: the shadow (the newest `keep` tokens from position 0) becomes
        # the window. Attention reads it where it lies; the write at the end moves it.
        full = length >= ctx
        length = torch.where(full, torch.full_like(length, keep), length)
        # The new token's position in the shadow; negative while it is too old to be kept.
        shadow_pos = length - (ctx - keep)
        positions = torch.stack([length, torch.where(shadow_pos < 0, 0, shadow_pos)], dim=1)
        # Both streams attend over one sequence per layer: [main register, shadow register,
        # new main token, new shadow token]; the registers hold their valid tokens last. The
        # main stream sees the window (the shadow instead when sliding) and itself; the shadow
        # stream sees the shadow's tokens and itself. Shape [B, 1, 2 streams, R + keep + 2].
        yes, no = torch.ones_like(full)[:, None], torch.zeros_like(full)[:, None]
        main_seen = torch.cat([(self.main_slots[None] >= R - length[:, None]) & ~full[:, None],
                               full[:, None].expand(-1, keep), yes, no], dim=1)
        shadow_seen = torch.cat([no.expand(-1, R), self.shadow_slots[None] >= keep
                                 - shadow_pos[:, None], no, yes], dim=1)
        hidden = torch.stack([~main_seen, ~shadow_seen], dim=1)[:, None].float() * HIDDEN_SCORE

        previous = torch.where(stored == 0, self.branch_sizes, stored - 1)
        token = p.cnn(obs_0)
        for i, emb in enumerate(p.action_emb):
            token = token + emb(previous[:, i])
        x = token[:, None]  # [B, 1, C]: both streams start from the token, then [B, 2, C]
        cos, sin = p.rope_cos[positions][:, :, None], p.rope_sin[positions][:, :, None]
        slots = R + keep + 2
        new = []  # per pair: the new [main, shadow] keys (or values) as [B, 1, 2 * slot]
        for layer, block in enumerate(p.blocks):
            streams = 1 if layer == 0 else 2  # layer 0: one projection serves both streams
            qkv = block.attn.qkv(block.ln_1(x)).reshape(-1, streams, 3, nh, hd)
            qkv = qkv.expand(-1, 2, -1, -1, -1)
            q = _rope(qkv[:, :, 0], cos, sin, hd // 2)  # [B, 2 streams, nh, hd]
            k = _rope(qkv[:, :, 1], cos, sin, hd // 2).reshape(-1, 1, 2 * lay.slot)
            v = qkv[:, :, 2].reshape(-1, 1, 2 * lay.slot)
            # Keys and values as [B, slots, nh, hd] (stored slot-major), then head-major.
            keys, values = (torch.cat([*main[i].values(), *shadow[i].values(), t], dim=2)
                            .reshape(-1, slots, nh, hd)
                            for i, t in ((2 * layer, k), (2 * layer + 1, v)))
            scores = q.transpose(1, 2) @ keys.permute(0, 2, 3, 1) * hd**-0.5  # [B, nh, 2, S]
            y = F.softmax(scores + hidden, dim=-1) @ values.transpose(1, 2)  # [B, nh, 2, hd]
            new += [k, v]
            y = y.transpose(1, 2).reshape(-1, 2, nh * hd)
            if layer == lay.n_layer - 1:  # only the keys and values of the shadow stream count
                x, y = x[:, :1], y[:, :1]
            x = x + block.attn.proj(y)
            x = x + block.mlp(block.ln_2(x))

        logits = p.head(p.ln_f(x[:, 0]))  # [B, sum(branches)]
        sampled, greedy = [], []
        sizes = p.config.action_branches
        for size, branch, mask in zip(sizes, logits.split(sizes, dim=-1),
                                      action_masks.split(sizes, dim=-1), strict=True):
            masked = torch.where(mask > 0.5, branch, torch.full_like(branch, MASKED_LOGIT))
            best = masked.argmax(dim=-1, keepdim=True)
            draw = _Multinomial.apply(masked)
            # Unity's CPU Multinomial returns -1 for a uniform draw of exactly 0.0: never act
            # on an index outside the branch (Less, Greater, Or, Where: all opset 9).
            outside = (draw < 0) | (draw > size - 1)
            greedy.append(best)
            sampled.append(torch.where(outside, best, draw))
        greedy_actions = torch.cat(greedy, 1)
        # The action the agent takes, hence the next decision's previous action.
        taken = torch.cat(sampled, 1) if self.feedback == "sampled" else greedy_actions

        # The new memory: each register drops its oldest slot and appends the new token; on a
        # slide the main register's last `keep` slots become the shadow's tokens instead.
        slide = full[:, None, None]
        out = [(length + 1).float()[:, None, None], (taken + 1).float()[:, None]]
        new_main, new_shadow = zip(*(t.split(lay.slot, dim=2) for t in new), strict=True)
        for m, sh, token_main in zip(main, shadow, new_main, strict=True):
            out += [m[i] for i in (1,) if i in m]
            out += [torch.where(slide, sh[j], m[i]) for i, j in ((2, 0), (3, 1)) if i in m]
            out.append(token_main)
        for sh, token_shadow in zip(shadow, new_shadow, strict=True):
            out += [sh[1]] if 1 in sh else []
            out.append(token_shadow)
        recurrent_out = torch.cat(out, dim=2)
        outputs = (taken, greedy_actions, recurrent_out)
        return (*outputs, logits) if self.debug_logits else outputs


def _rope(x: Tensor, cos: Tensor, sin: Tensor, half: int) -> Tensor:
    """policy.apply_rope with fixed slices (a traced x.shape would make them dynamic, which
    opset 9 cannot express)."""
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def export_model(policy: Policy, *, feedback: str = "sampled", debug_logits: bool = False,
                 doc: str = "") -> onnx.ModelProto:
    """The decision graph of `policy` as an ONNX model that passes onnx's checker.

    Traced with torch's TorchScript exporter at opset 9 (the dynamo exporter starts at 18);
    the three constants are added afterwards as Constant nodes. `debug_logits` adds the raw
    logits as an extra output for parity tests; never ship such a file.
    """
    config, step = policy.config, DecisionStep(policy, feedback, debug_logits)
    lay, n_actions = step.layout, sum(config.action_branches)
    dummy = (torch.rand(2, 3, config.obs_height, config.obs_width),
             torch.ones(2, n_actions), torch.zeros(2, 1, lay.size))
    outputs = [DISCRETE_ACTIONS, DETERMINISTIC_ACTIONS, RECURRENT_OUT]
    outputs += [DEBUG_LOGITS] if debug_logits else []
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer notes
        torch.onnx.export(step, dummy, buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(INPUTS), output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in [*INPUTS, *outputs]})
    model = onnx.load_from_string(buffer.getvalue())
    graph = model.graph
    branches = [float(n) for n in config.action_branches]
    constants = {VERSION: ([1], [float(VERSION_NUMBER)]), MEMORY_SIZE: ([1], [float(lay.size)]),
                 DISCRETE_SHAPE: ([1, len(branches)], branches)}
    for name, (shape, values) in constants.items():
        tensor = helper.make_tensor(name, TensorProto.FLOAT, shape, values)
        graph.node.append(helper.make_node("Constant", [], [name], value=tensor))
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    for output in graph.output:  # the tracer loses the static memory width through Concat
        if output.name == RECURRENT_OUT:
            output.type.tensor_type.shape.dim[2].Clear()
            output.type.tensor_type.shape.dim[2].dim_value = lay.size
    order = {name: i for i, name in enumerate([*OUTPUTS, DEBUG_LOGITS])}
    ordered = sorted(graph.output, key=lambda o: order[o.name])
    del graph.output[:]
    graph.output.extend(ordered)
    model.producer_name, model.producer_version = "agentalign", __version__
    graph.doc_string = doc or f"agentalign personality: {config.name} policy, one decision"
    helper.set_model_props(model, {
        "agentalign.memory_layout": json.dumps(lay.describe()),
        "agentalign.feedback": feedback,
        "agentalign.model_config": json.dumps(config.to_dict()),
    })
    onnx.checker.check_model(model, full_check=True)
    return model
