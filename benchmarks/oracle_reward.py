"""RL against the designer's own utility instead of a reward model: a diagnostic, not a recipe.

    python benchmarks/oracle_reward.py --policy RUN/sft --intent campfire-middle \
        --out runs/oracle [--scale 10] [--set along=0.5 --set iterations=100 ...]
    agentalign evaluate runs/oracle --episodes 1000 --seed 4242 --intent campfire-middle

When an alignment misses an intent there are two suspects: the reward model (it does not pay for
the behaviour) and RL's exploration (no run ever shows it, so nothing pays). This runs
`agentalign rl` unchanged except for the score of each episode, which is the intent's utility
(envs.intents: the synthetic designer's measure) divided by `--scale`, read from the episode's
true track. If RL reaches the intent here, the reward model is what to fix; if not, the starts
or the budget are. The true tracks reach the score only: the policy still learns from frames
and actions, and `--set` takes configs/rl.yaml's keys.

How: the rollouts of each RL batch are played by `rollout.cluster.play_on`; a wrapper keeps
each episode's track, keyed by its frames and actions, and the score looks them up. Local
rollouts only (no --cluster).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import agentalign.rollout.trajectories as trajectories
import agentalign.train.rl as rl
from agentalign.config import load
from agentalign.envs.intents import intent_by_name
from agentalign.envs.layout import load_layout
from agentalign.models.reward import RewardFunction
from agentalign.train.rl_config import RLSettings


def episode_key(frames: np.ndarray, actions: np.ndarray) -> tuple[int, int, int, int]:
    """An episode's identity from what the learner sees (the scorer gets nothing else)."""
    return (len(actions), hash(frames[0].tobytes()), hash(frames[-1].tobytes()),
            hash(np.asarray(actions, np.int64).tobytes()))


def oracle(intent_name: str, layout: str, scale: float) -> RewardFunction:
    """The intent's utility / scale as a RewardFunction; installs the track-keeping wrapper."""
    intent = intent_by_name(intent_name, None, load_layout(layout))
    tracks: dict[tuple[int, int, int, int], Any] = {}
    play_on = trajectories.play_on

    def keeping(*args: Any, **kwargs: Any) -> Any:
        played = play_on(*args, **kwargs)
        for e in played.episodes:
            if e.frames is not None:
                tracks[episode_key(e.frames[:e.length], e.actions)] = e.track()
        return played

    trajectories.play_on = keeping

    def score(frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
        # two samples from one start can be the same run: look up, then forget the batch
        found = [tracks[episode_key(f, a)] for f, a in zip(frames, actions, strict=True)]
        tracks.clear()
        return np.array([intent.utility(t) / scale for t in found])

    return RewardFunction(score, f"oracle:{intent_name}/{scale:g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", type=Path, required=True, help="the policy to align")
    parser.add_argument("--intent", default="campfire-middle", help="packaged intent's name")
    parser.add_argument("--out", type=Path, required=True, help="an rl stage folder")
    parser.add_argument("--scale", type=float, default=10.0,
                        help="utility per score unit: 10 puts a pad's 100 at 10, as a reward "
                        "model's scores run")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="configs/rl.yaml settings")
    args = parser.parse_args(argv)
    settings = load(RLSettings, None, args.overrides)
    score = oracle(args.intent, settings.layout, args.scale)
    print(rl.summary(rl.run(settings, args.policy, score, args.intent, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
