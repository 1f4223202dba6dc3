"""Imitation trainer (pretrain / sft): windows, learning, exact resume, DDP, bad input, the CLI.

Every run uses a tiny policy (1 layer, 32 wide, context 8) on the 40-episode session corpus, one
thread per process, so the file stays fast on a busy 2-core machine.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agentalign.cli import main
from agentalign.collect import run as collect
from agentalign.config import load
from agentalign.data.shards import Corpus
from agentalign.errors import ConfigError, CorpusError, UserError
from agentalign.models.checkpoint import CheckpointError, latest_or_none, load_weights
from agentalign.models.policy import Policy
from agentalign.train.bc import (
    Future,
    masked_action_loss,
    pretrain,
    resolve_policy_config,
    sft,
    train_step,
)
from agentalign.train.bc_config import ImitationSettings, SftSettings
from agentalign.train.distributed import ONE_PROCESS, Ranks
from agentalign.train.future import FuturePredictor
from agentalign.train.schedule import warmup_cosine
from agentalign.train.windows import (
    WindowSampler,
    collate,
    global_episode_index,
    is_eval_episode,
    open_corpus,
    rank_shards,
    read_window,
)
from conftest import TINY_IMITATION, small_collect_config

NO_PREVIOUS = np.array([9, 3])


def tiny(stage: str = "pretrain", *overrides: str) -> ImitationSettings:
    return load(SftSettings if stage == "sft" else ImitationSettings, None,
                [*TINY_IMITATION, *overrides])


def cli_args(*overrides: str) -> list[str]:
    return [arg for item in (*TINY_IMITATION, *overrides) for arg in ("--set", item)]


@pytest.fixture(scope="module")
def pretrained(small_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained")
    pretrain(tiny("pretrain", "steps=4"), small_corpus, out, progress=False)
    return out


# --- data ----------------------------------------------------------------------------------------


def test_windows_carry_the_previous_action(small_corpus):
    corpus = Corpus(small_corpus)
    episode = int(np.flatnonzero(corpus.episodes["lengths"] > 20)[0])
    steps = corpus.episode(episode)
    actions = steps["actions"].astype(np.int64)

    first = read_window(corpus, episode, 0, 8, NO_PREVIOUS)
    assert first["prev_actions"][0].tolist() == [9, 3]  # no previous action at episode start
    assert np.array_equal(first["prev_actions"][1:], actions[:7])
    assert np.array_equal(first["actions"], actions[:8])

    middle = read_window(corpus, episode, 5, 8, NO_PREVIOUS)
    assert np.array_equal(middle["prev_actions"][0], actions[4])  # the real previous action
    assert np.array_equal(middle["prev_actions"][1:], actions[5:12])
    assert np.array_equal(middle["frames"], steps["frames"][5:13])
    assert middle["mask"].all()

    n = len(actions)
    end = read_window(corpus, episode, n - 3, 8, NO_PREVIOUS)
    assert end["mask"].tolist() == [True] * 3 + [False] * 5
    assert np.array_equal(end["prev_actions"][0], actions[n - 4])
    assert not end["frames"][3:].any()


def test_sampler_is_a_function_of_the_step_and_covers_every_start(small_corpus):
    corpus = Corpus(small_corpus)
    episodes = np.arange(corpus.num_episodes)
    sampler = WindowSampler(corpus, episodes, 8, 64, seed=3, rank=0, no_previous=NO_PREVIOUS)
    assert sampler.windows(7) == sampler.windows(7) != sampler.windows(8)
    other_rank = WindowSampler(corpus, episodes, 8, 64, seed=3, rank=1, no_previous=NO_PREVIOUS)
    assert other_rank.windows(7) != sampler.windows(7)
    starts = [s for step in range(40) for e, s, _ in sampler.windows(step)]
    lengths = corpus.episodes["lengths"]
    assert all(0 <= s < lengths[e] for step in range(40) for e, s, _ in sampler.windows(step))
    assert min(starts) == 0 and max(starts) > 40  # anywhere in an episode, the start included
    batch = sampler.batch(0)
    assert batch["frames"].shape == (64, 8, 64, 64, 3) and batch["frames"].dtype == torch.uint8
    assert batch["prev_actions"].dtype == torch.long and batch["mask"].dtype == torch.bool


def test_sampler_draw_steps_covers_every_step_equally_often(small_corpus):
    """`windows: steps` puts an episode's first steps (where a player picks its pad) in as many
    windows as any other step; `starts` puts step 0 in K times fewer."""
    corpus = Corpus(small_corpus)
    lengths = corpus.episodes["lengths"]
    episodes = np.arange(corpus.num_episodes)

    def coverage(draw: str) -> tuple[list[np.ndarray], float]:
        sampler = WindowSampler(corpus, episodes, 8, 256, seed=5, rank=0,
                                no_previous=NO_PREVIOUS, draw=draw)
        cover = [np.zeros(n) for n in lengths]
        for step in range(60):
            for e, s, real in sampler.windows(step):
                assert 0 <= s < lengths[e] and 1 <= real <= 8 and (s == 0 or real == 8)
                cover[e][s:s + real] += 1
        draws = (lengths + (7 if draw == "steps" else 0)).sum()
        return cover, 60 * 256 * 8 / draws  # a step lies in 8 of the draws (K - 1 on from 0)

    cover, expected = coverage("steps")
    for position in (0, 3, 7, 10, -1):  # the first steps, the middle, the last
        covered = sum(c[position] for c in cover) / len(cover)
        assert 0.85 * expected < covered < 1.15 * expected, position
    cover, expected = coverage("starts")
    assert sum(c[0] for c in cover) / len(cover) < 0.2 * expected  # 1/8 of a later step's
    assert 0.85 * expected < sum(c[10] for c in cover) / len(cover) < 1.15 * expected
    cut = collate(corpus, [(0, 0, 3)], 8, NO_PREVIOUS)  # a draw of start -5: the first 3 steps
    assert cut["mask"][0].tolist() == [True] * 3 + [False] * 5
    assert cut["prev_actions"][0, 0].tolist() == NO_PREVIOUS.tolist()


def test_split_is_fixed_by_episode_index_whatever_the_ranks(small_corpus):
    index = np.arange(100_000)
    held_out = is_eval_episode(index, 0.05)
    assert 0.049 < held_out.mean() < 0.051
    assert 0.04 < held_out[:200].mean() < 0.06  # spread evenly, not clumped
    ranks = [open_corpus(small_corpus, r, 2) for r in range(2)]
    files = [{e["file"] for e in c.entries} for c in ranks]
    assert not files[0] & files[1] and len(files[0] | files[1]) == 4  # different shards
    together = np.sort(np.concatenate([global_episode_index(c) for c in ranks]))
    assert np.array_equal(together, np.arange(40))
    whole = Corpus(small_corpus)
    for c in ranks:  # the same episode (same frames) behind each global index
        i = int(np.flatnonzero(c.episodes["lengths"])[-1])
        g = int(global_episode_index(c)[i])
        assert np.array_equal(c.episode(i)["actions"], whole.episode(g)["actions"])


def test_learning_rate_warms_up_then_decays_to_min_lr():
    cfg = tiny("pretrain", "steps=100", "warmup_steps=10")
    rates = [warmup_cosine(s, 100, 10, cfg.lr, cfg.min_lr) for s in range(100)]
    assert rates[0] < rates[9] < cfg.lr and max(rates) == pytest.approx(cfg.lr)
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    assert warmup_cosine(100, 100, 10, cfg.lr, cfg.min_lr) == pytest.approx(cfg.min_lr)


# --- training ------------------------------------------------------------------------------------


def test_a_few_steps_lower_the_loss_and_leave_a_finished_run(small_corpus, tmp_path):
    config = cfg = tiny("pretrain", "steps=30", "lr=3e-3", "eval_fraction=0.0")
    policy_config = resolve_policy_config(cfg.model, None)
    corpus = Corpus(small_corpus)
    sampler = WindowSampler(corpus, np.arange(40), 8, 32, seed=99, rank=0,
                            no_previous=NO_PREVIOUS)
    batch = sampler.batch(0)

    def loss(policy: Policy) -> float:
        with torch.no_grad():
            logits = policy(batch["frames"], batch["prev_actions"])
            return (masked_action_loss(logits, batch["actions"], batch["mask"])
                    / batch["mask"].sum()).item()

    torch.manual_seed(cfg.seed)
    before = loss(Policy(policy_config))
    metrics = pretrain(config, small_corpus, tmp_path, progress=False)
    trained = Policy(policy_config)
    trained.load_state_dict(load_weights(tmp_path, "policy")[0])
    assert loss(trained) < before - 0.3, (before, loss(trained))

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["final"] and saved["step"] == 30 and saved["frames_per_s"] > 0
    assert saved["eval_loss"] is None  # eval_fraction 0: nothing held out
    assert saved["flops_per_frame"] == trained.flops_per_frame()
    assert metrics.train_loss == saved["train_loss"]
    assert latest_or_none(tmp_path).name == "step-00000030"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    assert {"losses/train", "charts/learning_rate", "charts/frames_per_s"} <= set(
        events.Tags()["scalars"])


def test_resume_after_sigkill_matches_an_uninterrupted_run(small_corpus, tmp_path, capsys):
    run = ("steps=150", "checkpoint_interval=10", "eval_interval=50")
    pretrain(tiny("pretrain", *run), small_corpus, tmp_path / "straight", progress=False)

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "agentalign.cli", "pretrain", "--corpus", str(small_corpus),
               "--out", str(killed), "--no-progress", *cli_args(*run)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (killed / "checkpoints" / "latest").exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    at_kill = json.loads((killed / "checkpoints" / "latest").read_text())["step"]
    assert 10 <= at_kill < 150 and not (killed / "metrics.json").exists()

    capsys.readouterr()
    metrics = pretrain(tiny("pretrain", *run), small_corpus, killed, progress=False)
    resumed_at = json.loads((killed / "checkpoints" / "latest").read_text())
    assert f"resuming at step {at_kill}" in capsys.readouterr().out
    assert metrics.step == resumed_at["step"] == 150

    straight, _ = load_weights(tmp_path / "straight", "policy")
    after_kill, _ = load_weights(killed, "policy")
    assert all(torch.equal(straight[k], after_kill[k]) for k in straight)  # bit for bit

    again = pretrain(tiny("pretrain", *run), small_corpus, killed, progress=False)
    assert "already finished" in capsys.readouterr().out and again == metrics


def test_sft_starts_from_the_pretrained_weights(small_corpus, pretrained, tmp_path):
    demos = ("episodes=null", "steps=2", "lr=1e-9", "min_lr=0", "warmup_steps=0")
    sft(tiny("sft", *demos), small_corpus, tmp_path / "sft", init=pretrained, progress=False)
    sft(tiny("sft", *demos), small_corpus, tmp_path / "scratch", progress=False)
    start, start_info = load_weights(pretrained, "policy")
    tuned, tuned_info = load_weights(tmp_path / "sft", "policy")
    scratch, _ = load_weights(tmp_path / "scratch", "policy")
    assert tuned_info["stage"] == "sft" and tuned_info["meta"]["run"]["init"] == \
        start_info["sha256"]
    assert all(torch.allclose(start[k], tuned[k], atol=1e-6) for k in start)
    assert not all(torch.allclose(start[k], scratch[k], atol=1e-3) for k in start)


# --- distributed ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixed_batch(folder: Path, ends: bool = False) -> dict[str, torch.Tensor]:
    """8 windows, some padded past their episode's end, so the masked step counts differ."""
    corpus = Corpus(folder)
    lengths = corpus.episodes["lengths"]
    windows = [(e, s, 8) for e in range(4) for s in (0, int(lengths[e]) - 1 - e)]
    return collate(corpus, windows, 8, NO_PREVIOUS, ends=ends)


def one_step(batch: dict[str, torch.Tensor], ranks: Ranks, wrap: bool, sgd: bool = False,
             future: bool = False) -> dict:
    """The weights after one train_step from the seed-0 init: with the trainer's AdamW, or with
    plain SGD, whose update is the gradient itself (AdamW's first step is ~lr * sign(grad), so
    SGD is what shows a gradient of the wrong scale). With `future`, the self-supervised
    objective too (its predictor's weights under `future.`), unclipped, so that a wrong
    predictor gradient shows at full size."""
    cfg = tiny()
    torch.manual_seed(0)
    policy = Policy(resolve_policy_config(cfg.model, None))
    predictor = FuturePredictor(policy.config.n_embd) if future else None
    params = list(policy.parameters()) + (list(predictor.parameters()) if future else [])
    optimizer = torch.optim.SGD(params, lr=1.0) if sgd else \
        policy.configure_optimizer(cfg.weight_decay, 1e-2, (cfg.beta1, cfg.beta2))
    model = torch.nn.parallel.DistributedDataParallel(policy) if wrap else policy
    train_step(model, optimizer, batch, 0.0 if future else cfg.grad_clip, ranks,
               Future(predictor, 1.0, 0.1) if future else None)
    weights = {k: v.clone() for k, v in policy.state_dict().items()}
    if future:
        weights |= {f"future.{k}": v.clone() for k, v in predictor.state_dict().items()}
    return weights


def future_reference(batch: dict[str, torch.Tensor]) -> dict:
    """What two ranks' SGD step with the future objective must give, in one process: the whole
    batch's action loss plus each half's own contrast (a rank's negatives are its windows),
    no clipping."""
    cfg = tiny()
    torch.manual_seed(0)
    policy = Policy(resolve_policy_config(cfg.model, None))
    predictor = FuturePredictor(policy.config.n_embd)
    logits, hidden = policy(batch["frames"], batch["prev_actions"], hidden=True)
    ends = policy.encode_frames(batch["ends"][:, None])[:, 0]
    loss = masked_action_loss(logits, batch["actions"], batch["mask"])
    for half in (slice(0, 4), slice(4, 8)):
        loss = loss + predictor.loss_sum(hidden[half], batch["mask"][half], ends[half],
                                         batch["episodes"][half], 0.1)
    (loss / batch["mask"].sum()).backward()
    torch.optim.SGD(list(policy.parameters()) + list(predictor.parameters()), lr=1.0).step()
    return {**policy.state_dict(), **{f"future.{k}": v for k, v in predictor.state_dict().items()}}


def ddp_worker(rank: int, ports: tuple[int, int], corpus: str, tmp: str) -> None:
    """One of two gloo ranks: a whole pretrain run joined through torchrun's environment
    variables, then one step on half of a fixed batch."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    metrics = pretrain(tiny("pretrain", "steps=3"), corpus, Path(tmp) / "run", progress=False)
    files = [e["file"] for e in open_corpus(corpus, rank, 2).entries]
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{ports[1]}",
                                         rank=rank, world_size=2)
    try:
        batch = {k: v[rank * 4:(rank + 1) * 4]
                 for k, v in fixed_batch(Path(corpus), ends=True).items()}
        ranks = Ranks(rank, 2, 2, torch.device("cpu"), owns_group=False)
        plain = {k: v for k, v in batch.items() if k not in ("ends", "episodes")}
        weights = [one_step(plain, ranks, wrap=True, sgd=sgd) for sgd in (False, True)]
        weights.append(one_step(batch, ranks, wrap=True, sgd=True, future=True))
    finally:
        torch.distributed.destroy_process_group()
    torch.save({"weights": weights, "files": files,
                "metrics": {"world_size": metrics.world_size, "train_loss": metrics.train_loss}},
               Path(tmp) / f"rank{rank}.pt")


def test_two_ranks_take_the_step_one_rank_takes_on_the_whole_batch(small_corpus, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(ddp_worker, args=((free_port(), free_port()), str(small_corpus), str(tmp_path)),
             nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert not set(ranks[0]["files"]) & set(ranks[1]["files"])  # the ranks read other shards
    assert ranks[0]["metrics"]["world_size"] == 2
    assert ranks[0]["metrics"]["train_loss"] == ranks[1]["metrics"]["train_loss"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())  # rank 0 wrote it
    assert saved["step"] == 3 and saved["world_size"] == 2

    torch.manual_seed(0)
    start = Policy(resolve_policy_config(tiny().model, None)).state_dict()
    for i, sgd in enumerate((False, True)):
        single = one_step(fixed_batch(small_corpus), ONE_PROCESS, wrap=False, sgd=sgd)
        assert not torch.allclose(start["head.weight"], single["head.weight"], atol=1e-4)
        # Adam's first step is g / (|g| + eps): where a gradient nearly cancels, the two
        # reduction orders differ by a few 1e-6 (measured 3.3e-6 of a 1e-2 step); SGD is linear
        atol = 1e-6 if sgd else 1e-5
        for name, value in single.items():
            for r in range(2):
                diff = (ranks[r]["weights"][i][name] - value).abs().max().item()
                assert diff <= atol, (name, sgd, diff)
    # the future objective: its predictor (outside DDP) averaged like the policy
    expected = future_reference(fixed_batch(small_corpus, ends=True))
    assert not torch.allclose(start["head.weight"], expected["head.weight"], atol=1e-4)
    for name, value in expected.items():
        for r in range(2):
            diff = (ranks[r]["weights"][2][name] - value).abs().max().item()
            assert diff <= 1e-6, (name, diff)


# --- bad input -----------------------------------------------------------------------------------


def test_a_stage_folder_of_another_config_is_refused(small_corpus, pretrained, tmp_path):
    with pytest.raises(UserError, match="other settings.*n_embd: 32 -> 64"):
        pretrain(tiny("pretrain", "steps=4", "model.n_embd=64"), small_corpus, pretrained,
                 progress=False)
    with pytest.raises(UserError, match=r"other settings \(config\.lr: 0\.001 -> 0\.5\)"):
        pretrain(tiny("pretrain", "steps=4", "lr=0.5"), small_corpus, pretrained, progress=False)
    with pytest.raises(CheckpointError, match="n_layer=1.*asks for n_layer=2"):
        sft(tiny("sft", "episodes=null", "model.n_layer=2"), small_corpus, tmp_path,
            init=pretrained, progress=False)


def test_corrupt_checkpoints_are_refused_without_unpickling(small_corpus, pretrained, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pretrained, broken)
    step = latest_or_none(broken)
    weights = step / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"garbage!")
    with pytest.raises(CheckpointError, match="checksum"):
        sft(tiny("sft", "episodes=null"), small_corpus, tmp_path / "sft", init=broken,
            progress=False)

    hostile = tmp_path / "hostile"
    shutil.copytree(pretrained, hostile)
    (hostile / "metrics.json").unlink()  # not finished: the trainer must read trainer.pt
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({"step": Exploit()}, protocol=2)
    (latest_or_none(hostile) / "trainer.pt").write_bytes(payload)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        pretrain(tiny("pretrain", "steps=4"), small_corpus, hostile, progress=False)
    assert not marker.exists()


def test_bad_corpora_and_contexts_are_one_line_errors(small_corpus, tmp_path, capsys):
    small_frames = tmp_path / "small_frames"
    collect(small_collect_config(episodes=2, shard_episodes=2, workers=1, num_envs=2, height=32,
                                 width=32), small_frames, progress=False)
    with pytest.raises(CorpusError, match="holds 32x32x3 frames.*takes 64x64x3"):
        pretrain(tiny(), small_frames, tmp_path / "a", progress=False)

    empty = tmp_path / "empty"
    empty.mkdir()
    manifest = json.loads((small_corpus / "corpus.json").read_text())
    (empty / "corpus.json").write_text(json.dumps({**manifest, "shards": []}))
    assert main(["pretrain", "--corpus", str(empty), "--out", str(tmp_path / "b"),
                 "--no-progress", *cli_args()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no shards" in err

    with pytest.raises(ConfigError, match="context 16 is longer than.*context of 8"):
        pretrain(tiny("pretrain", "context=16"), small_corpus, tmp_path / "c", progress=False)
    with pytest.raises(CorpusError, match="fewer than the 8 ranks"):
        rank_shards(4, 0, 8)
    assert main(["sft", "--from-scratch", "--demos", str(small_corpus), "--out",
                 str(tmp_path / "d"), *cli_args()]) == 2
    assert "holds 40 episodes, the config asks for episodes=200" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--set batch_size=0: batch_size: must be >= 1"):
        tiny("pretrain", "batch_size=0")
    with pytest.raises(ConfigError, match="windows: must be one of starts, steps, got 'ends'"):
        tiny("sft", "windows=ends")


@pytest.mark.parametrize("command", ["pretrain", "sft"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: agentalign {command}" in capsys.readouterr().out


def test_sft_needs_init_or_from_scratch(capsys):
    with pytest.raises(SystemExit):
        main(["sft", "--demos", "x"])
    assert "one of the arguments --init --from-scratch is required" in capsys.readouterr().err
