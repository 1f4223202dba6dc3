"""Who acts in a rollout: a policy through its KV cache, or scripted players.

An actor plays a batch of environment rows, one decision per row per call, and is told when a
row begins an episode, which one (its index k) and the rollout's seed, so anything an episode
draws at random comes from a stream of its own: a policy's sampled actions from (seed, k, the
decision's number), a scripted player from (seed, k). An episode is then the same whatever
batch, worker or machine plays it (up to the float rounding of the policy's logits, which can
differ between batch sizes and move a draw that falls right on a boundary).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from agentalign.data.players import Player, Population
from agentalign.models.policy import KVCache, Policy, no_previous_action, sample_from

PLAYER_STREAM = 1  # players are drawn from (seed, PLAYER_STREAM, episode index)
ACTION_STREAM = 2  # a policy's sampled actions from (seed, ACTION_STREAM, episode, decision)
HANDOFF_STREAM = 3  # a handoff's decision from (seed, HANDOFF_STREAM, episode index)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that scatters nearby keys."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def episode_uniforms(seed: int, episodes: np.ndarray, steps: np.ndarray, n: int) -> np.ndarray:
    """float64 [R, n] in [0, 1): the n draws of decision `steps[r]` of episode `episodes[r]`,
    from a counter-based generator keyed by (seed, ACTION_STREAM, episode, decision, draw): each
    draw is a function of its key alone, not of the batch it is computed in."""
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed % 2**64) ^ np.uint64(0x9E3779B97F4A7C15 * ACTION_STREAM % 2**64))
        key = _mix(key ^ np.asarray(episodes).astype(np.uint64))
        key = _mix(key ^ (np.asarray(steps).astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)))
        draws = _mix(key[:, None] ^ (np.arange(1, n + 1, dtype=np.uint64)
                                     * np.uint64(0x9E3779B97F4A7C15))[None])
    return (draws >> np.uint64(11)).astype(np.float64) * 2.0**-53


class Actor(Protocol):
    """Anything that plays a batch of environment rows, one decision per row per call."""

    def begin(self, starting: np.ndarray, episodes: np.ndarray, seed: int) -> None:
        """Rows where `starting` (bool [R]) begin episode `episodes[row]` of the rollout seeded
        `seed` now; the first call has every row starting and tells the actor how many rows
        there are."""

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Actions int [R, 2] from frames uint8 [R, H, W, 3] and the env's info."""


class PolicyActor:
    """A Policy acting through its KV cache: one new token per decision and row, its sampled
    actions drawn from each episode's own stream (`episode_uniforms`), or greedy.

    Puts the policy in eval mode (acting uses no dropout). With `record_logprobs`, it keeps the
    log-prob of each sampled action (summed over branches) from the very logits it sampled from,
    per episode: the "old" log-probs of RL; with `record_features`, each frame's CNN encoding
    (float32 [n_embd]), so an RL update with the CNN frozen need not encode the frames again."""

    def __init__(self, policy: Policy, greedy: bool = False, record_logprobs: bool = False,
                 record_features: bool = False) -> None:
        self.policy, self.greedy = policy.eval(), greedy
        self.device = policy.rope_cos.device
        self.cache: KVCache | None = None
        self.previous = torch.empty(0)
        self.record = record_logprobs
        self.seed = 0
        self.episode_of = np.zeros(0, dtype=np.int64)
        self.steps = np.zeros(0, dtype=np.int64)  # decisions taken in each row's episode
        self.logprobs: dict[int, list[float]] = {}
        self.keep_features = record_features
        self.features: dict[int, list[np.ndarray]] = {}

    def begin(self, starting: np.ndarray, episodes: np.ndarray, seed: int) -> None:
        rows = torch.as_tensor(starting, device=self.device)
        branches = self.policy.config.action_branches
        if self.cache is None or self.cache.batch_size != len(starting):
            self.cache = self.policy.new_cache(len(starting))
            self.previous = no_previous_action(len(starting), branches, self.device)
            self.episode_of = np.full(len(starting), -1, dtype=np.int64)
            self.steps = np.zeros(len(starting), dtype=np.int64)
        self.seed = seed
        self.cache.reset_rows(rows)
        self.previous[rows] = no_previous_action(int(rows.sum()), branches, self.device)
        self.steps[starting] = 0
        for row in np.flatnonzero(starting):
            self.episode_of[row] = int(episodes[row])
            if self.record:
                self.logprobs[int(episodes[row])] = []
            if self.keep_features:
                self.features[int(episodes[row])] = []

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        pixels = torch.from_numpy(frames).to(self.device)
        assert self.cache is not None, "begin() comes before act()"
        if self.keep_features:
            features = self.policy.encode_frames(pixels[:, None])[:, 0]
            logits, self.cache = self.policy.step_encoded(features, self.previous, self.cache)
        else:
            logits, self.cache = self.policy.step(pixels, self.previous, self.cache)
        if self.greedy:
            actions = torch.stack([b.argmax(-1) for b in logits], dim=-1)
        else:
            draws = episode_uniforms(self.seed, self.episode_of, self.steps, len(logits))
            actions = sample_from(logits, torch.from_numpy(draws).to(self.device))
        self.previous = actions
        self.steps += 1
        episodes = self.episode_of.tolist()  # idle rows add extras, cut off later
        if self.record:
            logp = sum(torch.log_softmax(b.float(), -1).gather(1, actions[:, i:i + 1])[:, 0]
                       for i, b in enumerate(logits))
            for episode, value in zip(episodes, logp.tolist(), strict=True):
                self.logprobs[episode].append(value)
        if self.keep_features:
            for episode, row in zip(episodes, features.float().cpu().numpy(), strict=True):
                self.features[episode].append(row)
        return actions.cpu().numpy()

    def recorded(self, lengths: dict[int, int]) -> dict[str, dict[int, Any]]:
        """The log-probs and frame encodings recorded for these episodes (index -> decisions
        taken), cut to their lengths: what a copy of this actor on a Ray worker sends back."""
        return {"logprobs": {k: self.logprobs[k][:n] for k, n in lengths.items()
                             if k in self.logprobs},
                "features": {k: self.features[k][:n] for k, n in lengths.items()
                             if k in self.features}}

    def keep(self, recorded: dict[str, dict[int, Any]]) -> None:
        """Take in what `recorded` returned on another process, as if this actor had played."""
        self.logprobs.update(recorded["logprobs"])
        self.features.update(recorded["features"])


class HandoffActor:
    """`first` plays each episode's first h decisions, then `then` takes over with an empty
    context (as a personality swapped in by the gRPC server or the studio's player does); h is
    drawn per episode, uniform over `handoff` = (lo, hi) inclusive, from (seed, HANDOFF_STREAM,
    k). Why: runs that follow a learnt route part of the way and then do whatever the other
    policy does show what can come after the route (the studio's pool: teaching in steps)."""

    def __init__(self, first: Actor, then: Actor, handoff: tuple[int, int]) -> None:
        if not 0 <= handoff[0] <= handoff[1]:
            raise ValueError(f"handoff {handoff}: want 0 <= lo <= hi decisions")
        self.first, self.then, self.handoff = first, then, handoff
        self.seed = 0
        self.episode_of = np.zeros(0, dtype=np.int64)
        self.steps = np.zeros(0, dtype=np.int64)
        self.at = np.zeros(0, dtype=np.int64)  # each row's handoff decision

    def begin(self, starting: np.ndarray, episodes: np.ndarray, seed: int) -> None:
        if len(self.steps) != len(starting):
            self.episode_of = np.full(len(starting), -1, dtype=np.int64)
            self.steps = np.zeros(len(starting), dtype=np.int64)
            self.at = np.zeros(len(starting), dtype=np.int64)
        self.seed = seed
        for row in np.flatnonzero(starting):
            k = int(episodes[row])
            self.episode_of[row], self.steps[row] = k, 0
            rng = np.random.default_rng([seed, HANDOFF_STREAM, k])
            self.at[row] = int(rng.integers(self.handoff[0], self.handoff[1] + 1))
        self.first.begin(starting, episodes, seed)
        self.then.begin(starting, episodes, seed)

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        handing = self.steps == self.at
        if handing.any():  # `then` starts these rows afresh: nothing of `first`'s context
            self.then.begin(handing, self.episode_of, self.seed)
        late = self.steps >= self.at
        actions = np.asarray(self.first.act(frames, info))
        if late.any():  # both step every row (the batch stays whole); rows pick whose acts
            actions = np.where(late[:, None], np.asarray(self.then.act(frames, info)), actions)
        self.steps += 1
        return actions


class PlayerActor:
    """Scripted players from a Population, one per episode: drawn from the episode's own stream
    (seed, PLAYER_STREAM, k), or, given `rng`, from that one generator in the order episodes
    begin (collect: a shard's players come from the shard's stream)."""

    def __init__(self, population: Population, seed: int = 0,
                 rng: np.random.Generator | None = None) -> None:
        self.population, self.seed, self.rng = population, seed, rng
        self.players: list[Player | None] = []
        self.by_episode: dict[int, Player] = {}  # the player of each episode begun

    def begin(self, starting: np.ndarray, episodes: np.ndarray, seed: int = 0) -> None:
        if len(self.players) != len(starting):
            self.players = [None] * len(starting)
        for row in np.flatnonzero(starting):
            k = int(episodes[row])
            rng = self.rng if self.rng is not None else \
                np.random.default_rng([self.seed, PLAYER_STREAM, k])
            player = self.population.sample(rng)
            self.players[row], self.by_episode[k] = player, player

    @property
    def targets(self) -> dict[int, int]:
        """Episode index -> the pad its player aimed for (-1: none)."""
        return {k: p.target for k, p in self.by_episode.items()}

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return np.array([p.act(info["position"][i], info["heading"][i]) if p else (0, 0)
                         for i, p in enumerate(self.players)], dtype=np.int64)
