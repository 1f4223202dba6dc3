"""Rollouts on Ray actors (`--cluster`, rollout.cluster): the local loop's episodes, episode for
episode, on a local two-node Ray cluster bound to loopback; a killed actor and a removed node
give the same episodes after recovery; a cluster that cannot run the actors, a dead address and
a missing Ray each give a one-line error.

One cluster for the module (`ray.cluster_utils.Cluster`): two simulated nodes of 2 CPUs, 80 MB
object stores, no dashboard, every process on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# Before Ray is imported: its processes and this driver on loopback only (Ray would otherwise
# pick another interface); no usage statistics.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import pytest
import torch

from agentalign.envs.layout import load_layout
from agentalign.errors import UserError
from agentalign.models.policy import Policy, get_config
from agentalign.rollout.actors import PolicyActor
from agentalign.rollout.cluster import Cluster, parts, play_on
from agentalign.rollout.loop import play
from agentalign.rollout.starts import spawn_starts

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[distributed]'")
from ray.cluster_utils import Cluster as LocalCluster  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NODE = {"num_cpus": 2, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    test_cluster = LocalCluster(initialize_head=True,
                                head_node_args={**NODE, "include_dashboard": False})
    test_cluster.add_node(**NODE)
    # The workers import helpers from this folder (test_bc), as this process does.
    here = str(Path(__file__).resolve().parent)
    ray.init(address=test_cluster.address, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": here}})
    yield test_cluster
    ray.shutdown()
    test_cluster.shutdown()


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.manual_seed(0)
    return Policy(get_config("tiny")).eval()


def same_episodes(a, b) -> bool:
    return len(a.episodes) == len(b.episodes) and all(
        x.index == y.index and x.outcome == y.outcome and x.spawn == y.spawn
        and np.array_equal(x.actions, y.actions) and np.allclose(x.positions, y.positions)
        for x, y in zip(a.episodes, b.episodes, strict=True))


def test_parts_cover_every_episode_once():
    assert parts(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert parts(2, 5) == [(0, 1), (1, 2)]
    assert sum(b - a for a, b in parts(1000, 7)) == 1000


def test_cluster_values_are_checked_in_one_line():
    assert Cluster.parse("ray").address is None
    assert Cluster.parse("ray:10.0.0.5:6379", workers=4).address == "10.0.0.5:6379"
    for bad in ("spark", "ray:", "ray2"):
        with pytest.raises(UserError, match="use ray"):
            Cluster.parse(bad)


def test_actors_play_the_local_episodes(cluster, policy):
    starts = spawn_starts(load_layout(), 24, 3, 0.5)
    local = play(PolicyActor(policy), starts, num_envs=8, seed=3, record_frames=2)
    remote = play_on(Cluster(cluster.address, workers=3), PolicyActor(policy), starts,
                             num_envs=8, seed=3, record_frames=2)
    assert same_episodes(local, remote)
    assert [e.frames is not None for e in remote.episodes[:3]] == [True, True, False]
    assert remote.settings["actors"] == 3


def _meanwhile(action, during):
    """Run `action` in a thread and `during(thread)` here while it runs; (during's result,
    action's result or None)."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(value=action()))
    thread.start()
    seen = during(thread)
    thread.join(180)
    return seen, result.get("value")


def _kill(target: str):
    """A `during`: kill the first process whose title names `target`; its pid, or None."""
    import psutil

    def during(thread):
        deadline = time.monotonic() + 60
        while thread.is_alive() and time.monotonic() < deadline:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if target in " ".join(proc.info["cmdline"] or []):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    return proc.info["pid"]
            time.sleep(0.05)
        return None

    return during


def test_a_killed_actor_plays_its_part_again_and_nothing_twice(cluster, policy):
    starts = spawn_starts(load_layout(), 96, 5, 0.5)
    local = play(PolicyActor(policy), starts, num_envs=8, seed=5, record_frames=0)
    killed, remote = _meanwhile(lambda: play_on(
        Cluster(cluster.address, workers=2), PolicyActor(policy), starts, num_envs=8, seed=5,
        record_frames=0), _kill("EpisodeWorker.play"))
    assert killed is not None, "no actor was seen playing"
    assert remote is not None and same_episodes(local, remote)


def test_a_removed_node_loses_its_actor_and_the_outcomes_stay(cluster, policy):
    starts = spawn_starts(load_layout(), 96, 6, 0.5)
    local = play(PolicyActor(policy), starts, num_envs=8, seed=6, record_frames=0)
    (extra,) = [n for n in cluster.list_all_nodes() if n is not cluster.head_node]

    def remove(thread):
        time.sleep(4)  # the actors have started (SPREAD: one on each node) and are playing
        cluster.remove_node(extra)

    _, remote = _meanwhile(lambda: play_on(
        Cluster(cluster.address, workers=2), PolicyActor(policy), starts, num_envs=8, seed=6,
        record_frames=0), remove)
    cluster.add_node(**NODE)  # for the tests after this one
    assert remote is not None and same_episodes(local, remote)
    counts = np.bincount([e.outcome for e in remote.episodes], minlength=5)
    assert counts.tolist() == np.bincount([e.outcome for e in local.episodes],
                                          minlength=5).tolist()


def test_no_node_with_the_resource_is_a_one_line_error(cluster, policy):
    starts = spawn_starts(load_layout(), 4, 0, 0.5)
    start = time.monotonic()
    with pytest.raises(UserError, match="no node of the Ray cluster has") as error:
        play_on(Cluster(cluster.address, resources={"unity_build": 1.0}),
                        PolicyActor(policy), starts, num_envs=4)
    assert time.monotonic() - start < 30 and "\n" not in str(error.value)


def test_evaluate_on_the_cluster_gives_the_local_results(cluster, policy, tmp_path):
    from agentalign.config import load
    from agentalign.evaluate import run
    from agentalign.evaluate_config import EvaluateSettings
    stage = _stage(policy, tmp_path / "stage")
    settings = load(EvaluateSettings).replace(episodes=20, num_envs=8, gif_episodes=0)
    here = run(settings, stage, tmp_path / "here", progress=False)
    there = run(settings, stage, tmp_path / "there", progress=False,
                cluster=Cluster(cluster.address, workers=2))
    assert here.rates == there.rates


def test_label_on_the_cluster_records_the_local_rollouts_and_labels(cluster, policy, tmp_path):
    import sqlite3

    from agentalign.config import load
    from agentalign.train.label import run
    from agentalign.train.label_config import LabelSettings

    stage = _stage(policy, tmp_path / "stage")
    settings = load(LabelSettings).replace(train_episodes=12, heldout_episodes=8, pairs=30,
                                           heldout_pairs=10, num_envs=4)
    run(settings, stage, tmp_path / "here", ["left"], progress=False)
    run(settings, stage, tmp_path / "there", ["left"], progress=False,
        cluster=Cluster(cluster.address, workers=2))

    def labels(folder):
        with sqlite3.connect(folder / "labels.sqlite") as db:
            return db.execute("SELECT p.first, p.second, l.answer, l.choice, l.target "
                              "FROM labels l JOIN pairs p ON p.id = l.pair "
                              "ORDER BY l.id").fetchall()

    assert labels(tmp_path / "here") == labels(tmp_path / "there") != []


def test_the_pipeline_runs_its_trainers_label_alignments_and_evaluations_on_the_cluster(
        tmp_path):
    from agentalign.config import load
    from agentalign.pipeline import plan
    from agentalign.pipeline_config import PipelineSettings

    where = Cluster("127.0.0.1:6379", workers=3)
    stages = plan(tmp_path, load(PipelineSettings), progress=False, cluster=where)
    on = {s.name for s in stages if s.call.keywords.get("cluster") is where}
    assert on == {"collect", "demos", "pretrain", "sft", "label", "reward-left", "reward-middle",
                  "reward-right", "align-left", "align-middle", "align-right", "evaluate-base",
                  "evaluate-sft", "evaluate-left-aligned", "evaluate-middle-aligned",
                  "evaluate-right-aligned"}
    assert not any("cluster" in s.call.keywords for s in plan(tmp_path, load(PipelineSettings),
                                                             progress=False))


def test_rl_batches_on_a_stages_actors_are_the_local_ones(cluster, policy):
    """RL's view of its episodes (actions, acting log-probs, frame encodings) from one pool of
    actors kept across iterations equals the local one; the pool closes its actors."""
    from agentalign.rollout.cluster import WorkerPool
    from agentalign.rollout.trajectories import sample_trajectories

    layout = load_layout()
    options = {"num_envs": 8, "max_steps": 30, "features": True}
    with WorkerPool(Cluster(cluster.address, workers=2)) as pool:
        for seed in (5, 6):  # two iterations on the same two actors
            starts = spawn_starts(layout, 6, seed, 0.5).repeated(2)
            local = sample_trajectories(policy, starts, layout, seed=seed, **options)
            remote = sample_trajectories(policy, starts, layout, seed=seed, where=pool,
                                         **options)
            np.testing.assert_array_equal(local[1], remote[1])  # outcomes
            for a, b in zip(local[0], remote[0], strict=True):
                np.testing.assert_array_equal(a.actions, b.actions)
                np.testing.assert_array_equal(a.frames, b.frames)
                np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
                np.testing.assert_allclose(a.features, b.features, atol=1e-5)
            if seed == 5:
                first = list(pool.workers)
        assert pool.workers == first and len(first) == 2
    assert pool.workers == []


def test_collect_on_the_cluster_makes_the_local_corpus(cluster, small_corpus, tmp_path):
    """Shards made as Ray tasks and sent back are byte for byte the local ones."""
    from agentalign.collect import run as collect
    from agentalign.data.shards import MANIFEST
    from conftest import small_collect_config

    result = collect(small_collect_config(), tmp_path, progress=False,
                     cluster=Cluster(cluster.address, workers=2))
    ours = json.loads((tmp_path / MANIFEST).read_text())["shards"]
    theirs = json.loads((small_corpus / MANIFEST).read_text())["shards"]
    assert [e["sha256"] for e in ours] == [e["sha256"] for e in theirs]
    assert result.episodes == sum(e["episodes"] for e in theirs)
    assert not list(tmp_path.glob(".*.tmp"))


def test_align_on_the_cluster_gives_the_local_alignment(cluster, tmp_path):
    """prefft's rollouts on Ray actors and RL on two Ray Train workers (each playing whole
    starts of every batch, gradients summed): the same selections and the same policy (up to
    float rounding) as the local alignment."""
    from agentalign.models.checkpoint import load_policy, save_step
    from agentalign.train.align import run as align
    from agentalign.train.align_config import AlignSettings
    from test_alignment import TOY, small_prefft, small_rl, tiny_policy

    start = tiny_policy()
    save_step(tmp_path / "sft", start, start.config.to_dict(), kind="policy", stage="sft",
              step=0)
    config = AlignSettings(prefft=small_prefft(), rl=small_rl(iterations=2))
    local = align(config, tmp_path / "sft", TOY, "left", tmp_path / "local", progress=False)
    remote = align(config, tmp_path / "sft", TOY, "left", tmp_path / "remote", progress=False,
                   cluster=Cluster(cluster.address, workers=2))
    assert remote.prefft["rounds"] == local.prefft["rounds"]
    assert remote.evaluation["rates"] == local.evaluation["rates"]
    a, _ = load_policy(tmp_path / "local")
    b, _ = load_policy(tmp_path / "remote")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4, msg=name)


def test_toy_pipeline_on_the_cluster_completes_and_resumes_after_a_kill(cluster, tmp_path):
    """The toy pipeline with --cluster (this module's cluster): killed hard once pre-training
    (on Ray Train) has finished, the rerun skips what is done and completes every stage."""
    from test_pipeline import kill_when, toy_config_file

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "agentalign.cli", "pipeline", "--out", str(run), "--config",
           str(toy_config_file(tmp_path)), "--no-progress", "--cluster", f"ray:{cluster.address}",
           "--cluster-workers", "1"]  # one rank or actor per stage: two ranks are tested above
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kill_when(cmd, env, (run / "pretrain" / "metrics.json").exists, 180, poll=0.1)
    state = json.loads((run / "pipeline.json").read_text())
    done = [s["name"] for s in state["stages"] if s["status"] == "done"]
    assert done[:2] == ["collect", "demos"] and "report" not in done
    pretrained = (run / "pretrain" / "metrics.json").read_text()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "collect: done, skipped" in result.stdout
    assert (run / "pretrain" / "metrics.json").read_text() == pretrained  # not trained again
    state = json.loads((run / "pipeline.json").read_text())
    assert all(s["status"] == "done" for s in state["stages"])
    for path in ("pretrain/metrics.json", "sft/metrics.json", "label/labels.sqlite",
                 "reward-left/metrics.json", "align-left/rl/metrics.json",
                 "eval/left-aligned/results.json", "personalities/left-runner.onnx"):
        assert (run / path).exists(), path
    rl = json.loads((run / "align-left" / "rl" / "metrics.json").read_text())
    assert rl["iteration"] == 2
    pretrained = json.loads(pretrained)
    assert pretrained["world_size"] == 1 and pretrained["step"] == 4


def _cli(*args: str, env: dict | None = None, block_ray: bool = False):
    code = ("import sys\n" + ("sys.modules['ray'] = None\n" if block_ray else "")
            + "from agentalign.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def _stage(policy: Policy, folder):
    from agentalign.models.checkpoint import save_step

    save_step(folder, policy, policy.config.to_dict(), kind="policy", stage="sft", step=1)
    return folder


def test_a_dead_address_is_a_one_line_error_in_seconds(policy, tmp_path):
    start = time.monotonic()
    result = _cli("evaluate", str(_stage(policy, tmp_path / "stage")), "--episodes", "2",
                  "--cluster", "ray:127.0.0.1:9", "--out", str(tmp_path / "out"))
    assert time.monotonic() - start < 30
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "no Ray head answers there" in line


def test_without_ray_cluster_says_what_to_install(policy, tmp_path):
    result = _cli("evaluate", str(_stage(policy, tmp_path / "stage")), "--episodes", "2",
                  "--cluster", "ray",
                  "--out", str(tmp_path / "out"), block_ray=True)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "pip install 'agentalign[distributed]'" in line


def test_stand_in_unity_players_run_as_actors_on_two_nodes(cluster, policy, player):
    """Each actor launches its own headless players (the stand-in for a Unity build, each on a
    port of its own), one actor per node (SPREAD), and plays the island's episodes."""
    starts = spawn_starts(load_layout(), 8, 2, 0.5)
    island = play(PolicyActor(policy), starts, num_envs=2, seed=2, record_frames=0)
    remote = play_on(Cluster(cluster.address, workers=2), PolicyActor(policy), starts,
                             num_envs=2, seed=2, record_frames=0, env=f"unity:{player}")
    assert same_episodes(island, remote)
    assert len(set(remote.settings["nodes"])) == 2, "both parts ran on one node"


# -- trainers on Ray Train (train.on_ray) -----------------------------------------------------


def pretrain_then_step(settings, corpus, out, progress=False):
    """On each Ray Train rank (through `on_ray.fit`, as `pretrain --cluster` runs): a whole
    pretrain run, then one step of each optimizer on this rank's half of test_bc's fixed
    batch, wrapped in DDP, in the process group Ray Train started."""
    from agentalign.train.bc import pretrain
    from agentalign.train.distributed import init_distributed
    from test_bc import fixed_batch, one_step

    result = pretrain(settings, corpus, out, progress=progress)
    torch.set_num_threads(1)
    ranks = init_distributed("cpu")
    half = {k: v[ranks.rank * 4:(ranks.rank + 1) * 4] for k, v in fixed_batch(corpus).items()}
    return result, ranks.world, [one_step(half, ranks, wrap=True, sgd=sgd)
                                 for sgd in (False, True)]


def test_ray_train_two_workers_pretrain_and_take_the_step_one_worker_takes_on_the_whole_batch(
        cluster, small_corpus, tmp_path):
    """Ray Train with two workers: pretrain writes the stage folder a torchrun run writes
    (which reruns here or on the cluster skip without starting workers), and a DDP step equals
    one process's step on the whole batch within test_bc's DDP tolerance."""
    from agentalign.train import on_ray
    from agentalign.train.bc import pretrain
    from agentalign.train.distributed import ONE_PROCESS
    from test_bc import fixed_batch, one_step, tiny

    out = tmp_path / "pretrain"
    result, world, weights = on_ray.fit(
        pretrain_then_step, (tiny("pretrain", "steps=3"), small_corpus, out), {},
        Cluster(cluster.address, workers=2), out)
    saved = json.loads((out / "metrics.json").read_text())  # rank 0 wrote the torchrun files
    assert saved["step"] == 3 and saved["world_size"] == 2 and result.world_size == 2
    assert world == 2
    for i, sgd in enumerate((False, True)):
        single = one_step(fixed_batch(small_corpus), ONE_PROCESS, wrap=False, sgd=sgd)
        atol = 1e-6 if sgd else 1e-5  # test_bc's DDP tolerance (reduction order)
        for name, value in single.items():
            assert (weights[i][name] - value).abs().max().item() <= atol, (name, sgd)
    # Reruns, here without Ray and with the cluster, find the finished run and skip it.
    again = pretrain(tiny("pretrain", "steps=3"), small_corpus, out, progress=False)
    assert again.step == 3
    start = time.monotonic()
    again = pretrain(tiny("pretrain", "steps=3"), small_corpus, out,
                     cluster=Cluster(cluster.address, workers=2))
    assert again.world_size == 2 and time.monotonic() - start < 5
