"""What a learner may see of its own episodes: `Trajectory` (pixels, actions, acting log-probs,
optionally the pixels' CNN encodings), sampled by the one rollout loop; and outcome rates
measured apart, for logs and evaluation.

Ground truth stays out of the learner's view: outcomes and lengths come back beside the
trajectories, for logging only, and the rates a trainer reports at its end are measured on
starts no training batch used (`EVAL_STREAM`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium.vector import VectorEnv

from agentalign.envs.intents import Intent, satisfaction
from agentalign.envs.layout import Layout
from agentalign.models.policy import Policy
from agentalign.rollout.actors import Actor, HandoffActor, PolicyActor
from agentalign.rollout.cluster import Where, play_on
from agentalign.rollout.outcomes import summarise
from agentalign.rollout.starts import (
    ALONG_STREAM,
    Starts,
    Visited,
    spawn_starts,
    visited_states,
)

if TYPE_CHECKING:
    from agentalign.rollout.loop import Rollout

EVAL_STREAM = 7_919  # seeds the evaluation starts apart from every training round/iteration


@dataclass
class Trajectory:
    """What a learner or the reward model may see of one episode: pixels and actions."""

    frames: np.ndarray  # uint8 [T, H, W, 3]: the observation at each decision
    actions: np.ndarray  # int64 [T, n_branches]: the action taken at that decision
    logprobs: np.ndarray  # float32 [T]: log-prob of that action under the acting policy
    features: np.ndarray | None = None  # float32 [T, n_embd]: the acting CNN's frame encodings


def sample_trajectories(policy: Policy, starts: Starts, layout: Layout, *, num_envs: int,
                        max_steps: int, seed: int, env: str | VectorEnv = "island",
                        features: bool = False, where: Where = None, first: int = 0
                        ) -> tuple[list[Trajectory], np.ndarray, np.ndarray]:
    """Sampled actions from every start (in the backend `env` names, or an environment made by
    `rollout_env`; on Ray actors with `where`, rollout.cluster); returns the learner's view of
    each episode (with `features`, each frame's CNN encoding too) and, apart, the true outcomes
    and lengths, which are for logging only. `first`: the index of `starts[0]` in a larger
    batch whose share this is (a rank's share of an RL batch), as in `loop.play`."""
    actor = PolicyActor(policy, greedy=False, record_logprobs=True, record_features=features)
    played = play_on(where, actor, starts, num_envs=num_envs, layout=layout,
                     height=policy.config.obs_height, width=policy.config.obs_width,
                     max_steps=max_steps, seed=seed, record_frames=first + len(starts),
                     env=env, first=first)
    return _learner_views(played, actor, features)


def sample_handed_over(policy: Policy, then: Policy, within: int, starts: Starts,
                       layout: Layout, *, num_envs: int, max_steps: int, seed: int,
                       env: str | VectorEnv = "island", where: Where = None
                       ) -> tuple[list[Trajectory], np.ndarray, np.ndarray]:
    """As `sample_trajectories`, but `then` takes over each episode with an empty context after
    a decision drawn uniform in 0..`within` (rollout.actors.HandoffActor): runs that start on
    the policy's route and go on as another agent would. The trajectories' log-probs are NaN
    (two policies acted): fit for imitation and scoring, not for policy gradients."""
    actor = HandoffActor(PolicyActor(policy), PolicyActor(then), (0, within))
    played = play_on(where, actor, starts, num_envs=num_envs, layout=layout,
                     height=policy.config.obs_height, width=policy.config.obs_width,
                     max_steps=max_steps, seed=seed, record_frames=len(starts), env=env)
    return _learner_views(played, None, False)


def _learner_views(played: Rollout, actor: PolicyActor | None, features: bool
                   ) -> tuple[list[Trajectory], np.ndarray, np.ndarray]:
    """Each episode's Trajectory (log-probs and encodings as `actor` recorded them; NaN
    log-probs without one), then the true outcomes and lengths."""
    trajectories = []
    for e in played.episodes:
        assert e.frames is not None
        logprobs = (np.full(e.length, np.nan, np.float32) if actor is None else
                    np.asarray(actor.logprobs[e.index][:e.length], dtype=np.float32))
        encoded = np.stack(actor.features[e.index][:e.length]) if actor and features else None
        trajectories.append(Trajectory(np.ascontiguousarray(e.frames[:e.length]),
                                       e.actions.astype(np.int64), logprobs, encoded))
    outcomes = np.array([e.outcome for e in played.episodes], dtype=np.int64)
    lengths = np.array([e.length for e in played.episodes], dtype=np.int64)
    return trajectories, outcomes, lengths


def measure_rates(policy: Policy, layout: Layout, episodes: int, seed: int, num_envs: int,
                  max_steps: int, spawn_jitter: float, env: str = "island",
                  intent: Intent | None = None, where: Where = None) -> dict[str, Any]:
    """Outcome rates (sampled actions) on starts no training batch used, played in `env` (on
    Ray actors with `where`); for evaluation and logs only. With `intent`, also the share of
    episodes that satisfy it (`intent`: envs.intents.satisfaction), read from the same
    episodes' tracks."""
    starts = spawn_starts(layout, episodes, seed + EVAL_STREAM, spawn_jitter)
    actor = PolicyActor(policy, greedy=False)
    played = play_on(where, actor, starts, num_envs=num_envs, layout=layout,
                     height=policy.config.obs_height, width=policy.config.obs_width,
                     max_steps=max_steps, seed=seed + EVAL_STREAM, record_frames=0, env=env)
    summary = summarise([e.outcome for e in played.episodes],
                        [e.length for e in played.episodes],
                        {"spawn": [layout.spawns[e.spawn].name for e in played.episodes]})
    if intent is not None:  # only then: a pad's evaluation stays as it was
        summary["intent"] = satisfaction(intent, [e.track() for e in played.episodes])
    return summary


def reference_states(actor: Actor, layout: Layout, episodes: int, seed: int, *, num_envs: int,
                     obs: tuple[int, int], max_steps: int, spawn_jitter: float,
                     min_edge: float, env: str | VectorEnv = "island",
                     where: Where = None) -> Visited:
    """The states `actor`'s own runs from the spawns pass through (`episodes` runs on a stream
    of their own, (seed, ALONG_STREAM), apart from the stage's other draws on `seed`): where
    `rollout.starts.along_starts` starts a share of episodes (RL's, a label pool's). Positions
    are the environment's, used to place starts, never learnt from."""
    own = int(np.random.SeedSequence([seed, ALONG_STREAM]).generate_state(1)[0])
    starts = spawn_starts(layout, episodes, own, spawn_jitter)
    played = play_on(where, actor, starts, num_envs=num_envs, layout=layout, height=obs[0],
                     width=obs[1], max_steps=max_steps, seed=own, record_frames=0, env=env)
    return visited_states(layout, [(e.positions[:e.length + 1], e.headings[:e.length + 1],
                                    e.spawn) for e in played.episodes], min_edge)
