"""Which pairs to ask: random vs ensemble disagreement vs entropy, simulated without a browser.

    python benchmarks/studio_selection.py --labels runs/studio-e2e/s0/pool/labels \
        --encoder runs/demo/sft [--intent campfire-middle] [--budget 300] [--repeats 2] \
        [--rules random entropy top] [--features colour|encoder]

On a studio pool (a label folder with pool-* corpora, e.g. the one benchmarks/studio_e2e.py
records), a designer (IntentLabeller on the runs' true tracks) answers pairs chosen by each rule
with the studio's own code (studio.select: features of pool.py, the linear ensemble refitted every
10 labels, a warm-up of 20 random pairs, 25% random after); the ensemble is scored on 500 common
held-out random pairs. Prints held-out accuracy at 50, 100, 150, 200 and `--budget` labels,
averaged over `--repeats` draws, how many of the asked pairs hold a run that satisfies the
intent, and how far the final ensemble rates those runs over the other runs that end on the
intent's pad ("sat over pad": what a reward model must learn for a rubric about the way), and,
per draw, the labels each rule needs to reach the accuracy the random rule's draw ends with (the
studio e2e benchmark's "labels needed"; "-" when never). `--features` picks what the ensemble
reads (studio.pool: `colour`, the default, or `encoder`, the SFT agent's CNN).
Rule "top" (the studio's `uncertainty: top`): the most uncertain (entropy) of candidate pairs
drawn from the quarter of the pool's runs the ensemble rates highest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from agentalign.data.shards import Corpus
from agentalign.envs.intents import IntentLabeller, final_pad, intent_by_name, track_from_episode
from agentalign.models.checkpoint import load_policy
from agentalign.studio import select
from agentalign.studio.pool import _episode_features, colour_features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, required=True, help="a studio label folder")
    parser.add_argument("--encoder", type=Path, required=True, help="the SFT policy")
    parser.add_argument("--intent", default="campfire-middle")
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", nargs="+", default=["random", "disagreement", "entropy"],
                        choices=["random", "disagreement", "entropy", "top"])
    parser.add_argument("--features", default="colour", choices=["colour", "encoder"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_policy(args.encoder)[0] if args.features == "encoder" else None
    intent = intent_by_name(args.intent)
    labeller = IntentLabeller(intent)
    features, tracks = [], []
    with torch.no_grad():
        for folder in sorted(p for p in args.labels.iterdir() if p.name.startswith("pool-")):
            corpus = Corpus(folder, verify=False)
            for e in range(corpus.num_episodes):
                episode = corpus.episode(e)
                features.append(colour_features(episode["frames"]) if model is None else
                                _episode_features(model, corpus, e))
                tracks.append(track_from_episode(episode, int(corpus.episodes["outcomes"][e])))
    F = np.stack(features)
    sat = np.array([intent.satisfied(t) for t in tracks])
    pad = final_pad(intent)  # the built-in pad intents are named after their pads
    on_pad = np.array([intent_by_name(pad).satisfied(t) for t in tracks]) if pad \
        else np.zeros(len(tracks), bool)
    print(f"{len(tracks)} runs, {int(sat.sum())} satisfy {args.intent}, "
          f"{int((on_pad & ~sat).sum())} end on its pad without")

    def answer(a: int, b: int) -> float:
        choice = labeller.prefer(tracks[a], tracks[b])
        return 0.5 if choice is None else 1.0 - choice

    rng = np.random.default_rng([args.seed, 77])
    held: list[tuple[int, int, float]] = []
    while len(held) < 500:
        a, b = rng.choice(len(tracks), 2, replace=False)
        if labeller.prefer(tracks[a], tracks[b]) is not None:
            held.append((int(a), int(b), answer(a, b)))
    H = np.array(held)
    heldout = (H[:, 0].astype(int), H[:, 1].astype(int), H[:, 2])
    points = [n for n in (50, 100, 150, 200) if n < args.budget] + [args.budget]
    finals: list[float] = []  # the random rule's final accuracy per draw
    for rule in ["random", *[r for r in args.rules if r != "random"]]:
        runs = [simulate(F, answer, rule, args.budget, heldout, [args.seed, k])
                for k in range(args.repeats)]
        curves = [r[0] for r in runs]
        finals = finals or [c[args.budget] for c in curves]
        needed = [select.labels_needed(c.items(), level)
                  for c, level in zip(curves, finals, strict=True)]
        with_sat = np.mean([sat[r[1]].any(1).sum() for r in runs])
        margin = np.mean([r[2].score(F)[sat].mean() - r[2].score(F)[on_pad & ~sat].mean()
                          for r in runs]) if sat.any() and (on_pad & ~sat).any() else np.nan
        print(f"{rule:12s} " + "  ".join(f"{n}: {100 * np.mean([c[n] for c in curves]):.1f}%"
                                         for n in points)
              + f"  pairs with a satisfying run {with_sat:.0f}  sat over pad {margin:+.2f}"
              + "  labels needed " + "/".join("-" if n is None else str(n) for n in needed),
              flush=True)
    return 0


def simulate(F: np.ndarray, answer, rule: str, budget: int, heldout: tuple, seed: list[int],
             warmup: int = 20, random_share: float = 0.25
             ) -> tuple[dict[int, float], np.ndarray, select.Ensemble]:
    """The held-out accuracy curve, the asked pairs [budget, 2] and the final ensemble."""
    rng = np.random.default_rng(seed)
    train: list[tuple[int, int, float]] = []
    asked: set[tuple[int, int]] = set()
    curve: dict[int, float] = {}
    ensemble = None
    while len(train) < budget:
        if rule == "random" or len(train) < warmup or ensemble is None or \
                rng.random() < random_share:
            while (pair := tuple(int(v) for v in rng.choice(len(F), 2, replace=False))) in asked:
                pass
        else:
            picks = select.candidate_pairs(ensemble, F, 400, rng, rule)
            picks = np.array([p for p in picks if p[0] != p[1] and tuple(p) not in asked])
            pair = tuple(int(v) for v in picks[select.most_uncertain(ensemble, F, picks, rule)])
        asked.add(pair)
        train.append((*pair, answer(*pair)))
        if len(train) % 10 == 0:
            t = np.array(train)
            ensemble = select.fit(F, t[:, 0].astype(int), t[:, 1].astype(int), t[:, 2],
                                  members=5, seed=len(train))
            curve[len(train)] = select.accuracy(ensemble, F, *heldout)
    t = np.array(train)
    return curve, t[:, :2].astype(int), ensemble


if __name__ == "__main__":
    sys.exit(main())
