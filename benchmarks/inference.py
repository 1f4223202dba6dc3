"""Acting speed of an exported personality: onnxruntime (CPU) against PyTorch eager, and the
context carried in memory against recomputing it. Prints figures, asserts nothing.

Four ways to make one decision per agent, for a batch of agents:
- onnxruntime, KV memory: the exported personality (agentalign.export.onnx), its key/value
  cache carried in `recurrent_in`/`recurrent_out` as Unity carries it; two tokens per decision.
- onnxruntime, token window: the alternative memory, the window's input tokens; every decision
  runs the transformer over the whole window (timed full: `context` tokens; the slide schedule
  averages about 3/4 of that).
- pytorch, KV cache: `Policy.step`, what rollouts and evaluation use (slides included).
- pytorch, token window: the same window recompute, eagerly.
Each includes the CNN on the new frame. Latency is the time of one call (every agent of the
batch gets its action after it); throughput is decisions per second. Best of a few repeats,
since a laptop (or a shared CI box) is rarely idle.

    PYTHONPATH=python python benchmarks/inference.py --config tiny --batches 1,16,64
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
from torch import Tensor

from agentalign.export.onnx import MemoryLayout, export_model
from agentalign.models.policy import Policy, get_config, no_previous_action, sample


def best_seconds(variants: dict[str, Callable[[], object]], calls: int, repeats: int
                 ) -> dict[str, float]:
    """Best of `repeats` timings of `calls` calls per variant, after two warm-up calls. The
    variants take turns within each repeat, so a burst of load from elsewhere on a shared
    machine hits them alike instead of one of them."""
    for fn in variants.values():
        fn()
        fn()
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    return best


class TokenWindowStep(nn.Module):
    """One decision with the window's input tokens as the memory: embed the new frame, append
    it, run the transformer over the whole window. (obs NCHW float, previous action, the
    window's other tokens [B, context - 1, n_embd]) -> logits, the next window's tokens."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy.eval()

    def forward(self, obs: Tensor, prev_actions: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        p = self.policy
        token = p.cnn(obs)
        for i, emb in enumerate(p.action_emb):
            token = token + emb(prev_actions[:, i])
        window = torch.cat([tokens, token[:, None]], dim=1)
        logits = torch.cat([branch[:, -1] for branch in p.forward_tokens(window)], dim=-1)
        return logits, window[:, 1:]


def ort_session(model_bytes: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def token_window_bytes(policy: Policy) -> bytes:
    """TokenWindowStep as ONNX (opset 14, the lowest the exporter writes attention at)."""
    c = policy.config
    dummy = (torch.rand(2, 3, c.obs_height, c.obs_width), no_previous_action(2),
             torch.zeros(2, c.context - 1, c.n_embd))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(TokenWindowStep(policy), dummy, buffer, dynamo=False, opset_version=14,
                          input_names=["obs", "prev_actions", "tokens"],
                          output_names=["logits", "tokens_out"],
                          dynamic_axes={n: {0: "batch"} for n in
                                        ["obs", "prev_actions", "tokens", "logits", "tokens_out"]})
    return buffer.getvalue()


@torch.no_grad()
def bench_batch(policy: Policy, sessions: dict[str, ort.InferenceSession], batch: int,
                calls: int, repeats: int) -> dict[str, float]:
    """Seconds per call of each variant for `batch` agents."""
    c, rng = policy.config, np.random.default_rng(0)
    layout = MemoryLayout.of(c)
    pixels = rng.integers(0, 256, (batch, c.obs_height, c.obs_width, 3), dtype=np.uint8)
    obs = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    masks = np.ones((batch, sum(c.action_branches)), np.float32)
    state = {"memory": np.zeros((batch, 1, layout.size), np.float32),
             "tokens": np.zeros((batch, c.context - 1, c.n_embd), np.float32),
             "tokens_pt": torch.zeros(batch, c.context - 1, c.n_embd),
             "cache": policy.new_cache(batch), "previous": no_previous_action(batch)}
    frames, kv = torch.from_numpy(pixels), sessions["kv"]
    window, window_pt = sessions["window"], TokenWindowStep(policy)
    prev_np = no_previous_action(batch).numpy()

    def ort_kv() -> None:
        _, state["memory"] = kv.run(["discrete_actions", "recurrent_out"], {
            "obs_0": obs, "action_masks": masks, "recurrent_in": state["memory"]})

    def ort_window() -> None:
        _, state["tokens"] = window.run(None, {"obs": obs, "prev_actions": prev_np,
                                               "tokens": state["tokens"]})

    def torch_kv() -> None:
        logits, state["cache"] = policy.step(frames, state["previous"], state["cache"])
        state["previous"] = sample(logits)

    def torch_window() -> None:
        _, state["tokens_pt"] = window_pt(torch.from_numpy(obs), state["previous"],
                                          state["tokens_pt"])

    variants = {"onnxruntime, KV memory": ort_kv, "onnxruntime, token window": ort_window,
                "pytorch, KV cache": torch_kv, "pytorch, token window": torch_window}
    return best_seconds(variants, calls, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny", help="named policy config (tiny, small, "
                        "paper)")
    parser.add_argument("--context", type=int, help="override the config's context")
    parser.add_argument("--batches", default="1,16,64", help="agent batches, comma-separated")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for both onnxruntime and torch (default 1: a game "
                        "runs inference beside everything else)")
    parser.add_argument("--decisions", type=int, default=400,
                        help="decisions per timing (calls = decisions / batch, at least 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timings; the best is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    overrides = {"context": args.context} if args.context else {}
    policy = Policy(get_config(args.config, **overrides)).eval()
    c, layout = policy.config, MemoryLayout.of(policy.config)
    sessions = {"kv": ort_session(export_model(policy).SerializeToString(), args.threads),
                "window": ort_session(token_window_bytes(policy), args.threads)}
    window_floats = (c.context - 1) * c.n_embd + 1 + len(c.action_branches)
    print(f"{policy.summary()}")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s)")
    print(f"memory per agent: KV cache {layout.size:,} floats ({layout.size * 4 / 1024:.1f} KB), "
          f"token window {window_floats:,} floats ({window_floats * 4 / 1024:.1f} KB)")
    print(f"{'batch':>5s}  {'variant':28s}{'ms/call':>9s}{'us/decision':>13s}"
          f"{'decisions/s':>13s}")
    results: dict[int, dict[str, float]] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        calls = max(10, args.decisions // batch)
        results[batch] = bench_batch(policy, sessions, batch, calls, args.repeats)
        for name, seconds in results[batch].items():
            print(f"{batch:>5d}  {name:28s}{seconds * 1e3:>9.3f}{seconds * 1e6 / batch:>13.1f}"
                  f"{batch / seconds:>13,.0f}")
    if 1 in results:
        latency = results[1]["onnxruntime, KV memory"] * 1e3
        print(f"goal <= 1 ms per decision at batch 1: onnxruntime {latency:.3f} ms "
              f"({'met' if latency <= 1.0 else 'NOT met'})")
    print("onnxruntime KV memory vs pytorch KV cache (eager): " + ", ".join(
        f"batch {b}: {r['pytorch, KV cache'] / r['onnxruntime, KV memory']:.1f}x faster"
        for b, r in results.items()))
    print("KV memory vs token window, onnxruntime: " + ", ".join(
        f"batch {b}: {r['onnxruntime, token window'] / r['onnxruntime, KV memory']:.1f}x faster"
        for b, r in results.items()))


if __name__ == "__main__":
    main()
