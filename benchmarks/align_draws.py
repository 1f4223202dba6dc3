"""Wall time of `align`'s RL draws one after another against side by side (`draw_workers`).

    python benchmarks/align_draws.py --policy RUN/sft --reward RUN/reward-middle --target middle \
        [--draws 2] [--workers 2] [--iterations 20] [--out runs/bench-draws]

Runs `align` twice on the same start (preference fine-tuning off: `prefft.rounds=0`, as the
studio's way for rubrics), `--draws` RL draws of `--iterations` each: once with `draw_workers`
1, once with `--workers`. Prints each wall time, the ratio, and whether every draw's weights and
the pick came out the same (they must: RL acts on one thread). Each arm starts from an empty
folder. Why: a draw is a whole RL on one thread, so on a machine with more cores than one the
draws need not cost K RLs' time.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from agentalign.config import load
from agentalign.models.checkpoint import load_weights
from agentalign.train.align import run as align
from agentalign.train.align_config import AlignSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="the policy to align (an SFT agent)")
    parser.add_argument("--reward", required=True, help="a reward model of --target")
    parser.add_argument("--target", required=True, help="the reward model's intent")
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-draws"))
    args = parser.parse_args()
    base = load(AlignSettings, overrides=["prefft.rounds=0", f"rl.iterations={args.iterations}",
                                          f"draws={args.draws}"])
    seconds, picks = {}, {}
    for workers in (1, args.workers):
        out = args.out / f"workers-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = align(base.replace(draw_workers=workers), args.policy, args.reward,
                       args.target, out, progress=False)
        seconds[workers], picks[workers] = time.perf_counter() - start, result.pick
    same = picks[1] == picks[args.workers]
    for i in range(args.draws):
        folder = "rl" if i == 0 else f"rl-{i}"
        one, side = (load_weights(args.out / f"workers-{w}" / folder, kind="policy")[0]
                     for w in (1, args.workers))
        same = same and all(torch.equal(one[key], value) for key, value in side.items())
    print(f"align, {args.draws} RL draws x {args.iterations} iterations: one after another "
          f"{seconds[1]:.1f} s, {args.workers} workers {seconds[args.workers]:.1f} s "
          f"({seconds[1] / seconds[args.workers]:.2f}x); draws and pick the same: {same}")


if __name__ == "__main__":
    main()
