"""Ways to make the cached acting step cheaper, against the recompute it is measured by.
Prints figures, asserts nothing (it checks that every variant acts as `Policy.step` does).

The speed issue asks the KV-cached decision (`tiny`, context 16, 16 envs) to cost a third of a
full recompute of the window. `benchmarks/policy_speed.py` measures the shipped `Policy.step`;
this script measures what was tried on top of it, each in turn with the new frame's CNN, the
way a rollout calls it (the two halves slow each other down: cache refills, thread wake-ups):
- `Policy.step` as shipped (CNN, slides, the one-token step);
- a lean step: the same arithmetic with fewer operations: one fused linear for q, k, v and
  their RoPE-rotated halves (RoPE as two multiplies), MKL's pre-packed weights for every linear
  (the packing a plain sgemm redoes per call), the visibility mask built once as floats, cache
  writes by `index_copy_`; slides as `Policy.step` does them;
- the lean step with the CNN run by onnxruntime (spinning threads off, else they take the core
  PyTorch needs);
- the recompute: the window's tokens through the transformer, with either CNN.
The ratio pairs each cached variant with the recompute that uses the same CNN.

    PYTHONPATH=python python benchmarks/acting_variants.py --threads 2
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from collections.abc import Callable

import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import Tensor

from agentalign.models.policy import KVCache, Policy, get_config


def rotate_half_matrix(n_head: int, head_dim: int) -> Tensor:
    """R with R @ q = the rotate-half of q per head (apply_rope's [-x2, x1]), so RoPE becomes
    q * cos + (R q) * sin and R folds into the projection's weights."""
    half, r = head_dim // 2, torch.zeros(head_dim, head_dim)
    for i in range(half):
        r[i, i + half], r[i + half, i] = -1.0, 1.0
    return torch.block_diag(*[r] * n_head)


class LeanStep:
    """Policy.step's arithmetic with its weights fused and pre-packed once (acting only)."""

    def __init__(self, policy: Policy, batch: int) -> None:
        c, self.p, self.batch = policy.config, policy, batch
        self.C, self.H, self.ctx = c.n_embd, c.n_head, c.context
        self.hd = c.n_embd // c.n_head
        self.mkl = torch._C.has_mkl
        rot = rotate_half_matrix(self.H, self.hd)
        self.layers = []
        for block in policy.blocks:
            wq, wk, wv = block.attn.qkv.weight.split(self.C)
            bq, bk, bv = block.attn.qkv.bias.split(self.C)
            w5 = torch.cat([wq, wk, wv, rot @ wq, rot @ wk]).contiguous()
            b5 = torch.cat([bq, bk, bv, rot @ bq, rot @ bk]).contiguous()
            self.layers.append({
                "ln_1": (block.ln_1.weight, block.ln_1.bias), "qkv": self.pack(w5, b5),
                "proj": self.pack(block.attn.proj.weight, block.attn.proj.bias),
                "ln_2": (block.ln_2.weight, block.ln_2.bias),
                "fc": self.pack(block.mlp[0].weight, block.mlp[0].bias),
                "out": self.pack(block.mlp[2].weight, block.mlp[2].bias)})
        self.head = self.pack(policy.head.weight, policy.head.bias)
        self.cos = policy.rope_cos.repeat(1, 2 * self.H)  # [context, 2C]: q and k, every head
        self.sin = policy.rope_sin.repeat(1, 2 * self.H)
        self.emb = torch.cat([e.weight for e in policy.action_emb])
        sizes = [e.weight.shape[0] for e in policy.action_emb]
        self.emb_offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
        self.rows = torch.arange(batch)
        self.heads = torch.arange(self.H)
        self.slots = torch.arange(self.ctx)

    def pack(self, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        packed = torch.ops.mkl._mkl_reorder_linear_weight(w, self.batch) if self.mkl else w
        return packed, w, b

    def linear(self, x: Tensor, weights: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        if self.mkl:
            return torch.ops.mkl._mkl_linear(x, *weights, self.batch)
        return F.linear(x, weights[1], weights[2])

    def __call__(self, features: Tensor, prev_actions: Tensor, cache: KVCache) -> Tensor:
        """Logits [B, sum(branches)] for one decision; the cache is updated as by step()."""
        if (full := cache.lengths >= self.ctx).any():
            self.p._slide(cache, full.nonzero().squeeze(1))
        B, C, H, hd, n = self.batch, self.C, self.H, self.hd, cache.lengths
        x = features + F.embedding(prev_actions + self.emb_offsets, self.emb).sum(1)
        cache.tokens[self.rows, n] = x
        cos, sin = self.cos[n], self.sin[n]
        where = ((self.rows[:, None] * H + self.heads).view(-1) * self.ctx
                 + n.repeat_interleave(H))  # rows of keys[layer].view(B * H * ctx, hd)
        hidden = torch.zeros(B, 1, 1, self.ctx).masked_fill_(
            (self.slots > n[:, None])[:, None, None, :], float("-inf"))
        for layer, w in enumerate(self.layers):
            a = self.linear(F.layer_norm(x, (C,), *w["ln_1"]), w["qkv"])  # [B, 5C]
            qk = torch.addcmul(a[:, :2 * C] * cos, a[:, 3 * C:], sin)
            keys, values = cache.keys[layer], cache.values[layer]
            keys.view(-1, hd).index_copy_(0, where, qk[:, C:].reshape(B * H, hd))
            values.view(-1, hd).index_copy_(0, where, a[:, 2 * C:3 * C].reshape(B * H, hd))
            y = F.scaled_dot_product_attention(qk[:, :C].view(B, H, 1, hd), keys, values,
                                               attn_mask=hidden)
            x = x + self.linear(y.view(B, C), w["proj"])
            f = F.gelu(self.linear(F.layer_norm(x, (C,), *w["ln_2"]), w["fc"]))
            x = x + self.linear(f, w["out"])
        cache.lengths += 1
        p = self.p
        return self.linear(F.layer_norm(x, (C,), p.ln_f.weight, p.ln_f.bias), self.head)


def onnx_cnn(policy: Policy, threads: int) -> Callable[[Tensor], Tensor]:
    """The policy's CNN in onnxruntime: uint8 frames [B, H, W, 3] -> [B, n_embd]."""
    c = policy.config
    example = torch.zeros(1, 3, c.obs_height, c.obs_width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(policy.cnn, (example,), buffer, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(buffer.getvalue(), options,
                                   providers=["CPUExecutionProvider"])

    def encode(frames: Tensor) -> Tensor:
        x = frames.permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    return encode


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="tiny", help="named policy config")
    parser.add_argument("--context", type=int, default=16, help="context when acting")
    parser.add_argument("--envs", type=int, default=16, help="environments per decision")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of timings, each printed (best of three passes each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy = Policy(get_config(args.config, context=args.context)).eval()
    for p in policy.parameters():  # off the init's zeros and ones, so every weight matters
        p.add_(0.02 * torch.randn_like(p))
    B, K, c = args.envs, args.context, policy.config
    n = 2 * K
    frames = torch.randint(0, 256, (n, B, c.obs_height, c.obs_width, 3), dtype=torch.uint8)
    prev = torch.stack([torch.randint(0, b, (n, B)) for b in c.action_branches], dim=-1)
    lean, ort_encode = LeanStep(policy, B), onnx_cnn(policy, args.threads)

    def torch_encode(f: Tensor) -> Tensor:
        return policy.encode_frames(f[:, None])[:, 0]

    # Each variant acts the same: logits equal Policy.step's across slides (two windows).
    ref_cache, caches = policy.new_cache(B), {"lean": policy.new_cache(B),
                                              "lean+ort": policy.new_cache(B)}
    worst = {name: 0.0 for name in caches}
    for t in range(n):
        ref = torch.cat(policy.step(frames[t], prev[t], ref_cache)[0], dim=-1)
        for name, encode in (("lean", torch_encode), ("lean+ort", ort_encode)):
            got = lean(encode(frames[t]), prev[t], caches[name])
            worst[name] = max(worst[name], (got - ref).abs().max().item())
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, "
          f"MKL pre-packing {'on' if lean.mkl else 'off (no MKL)'}; {B} envs, context {K}")
    print("largest logit difference from Policy.step over two windows: "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))

    # The window each recompute slides (replaced, never written in place, so both may start
    # from one tensor).
    window = dict.fromkeys(("torch", "ort"),
                           policy.embed(frames[:K].transpose(0, 1), prev[:K].transpose(0, 1)))

    def recompute(t: int, name: str, encode: Callable[[Tensor], Tensor]) -> object:
        new = (encode(frames[t]) + policy.embed_actions(prev[t]))[:, None]
        window[name] = torch.cat([window[name][:, 1:], new], dim=1)
        return policy.forward_tokens(window[name])

    variants: dict[str, Callable[[int], object]] = {
        "cnn torch": lambda t: torch_encode(frames[t]),
        "cnn onnxruntime": lambda t: ort_encode(frames[t]),
        "step (shipped)": lambda t: policy.step(frames[t], prev[t], ref_cache),
        "lean step": lambda t: lean(torch_encode(frames[t]), prev[t], caches["lean"]),
        "lean step, ort cnn": lambda t: lean(ort_encode(frames[t]), prev[t], caches["lean+ort"]),
        "recompute": lambda t: recompute(t, "torch", torch_encode),
        "recompute, ort cnn": lambda t: recompute(t, "ort", ort_encode),
    }
    for round_ in range(args.rounds):
        ms = {}
        for name, fn in variants.items():  # in turns, so a burst of load hits all of them
            fn(0)
            best = float("inf")
            for _ in range(3):  # best of three passes over two windows (slides included)
                start = time.perf_counter()
                for t in range(n):
                    fn(t)
                best = min(best, time.perf_counter() - start)
            ms[name] = 1e3 * best / n
        print(f"round {round_ + 1}, ms per decision: "
              + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()))
        print(f"  recompute / cached: shipped {ms['recompute'] / ms['step (shipped)']:.2f}x, "
              f"lean {ms['recompute'] / ms['lean step']:.2f}x, lean with onnxruntime's CNN "
              f"{ms['recompute, ort cnn'] / ms['lean step, ort cnn']:.2f}x")


if __name__ == "__main__":
    main()
