"""What pre-training's self-supervised objective (`future_weight`, train/future.py) costs per
step: the trainer's `train_step` with it off and on, on the same batches of a corpus, timed in
turns (off, on, off, on, ...) in one process so that a busy machine slows both alike. Prints
milliseconds per step and the ratio; asserts nothing.

    python benchmarks/pretrain_step.py --corpus runs/replicates/s0/corpus --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from agentalign.config import load
from agentalign.models.policy import Policy
from agentalign.train.bc import Future, resolve_policy_config, train_step
from agentalign.train.bc_config import ImitationSettings
from agentalign.train.distributed import ONE_PROCESS
from agentalign.train.future import FuturePredictor
from agentalign.train.windows import WindowSampler, open_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="a folder made by `agentalign collect`")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per arm")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load(ImitationSettings)
    config = resolve_policy_config(cfg.model, None)
    corpus = open_corpus(args.corpus)
    no_previous = np.array(config.action_branches, dtype=np.int64)
    sampler = WindowSampler(corpus, np.arange(corpus.num_episodes), config.context,
                            cfg.batch_size, 0, 0, no_previous, cfg.windows, ends=True)
    batches = [sampler.batch(step) for step in range(args.steps + 3)]
    arms = {}
    for name in ("off", "on"):
        torch.manual_seed(0)
        policy = Policy(config).train()
        optimizer = policy.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
        future = None
        if name == "on":
            future = Future(FuturePredictor(config.n_embd), 1.0, cfg.future_temperature)
            future.add_to(optimizer, cfg.weight_decay)
        arms[name] = (policy, optimizer, future, [])
    for i, batch in enumerate(batches):
        for _name, (policy, optimizer, future, times) in arms.items():
            started = time.perf_counter()
            train_step(policy, optimizer, batch, cfg.grad_clip, ONE_PROCESS, future)
            if i >= 3:  # warm-up steps untimed
                times.append(time.perf_counter() - started)
    off, on = (1e3 * float(np.median(arms[k][3])) for k in ("off", "on"))
    print(f"tiny, batch {cfg.batch_size} x {config.context}, {args.threads} thread(s), "
          f"{args.steps} steps each, median ms/step: imitation only {off:.1f}, with the future "
          f"objective {on:.1f}; ratio {on / off:.3f}")


if __name__ == "__main__":
    main()
