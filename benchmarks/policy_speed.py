"""How fast the policy trains and acts on this CPU; prints figures, asserts nothing.

Training: frames/s for forward + backward + AdamW step on a batch of windows, with the model's
FLOPs per frame and the GFLOP/s that implies. Acting, per decision for a batch of envs:
- cached: `Policy.step`, one new token per decision against the KV cache (slides included);
- recompute: keep the last `context` input tokens, run the transformer over all of them;
- re-encode: run the whole model (CNN included) over the last `context` frames.
All three encode the newest frame with the CNN; "transformer only" subtracts that shared part.
Timings are the best of three, since a laptop (or a shared CI box) is rarely idle.

    PYTHONPATH=python python benchmarks/policy_speed.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from agentalign.models.policy import Policy, action_loss, get_config, no_previous_action


def seconds_per_call(fn: Callable[[], object], calls: int, repeats: int = 3) -> float:
    """Best of `repeats` timings after one warm-up call: the machine may be shared."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def bench_training(args: argparse.Namespace) -> None:
    config = get_config(args.config, context=args.train_context)
    model = Policy(config)
    optimizer = model.configure_optimizer()
    B, T, H, W = args.windows, config.context, config.obs_height, config.obs_width
    frames = torch.randint(0, 256, (B, T, H, W, 3), dtype=torch.uint8)
    actions = torch.stack([torch.randint(0, n, (B, T)) for n in config.action_branches], -1)
    prev_actions = torch.cat([no_previous_action(B)[:, None], actions[:, :-1]], dim=1)

    def train_step() -> None:
        loss = action_loss(model(frames, prev_actions), actions)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    dt = seconds_per_call(train_step, args.train_steps)
    fps, flops = B * T / dt, model.flops_per_frame()
    print(model.summary())
    print(f"training: {B} windows x {T} frames of {H}x{W}: {fps:,.0f} frames/s, "
          f"{flops / 1e6:.1f} MFLOP/frame (fwd+bwd), {fps * flops / 1e9:.1f} GFLOP/s")


@torch.no_grad()
def bench_acting(args: argparse.Namespace, batch: int) -> None:
    config = get_config(args.config, context=args.act_context)
    model = Policy(config).eval()
    K, H, W = config.context, config.obs_height, config.obs_width
    n = 2 * K  # decisions per timing: the cached one covers several slides of its window
    frames = torch.randint(0, 256, (n, batch, H, W, 3), dtype=torch.uint8)
    branches = config.action_branches
    prev_actions = torch.stack([torch.randint(0, b, (n, batch)) for b in branches], dim=-1)

    cache = model.new_cache(batch)
    for t in range(K):  # start from a full cache: the steady state of a long episode
        model.step(frames[t], prev_actions[t], cache)
    tokens = model.embed(frames[:K].transpose(0, 1), prev_actions[:K].transpose(0, 1))
    window = frames[:K].transpose(0, 1).contiguous()
    window_actions = prev_actions[:K].transpose(0, 1).contiguous()

    def run(decide: Callable[[int], object], decisions: int) -> float:
        return seconds_per_call(lambda: [decide(t) for t in range(decisions)], calls=1) / decisions

    def cached(t: int) -> object:
        return model.step(frames[t], prev_actions[t], cache)

    def recompute(t: int) -> object:
        nonlocal tokens
        new = model.embed(frames[t, :, None], prev_actions[t, :, None])
        tokens = torch.cat([tokens[:, 1:], new], dim=1)
        return model.forward_tokens(tokens)

    def reencode(t: int) -> object:
        window[:, :-1] = window[:, 1:].clone()
        window[:, -1] = frames[t]
        window_actions[:, :-1] = window_actions[:, 1:].clone()
        window_actions[:, -1] = prev_actions[t]
        return model(window, window_actions)

    def cnn_only(t: int) -> object:
        return model.encode_frames(frames[t, :, None])

    # Only the cached cost varies from decision to decision (slides), so it gets the long run.
    times = {name: run(fn, decisions) for name, fn, decisions in
             [("cnn", cnn_only, K), ("cached", cached, n), ("recompute", recompute, K),
              ("re-encode", reencode, K // 4)]}
    ms = {name: 1e3 * dt for name, dt in times.items()}
    print(f"acting, {batch} envs, context {K}, per decision: "
          + ", ".join(f"{name} {v:.2f} ms" for name, v in ms.items()))
    trunk = {name: max(ms[name] - ms["cnn"], 1e-9) for name in ("cached", "recompute")}
    print(f"  cached: {batch / times['cached']:,.0f} env-steps/s; speed-up vs recompute "
          f"{times['recompute'] / times['cached']:.1f}x (transformer only "
          f"{trunk['recompute'] / trunk['cached']:.1f}x), vs re-encode "
          f"{times['re-encode'] / times['cached']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="tiny", help="named policy config")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--windows", type=int, default=32, help="training windows per batch")
    parser.add_argument("--train-context", type=int, default=16, help="training window length")
    parser.add_argument("--train-steps", type=int, default=10, help="timed optimiser steps")
    parser.add_argument("--act-context", type=int, default=32, help="context when acting")
    parser.add_argument("--envs", type=int, nargs="*", default=[16, 64],
                        help="env batches to time acting for (none: training only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_training(args)
    for batch in args.envs:
        bench_acting(args, batch)


if __name__ == "__main__":
    main()
