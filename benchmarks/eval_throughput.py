"""Evaluation throughput: episodes and decisions per second of the rollout loop.

Plays the same starts with a randomly initialised policy of a named config (KV-cached, sampled
actions, one batched call per decision) and with the scripted gameplay population, and prints
episodes/s, decisions/s and the share of the time spent inside the actor (the rest is the
island, the bookkeeping and the progress bar). A random policy mostly times out, so its
episodes are long (~97 decisions): decisions/s is the figure to compare across policies.

    python benchmarks/eval_throughput.py [--config tiny] [--episodes 256] [--num-envs 64]
                                         [--threads N]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from agentalign.collect_config import CollectSettings
from agentalign.config import defaults
from agentalign.data.players import Population
from agentalign.envs.layout import load_layout
from agentalign.models.policy import Policy, get_config
from agentalign.rollout import Actor, PlayerActor, PolicyActor, spawn_starts
from agentalign.rollout import play as rollout


class Timed:
    """Wraps an actor and adds up the seconds spent in its calls."""

    def __init__(self, actor: Actor) -> None:
        self.actor, self.seconds = actor, 0.0

    def begin(self, starting: np.ndarray, episodes: np.ndarray, seed: int) -> None:
        t = time.perf_counter()
        self.actor.begin(starting, episodes, seed)
        self.seconds += time.perf_counter() - t

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        t = time.perf_counter()
        actions = self.actor.act(frames, info)
        self.seconds += time.perf_counter() - t
        return actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny", help="policy config name")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    layout = load_layout()
    torch.manual_seed(args.seed)
    policy = Policy(get_config(args.config)).eval()
    c = policy.config
    starts = spawn_starts(layout, args.episodes, args.seed)
    print(f"{args.episodes} episodes, {args.num_envs} envs, {torch.get_num_threads()} torch "
          f"threads; {policy.summary()}")
    population = Population(defaults(CollectSettings).players["corpus"], layout)
    actors = {f"policy {c.name} (sampled)": PolicyActor(policy),
              f"policy {c.name} (greedy)": PolicyActor(policy, greedy=True),
              "scripted corpus players": PlayerActor(population, seed=args.seed)}
    warm = PolicyActor(policy)  # first calls pay for oneDNN's kernel selection
    rollout(warm, spawn_starts(layout, 8, 0), num_envs=8, layout=layout, height=c.obs_height,
            width=c.obs_width, max_steps=10, progress=False)
    print(f"{'actor':32s}{'episodes/s':>12s}{'decisions/s':>13s}{'mean length':>13s}"
          f"{'in actor':>10s}")
    for name, actor in actors.items():
        timed = Timed(actor)
        played = rollout(timed, starts, num_envs=args.num_envs, layout=layout,
                         height=c.obs_height, width=c.obs_width, seed=args.seed,
                         record_frames=0, progress=False)
        n = len(played.episodes)
        print(f"{name:32s}{n / played.seconds:>12.1f}{played.decisions / played.seconds:>13,.0f}"
              f"{played.decisions / n:>13.1f}{100 * timed.seconds / played.seconds:>9.0f}%")


if __name__ == "__main__":
    main()
