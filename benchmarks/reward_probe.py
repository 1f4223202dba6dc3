"""What a frozen trunk already knows about the designer's preference: linear probes.

For the label-scaling study's question (does the pre-trained agent give the reward model a head
start?) without training any trunk: each trajectory of a label store is run once through a
frozen trunk, agent-encoder init (a pre-trained policy) or random init, and a Bradley-Terry
linear score (L2-regularised, fitted with L-BFGS) is trained on the features of N labels, then
scored on the held-out pairs. Features, read where the reward model reads them (its last real
step), each with the run's length appended:
- cnn: the last frame's CNN embedding (the per-frame encoder alone);
- block0..blockL-1: the transformer's residual stream after each block (the last is what the
  reward model's head sees, before the final norm);
- with --pool, each of these averaged over the window's steps too (NAME_mean);
- with --summary N, the whole episode (the whole-episode lever): the CNN embeddings of every
  Nth frame of the run (the reward model's `summary_stride` frames) averaged (summary_mean) and
  maxed (summary_max) over the run, and the last block beside the maxed summary
  (blockL-1+summary);
- with --terminal LAYOUT, the frame after the run's last action (which no learner is given:
  the rollouts keep the frame at each decision), re-simulated as benchmarks/terminal_labels.py
  does: its CNN embedding (terminal) and the last block beside it (blockL-1+terminal).
Features are standardised with their mean and spread over every trajectory (no labels used).
Random init draws a new trunk per seed; the label subsets are the study's (seed, N) draws.
Prints a table; asserts nothing.

    PYTHONPATH=python python benchmarks/reward_probe.py --labels LABELS --init PRETRAIN
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import Tensor

from agentalign.data.shards import Corpus
from agentalign.models.checkpoint import config_from_info, load_weights
from agentalign.models.reward import LENGTH_UNIT, RewardModel
from agentalign.train.reward import make_model
from agentalign.train.reward_data import LabelData, Pairs, load_labels
from terminal_labels import next_frames  # benchmarks/, beside this script


@torch.no_grad()
def trunk_features(model: RewardModel, data: LabelData, batch_size: int = 128,
                   pool: bool = False, terminal: Tensor | None = None) -> dict[str, Tensor]:
    """{feature name: [N, n_embd + 1]} for every trajectory of `data` (see the module doc);
    with `pool`, each also averaged over the window's steps (`NAME_mean`); with the data's
    summary frames (`load_labels(..., summary_stride)`), the whole-episode features; with
    `terminal` frames [N, H, W, 3], theirs."""
    model.eval()
    out: dict[str, list[Tensor]] = {}
    fitted = data.fitted
    for i in range(0, len(fitted["mask"]), batch_size):
        frames, prev, mask, steps = (fitted[k][i:i + batch_size]
                                     for k in ("frames", "prev_actions", "mask", "steps"))
        x = model.encode_frames(frames)
        rows, last = torch.arange(len(mask)), mask.sum(1) - 1
        length = (steps[rows, last] + 1).float()[:, None] * LENGTH_UNIT  # as the model's
        weights = (mask.float() / mask.sum(1, keepdim=True))[..., None]  # mean over real steps
        found = {"cnn": x[rows, last]}
        if pool:
            found["cnn_mean"] = (x * weights).sum(1)
        h = x + sum(emb(prev[..., j]) for j, emb in enumerate(model.action_emb))
        cos, sin = model.rope_cos[:h.shape[1]], model.rope_sin[:h.shape[1]]
        for layer, block in enumerate(model.blocks):
            h, _, _ = block(h, cos, sin)
            found[f"block{layer}"] = h[rows, last]
            if pool:
                found[f"block{layer}_mean"] = (h * weights).sum(1)
        if "summary_frames" in fitted:
            found.update(summary_features(model, fitted["summary_frames"][i:i + batch_size],
                                          fitted["summary_mask"][i:i + batch_size]))
            found[f"block{len(model.blocks) - 1}+summary"] = torch.cat(
                [found[f"block{len(model.blocks) - 1}"], found["summary_max"]], 1)
        if terminal is not None:
            found["terminal"] = model.encode_frames(terminal[i:i + batch_size, None])[:, 0]
            found[f"block{len(model.blocks) - 1}+terminal"] = torch.cat(
                [found[f"block{len(model.blocks) - 1}"], found["terminal"]], 1)
        for name, value in found.items():
            out.setdefault(name, []).append(torch.cat([value, length], 1))
    features = {name: torch.cat(parts) for name, parts in out.items()}
    return {name: (f - f.mean(0)) / (f.std(0) + 1e-6) for name, f in features.items()}


def summary_features(model: RewardModel, frames: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """The whole run's frames (every Nth, uint8 [B, S, H, W, 3], real where `mask`) through the
    CNN, averaged and maxed over the real ones."""
    x = frames.new_zeros(*mask.shape, model.config.n_embd, dtype=torch.float32)
    x[mask] = model.encode_frames(frames[mask][:, None])[:, 0]
    weights = (mask.float() / mask.sum(1, keepdim=True))[..., None]
    maxed = x.masked_fill(~mask[..., None], float("-inf")).amax(1)
    return {"summary_mean": (x * weights).sum(1), "summary_max": maxed}


def terminal_frames(labels: str, data: LabelData, layout: str) -> np.ndarray:
    """uint8 [N, H, W, 3]: the frame after the last action of each of `data`'s runs, in its
    order."""
    corpora: dict[str, Corpus] = {}
    last = []
    for name, episode in data.trajectories:
        corpus = corpora.setdefault(name, Corpus(f"{labels}/{name}"))
        steps = corpus.episode(episode)
        last.append((steps["positions"][-1], steps["headings"][-1], steps["actions"][-1]))
    positions, headings, actions = (np.stack(x) for x in zip(*last, strict=True))
    return next_frames(positions, headings, actions, layout)[0]


def fit_probe(features: Tensor, pairs: Pairs, l2: float) -> Tensor:
    """Weights w minimising -logsigmoid(w . (f_chosen - f_rejected)) + l2 |w|^2."""
    diff = features[pairs.chosen] - features[pairs.rejected]
    w = torch.zeros(features.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = -torch.nn.functional.logsigmoid(diff @ w).mean() + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def probe_accuracy(features: Tensor, w: Tensor, pairs: Pairs) -> float:
    margin = (features[pairs.chosen] - features[pairs.rejected]) @ w
    return float(((margin > 0).float() + 0.5 * (margin == 0).float()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", required=True, help="a folder made by `agentalign label`")
    parser.add_argument("--init", required=True, help="the pre-trained policy checkpoint")
    parser.add_argument("--target", default="left")
    parser.add_argument("--counts", type=int, nargs="+", default=[25, 50, 100, 300, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--l2", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool", action="store_true", help="also probe each feature averaged "
                        "over the window's steps, not only at its last step")
    parser.add_argument("--terminal", metavar="LAYOUT", help="also probe the frame after each "
                        "run's last action, re-simulated on this layout (the labels' island)")
    parser.add_argument("--summary", type=int, default=0, metavar="N",
                        help="also probe the whole episode: every Nth frame's CNN embedding, "
                        "averaged and maxed over the run (0: off)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    _, info = load_weights(args.init, kind="policy", verify=False)
    config = config_from_info(info, args.init)
    data = load_labels(args.labels, args.target, config, args.summary)
    counts = [n for n in args.counts if n <= len(data.train)]
    print(f"{len(data.train):,} train labels, {len(data.heldout):,} held-out pairs for "
          f"{args.target!r}; l2 {args.l2}; mean (min-max) held-out accuracy over seeds "
          f"{args.seeds}\n")
    print("| features | init | " + " | ".join(f"{n:,}" for n in counts) + " |")
    print("|---|---|" + "---:|" * len(counts))
    results: dict[tuple[str, str], list[list[float]]] = {}
    terminal = (torch.from_numpy(terminal_frames(args.labels, data, args.terminal))
                if args.terminal else None)
    agent = trunk_features(make_model(config, 0, args.init), data, pool=args.pool,
                           terminal=terminal)
    for seed in args.seeds:
        subsets = [data.train.take(np.sort(np.random.default_rng([seed, n]).choice(
            len(data.train), n, replace=False))) for n in counts]  # the study's draws
        randoms = trunk_features(make_model(config, seed, None), data, pool=args.pool,
                                 terminal=terminal)
        for kind, features in (("agent", agent), ("random", randoms)):
            for name, f in features.items():
                row = results.setdefault((name, kind), [[] for _ in counts])
                for i, pairs in enumerate(subsets):
                    row[i].append(probe_accuracy(f, fit_probe(f, pairs, args.l2), data.heldout))
    for (name, kind), row in sorted(results.items()):
        cells = [f"{100 * np.mean(a):.1f} ({100 * min(a):.1f}-{100 * max(a):.1f})" for a in row]
        print(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
