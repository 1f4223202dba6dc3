"""How well a reward model ranks a policy's runs from a given start mix, against the labeller.

Plays `--episodes` runs of `--policy` (sampled actions) from spawn starts with a share
`--anywhere` started anywhere on the island, scores them with `--reward`, and prints the pairwise
accuracy against the synthetic labeller (all pairs and easy ones: different outcomes) and the AUC
of the score for "reached the target" against the rest. Asserts nothing.

    PYTHONPATH=python python benchmarks/reward_ranking.py --policy RUN/sft \
        --reward RUN/reward-middle --target middle --anywhere 1.0
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from agentalign.envs.layout import load_layout
from agentalign.models.checkpoint import load_policy
from agentalign.rollout import PolicyActor, play, training_starts
from agentalign.spec import OUTCOME_CODES
from agentalign.train.preferences import SyntheticLabeller, TrajectorySummary
from agentalign.train.prefft import reward_function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True)
    parser.add_argument("--reward", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--anywhere", type=float, default=1.0)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=777)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy, _ = load_policy(args.policy)
    layout = load_layout()
    score = reward_function(args.reward, policy.config, args.target)
    starts = training_starts(layout, args.episodes, args.seed, 0.5, args.anywhere)
    played = play(PolicyActor(policy), starts, num_envs=64, layout=layout,
                  height=policy.config.obs_height, width=policy.config.obs_width,
                  seed=args.seed, record_frames=args.episodes).episodes
    scores = score([e.frames[:e.length] for e in played], [e.actions for e in played])
    labeller = SyntheticLabeller(args.target, [p.position for p in layout.pads])
    facts = [TrajectorySummary(int(e.outcome), (float(e.positions[-1][0]),
                                                float(e.positions[-1][1])), int(e.length))
             for e in played]
    rng = np.random.default_rng(0)
    right = total = easy_right = easy = 0
    for _ in range(args.pairs):
        a, b = rng.choice(len(played), 2, replace=False)
        choice = labeller.prefer(facts[a], facts[b])
        if choice is None:
            continue
        hit = (0 if scores[a] > scores[b] else 1) == choice
        total, right = total + 1, right + hit
        if facts[a].outcome != facts[b].outcome:
            easy, easy_right = easy + 1, easy_right + hit
    reached = np.array([e.outcome for e in played]) == OUTCOME_CODES[args.target]
    auc = (scores[reached][:, None] > scores[~reached][None]).mean() \
        if reached.any() and (~reached).any() else float("nan")
    print(f"anywhere {args.anywhere}: target reached in {reached.mean():.1%} of "
          f"{len(played)} runs; pairwise accuracy {right / total:.1%} on {total} pairs "
          f"(easy {easy_right / easy:.1%} on {easy}); AUC reached-target {auc:.3f}")


if __name__ == "__main__":
    main()
