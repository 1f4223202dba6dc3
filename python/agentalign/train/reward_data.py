"""The labels of one target, read for the reward model: pairs and their trajectories.

The labels of one target in a label store (`agentalign label`, or a designer's answers): the
first N training labels (oldest first), ties ("equal") among them as half a preference, and
every decisive held-out label, whose pairs come from separate rollouts. Each referenced
trajectory is read once from its corpus and fitted to the context (`models.reward.
fit_trajectory`: its last K decisions, with their previous actions, and with `summary_stride` N
the episode summary's frames), then kept in memory as uint8 tensors (800 episodes x 16 frames
x 12 KB = 157 MB; N = 4 adds 26 frames each, 255 MB; at 1,400 episodes 275 + 447 MB), so
training never decodes a frame twice.
Outcomes are read only to split held-out accuracy into easy pairs (different outcomes) and hard
ones (same outcome); they never reach the model.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agentalign.data.shards import Corpus
from agentalign.errors import CorpusError
from agentalign.models.policy import PolicyConfig
from agentalign.models.reward import (
    RewardModel,
    accuracy,
    fit_trajectory,
    score_fitted,
    stack_fitted,
)
from agentalign.spec import PADS
from agentalign.train.preferences import ANYWHERE_CORPUS, STORE, LabelStore, LabelStoreError


@dataclass
class Pairs:
    """Labelled pairs as indices into a trajectory table: `chosen` was preferred, by `target`
    (the Bradley-Terry target: 1.0, or 0.5 for a tie, whose order means nothing)."""

    chosen: np.ndarray
    rejected: np.ndarray
    target: np.ndarray | None = None  # float32 [N]; None: every pair decisive (all ones)

    def __post_init__(self) -> None:
        if self.target is None:
            self.target = np.ones(len(self.chosen), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.chosen)

    def take(self, index: np.ndarray) -> Pairs:
        target = None if self.target is None else self.target[index]
        return Pairs(self.chosen[index], self.rejected[index], target)

    def decisive(self) -> Pairs:
        """The pairs with a preferred side (not ties): the only ones accuracy can count."""
        if self.target is None:
            return self
        return self.take(np.flatnonzero(self.target == 1.0))


@dataclass
class LabelData:
    """Every trajectory the labels of one target refer to, fitted once, and the pairs."""

    fitted: dict[str, Tensor]  # frames [N, K, H, W, 3], prev_actions [N, K, 2], mask [N, K],
    # steps [N, K]; with a summary stride also summary_frames [N, S, H, W, 3], summary_mask [N, S]
    outcomes: np.ndarray  # [N] for the easy/hard split of the held-out accuracy only
    train: Pairs  # all training labels, oldest first
    heldout: Pairs  # from spawn starts
    fingerprint: str  # sha256 of the labels (pairs and choices), for resume checks
    heldout_anywhere: Pairs | None = None  # from starts anywhere on the island, if labelled
    trajectories: tuple[tuple[str, int], ...] = ()  # (corpus, episode) of each fitted row


def load_labels(labels_dir: str | Path, target: str, config: PolicyConfig,
                summary_stride: int = 0) -> LabelData:
    """Read a target's labels and fit their trajectories to `config`'s context (and, with
    `summary_stride`, their episode summaries). A target is any name the store has labels for
    (a pad, or a designer's personality)."""
    folder = Path(labels_dir)
    store = LabelStore(folder / STORE)
    try:  # ties train (as 0.5); held-out accuracy counts decisive pairs only
        rows = {"train": store.labelled_pairs(target, "train", ties=True),
                "heldout": store.labelled_pairs(target, "heldout")}
        counts, targets = store.counts(), store.targets()
    finally:
        store.close()
    if counts["labels"] == 0:
        raise LabelStoreError(f"label store {folder / STORE}: holds no labels; run "
                              "`agentalign label` first")
    if target not in targets and target not in PADS:
        raise LabelStoreError(f"label store {folder / STORE}: unknown target {target!r}: it "
                              f"holds labels for {', '.join(map(repr, targets))}; pick one, "
                              f"or label pairs for {target!r} first")
    how = (f"label it with `agentalign label --target {target}`" if target in PADS else
           "answer its pairs in the studio or bring them with `agentalign import-labels`")
    for split, found in rows.items():
        if not found:
            raise LabelStoreError(f"label store {folder / STORE}: no {split} labels for target "
                                  f"{target!r} (it holds labels for "
                                  f"{', '.join(map(repr, targets))}); {how}")
    # Held-out pairs from starts anywhere live in their own corpus (`agentalign label`): apart.
    anywhere = [r for r in rows["heldout"] if r[0] == ANYWHERE_CORPUS]
    rows["heldout"] = [r for r in rows["heldout"] if r[0] != ANYWHERE_CORPUS]
    table: dict[tuple[str, int], int] = {}
    for found in (*rows.values(), anywhere):
        for corpus_a, ep_a, corpus_b, ep_b, _ in found:
            for key in ((corpus_a, ep_a), (corpus_b, ep_b)):
                table.setdefault(key, len(table))
    corpora: dict[str, Corpus] = {}
    fitted, outcomes = [], []
    frame_shape = (config.obs_height, config.obs_width, 3)
    for name, episode in table:
        if name not in corpora:
            try:
                corpora[name] = Corpus(folder / name)
            except CorpusError as e:
                raise LabelStoreError(f"label store {folder / STORE}: labels refer to the corpus "
                                      f"{name!r}, which cannot be read ({e})") from None
            if corpora[name].obs_shape != frame_shape:
                raise LabelStoreError(f"corpus {folder / name}: holds "
                                      f"{'x'.join(map(str, corpora[name].obs_shape))} frames, "
                                      f"the reward model takes {'x'.join(map(str, frame_shape))}")
        corpus = corpora[name]
        if not 0 <= episode < corpus.num_episodes:
            raise LabelStoreError(f"label store {folder / STORE}: labels refer to episode "
                                  f"{episode} of {name!r}, which holds {corpus.num_episodes}")
        steps = corpus.episode(episode)
        fitted.append(fit_trajectory(steps["frames"], steps["actions"], config, summary_stride))
        outcomes.append(int(corpus.episodes["outcomes"][episode]))

    def pairs(found: list[tuple[str, int, str, int, float]]) -> Pairs:
        a = np.array([table[(r[0], r[1])] for r in found], dtype=np.int64)
        b = np.array([table[(r[2], r[3])] for r in found], dtype=np.int64)
        choice = np.array([r[4] for r in found], dtype=np.float64)  # 0, 1 or 0.5 (a tie)
        target = np.where(choice == 0.5, 0.5, 1.0).astype(np.float32)
        return Pairs(np.where(choice == 1, b, a), np.where(choice == 1, a, b), target)

    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()  # the labels before anywhere
    return LabelData(stack_fitted(fitted), np.array(outcomes), pairs(rows["train"]),
                     pairs(rows["heldout"]), digest, pairs(anywhere) if anywhere else None,
                     tuple(table))


def evaluate(model: RewardModel, data: LabelData, pairs: Pairs | None = None,
             features: Tensor | None = None) -> dict[str, float]:
    """Held-out accuracy, overall and on easy (different outcomes) and hard (same) pairs, from
    spawn starts; with held-out pairs from starts anywhere in the store, the same figures for
    them too (keys prefixed `anywhere_`). `features`: the trajectories' cached CNN features,
    when the CNN is frozen."""
    if pairs is None:
        out = evaluate(model, data, data.heldout, features)
        if data.heldout_anywhere is not None:
            out.update({f"anywhere_{k}": v for k, v in
                        evaluate(model, data, data.heldout_anywhere, features).items()})
        return out
    pairs = pairs.decisive()  # a tie has no right answer to count
    if len(pairs) == 0:
        return {"accuracy": math.nan, "pairs": 0, "easy_pairs": 0, "hard_pairs": 0,
                "accuracy_easy": math.nan, "accuracy_hard": math.nan}
    used = np.unique(np.concatenate([pairs.chosen, pairs.rejected]))
    scores = np.full(len(data.outcomes), np.nan, dtype=np.float64)
    if features is None:
        scores[used] = score_fitted(model, {k: v[used] for k, v in data.fitted.items()})
    else:
        scores[used] = score_features(model, features[used], data.fitted["prev_actions"][used],
                                      data.fitted["mask"][used], data.fitted["steps"][used])
    zeros = np.zeros(len(pairs), dtype=np.int64)
    easy = data.outcomes[pairs.chosen] != data.outcomes[pairs.rejected]
    out = {"accuracy": accuracy(scores, pairs.chosen, pairs.rejected, zeros),
           "pairs": len(pairs), "easy_pairs": int(easy.sum()), "hard_pairs": int((~easy).sum())}
    for name, keep in (("easy", easy), ("hard", ~easy)):
        out[f"accuracy_{name}"] = accuracy(scores, pairs.chosen[keep], pairs.rejected[keep],
                                           zeros[keep])
    return out


@torch.no_grad()
def score_features(model: RewardModel, features: Tensor, prev_actions: Tensor, mask: Tensor,
                   steps: Tensor, batch_size: int = 256) -> np.ndarray:
    device, was_training = model.rope_cos.device, model.training
    model.eval()
    scores = [model.forward_features(features[i:i + batch_size].to(device),
                                     prev_actions[i:i + batch_size].to(device),
                                     mask[i:i + batch_size].to(device),
                                     steps[i:i + batch_size].to(device)).float().cpu()
              for i in range(0, len(mask), batch_size)]
    model.train(was_training)
    return torch.cat(scores).numpy()
