"""Preference fine-tuning (ReST-like): imitate the SFT agent's own best rollouts, as scored by the
reward model; `agentalign prefft`, the first half of `agentalign align`.

One round: play `episodes` rollouts with the current policy (sampled actions, as deployed; the
game's spawn starts), score each whole episode with the reward model, keep the top
`top_fraction`, write them as a corpus (`data.shards`) and fine-tune on it with the imitation
trainer (`train.bc`, the `sft` loop: preference fine-tuning *is* supervised fine-tuning on
selected episodes). The next round samples from the fine-tuned policy. It moves the policy's mass
onto behaviour it already shows now and then, cheaply and stably, so the online RL that follows
(`train.rl`) starts where the reward model's preferred runs are common rather than rare.

What the policy never completes it cannot select. With `explore_episodes`, each round also plays
that many runs that the policy starts and `explore_policy` (in the studio: the pre-trained
agent) takes over part way with an empty context; they are scored and kept with the policy's
own. Measured on "pass by the campfire, then end on the middle pad" from a policy that passes
the campfire and never turns to the middle pad: fine-tuned on the kept runs, it did the whole
rubric in 6-32% of its runs (docs/results.md, "The studio").

Ground truth stays out. The learner and the reward model see frames and actions only
(`Trajectory`); the selected corpus stores zeros for positions and headings and placeholders
for outcome, spawn and target. The true outcomes of the rollouts are counted for the logs
(`selection.json`: the rate at which the target's pad was reached, of all rollouts vs of the
selected ones) and the final outcome rates are measured in the island on separate starts
(`evaluation` in metrics.json).

The target is a designer intent by name (`envs.intents`; `intents` names its file, default the
packaged one). Its pad is `final_pad(intent)`: a pad intent's own, `campfire-middle`'s middle;
an intent that names no pad (say, "keep 3 m from the edge") logs no reach rate, only the
outcome rates. For any intent but a plain pad, the evaluation also holds the share of
episodes that satisfy it (`evaluation.intent`).

A stage folder holds round-N/selected (the corpus), round-N/selection.json, round-N/finetune
(a bc stage folder, resumable), checkpoints/ (the final policy, stage "prefft", meta target) and
metrics.json once finished. A rerun resumes the first unfinished round and skips a finished stage.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentalign import __version__
from agentalign.atomic import write_json_atomic
from agentalign.data.shards import MANIFEST, Episode, write_shard
from agentalign.envs.intents import Intent, final_pad, intent_by_name
from agentalign.envs.layout import Layout, load_layout
from agentalign.errors import UserError
from agentalign.lifecycle import StageRun, read_json, result_from
from agentalign.models.checkpoint import config_from_info, load_policy, read_info, save_step
from agentalign.models.policy import Policy, PolicyConfig
from agentalign.models.reward import RewardFunction, load_reward_function
from agentalign.rollout import intent_line, rates_line, training_starts
from agentalign.rollout.cluster import Cluster, WorkerPool, pool_for
from agentalign.rollout.trajectories import (
    Trajectory,
    measure_rates,
    sample_handed_over,
    sample_trajectories,
)
from agentalign.spec import OUTCOME_CODES, PADS
from agentalign.train.bc import train
from agentalign.train.distributed import cpu_settings
from agentalign.train.prefft_config import PrefftSettings

EXPLORE_STREAM = 5_003  # seeds the handed-over runs apart from the round's own rollouts


@dataclass(frozen=True)
class PrefftResult:
    """A finished preference fine-tuning (its metrics.json)."""

    target: str
    rounds: list[dict[str, Any]]  # per round: selection (and its ground-truth rates), loss
    evaluation: dict[str, Any] | None  # true outcome rates at the end (separate starts)
    wall_seconds: float
    checkpoint: str


def policy_identity(path: str | Path) -> str:
    return str(read_info(path, kind="policy")[1].get("sha256"))


def reward_function(reward: str | Path | RewardFunction, policy: str | Path | PolicyConfig,
                    target: str) -> RewardFunction:
    """The reward to align to: a reward model checkpoint (checked against the policy's config,
    given or read from its checkpoint.json, and the target), or a RewardFunction as is."""
    if isinstance(reward, RewardFunction):
        return reward
    if not isinstance(policy, PolicyConfig):
        policy = config_from_info(read_info(policy, kind="policy")[1], policy)
    return load_reward_function(reward, policy, target)


def target_intent(target: str, intents: str | Path | None, layout: Layout | str) -> Intent:
    """The intent an alignment aims at, by name; an unknown name is a one-line error naming the
    intents file and the intents it holds."""
    return intent_by_name(target, intents, layout)


def evaluated_intent(intent: Intent) -> Intent | None:
    """The intent an evaluation counts the satisfaction of: none for a plain pad (its reach
    rate says it), so a pad's evaluation stays as it was."""
    return None if intent.name in PADS else intent


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


def run(settings: PrefftSettings, policy: str | Path, reward: str | Path | RewardFunction,
        target: str, out: str | Path, *, intents: str | Path | None = None,
        progress: bool = True, cluster: Cluster | None = None) -> PrefftResult:
    """Run (or resume, or skip if finished) preference fine-tuning of `policy` against `reward`
    (a reward model checkpoint, or a RewardFunction) into `out`, for the intent `target` of
    `intents` (default: the packaged file). With `cluster`, Ray actors play the rollouts (the
    same episodes); fine-tuning stays here."""
    intent = target_intent(target, intents, settings.layout)
    score = reward_function(reward, policy, target)
    out = Path(out)
    identity = {"stage": "prefft", "config": settings.identity(), "target": target,
                "init": policy_identity(policy), "reward": score.identity}
    if settings.explore_episodes:
        identity["explore"] = policy_identity(settings.explore_policy)
    life = StageRun(out, "prefft", identity)
    if (done := life.begin()) is not None:
        return result_from(PrefftResult, done)
    with pool_for(cluster) as where:
        return _prefft(settings, life, Path(policy), score, intent, out, progress, where)


def _prefft(settings: PrefftSettings, life: StageRun, policy: Path, score: RewardFunction,
            intent: Intent, out: Path, progress: bool, where: WorkerPool | None
            ) -> PrefftResult:
    clock = time.perf_counter()
    target, pad = intent.name, final_pad(intent)
    layout = load_layout(settings.layout)
    threads = settings.num_threads or len(os.sched_getaffinity(0))
    explorer = _explorer(settings, policy) if settings.explore_episodes else None
    current = policy
    rounds = []
    for r in range(1, settings.rounds + 1):
        folder = out / f"round-{r}"
        folder.mkdir(parents=True, exist_ok=True)
        selected = folder / "selected"
        if not (selected / MANIFEST).exists():
            model, _ = load_policy(current)
            seed = settings.seed * 1_000 + r
            starts = training_starts(layout, settings.episodes, seed, settings.spawn_jitter,
                                     settings.anywhere, settings.anywhere_edge)
            with cpu_settings(threads):
                trajectories, outcomes, _ = sample_trajectories(
                    model, starts, layout, num_envs=settings.num_envs,
                    max_steps=settings.max_steps, seed=seed, env=settings.env, where=where)
                if explorer is not None:
                    more, more_outcomes = _explore(settings, model, explorer, layout, seed,
                                                   where)
                    trajectories, outcomes = trajectories + more, np.concatenate(
                        [outcomes, more_outcomes])
                scores = score([t.frames for t in trajectories],
                               [t.actions for t in trajectories])
            keep = select_top(scores, settings.top_fraction)
            info = {"round": r, "episodes": len(trajectories), "selected": len(keep),
                    "score_mean": float(scores.mean()),
                    "score_selected_min": float(scores[keep].min())}
            if settings.explore_episodes:  # how many of the kept runs were handed over
                info["explored_selected"] = int((keep >= settings.episodes).sum())
            reached = ""
            if pad is not None:  # ground truth, for the log only: do the scores pick its runs
                hit = outcomes == OUTCOME_CODES[pad]
                info.update(target_rate_all=float(hit.mean()),
                            target_rate_selected=float(hit[keep].mean()))
                reached = (f" ({pad} pad reached: {100 * info['target_rate_all']:.1f}% of all, "
                           f"{100 * info['target_rate_selected']:.1f}% of the kept)")
            write_json_atomic(folder / "selection.json", info)
            write_selected(selected, [trajectories[i] for i in keep], scores[keep])
            print(f"prefft round {r}: kept {len(keep)} of {len(trajectories)} rollouts{reached}")
        rounds.append(read_json(folder / "selection.json"))
        finetune = train("sft", settings.finetune, selected, folder / "finetune", init=current,
                         progress=progress)
        rounds[-1]["finetune_loss"] = finetune.train_loss
        current = folder / "finetune"

    model, _ = load_policy(current)
    evaluation = None
    if settings.eval_episodes:
        with cpu_settings(threads):
            evaluation = measure_rates(model, layout, settings.eval_episodes, settings.seed,
                                       settings.num_envs, settings.max_steps,
                                       settings.spawn_jitter, settings.env,
                                       evaluated_intent(intent), where)
    path = save_step(out, model, model.config.to_dict(), kind="policy", stage="prefft",
                     step=settings.rounds, meta={"target": target, "stage": "prefft",
                                                 "run": life.identity, "evaluation": evaluation})
    return result_from(PrefftResult, life.finish({
        "target": target, "rounds": rounds, "evaluation": evaluation,
        "wall_seconds": time.perf_counter() - clock, "checkpoint": str(path.relative_to(out))}))


def _explorer(settings: PrefftSettings, policy: Path) -> Policy:
    """`explore_policy`, loaded once and checked before any round plays: it must see the
    policy's frames."""
    explorer, _ = load_policy(settings.explore_policy)
    config = config_from_info(read_info(policy, kind="policy")[1], policy)
    sizes = [(c.obs_height, c.obs_width) for c in (config, explorer.config)]
    if sizes[0] != sizes[1]:
        raise UserError(f"prefft explore_policy {settings.explore_policy} sees {sizes[1]} "
                        f"frames, the policy {sizes[0]}: give a policy of the same run")
    return explorer


def _explore(settings: PrefftSettings, model: Policy, explorer: Policy, layout: Layout,
             seed: int, where: WorkerPool | None) -> tuple[list[Trajectory], np.ndarray]:
    """`explore_episodes` more runs from starts of their own stream, each taken over part way
    by `explorer` (sample_handed_over). Why: a behaviour the policy never completes (pass
    the campfire, then turn to the middle pad) appears when it starts the route and another
    agent finishes it; the reward model then decides which of those runs are worth imitating."""
    seed += EXPLORE_STREAM
    starts = training_starts(layout, settings.explore_episodes, seed, settings.spawn_jitter,
                             settings.anywhere, settings.anywhere_edge)
    runs, outcomes, _ = sample_handed_over(
        model, explorer, settings.explore_within, starts, layout, num_envs=settings.num_envs,
        max_steps=settings.max_steps, seed=seed, env=settings.env, where=where)
    return runs, outcomes


def summary(result: PrefftResult) -> str:
    ev = result.evaluation
    rates = f"; outcome rates (sampled): {rates_line(ev['rates'])}" if ev else ""
    satisfied = f"\n{intent_line(ev['intent'])}" if ev and ev.get("intent") else ""
    return (f"prefft -> {result.target}: {len(result.rounds)} round(s) in "
            f"{result.wall_seconds:.1f} s{rates}{satisfied}\ncheckpoint: {result.checkpoint}")
