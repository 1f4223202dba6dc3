"""Pre-training's optional self-supervised objective (train/future.py): the loss, the trainer
with it on (it learns, resumes exactly, leaves the policy checkpoint's shapes alone), and off
(no trace in a run's identity or batches)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch
import torch.nn.functional as F

from agentalign.config import load
from agentalign.data.shards import Corpus
from agentalign.models.checkpoint import load_weights
from agentalign.models.policy import Policy
from agentalign.train.bc import Future, pretrain, resolve_policy_config, train_step
from agentalign.train.bc_config import ImitationSettings
from agentalign.train.distributed import ONE_PROCESS
from agentalign.train.future import FuturePredictor
from agentalign.train.windows import WindowSampler
from conftest import TINY_IMITATION

TINY = [*TINY_IMITATION, "log_interval=5"]


def tiny(*overrides: str) -> ImitationSettings:
    return load(ImitationSettings, None, [*TINY, *overrides])


def test_the_loss_picks_the_own_end_and_ignores_copies_of_it():
    torch.manual_seed(0)
    predictor = FuturePredictor(16)
    hidden, ends = torch.randn(3, 4, 16), torch.randn(3, 16)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    loss = predictor.loss_sum(hidden, mask, ends, torch.tensor([5, 6, 7]), 0.1)

    query = F.normalize(predictor.query(hidden[mask]), dim=-1)
    key = F.normalize(predictor.key(ends), dim=-1)
    owner = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    by_hand = F.cross_entropy(query @ key.T / 0.1, owner, reduction="sum")
    assert torch.allclose(loss, by_hand)

    # windows 0 and 2 of one episode: each one's copy of the end is no negative for the other
    shared = predictor.loss_sum(hidden, mask, ends, torch.tensor([5, 6, 5]), 0.1)
    logits = query @ key.T / 0.1
    logits[owner == 0, 2] = float("-inf")
    logits[owner == 2, 0] = float("-inf")
    assert torch.allclose(shared, F.cross_entropy(logits, owner, reduction="sum"))


def test_steps_on_one_batch_learn_to_pick_each_windows_end(small_corpus):
    """The gradient reaches both sides: on a fixed batch, the loss falls far below chance."""
    sampler = WindowSampler(Corpus(small_corpus), np.arange(40), 8, 8, seed=1, rank=0,
                            no_previous=np.array([9, 3]), ends=True)
    batch = sampler.batch(0)
    torch.manual_seed(0)
    policy = Policy(resolve_policy_config(tiny().model, None))
    future = Future(FuturePredictor(32), 1.0, 0.1)
    optimizer = policy.configure_optimizer(0.0, 3e-3)
    optimizer.add_param_group({"params": list(future.predictor.parameters())})
    losses = [train_step(policy, optimizer, batch, 1.0, ONE_PROCESS, future)[1] for _ in range(80)]
    chance = np.log(len(set(batch["episodes"].tolist())))
    assert losses[0] > chance - 0.3 and losses[-1] < 0.3 * chance, (losses[0], losses[-1])


def test_off_by_default_leaves_no_trace(small_corpus):
    settings = tiny()
    assert settings.future_weight == 0
    assert not any(k.startswith("future") for k in settings.identity())
    assert "future_weight" in tiny("future_weight=0.5").identity()
    sampler = WindowSampler(Corpus(small_corpus), np.arange(40), 8, 4, seed=0, rank=0,
                            no_previous=np.array([9, 3]))
    assert "ends" not in sampler.batch(0)


def test_ends_are_each_windows_episode_end(small_corpus):
    corpus = Corpus(small_corpus)
    sampler = WindowSampler(corpus, np.arange(40), 8, 6, seed=3, rank=0,
                            no_previous=np.array([9, 3]), ends=True)
    batch = sampler.batch(0)
    for i, (episode, _, _) in enumerate(sampler.windows(0)):
        assert batch["episodes"][i] == episode
        assert np.array_equal(batch["ends"][i].numpy(), corpus.episode(episode)["frames"][-1])


def test_pretrain_with_it_learns_resumes_exactly_and_keeps_the_policy_shapes(small_corpus,
                                                                          tmp_path):
    run = ("steps=60", "checkpoint_interval=30", "lr=3e-3", "future_weight=1.0",
           "keep_checkpoints=0")
    straight = pretrain(tiny(*run), small_corpus, tmp_path / "straight", progress=False)
    assert 0 < straight.future_loss <= np.log(8) + 1  # one of the batch's (at most) 8 ends

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "straight" / "logs"))
    events.Reload()
    assert len(events.Scalars("losses/future")) == 12  # every log_interval
    saved = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert saved["future_loss"] == straight.future_loss

    # an interruption after step 30: the run resumes from there, predictor and AdamW included
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "straight", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000060")
    (resumed / "metrics.json").unlink()
    (resumed / "checkpoints" / "latest").write_text(
        json.dumps({"checkpoint": "step-00000030", "step": 30}))
    again = pretrain(tiny(*run), small_corpus, resumed, progress=False)
    assert again.future_loss == straight.future_loss
    a, _ = load_weights(tmp_path / "straight", "policy")
    b, _ = load_weights(resumed, "policy")
    assert all(torch.equal(a[k], b[k]) for k in a)

    plain = pretrain(tiny("steps=2"), small_corpus, tmp_path / "plain", progress=False)
    assert plain.future_loss is None
    assert "future_loss" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())
    c, _ = load_weights(tmp_path / "plain", "policy")
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in c.items()}
