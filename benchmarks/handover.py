"""Where a personality goes from where another agent's run left off: a diagnostic, not a recipe.

    python benchmarks/handover.py --first RUN/sft --then RUN/align-middle \
        [--episodes 256] [--at 1 2 4 8 16 32] [--turns 0 10 20 -20 40] [--intent campfire-middle]

Two tables, outcomes in percent of `--episodes` runs from the game's spawns (spawn jitter 0.5 m,
the evaluation's), sampled actions:
- `--then` alone, its spawn heading turned by each of `--turns` degrees (clockwise);
- hand-over runs: `--first` plays decisions 0 .. at-1, then `--then` plays the rest with an
  empty context (as a personality swapped in by the gRPC server or the studio's Personalities
  page starts), for each `--at`; with `--intent`, also the share that satisfies it.

Why: a studio pool can only show a designer what some agent does. A run that hands over from the
SFT agent (whose left-bound runs pass the campfire) to the middle personality would show "pass
the campfire, then the middle pad", which neither shows alone, if the personality went to its pad
from wherever it is handed the run. The tables say whether it does.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentalign.envs.intents import intent_by_name
from agentalign.envs.layout import load_layout
from agentalign.models.checkpoint import load_policy
from agentalign.rollout.actors import PolicyActor
from agentalign.rollout.loop import Rollout, play
from agentalign.rollout.starts import Starts, spawn_starts
from agentalign.spec import OUTCOMES


class HandoverActor:
    """`first` plays each episode's decisions before `at`, `then` the rest, starting with an
    empty context at decision `at` (it is told the episode begins there)."""

    def __init__(self, first: PolicyActor, then: PolicyActor, at: int) -> None:
        self.first, self.then, self.at = first, then, at
        self.episode_of = np.zeros(0, dtype=np.int64)
        self.seed = 0

    def begin(self, starting: np.ndarray, episodes: np.ndarray, seed: int) -> None:
        self.first.begin(starting, episodes, seed)
        self.then.begin(starting, episodes, seed)
        if len(self.episode_of) != len(starting):
            self.episode_of = np.zeros(len(starting), dtype=np.int64)
        self.episode_of[starting] = episodes[starting]
        self.seed = seed

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        decision = self.first.steps.copy()
        if (now := decision == self.at).any():
            self.then.begin(now, self.episode_of, self.seed)
        first, then = self.first.act(frames, info), self.then.act(frames, info)
        taken = np.where((decision >= self.at)[:, None], then, first)
        self.first.previous = torch.from_numpy(taken).to(self.first.device)
        return taken


def outcome_row(label: str, played: Rollout, intent: Any) -> str:
    n = len(played.episodes)
    counts = np.bincount([e.outcome for e in played.episodes], minlength=len(OUTCOMES))
    cells = " | ".join(f"{100 * c / n:.1f}" for c in counts)
    if intent is None:
        return f"| {label} | {cells} |"
    satisfied = sum(intent.satisfied(e.track()) for e in played.episodes)
    return f"| {label} | {cells} | {100 * satisfied / n:.1f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=Path, required=True, help="who plays the start")
    parser.add_argument("--then", type=Path, required=True, help="who is handed the run")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--at", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32],
                        help="hand-over decisions")
    parser.add_argument("--turns", type=float, nargs="+", default=[0, 10, 20, -20, 40],
                        help="degrees the spawn heading is turned for `--then` alone")
    parser.add_argument("--intent", default=None, help="packaged intent whose rate to add")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--num-envs", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    layout = load_layout("jumppad_island")
    intent = intent_by_name(args.intent, None, layout) if args.intent else None
    first, _ = load_policy(args.first)
    then, _ = load_policy(args.then)
    starts = spawn_starts(layout, args.episodes, args.seed, 0.5)
    header = " | ".join(OUTCOMES) + (f" | {args.intent}" if intent else "")
    rule = "|---" * (len(OUTCOMES) + 1 + bool(intent)) + "|"

    def run(actor: Any, chosen: Starts) -> Rollout:
        return play(actor, chosen, layout=layout, num_envs=args.num_envs, seed=args.seed,
                    record_frames=0)

    print(f"{args.then} alone, spawn heading turned ({args.episodes} runs, % of them)")
    print(f"| turned | {header} |\n{rule}")
    for turn in args.turns:
        turned = dataclasses.replace(starts, headings=starts.headings + turn)
        print(outcome_row(f"{turn:+g} deg", run(PolicyActor(then), turned), intent))
    print(f"\n{args.first}, then {args.then} from decision `at`, empty context")
    print(f"| at | {header} |\n{rule}")
    print(outcome_row("never (first alone)", run(PolicyActor(first), starts), intent))
    for at in args.at:
        actor = HandoverActor(PolicyActor(first), PolicyActor(then), at)
        print(outcome_row(str(at), run(actor, starts), intent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
