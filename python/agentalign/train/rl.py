"""Online RL against the reward model, with a KL penalty to the starting policy: `agentalign rl`,
the second half of `agentalign align`.

Algorithm: RLOO (REINFORCE leave-one-out; Ahmadian et al. 2024, as in TRL's RLOOTrainer), not PPO.
- The reward model scores whole episodes, once, at the end: the reward is sparse and terminal.
  RLOO uses exactly that (one return per episode) and needs no value network, where PPO would have
  to learn a critic from pixels to spread a single terminal score over ~60 decisions; a poor
  critic is the usual way PPO goes wrong on small budgets.
- The baseline is free and unbiased: each start is played k times (`samples_per_start`) and an
  episode's advantage is its reward minus the mean reward of the other k - 1 runs from the same
  start. That also removes the start's own difficulty from the signal.
- Few knobs (lr, kl_coef, batch shape), stable with one update per batch. `update_epochs` > 1
  reuses a batch with PPO's clipped ratio (TRL's RLOO does the same), but 1 is the default: then
  the ratio is exactly 1 and the update is the plain on-policy gradient.

Reward, as RLHF writes it: `reward = score - kl_coef * KL`, with KL the episode's sum over steps of
`log pi(a_t | s_t) - log pi_ref(a_t | s_t)` at the sampled actions (the k1 estimate of the
sequence KL; its expectation is KL(pi || pi_ref) of whole episodes). pi_ref is the starting
policy, frozen. Advantages stay in the reward model's units (Bradley-Terry logits: a difference
of 1 is a 73% preference), so a batch whose runs all score alike moves the policy little.
Dividing by the batch's standard deviation (`normalize_advantages`, for rewards of other scales)
does the opposite: once most runs reach the target it blows the reward model's noise up to unit
size, and a run at 98% of its batches fell to 69% within three iterations (measured).

Log-probs must be those the agent acted with. Acting uses the KV cache: at decision t the logits
equal `forward(frames[s:t+1], prev_actions[s:t+1])[:, -1]` with `s = window_start(t, context)`
(models/policy.py). `step_logits` reproduces that: it encodes each frame once, cuts each episode
into the windows the cache held (steps sharing a window start share one causal pass) and reads
each step's logits at its place in its window. Tested equal to the acting log-probs to 1e-5
across window slides. The policy stays in eval mode (no dropout) while acting and learning, so
both see the same function.

The frame encoder (CNN) stays as the starting policy's (`freeze_cnn`, the default): RL trains
the transformer, the action embeddings and the heads. The policy's and the reference's CNN are
then one function, so each frame's encoding, recorded while acting, serves the reference's
log-probs and the update alike, and the update neither runs the CNN nor backpropagates through
it: an iteration costs less than half as much per decision (docs/benchmarks.md, RL profile),
and the rates did not move measurably (docs/results.md, levers tried).

Ground truth stays out: the learner and the reward model get `Trajectory` (frames, actions,
acting log-probs, and the frames' CNN encodings) only. True outcomes are counted for the logs
(charts/rate_*, from the training rollouts) and measured on separate starts for evaluation
(eval/rate_*, metrics.json). The target is a designer intent by name, as in prefft: the progress
bar shows the reach rate of its pad (none for an intent without one), and for any intent but a
plain pad the evaluation also counts the share of episodes that satisfy it (eval/intent).

Starts: the game's spawns, with a share `anywhere` drawn anywhere on the island and a share
`along` at states the starting policy's own runs pass through (`rollout.starts.along_starts`:
an intent whose behaviour begins half-way along a habitual route is tried where the route goes
by; docs/results.md, "The studio", has what it does and does not reach).

A stage folder holds checkpoints/ (resumable: weights, AdamW state, iteration, history), logs/
(TensorBoard: charts/score, charts/reward, charts/kl, charts/entropy, charts/episode_length,
charts/rate_<outcome>, charts/decisions_per_s, losses/policy, eval/rate_<outcome>) and, once
finished, metrics.json. A NaN loss stops the run before the update, keeping the last good
checkpoint.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from agentalign import events
from agentalign.envs.intents import Intent, final_pad
from agentalign.envs.layout import load_layout
from agentalign.errors import ConfigError, UserError
from agentalign.lifecycle import StageRun, result_from
from agentalign.models.checkpoint import (
    latest_or_none,
    load_policy,
    load_weights,
    remove_stale_temporaries,
    restore_training,
    save_step,
)
from agentalign.models.policy import Policy, no_previous_action, window_start
from agentalign.models.reward import RewardFunction
from agentalign.rollout import (
    PolicyActor,
    intent_line,
    outcome_rates,
    rates_line,
    rollout_env,
    training_starts,
)
from agentalign.rollout.cluster import Cluster, parts
from agentalign.rollout.starts import along_starts
from agentalign.rollout.trajectories import (
    Trajectory,
    measure_rates,
    reference_states,
    sample_trajectories,
)
from agentalign.spec import PADS
from agentalign.train import on_ray
from agentalign.train.distributed import (
    ONE_PROCESS,
    Ranks,
    all_gather,
    all_reduce_gradients,
    all_sum,
    cpu_settings,
    init_distributed,
    summary_writer,
    training_threads,
)
from agentalign.train.prefft import (
    evaluated_intent,
    policy_identity,
    reward_function,
    target_intent,
)
from agentalign.train.rl_config import RLSettings


@dataclass(frozen=True)
class RLResult:
    """A finished RL run (its metrics.json)."""

    target: str
    iteration: int
    score: float | None
    kl: float | None
    entropy: float | None
    evaluation: dict[str, Any] | None  # true outcome rates at the end (separate starts)
    decisions: int
    train_seconds: float
    wall_seconds: float
    checkpoint: str
    history: list[dict[str, float]]  # per iteration: score, reward, KL, rates, ...


# --- log-probs over the windows the KV cache held ------------------------------------------------


def window_groups(length: int, context: int) -> list[tuple[int, int, int]]:
    """(s, first, stop) per window: steps first..stop-1 of an episode of `length` steps were
    acted on with the cache holding steps s..t, so one causal pass over s..stop-1 gives them."""
    groups: list[tuple[int, int, int]] = []
    for t in range(length):
        s = window_start(t, context)
        if groups and groups[-1][0] == s:
            groups[-1] = (s, groups[-1][1], t + 1)
        else:
            groups.append((s, t, t + 1))
    return groups


def previous_actions(actions: Tensor, branches: tuple[int, ...]) -> Tensor:
    """long [T, n_branches]: "no previous action" at step 0, then the action before each step."""
    first = no_previous_action(1, branches, actions.device)
    return torch.cat([first, actions[:-1]])


def step_logits(policy: Policy, trajectories: list[Trajectory], encoded: bool = False
                ) -> list[Tensor]:
    """Per-branch logits [sum of T, n_b] of every step of every episode, in order, exactly as
    the KV-cached acting computed them (see the module doc). Differentiable. `encoded`: take
    each frame's CNN encoding from the trajectory (recorded while acting; right only while
    `policy`'s CNN is the acting one's, i.e. frozen) instead of encoding the frames again."""
    context, branches = policy.config.context, policy.config.action_branches
    device = policy.rope_cos.device
    actions = [torch.from_numpy(t.actions).to(device) for t in trajectories]
    prev = torch.cat([previous_actions(a, branches) for a in actions])
    if encoded:
        if any(t.features is None for t in trajectories):
            raise ValueError("step_logits(encoded=True) needs trajectories sampled with "
                             "features=True")
        features = np.concatenate([t.features for t in trajectories])  # type: ignore[misc]
        tokens = torch.from_numpy(features).to(device) + policy.embed_actions(prev)
    else:  # each frame through the CNN once
        frames = torch.from_numpy(np.concatenate([t.frames for t in trajectories])).to(device)
        tokens = policy.embed(frames[None], prev[None])[0]
    windows, rows, cols, offset = [], [], [], 0
    for t in trajectories:
        for s, first, stop in window_groups(len(t.actions), context):
            window = tokens[offset + s:offset + stop]
            windows.append(torch.nn.functional.pad(window, (0, 0, 0, context - len(window))))
            rows += [len(windows) - 1] * (stop - first)
            cols += range(first - s, stop - s)
        offset += len(t.actions)
    logits = policy.forward_tokens(torch.stack(windows))
    r, c = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
    return [branch[r, c] for branch in logits]


def action_logprobs(logits: list[Tensor], actions: Tensor) -> tuple[Tensor, Tensor]:
    """Log-prob of each step's action and the entropy of its distribution, summed over
    branches: both float [steps]."""
    logp, entropy = 0.0, 0.0
    for i, branch in enumerate(logits):
        log_probs = torch.log_softmax(branch.float(), -1)
        logp = logp + log_probs.gather(1, actions[:, i:i + 1])[:, 0]
        entropy = entropy - (log_probs.exp() * log_probs).sum(-1)
    return logp, entropy


def sequence_logprobs(policy: Policy, trajectories: list[Trajectory], minibatch: int = 16,
                      encoded: bool = False) -> Tensor:
    """float [sum of T]: log-prob of every taken action under `policy` (no gradient)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(trajectories), minibatch):
            part = trajectories[i:i + minibatch]
            actions = torch.from_numpy(np.concatenate([t.actions for t in part]))
            out.append(action_logprobs(step_logits(policy, part, encoded),
                                       actions.to(policy.rope_cos.device))[0].cpu())
    return torch.cat(out)


def rloo_advantages(rewards: np.ndarray, k: int) -> np.ndarray:
    """Each reward minus the mean of the other k - 1 rewards of its group (consecutive k)."""
    grouped = rewards.reshape(-1, k)
    others = (grouped.sum(1, keepdims=True) - grouped) / (k - 1)
    return (grouped - others).reshape(-1)


# --- where to start -----------------------------------------------------------------------------

SPREAD_MEMORY = 0.8  # weight of the running spread against the newest batch's


def spawn_spread(spread: list[float] | None, spawns: np.ndarray, scores: np.ndarray, k: int,
                 n_spawns: int) -> list[float]:
    """Per spawn point, a running mean of the standard deviation of the reward model's scores
    among the k runs of each start. Where every run of a start scores alike, RLOO's advantages
    are ~0 and the start teaches nothing; a spawn whose runs sometimes fail (a rare stuck run)
    keeps a spread, so it is where more starts pay."""
    spread = list(spread) if spread is not None else [float("nan")] * n_spawns
    by_start = np.asarray(scores, dtype=np.float64).reshape(-1, k).std(axis=1)
    start_spawn = np.asarray(spawns).reshape(-1, k)[:, 0]
    for i in range(n_spawns):
        if (mine := by_start[start_spawn == i]).size:
            new = float(mine.mean())
            spread[i] = new if np.isnan(spread[i]) else \
                SPREAD_MEMORY * spread[i] + (1 - SPREAD_MEMORY) * new
    return spread


def spawn_weights(spread: list[float] | None, priority: float) -> np.ndarray | None:
    """Spawn draw probabilities: a share `priority` in proportion to each spawn's spread, the
    rest uniform (so no spawn is ever dropped). None (uniform draws) until a spread is known."""
    if not priority or spread is None or np.isnan(spread).any() or sum(spread) <= 0:
        return None
    s = np.asarray(spread, dtype=np.float64)
    return (1 - priority) / len(s) + priority * s / s.sum()


# --- one update ----------------------------------------------------------------------------------


def update(policy: Policy, reference: Policy, optimizer: torch.optim.Optimizer,
           trajectories: list[Trajectory], scores: np.ndarray, cfg: RLSettings,
           ranks: Ranks = ONE_PROCESS) -> dict[str, float]:
    """One RLOO update on a batch of `starts_per_iteration * samples_per_start` episodes
    (grouped by start, k in a row); returns its statistics. Raises on a non-finite loss
    before touching the weights. Over several ranks each holds whole starts of the batch: its
    loss is divided by the whole batch's steps and the gradients are summed over the ranks, so
    the step is the one a single process takes on the whole batch (up to float rounding)."""
    lengths = np.array([len(t.actions) for t in trajectories])
    old_logp = torch.from_numpy(np.concatenate([t.logprobs for t in trajectories]))
    ref_logp = sequence_logprobs(reference, trajectories, cfg.minibatch_episodes,
                                 cfg.freeze_cnn)
    episode_of_step = np.repeat(np.arange(len(trajectories)), lengths)
    kl = np.bincount(episode_of_step, (old_logp - ref_logp).double().numpy(),
                     minlength=len(trajectories))
    rewards = scores - cfg.kl_coef * kl
    advantages = rloo_advantages(rewards, cfg.samples_per_start)
    gathered = all_gather((scores, rewards, kl, lengths, advantages), ranks)
    whole = {key: np.concatenate([g[i] for g in gathered]) for i, key in enumerate(
        ("scores", "rewards", "kl", "lengths", "advantages"))}
    if cfg.normalize_advantages:
        advantages = advantages / (whole["advantages"].std() + 1e-8)
    step_advantages = torch.from_numpy(advantages[episode_of_step]).float()
    total_steps = float(whole["lengths"].sum())
    device = policy.rope_cos.device
    stats = {"score": float(whole["scores"].mean()), "reward": float(whole["rewards"].mean()),
             "kl": float(whole["kl"].mean()), "episode_length": float(whole["lengths"].mean())}
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    # Optimizer steps per pass: `minibatches` contiguous shares of the batch (whole starts when
    # the start count divides evenly); each step's loss is the mean over its own steps.
    bounds = np.linspace(0, len(trajectories), cfg.minibatches + 1).round().astype(int)
    loss_sum, entropy_sum, clipped, mismatch, norms = 0.0, 0.0, 0.0, 0.0, []
    for epoch in range(cfg.update_epochs):
        for first, stop in itertools.pairwise(bounds.tolist()):
            share = all_sum([float(offsets[stop] - offsets[first])], ranks)[0]
            for i in range(first, stop, cfg.minibatch_episodes):  # chunks: memory only
                part = trajectories[i:min(i + cfg.minibatch_episodes, stop)]
                lo, hi = offsets[i], offsets[i + len(part)]
                actions = torch.from_numpy(np.concatenate([t.actions for t in part])).to(device)
                logp, entropy = action_logprobs(step_logits(policy, part, cfg.freeze_cnn),
                                                actions)
                ratio = torch.exp(logp - old_logp[lo:hi].to(device))
                adv = step_advantages[lo:hi].to(device)
                clipped_ratio = ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                loss = -torch.minimum(ratio * adv, clipped_ratio * adv).sum() / share
                if not torch.isfinite(loss):
                    bad = int((~np.isfinite(scores)).sum())
                    raise FloatingPointError(
                        f"loss is {loss.item()} ({bad} non-finite reward-model scores in the "
                        "batch)" if bad else f"loss is {loss.item()}")
                loss.backward()
                loss_sum += loss.item() * share / total_steps
                clipped += ((ratio - 1).abs() > cfg.clip_range).sum().item()
                if epoch == 0:
                    entropy_sum += entropy.detach().sum().item()
                if epoch == 0 and first == 0:  # before any step: acting's own numbers
                    mismatch = max(mismatch, (logp.detach().cpu() - old_logp[lo:hi]).abs()
                                   .max().item())
            all_reduce_gradients(policy, ranks)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                policy.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            if not torch.isfinite(grad_norm):
                optimizer.zero_grad(set_to_none=True)
                raise FloatingPointError(f"gradient norm is {grad_norm.item()}")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            norms.append(float(grad_norm))
    loss_sum, entropy_sum, clipped = all_sum([loss_sum, entropy_sum, clipped], ranks)
    mismatch = max(all_gather(mismatch, ranks))
    stats.update(logprob_mismatch=mismatch, entropy=entropy_sum / total_steps,
                 loss=loss_sum / cfg.update_epochs, grad_norm=float(np.mean(norms)),
                 clip_fraction=clipped / (total_steps * cfg.update_epochs))
    return stats


# --- the stage -----------------------------------------------------------------------------------


def run(settings: RLSettings, policy: str | Path, reward: str | Path | RewardFunction,
        target: str, out: str | Path, *, intents: str | Path | None = None,
        progress: bool = True, cluster: Cluster | None = None) -> RLResult:
    """Run (or resume, or skip if finished) RL from the policy at `policy` (also the KL
    reference) against `reward` (a reward model checkpoint, or a RewardFunction), into `out`,
    for the intent `target` of `intents` (default: the packaged file). With `cluster`, on
    `cluster.workers` Ray Train workers (train.on_ray): each rank plays whole starts of every
    batch (the same episodes as here) and the ranks sum their gradients, as under torchrun."""
    if cluster is not None:
        return on_ray.fit(run, (settings, on_ray.absolute(policy), on_ray.located(reward),
                                target, on_ray.absolute(out)),
                          {"intents": None if intents is None else on_ray.absolute(intents)},
                          cluster, on_ray.absolute(out))
    intent = target_intent(target, intents, settings.layout)
    out = Path(out)
    reference, _ = load_policy(policy)
    score = reward_function(reward, reference.config, target)
    ranks = init_distributed("cpu")
    lead = ranks.rank == 0
    life = StageRun(out, "rl", {"stage": "rl", "config": settings.identity(), "target": target,
                                 "init": policy_identity(policy), "reward": score.identity,
                                 "policy": reference.config.to_dict()}, say=lead)
    try:
        if (done := life.begin(mark=lead)) is not None:
            return result_from(RLResult, done)
        if settings.starts_per_iteration < ranks.world:
            raise ConfigError(f"starts_per_iteration {settings.starts_per_iteration} does not "
                              f"give each of {ranks.world} ranks a start; use fewer ranks")
        with cpu_settings(training_threads(settings.num_threads, ranks)):
            return result_from(RLResult, _rl(settings, life, reference, score, intent, out,
                                             progress and lead, ranks))
    finally:
        if ranks.owns_group:
            dist.destroy_process_group()


def _rl(cfg: RLSettings, life: StageRun, reference: Policy, score: RewardFunction,
        intent: Intent, out: Path, progress: bool, ranks: Ranks) -> dict[str, Any]:
    target, pad, counted = intent.name, final_pad(intent), evaluated_intent(intent)
    lead = ranks.rank == 0
    clock = time.perf_counter()
    layout = load_layout(cfg.layout)
    reference.requires_grad_(False)
    policy = Policy(reference.config)
    policy.load_state_dict(reference.state_dict())
    policy.eval()  # no dropout: acting and learning must compute the same function
    if cfg.freeze_cnn:  # the reference's CNN, so acting's frame encodings serve both
        policy.cnn.requires_grad_(False)
    optimizer = policy.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    state: dict[str, Any] = {"iteration": 0, "decisions": 0, "seconds": 0.0, "history": [],
                             "spawn_spread": None}
    if lead:
        remove_stale_temporaries(out)
    if (latest := latest_or_none(out)) is not None:
        state = _resume(latest, life, policy, optimizer)
        if lead:
            print(f"rl: resuming at iteration {state['iteration']} from {latest}")
    if ranks.world > 1:
        dist.barrier()  # everyone has read the checkpoint before rank 0 may write a new one
    if lead:
        print(f"rl -> {target}: {policy.summary()}; {cfg.iterations} iterations x "
              f"{cfg.starts_per_iteration} starts x {cfg.samples_per_start} samples, "
              f"kl_coef {cfg.kl_coef}, lr {cfg.lr}"
              + (f"; {ranks.world} ranks" if ranks.world > 1 else ""))
    writer = summary_writer(out, state["iteration"]) if lead else None
    bar = events.progress("rl", cfg.iterations, initial=state["iteration"], unit="it",
                          show=progress)
    evaluation = None
    # This rank's share of every batch: whole starts (RLOO's groups stay together), played
    # with their indices in the whole batch, so the episodes are those one process plays.
    k = cfg.samples_per_start
    mine = parts(cfg.starts_per_iteration, ranks.world)[ranks.rank]
    share = slice(mine[0] * k, mine[1] * k)
    # One environment for every iteration's rollout (all of the same size), so a Unity build
    # is launched once, not per iteration; the island is made per rollout.
    rows = min(cfg.num_envs, share.stop - share.start)
    env = cfg.env if cfg.env == "island" or state["iteration"] >= cfg.iterations else \
        rollout_env(cfg.env, rows, layout, reference.config.obs_height,
                    reference.config.obs_width, cfg.max_steps)

    def save(iteration: int) -> None:
        if lead:
            save_step(out, policy, policy.config.to_dict(), kind="policy", stage="rl",
                      step=iteration, meta={"target": target, "stage": "rl",
                                            "run": life.identity},
                      trainer_state={"optimizer": optimizer.state_dict(), **state},
                      keep=cfg.keep_checkpoints)

    visited = None
    try:
        if cfg.along and state["iteration"] < cfg.iterations:  # the same states on a resume
            visited = reference_states(
                PolicyActor(reference), layout, cfg.along_episodes, cfg.seed, num_envs=rows,
                obs=(reference.config.obs_height, reference.config.obs_width),
                max_steps=cfg.max_steps, spawn_jitter=cfg.spawn_jitter,
                min_edge=cfg.anywhere_edge, env=env)
            if lead:
                print(f"rl: {cfg.along:.0%} of the starts along {len(visited)} states of "
                      f"{cfg.along_episodes} runs of the starting policy")
        while state["iteration"] < cfg.iterations:
            iteration = state["iteration"] + 1
            started = time.perf_counter()
            seed = int(np.random.SeedSequence([cfg.seed, iteration]).generate_state(1)[0])
            weights = spawn_weights(state.get("spawn_spread"), cfg.start_priority)
            starts = training_starts(layout, cfg.starts_per_iteration, seed, cfg.spawn_jitter,
                                     cfg.anywhere, cfg.anywhere_edge, weights)
            if visited is not None:
                starts = along_starts(starts, visited, cfg.along, seed)
            starts = starts.repeated(k)
            trajectories, outcomes, lengths = sample_trajectories(
                policy, starts.part(share), layout, num_envs=cfg.num_envs,
                max_steps=cfg.max_steps, seed=seed, env=env, features=cfg.freeze_cnn,
                first=share.start)
            scores = score([t.frames for t in trajectories], [t.actions for t in trajectories])
            try:
                stats = update(policy, reference, optimizer, trajectories, scores, cfg, ranks)
            except FloatingPointError as e:
                kept = latest_or_none(out)
                raise UserError(f"rl: stopped at iteration {iteration}: {e}; the bad update "
                                "was not applied. Last good checkpoint: "
                                f"{kept if kept else 'none (no checkpoint saved yet)'}; lower "
                                "lr or kl_coef, or check the reward model") from None
            gathered = all_gather((scores, outcomes, lengths), ranks)
            scores, outcomes, lengths = (np.concatenate([g[i] for g in gathered])
                                         for i in range(3))
            if cfg.start_priority:
                state["spawn_spread"] = spawn_spread(state.get("spawn_spread"), starts.spawns,
                                                     scores, k, len(layout.spawns))
            seconds = time.perf_counter() - started
            rates = outcome_rates(outcomes)  # ground truth: logged, never learned from
            stats.update({f"rate_{o}": rates[o]["rate"] for o in (*PADS, "none")},
                         iteration=iteration, decisions_per_s=float(lengths.sum()) / seconds)
            state.update(iteration=iteration, decisions=state["decisions"] + int(lengths.sum()),
                         seconds=state["seconds"] + seconds)
            state["history"].append(stats)
            if writer is not None:
                _log(writer, stats, cfg.lr, iteration)
            bar.update(1)
            reach = {pad: f"{100 * stats[f'rate_{pad}']:.0f}%"} if pad is not None else {}
            bar.set_postfix(score=f"{stats['score']:.3f}", kl=f"{stats['kl']:.2f}", **reach)
            if cfg.eval_interval and iteration % cfg.eval_interval == 0 \
                    and iteration < cfg.iterations and cfg.eval_episodes and lead:
                _log_eval(writer, _evaluate(policy, layout, cfg, counted), iteration)
            if iteration % cfg.checkpoint_interval == 0 or iteration == cfg.iterations:
                save(iteration)
        if not isinstance(env, str):  # its builds quit before the evaluation launches its own
            env.close()
            env = cfg.env
        if latest_or_none(out) is None:  # iterations == 0: the starting policy is the result
            save(0)
        if cfg.eval_episodes and lead:
            evaluation = _evaluate(policy, layout, cfg, counted)
            _log_eval(writer, evaluation, state["iteration"])
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if not isinstance(env, str):
            env.close()
    last = state["history"][-1] if state["history"] else {}
    record = life.finish({
        "target": target, "iteration": state["iteration"], "score": last.get("score"),
        "kl": last.get("kl"), "entropy": last.get("entropy"), "evaluation": evaluation,
        "decisions": state["decisions"], "train_seconds": state["seconds"],
        "wall_seconds": time.perf_counter() - clock,
        "checkpoint": f"checkpoints/step-{state['iteration']:08d}",
        "history": state["history"]}, write=lead)
    if ranks.world > 1:
        dist.barrier()  # rank 0 has written the stage folder
    return record


def _evaluate(policy: Policy, layout: Any, cfg: RLSettings, intent: Intent | None
              ) -> dict[str, Any]:
    return measure_rates(policy, layout, cfg.eval_episodes, cfg.seed, cfg.num_envs,
                         cfg.max_steps, cfg.spawn_jitter, cfg.env, intent)


def _log(writer: Any, stats: dict[str, float], lr: float, iteration: int) -> None:
    for key in ("score", "reward", "kl", "entropy", "episode_length", "logprob_mismatch",
                "clip_fraction", "grad_norm", "decisions_per_s",
                *(f"rate_{k}" for k in (*PADS, "none"))):
        writer.add_scalar(f"charts/{key}", stats[key], iteration)
    writer.add_scalar("losses/policy", stats["loss"], iteration)
    writer.add_scalar("charts/learning_rate", lr, iteration)


def _log_eval(writer: Any, summary: dict[str, Any], iteration: int) -> None:
    for key in (*PADS, "none"):
        writer.add_scalar(f"eval/rate_{key}", summary["rates"][key]["rate"], iteration)
    if summary.get("intent"):
        writer.add_scalar("eval/intent", summary["intent"]["rate"], iteration)


def _resume(latest: Path, life: StageRun, policy: Policy,
            optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    weights, info = load_weights(latest, kind="policy")
    life.refuse_other((info.get("meta") or {}).get("run"), latest.parent.parent)
    return restore_training(latest, weights, policy, optimizer,
                            ("iteration", "decisions", "seconds", "history"), ("spawn_spread",))


def summary(result: RLResult) -> str:
    ev = result.evaluation
    rates = f"; outcome rates (sampled): {rates_line(ev['rates'])}" if ev else ""

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    satisfied = f"\n{intent_line(ev['intent'])}" if ev and ev.get("intent") else ""
    return (f"rl -> {result.target}: {result.iteration} iterations, score "
            f"{number(result.score)}, KL {number(result.kl)} in "
            f"{result.wall_seconds:.1f} s{rates}{satisfied}\ncheckpoint: {result.checkpoint}")
