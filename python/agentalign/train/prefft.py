"""Preference fine-tuning (ReST-like): imitate the SFT agent's own best rollouts, as scored by the
reward model; `agentalign prefft`, the first half of `agentalign align`.

One round: play `episodes` rollouts with the current policy (sampled actions, as deployed; the
game's spawn starts), score each whole episode with the reward model, keep the top
`top_fraction`, write them as a corpus (`data.shards`) and fine-tune on it with the imitation
trainer (`train.bc`, the `sft` loop: preference fine-tuning *is* supervised fine-tuning on
selected episodes). The next round samples from the fine-tuned policy. It moves the policy's mass
onto behaviour it already shows now and then, cheaply and stably, so the online RL that follows
(`train.rl`) starts where the reward model's preferred runs are common rather than rare.

Ground truth stays out. The learner and the reward model see frames and actions only
(`Trajectory`); the selected corpus stores zeros for positions and headings and placeholders
for outcome, spawn and target. The true outcomes of the rollouts are counted for the logs
(`selection.json`: target rate of all rollouts vs of the selected ones) and the final outcome
rates are measured in the island on separate starts (`evaluation` in metrics.json).

A stage folder holds round-N/selected (the corpus), round-N/selection.json, round-N/finetune
(a bc stage folder, resumable), checkpoints/ (the final policy, stage "prefft", meta target) and
metrics.json once finished. A rerun resumes the first unfinished round and skips a finished stage.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from agentalign import __version__
from agentalign.atomic import write_json_atomic
from agentalign.data.shards import MANIFEST, Episode, write_shard
from agentalign.envs.factory import check_env_spec
from agentalign.envs.layout import Layout, load_layout
from agentalign.errors import ConfigError, UserError
from agentalign.evaluate.metrics import summarise
from agentalign.evaluate.rollout import PolicyActor, Starts, rollout, spawn_starts
from agentalign.models.checkpoint import load_policy, read_info, save_step
from agentalign.models.policy import Policy, PolicyConfig, sample
from agentalign.spec import OUTCOME_CODES, PADS

# (frames per episode, actions per episode) -> one score per episode. Pixels and actions only.
RewardFn = Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray]
METRICS = "metrics.json"
EVAL_STREAM = 7_919  # seeds the evaluation starts apart from every training round/iteration


@dataclass
class Trajectory:
    """What a learner or the reward model may see of one episode: pixels and actions."""

    frames: np.ndarray  # uint8 [T, H, W, 3]: the observation at each decision
    actions: np.ndarray  # int64 [T, n_branches]: the action taken at that decision
    logprobs: np.ndarray  # float32 [T]: log-prob of that action under the acting policy


# --- checks --------------------------------------------------------------------------------------


def check_target(target: str) -> str:
    if target not in PADS:
        raise UserError(f"unknown target {target!r}: choose one of {', '.join(PADS)}")
    return target


def load_reward_function(path: str | Path, policy_config: PolicyConfig, target: str,
                         batch_size: int = 64) -> tuple[RewardFn, str]:
    """The reward model at `path` as a RewardFn, and its identity (weights' sha256). Refuses a
    reward model of another policy config or one trained for another target."""
    from agentalign.models.reward import load_reward_model, score_episodes

    model, info = load_reward_model(path, config=policy_config)
    trained_for = (info.get("meta") or {}).get("target")
    if trained_for is not None and trained_for != target:
        raise UserError(f"reward model {path} was trained for target {trained_for!r}, "
                        f"not {target!r}")

    def reward(frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
        return np.asarray(score_episodes(model, frames, actions, batch_size), dtype=np.float64)

    return reward, str(info.get("sha256"))


def policy_identity(path: str | Path) -> str:
    return str(read_info(path, kind="policy")[1].get("sha256"))


# --- rollouts ------------------------------------------------------------------------------------


class RecordingActor(PolicyActor):
    """PolicyActor that also keeps, per episode, the log-prob of each sampled action (summed
    over branches) from the very logits it sampled from: the "old" log-probs of RL."""

    def __init__(self, policy: Policy, seed: int = 0) -> None:
        super().__init__(policy, greedy=False, seed=seed)
        self.episode_of = np.zeros(0, dtype=np.int64)
        self.logprobs: dict[int, list[float]] = {}

    def begin(self, starting: np.ndarray, episodes: np.ndarray) -> None:
        super().begin(starting, episodes)
        if len(self.episode_of) != len(starting):
            self.episode_of = np.full(len(starting), -1, dtype=np.int64)
        for row in np.flatnonzero(starting):
            self.episode_of[row] = int(episodes[row])
            self.logprobs[int(episodes[row])] = []

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        pixels = torch.from_numpy(frames).to(self.device)
        assert self.cache is not None, "begin() comes before act()"
        logits, self.cache = self.policy.step(pixels, self.previous, self.cache)
        self.previous = actions = sample(logits, greedy=False, generator=self.generator)
        logp = sum(torch.log_softmax(b.float(), -1).gather(1, actions[:, i:i + 1])[:, 0]
                   for i, b in enumerate(logits))
        for row, value in enumerate(logp.tolist()):  # rows idle after their episode add extras,
            self.logprobs[int(self.episode_of[row])].append(value)  # cut off by `play`
        return actions.cpu().numpy()


def repeat_starts(starts: Starts, k: int) -> Starts:
    """Each start k times in a row (episodes i*k .. i*k+k-1 share start i)."""
    return Starts(*(np.repeat(a, k, axis=0) for a in (starts.spawns, starts.positions,
                                                      starts.headings, starts.kinds)))


def play(policy: Policy, starts: Starts, layout: Layout, *, num_envs: int, max_steps: int,
         seed: int, env: str | VectorEnv = "island"
         ) -> tuple[list[Trajectory], np.ndarray, np.ndarray]:
    """Roll out sampled actions from every start (in the backend `env` names, or an
    environment `rollout_env` made); returns the learner's view of each episode (frames,
    actions, acting log-probs) and, apart, the true outcomes and lengths, which are for logging
    only."""
    actor = RecordingActor(policy, seed=seed)
    played = rollout(actor, starts, num_envs=num_envs, layout=layout,
                     height=policy.config.obs_height, width=policy.config.obs_width,
                     max_steps=max_steps, seed=seed, record_frames=len(starts), progress=False,
                     env=env)
    trajectories = []
    for e in played.episodes:
        assert e.frames is not None
        logprobs = np.asarray(actor.logprobs[e.index][:e.length], dtype=np.float32)
        trajectories.append(Trajectory(np.ascontiguousarray(e.frames[:e.length]),
                                       e.actions.astype(np.int64), logprobs))
    outcomes = np.array([e.outcome for e in played.episodes], dtype=np.int64)
    lengths = np.array([e.length for e in played.episodes], dtype=np.int64)
    return trajectories, outcomes, lengths


def score(reward_fn: RewardFn, trajectories: list[Trajectory]) -> np.ndarray:
    """Reward-model scores of whole episodes, from their frames and actions only."""
    scores = np.asarray(reward_fn([t.frames for t in trajectories],
                                  [t.actions for t in trajectories]), dtype=np.float64)
    if scores.shape != (len(trajectories),):
        raise UserError(f"the reward function returned shape {scores.shape} for "
                        f"{len(trajectories)} episodes")
    return scores


def true_rates(policy: Policy, layout: Layout, episodes: int, seed: int, num_envs: int,
               max_steps: int, spawn_jitter: float, env: str = "island") -> dict[str, Any]:
    """Outcome rates (sampled actions) on starts no training batch used, played in `env`; for
    evaluation and logs only."""
    starts = spawn_starts(layout, episodes, seed + EVAL_STREAM, spawn_jitter)
    actor = PolicyActor(policy, greedy=False, seed=seed + EVAL_STREAM)
    played = rollout(actor, starts, num_envs=num_envs, layout=layout,
                     height=policy.config.obs_height, width=policy.config.obs_width,
                     max_steps=max_steps, seed=seed + EVAL_STREAM, record_frames=0,
                     progress=False, env=env)
    return summarise([e.outcome for e in played.episodes], [e.length for e in played.episodes],
                     {"spawn": [layout.spawns[e.spawn].name for e in played.episodes]})


def rates_text(summary: dict[str, Any]) -> str:
    r = summary["rates"]
    return "  ".join(f"{k} {100 * r[k]['rate']:.1f}%" for k in (*PADS, "none"))


# --- selection -----------------------------------------------------------------------------------


def select_top(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the highest-scoring `fraction` of episodes (at least one), best first; ties
    keep the earlier episode."""
    keep = max(1, round(fraction * len(scores)))
    return np.argsort(-np.asarray(scores), kind="stable")[:keep]


def write_selected(folder: Path, trajectories: list[Trajectory], scores: np.ndarray) -> None:
    """The selected episodes as a one-shard corpus the imitation trainer reads. No ground truth:
    positions/headings are zeros, outcome/spawn/target placeholders (see the module doc)."""
    folder.mkdir(parents=True, exist_ok=True)
    episodes = [Episode(frames=t.frames, actions=t.actions.astype(np.uint8),
                        positions=np.zeros((len(t.frames), 2), np.float32),
                        headings=np.zeros(len(t.frames), np.float32),
                        outcome=OUTCOME_CODES["timeout"], player=0, spawn=0, target=-1)
                for t in trajectories]
    entry = write_shard(folder / "shard-00000.safetensors", episodes,
                        {"player_types": ["policy"], "source": "prefft",
                         "scores": [float(s) for s in scores]})
    write_json_atomic(folder / MANIFEST, {
        "format_version": 1, "agentalign": __version__, "source": "prefft",
        "ground_truth": "withheld: positions are zeros, outcomes placeholders", "shards": [entry]})


# --- the stage -----------------------------------------------------------------------------------

PREFFT_KEYS = ("rounds", "episodes", "top_fraction", "num_envs", "env", "max_steps",
               "spawn_jitter", "layout", "eval_episodes", "seed", "num_threads", "finetune")


def check_config(config: dict[str, Any]) -> None:
    if missing := set(PREFFT_KEYS) - set(config) - {"env"}:  # no env: the island
        raise ConfigError(f"prefft config lacks the keys {sorted(missing)}")
    if unknown := set(config) - set(PREFFT_KEYS):
        raise ConfigError(f"prefft config has unknown keys {sorted(unknown)}")
    for key, low in (("rounds", 0), ("episodes", 1), ("num_envs", 1), ("max_steps", 1),
                     ("eval_episodes", 0), ("seed", 0), ("num_threads", 0)):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"prefft: {key} must be an integer >= {low}, got {value!r}")
    fraction = config["top_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) \
            or not 0 < fraction <= 1:
        raise ConfigError(f"prefft: top_fraction must be in (0, 1], got {fraction!r}")
    if not isinstance(config["finetune"], dict):
        raise ConfigError("prefft: finetune must be a mapping of imitation (sft) settings")
    check_env_spec(config.get("env", "island"))


def prefft(config: dict[str, Any], policy_path: str | Path, reward_fn: RewardFn, target: str,
           out: str | Path, reward_id: str = "", progress: bool = True) -> dict[str, Any]:
    """Run (or resume, or skip if finished) preference fine-tuning into `out`; returns
    metrics.json. `reward_id` names the reward function in the run identity."""
    from agentalign.train.bc import cpu_settings, train

    check_target(target)
    check_config(config)
    out = Path(out)
    env = config.get("env", "island")
    # The backend is not part of the run's identity: both play the same episodes for a seed.
    identity = {k: v for k, v in config.items() if k != "env"}
    run = json.loads(json.dumps({"stage": "prefft", "config": identity, "target": target,
                                 "init": policy_identity(policy_path), "reward": reward_id}))
    if (done := finished(out, run)) is not None:
        print(f"prefft: {out} already finished; skipping")
        return done
    check_same_run(out, run, "prefft")
    clock = time.perf_counter()
    layout = load_layout(config["layout"])
    threads = config["num_threads"] or len(os.sched_getaffinity(0))
    current: Path = Path(policy_path)
    rounds = []
    for r in range(1, config["rounds"] + 1):
        folder = out / f"round-{r}"
        folder.mkdir(parents=True, exist_ok=True)
        selected = folder / "selected"
        if not (selected / MANIFEST).exists():
            policy, _ = load_policy(current)
            seed = config["seed"] * 1_000 + r
            starts = spawn_starts(layout, config["episodes"], seed, config["spawn_jitter"])
            with cpu_settings(threads):
                trajectories, outcomes, _ = play(policy, starts, layout,
                                                 num_envs=config["num_envs"],
                                                 max_steps=config["max_steps"], seed=seed,
                                                 env=env)
                scores = score(reward_fn, trajectories)
            keep = select_top(scores, config["top_fraction"])
            hit = outcomes == OUTCOME_CODES[target]
            info = {"round": r, "episodes": len(trajectories), "selected": len(keep),
                    "score_mean": float(scores.mean()), "score_selected_min": float(
                        scores[keep].min()),
                    # ground truth, for the log only: how well the scores pick target runs
                    "target_rate_all": float(hit.mean()),
                    "target_rate_selected": float(hit[keep].mean())}
            write_json_atomic(folder / "selection.json", info)
            write_selected(selected, [trajectories[i] for i in keep], scores[keep])
            print(f"prefft round {r}: kept {len(keep)} of {len(trajectories)} rollouts "
                  f"(target reached: {100 * info['target_rate_all']:.1f}% of all, "
                  f"{100 * info['target_rate_selected']:.1f}% of the kept)")
        rounds.append(json.loads((folder / "selection.json").read_text()))
        finetune = train("sft", config["finetune"], selected, folder / "finetune", init=current,
                         progress=progress)
        rounds[-1]["finetune_loss"] = finetune["train_loss"]
        current = folder / "finetune"

    policy, info = load_policy(current)
    with cpu_settings(threads):
        evaluation = true_rates(policy, layout, config["eval_episodes"], config["seed"],
                                config["num_envs"], config["max_steps"],
                                config["spawn_jitter"], env) if config["eval_episodes"] else None
    path = save_step(out, policy, policy.config.to_dict(), kind="policy", stage="prefft",
                     step=config["rounds"], meta={"target": target, "stage": "prefft",
                                                  "run": run, "evaluation": evaluation})
    metrics = {"stage": "prefft", "final": True, "target": target, "rounds": rounds,
               "evaluation": evaluation, "wall_seconds": time.perf_counter() - clock,
               "checkpoint": str(path.relative_to(out)), "run": run}
    write_json_atomic(out / METRICS, metrics)
    return metrics


def finished(out: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics.json of a finished run of exactly `run` in `out`, if there is one."""
    try:
        metrics = json.loads((out / METRICS).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return metrics if metrics.get("final") and metrics.get("run") == run else None


def check_same_run(out: Path, run: dict[str, Any], stage: str) -> None:
    """Refuse a stage folder that holds a run with other settings; mark a new one as ours."""
    path = out / "run.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            saved = None
        if saved != run:
            raise UserError(f"{out} holds a {stage} run with other settings (config, target, "
                            "policy or reward model); use another --out, or the same settings "
                            "to resume")
    else:
        write_json_atomic(path, run)


def format_metrics(metrics: dict[str, Any]) -> str:
    ev = metrics.get("evaluation")
    rates = f"; outcome rates (sampled): {rates_text(ev)}" if ev else ""
    return (f"prefft -> {metrics['target']}: {len(metrics['rounds'])} round(s) in "
            f"{metrics['wall_seconds']:.1f} s{rates}")
