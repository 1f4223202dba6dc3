import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from agentalign.collect import run as collect
from agentalign.data.players import PLAYER_TYPES
from agentalign.data.shards import MANIFEST, Corpus, Shard
from agentalign.envs.layout import load_layout
from agentalign.errors import ConfigError, UserError
from agentalign.spec import PADS
from conftest import small_collect_config


def test_small_corpus(small_corpus):
    manifest = json.loads((small_corpus / MANIFEST).read_text())
    assert [e["index"] for e in manifest["shards"]] == [0, 1, 2, 3]
    summary = manifest["summary"]
    assert summary["episodes"] == 40
    assert abs(sum(summary["outcomes"].values()) - 1) < 1e-9
    corpus = Corpus(small_corpus)
    assert corpus.num_episodes == 40 and corpus.obs_shape == (64, 64, 3)
    assert corpus.player_types == list(PLAYER_TYPES)
    assert corpus.num_steps == summary["steps"] == corpus.episodes["lengths"].sum()
    assert (corpus.episodes["lengths"] <= 100).all()
    episode = corpus.episode(0)
    assert episode["frames"].shape[1:] == (64, 64, 3) and episode["actions"].max() < 9


def test_same_seed_same_corpus_whatever_the_workers(small_corpus, tmp_path):
    collect(small_collect_config(workers=1), tmp_path, progress=False)
    ours = json.loads((tmp_path / MANIFEST).read_text())["shards"]
    theirs = json.loads((small_corpus / MANIFEST).read_text())["shards"]
    assert [e["sha256"] for e in ours] == [e["sha256"] for e in theirs]


def test_killed_collection_resumes_to_the_same_corpus(small_corpus, tmp_path):
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "agentalign.cli", "collect", "--out", str(out), "--no-progress",
           "--set", "episodes=80", "--set", "shard_episodes=10", "--set", "num_envs=8"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if json.loads((out / MANIFEST).read_text())["shards"]:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    listed = json.loads((out / MANIFEST).read_text())["shards"]
    assert 1 <= len(listed) < 8, "the kill came too late to test resuming"
    for path in out.glob("shard-*.safetensors"):  # no half-written shard is ever visible
        Shard.open(path)
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert not list(out.glob(".*.tmp"))
    resumed = json.loads((out / MANIFEST).read_text())["shards"]
    assert [e["index"] for e in resumed] == list(range(8))
    reference = json.loads((small_corpus / MANIFEST).read_text())["shards"]
    assert [e["sha256"] for e in resumed[:4]] == [e["sha256"] for e in reference]


def test_rerun_repairs_a_damaged_shard(small_corpus, tmp_path):
    import shutil

    out = tmp_path / "corpus"
    shutil.copytree(small_corpus, out)
    damaged = out / "shard-00002.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    (out / "shard-00003.safetensors").unlink()
    summary = collect(small_collect_config(), out, progress=False)
    assert summary.new_steps > 0
    Corpus(out)  # sizes and checksums verify again
    ours = json.loads((out / MANIFEST).read_text())["shards"]
    theirs = json.loads((small_corpus / MANIFEST).read_text())["shards"]
    assert [e["sha256"] for e in ours] == [e["sha256"] for e in theirs]


def test_mixture_follows_the_config(tmp_path):
    config = small_collect_config(episodes=300, shard_episodes=50, num_envs=25, seed=3)
    summary = collect(config, tmp_path, progress=False)
    weights = config.players["corpus"].mixture
    total = sum(weights.values())
    for kind, w in weights.items():
        p = w / total
        observed = summary.by_player.get(kind, {"episodes": 0})["episodes"] / 300
        assert abs(observed - p) <= 4 * np.sqrt(p * (1 - p) / 300) + 1e-9, kind
    assert 0.75 <= summary.any_pad <= 0.95  # the default mix: ~85% of a full corpus to a pad
    outcomes = summary.outcomes
    assert outcomes["middle"] > max(outcomes["left"], outcomes["right"])


def test_direct_demos_are_even_across_pads(tmp_path):
    config = small_collect_config(population="direct", episodes=90, shard_episodes=45,
                                  num_envs=30)
    collect(config, tmp_path, progress=False)
    corpus = Corpus(tmp_path)
    targets = np.bincount(corpus.episodes["targets"], minlength=3)
    assert all(15 <= t <= 45 for t in targets)
    reached = corpus.episodes["outcomes"] == corpus.episodes["targets"]
    assert reached.mean() >= 0.9
    assert set(np.unique(corpus.episodes["targets"])) <= set(range(len(PADS)))


def test_demos_of_recovery_start_anywhere_and_reach_their_pad(tmp_path):
    """collect's `anywhere`: a share of the demonstrations start all over the island, facing any
    way; the same settings give the same corpus, and a corpus of spawn starts is not resumed
    as one of them."""
    config = small_collect_config(population="direct", episodes=40, shard_episodes=20,
                                  num_envs=20, anywhere=0.5)
    collect(config, tmp_path / "a", progress=False)
    corpus = Corpus(tmp_path / "a")
    starts = np.array([corpus.episode(k)["positions"][0] for k in range(corpus.num_episodes)])
    headings = np.array([corpus.episode(k)["headings"][0] for k in range(corpus.num_episodes)])
    spawns = np.array([s.position for s in load_layout().spawns])
    far = np.hypot(*(starts[:, None] - spawns[None]).transpose(2, 0, 1)).min(1) > 1.0
    assert 8 <= far.sum() <= 32
    assert np.ptp(headings[far]) > 90  # facing every way, not north
    reached = corpus.episodes["outcomes"] == corpus.episodes["targets"]
    assert reached[far].mean() >= 0.8
    collect(config, tmp_path / "b", progress=False)
    assert np.array_equal(Corpus(tmp_path / "b").episodes["outcomes"], corpus.episodes["outcomes"])
    with pytest.raises(UserError):
        collect(config.replace(anywhere=0.0), tmp_path / "a", progress=False)


def test_bad_settings(tmp_path, small_corpus):
    from agentalign.collect_config import CollectSettings
    from agentalign.config import load

    with pytest.raises(ConfigError, match="episodes: must be >= 1, got 0"):
        small_collect_config(episodes=0)
    with pytest.raises(ConfigError, match=r"--set players.corpus.mixture.pilot=1: "
                       r"players.corpus.mixture.pilot: unknown name"):
        load(CollectSettings, overrides=["players.corpus.mixture.pilot=1"])
    with pytest.raises(UserError, match=r"holds a collect run with other settings \(seed: 0 -> "
                       r"9\)"):
        collect(small_collect_config(seed=9), small_corpus, progress=False)
