"""Rollouts on Ray actors against the local loop: decisions/s, per core used, and what travels.

Plays the same N episodes (a `tiny` policy, spawn starts) with the local loop and with
`rollout.cluster.play_on_cluster` on 1 and 2 actors of a local Ray (loopback), timed back to
back in one process. "Per core" divides by the cores the rollout occupies (local: the torch
threads; Ray: one per actor). Bytes: what a part's result carries back (its pickled Rollout)
and the policy sent once per rollout, per env step. Actor start-up (a fresh Python importing
torch) is part of the cluster's time: it is what a stage pays per call. Prints, asserts nothing.

    python benchmarks/distributed.py --episodes 512 --num-envs 64
"""

from __future__ import annotations

import argparse
import os
import pickle

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback, before Ray loads
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch

from agentalign.envs.layout import load_layout
from agentalign.models.policy import Policy, get_config
from agentalign.rollout.actors import PolicyActor
from agentalign.rollout.cluster import Cluster, connect, play_on_cluster
from agentalign.rollout.loop import play
from agentalign.rollout.starts import spawn_starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--actors", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = Policy(get_config("tiny")).eval()
    starts = spawn_starts(load_layout(), args.episodes, 0, 0.5)
    options = {"num_envs": args.num_envs, "seed": 0, "record_frames": 0}
    local = play(PolicyActor(policy), starts, **options)
    decisions = local.decisions
    print(f"{args.episodes} episodes, {decisions} decisions, {local.env_steps} env steps "
          f"(local), num_envs {args.num_envs}, {os.cpu_count()} cores")
    print("| run | seconds | decisions/s | cores | decisions/s per core | vs local per core |")
    print("|---|---:|---:|---:|---:|---:|")
    base = decisions / local.seconds
    print(f"| local loop, 1 thread | {local.seconds:.2f} | {base:,.0f} | 1 | {base:,.0f} | 1.00 |")
    connect(Cluster())
    for n in args.actors:
        rollout = play_on_cluster(Cluster(actors=n), PolicyActor(policy), starts, **options)
        rate = rollout.decisions / rollout.seconds
        print(f"| Ray, {n} actor(s) | {rollout.seconds:.2f} | {rate:,.0f} | {n} | "
              f"{rate / n:,.0f} | {rate / n / base:.2f} |")
    sent = len(pickle.dumps(PolicyActor(policy)))
    back = len(pickle.dumps(local))
    print(f"bytes: the policy once {sent:,} ({sent / local.env_steps:,.0f} per env step); the "
          f"episodes back {back:,} ({back / local.env_steps:,.0f} per env step, "
          f"{back / decisions:,.0f} per decision: positions, headings, actions)")


if __name__ == "__main__":
    main()
