"""Does data loading keep up with imitation training? Prints figures, asserts nothing.

- loader: frames/s of `WindowSampler.batch` alone (zlib decode + copies, one thread);
- step: frames/s of `train_step` on one fixed batch (no loading at all: the ceiling);
- trainer: frames/s of load + step with the background loader (`--prefetch`) and without (0).
Timings are the best of three, since a shared machine is rarely idle. Needs a corpus:

    agentalign collect --out runs/corpus
    PYTHONPATH=python python benchmarks/bc_throughput.py --corpus runs/corpus
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from agentalign.config import load
from agentalign.data.shards import Corpus
from agentalign.models.policy import Policy
from agentalign.train.bc import resolve_policy_config, train_step
from agentalign.train.bc_config import ImitationSettings
from agentalign.train.distributed import Ranks, cpu_settings
from agentalign.train.windows import Prefetcher, WindowSampler


def best_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="runs/corpus", help="a corpus folder")
    parser.add_argument("--steps", type=int, default=20, help="batches per timing")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--prefetch", type=int, default=4, help="loader depth to compare with 0")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="pretrain config override (repeatable)")
    args = parser.parse_args()

    cfg = load(ImitationSettings, None, args.overrides)
    policy_config = resolve_policy_config(cfg.model, None)
    length = cfg.context or policy_config.context
    corpus = Corpus(args.corpus, verify=False)
    no_previous = np.array(policy_config.action_branches)
    sampler = WindowSampler(corpus, np.arange(corpus.num_episodes), length, cfg.batch_size,
                            cfg.seed, 0, no_previous)
    policy = Policy(policy_config)
    optimizer = policy.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    ranks = Ranks(0, 1, 1, torch.device("cpu"), owns_group=False)
    frames = args.steps * cfg.batch_size * length
    fixed = sampler.batch(0)

    def trainer(depth: int) -> Callable[[], None]:
        def run() -> None:
            loader = Prefetcher(sampler.batch, 0, args.steps, depth)
            try:
                for step in range(args.steps):
                    train_step(policy, optimizer, loader.get(step), cfg.grad_clip, ranks)
            finally:
                loader.close()
        return run

    print(f"{policy.summary()}; {cfg.batch_size} windows x {length} steps per batch, "
          f"{args.threads} torch threads")
    with cpu_settings(args.threads):
        timings = {
            "loader": best_seconds(lambda: [sampler.batch(s) for s in range(args.steps)]),
            "step": best_seconds(lambda: [train_step(policy, optimizer, fixed, cfg.grad_clip,
                                                     ranks) for _ in range(args.steps)]),
            f"trainer, prefetch {args.prefetch}": best_seconds(trainer(args.prefetch)),
            "trainer, prefetch 0": best_seconds(trainer(0)),
        }
    for name, seconds in timings.items():
        print(f"{name:>22}: {frames / seconds:9,.0f} frames/s")


if __name__ == "__main__":
    main()
