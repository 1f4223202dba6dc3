"""Where an RL iteration's time goes: a few iterations of `agentalign rl` under cProfile, on one
thread, split into the phases of an iteration. Prints a table; asserts nothing.

    taskset -c 0 python benchmarks/rl_profile.py --run runs/demo --target left
    taskset -c 0 python benchmarks/rl_profile.py --run runs/demo --target left \\
        --set freeze_cnn=false --set samples_per_start=24      # the previous recipe's shape

The run folder is a finished pipeline run (its sft/ or align-T/prefft policy and reward-T
model). The phases are read from cProfile's cumulative times of named functions, so the same
script profiles older code too (`PYTHONPATH=OLD/python`), as long as the functions exist.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

import torch

# (phase, file suffix, function): cumulative seconds of that function
PHASES = [
    ("rollout (all)", "rollout/trajectories.py", "sample_trajectories"),
    ("  policy acting (CNN + cached step)", "rollout/actors.py", "act"),
    ("  environment step + render", "envs/island.py", "step"),
    ("reward model scoring", "models/reward.py", "__call__"),
    ("update (all)", "train/rl.py", "update"),
    ("  reference log-probs", "train/rl.py", "sequence_logprobs"),
    ("  backward", "torch/autograd/graph.py", "_engine_run_backward"),
    ("  AdamW step", "torch/optim/adam.py", "step"),
    ("CNN forward, wherever called", "models/policy.py", "encode_frames"),
]


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    total = 0.0
    for (file, _, func), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and file.replace("\\", "/").endswith(suffix):
            total += ct
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished pipeline run folder")
    parser.add_argument("--target", default="left")
    parser.add_argument("--policy", help="policy to start from (default: RUN/align-T/prefft "
                        "if present, else RUN/sft)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="rl setting overrides")
    args = parser.parse_args()
    from agentalign.config import load
    from agentalign.train import rl
    from agentalign.train.rl_config import RLSettings

    run = Path(args.run)
    policy = args.policy or (run / f"align-{args.target}" / "prefft"
                             if (run / f"align-{args.target}" / "prefft").exists()
                             else run / "sft")
    settings = load(RLSettings, None, [f"iterations={args.iterations}", "eval_episodes=0",
                                       "num_threads=1", *args.set])
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        profile = cProfile.Profile()
        profile.enable()
        result = rl.run(settings, policy, run / f"reward-{args.target}", args.target,
                        Path(out) / "rl", progress=False)
        profile.disable()
    stats = pstats.Stats(profile)
    total = cumulative(stats, "train/rl.py", "_rl")
    per = result.decisions / args.iterations
    print(f"torch {torch.__version__}, 1 thread; {args.iterations} iterations of "
          f"{settings.starts_per_iteration} starts x {settings.samples_per_start} samples, "
          f"{per:,.0f} decisions each; freeze_cnn "
          f"{getattr(settings, 'freeze_cnn', 'n/a')}")
    print(f"{'phase':40s} {'s/iteration':>12s} {'share':>7s}")
    for phase, suffix, name in PHASES:
        seconds = cumulative(stats, suffix, name)
        print(f"{phase:40s} {seconds / args.iterations:12.2f} {seconds / total:7.1%}")
    print(f"{'whole stage (incl. loading)':40s} {total / args.iterations:12.2f} {1:7.1%}")
    print(f"decisions/s: {result.decisions / result.train_seconds:,.0f} (profiler on)")


if __name__ == "__main__":
    main()
