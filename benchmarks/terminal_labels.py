"""A copy of a label folder whose rollouts end with their terminal frame: the issue's
"terminal frame" lever, for the reward model's label-scaling study. Prints counts; asserts
nothing.

Rollouts keep the frame at each decision, so the view after the last action (the agent on the
pad it reached, or over the water) is never seen by a reward model. The island's dynamics are
stateless (position, heading and the action give the next state), so that frame is
re-simulated from each run's last recorded position, heading and action and appended as one more
step (its own action repeats the last one; nothing reads it: a token carries the previous
action). Positions are stored as float32 and drawn on the 0.125 m raster, so a re-rendered view
can differ a little from the one the run would have shown (a grass shade or an edge one cell
over). The labels are the same pairs and answers.

    PYTHONPATH=python python benchmarks/terminal_labels.py --labels RUN/label --out OUT
    agentalign reward --study --labels OUT --target left --init RUN/pretrain --out STUDY
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from agentalign.atomic import write_json_atomic
from agentalign.data.shards import MANIFEST, Corpus, Episode, write_shard
from agentalign.envs.island import IslandVectorEnv


def next_frames(positions: np.ndarray, headings: np.ndarray, actions: np.ndarray,
                layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames uint8 [N, H, W, 3], positions [N, 2] and headings [N] after taking `actions`
    [N, 2] from `positions` [N, 2] and `headings` [N] on the island."""
    env = IslandVectorEnv(len(positions), layout=layout, spawn_jitter=0.0)
    env.reset(options={"positions": np.asarray(positions, dtype=np.float64),
                       "headings": np.asarray(headings, dtype=np.float64)})
    frames, *_ = env.step(np.asarray(actions, dtype=np.int64))
    return frames, env.positions.copy(), env.headings.copy()


def with_terminal_frames(source: Path, out: Path, layout: str) -> int:
    """Rewrite the corpus `source` into `out`, each episode one step longer; returns episodes."""
    corpus = Corpus(source)
    episodes = list(corpus.iter_episodes())
    frames, positions, headings = next_frames(
        np.stack([e["positions"][-1] for e in episodes]),
        np.array([e["headings"][-1] for e in episodes]),
        np.stack([e["actions"][-1] for e in episodes]), layout)
    longer: dict[int, list[Episode]] = {}  # by shard, each shard's episodes in order
    for i, e in enumerate(episodes):
        longer.setdefault(e["shard"], []).append(Episode(
            frames=np.concatenate([e["frames"], frames[i][None]]),
            actions=np.concatenate([e["actions"], e["actions"][-1:]]),
            positions=np.concatenate([e["positions"], positions[i][None]]),
            headings=np.concatenate([e["headings"], headings[i][None]]),
            outcome=e["outcome"], player=e["player"], spawn=e["spawn"], target=e["target"]))
    out.mkdir(parents=True)
    entries = [{**entry, **write_shard(out / entry["file"], longer[k],
                                       dict(corpus.shards[k].metadata))}
               for k, entry in enumerate(corpus.entries)]
    manifest = json.loads((source / MANIFEST).read_text())
    write_json_atomic(out / MANIFEST, {**manifest, "shards": entries})
    return len(episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, required=True, help="a folder made by "
                        "`agentalign label`")
    parser.add_argument("--out", type=Path, required=True, help="the new label folder")
    parser.add_argument("--layout", default="jumppad_island", help="the labels' island")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: pick a new folder")
    args.out.mkdir(parents=True)
    for item in sorted(args.labels.iterdir()):
        if (item / MANIFEST).exists():
            n = with_terminal_frames(item, args.out / item.name, args.layout)
            print(f"{item.name}: {n} episodes, each with its terminal frame")
        elif item.is_file():
            shutil.copy2(item, args.out / item.name)


if __name__ == "__main__":
    main()
