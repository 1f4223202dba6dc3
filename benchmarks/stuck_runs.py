"""Where a personality's runs time out, and how its reward model scores them.

Plays `--episodes` spawn starts of `--policy` (sampled actions), keeps those of spawn point
`--spawn` (0-based; the results page's "spawn 2" is 1), scores them with `--reward`, and prints
per outcome the reward model's scores, then each timeout's start, end, the obstacle it ends
against and how many of its last decisions left it where it was. For the middle personality's
last points (docs/results.md, "Levers tried"): is the reward signal there, and where do runs
stick? Asserts nothing.

    PYTHONPATH=python python benchmarks/stuck_runs.py --policy RUN/align-middle \
        --reward RUN/reward-middle --target middle --spawn 1
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from agentalign.envs.layout import load_layout
from agentalign.models.checkpoint import load_policy
from agentalign.rollout import PolicyActor, play, spawn_starts
from agentalign.spec import OUTCOME_CODES
from agentalign.train.prefft import reward_function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True)
    parser.add_argument("--reward", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--spawn", type=int, default=1, help="0-based spawn point")
    parser.add_argument("--episodes", type=int, default=2400, help="starts drawn (all spawns)")
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy, _ = load_policy(args.policy)
    layout = load_layout()
    score = reward_function(args.reward, policy.config, args.target)
    starts = spawn_starts(layout, args.episodes, args.seed, 0.5)
    starts = starts.part(np.flatnonzero(starts.spawns == args.spawn))
    played = play(PolicyActor(policy), starts, num_envs=64, layout=layout, max_steps=100,
                  seed=args.seed, record_frames=args.episodes)
    episodes = played.episodes
    scores = np.asarray(score([e.frames[:e.length] for e in episodes],
                              [e.actions for e in episodes]))
    outcomes = np.array([e.outcome for e in episodes])
    names = {code: name for name, code in OUTCOME_CODES.items()}
    target = outcomes == OUTCOME_CODES[args.target]
    print(f"{len(episodes)} episodes from spawn {args.spawn} (0-based)")
    for code in np.unique(outcomes):
        mine = scores[outcomes == code]
        below = f"; {100 * np.mean(scores[target] < mine.mean()):.1f}% of {args.target} runs " \
                "score below their mean" if code != OUTCOME_CODES[args.target] else ""
        print(f"{names[code]:>8}: {len(mine):4d} runs, score {mine.mean():.2f} "
              f"(sd {mine.std():.2f}){below}")
    for e in (e for e in episodes if e.outcome == OUTCOME_CODES["timeout"]):
        moved = np.flatnonzero(np.linalg.norm(np.diff(e.positions, axis=0), axis=1) > 1e-4)
        still = e.length - 1 - (moved[-1] if len(moved) else -1)
        end = e.positions[e.length]
        near = min(layout.obstacles, key=lambda o: max(abs(end[0] - o.center[0]) - o.size[0] / 2,
                                                       abs(end[1] - o.center[1]) - o.size[1] / 2))
        start = e.positions[0]
        print(f"timeout: start ({start[0]:.1f}, {start[1]:.1f}) end ({end[0]:.2f}, {end[1]:.2f}) "
              f"by {near.name}; still for its last {still} decisions")


if __name__ == "__main__":
    main()
