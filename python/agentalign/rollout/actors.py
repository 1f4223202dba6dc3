"""Who acts in a rollout: a policy through its KV cache, or scripted players.

An actor plays a batch of environment rows, one decision per row per call, and is told when a
row begins an episode and which one (its index k), so anything an episode draws at random can
come from a stream of its own.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from agentalign.data.players import Player, Population
from agentalign.models.policy import KVCache, Policy, no_previous_action, sample

PLAYER_STREAM = 1  # players are drawn from (seed, PLAYER_STREAM, episode index)


class Actor(Protocol):
    """Anything that plays a batch of environment rows, one decision per row per call."""

    def begin(self, starting: np.ndarray, episodes: np.ndarray) -> None:
        """Rows where `starting` (bool [R]) begin episode `episodes[row]` now; the first call
        has every row starting and tells the actor how many rows there are."""

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Actions int [R, 2] from frames uint8 [R, H, W, 3] and the env's info."""


class PolicyActor:
    """A Policy acting through its KV cache: one new token per decision and row.

    Puts the policy in eval mode (acting uses no dropout). With `record_logprobs`, it keeps the
    log-prob of each sampled action (summed over branches) from the very logits it sampled from,
    per episode: the "old" log-probs of RL."""

    def __init__(self, policy: Policy, greedy: bool = False, seed: int = 0,
                 record_logprobs: bool = False) -> None:
        self.policy, self.greedy = policy.eval(), greedy
        self.device = policy.rope_cos.device
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.cache: KVCache | None = None
        self.previous = torch.empty(0)
        self.record = record_logprobs
        self.episode_of = np.zeros(0, dtype=np.int64)
        self.logprobs: dict[int, list[float]] = {}

    def begin(self, starting: np.ndarray, episodes: np.ndarray) -> None:
        rows = torch.as_tensor(starting, device=self.device)
        branches = self.policy.config.action_branches
        if self.cache is None or self.cache.batch_size != len(starting):
            self.cache = self.policy.new_cache(len(starting))
            self.previous = no_previous_action(len(starting), branches, self.device)
            self.episode_of = np.full(len(starting), -1, dtype=np.int64)
        self.cache.reset_rows(rows)
        self.previous[rows] = no_previous_action(int(rows.sum()), branches, self.device)
        for row in np.flatnonzero(starting):
            self.episode_of[row] = int(episodes[row])
            if self.record:
                self.logprobs[int(episodes[row])] = []

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        pixels = torch.from_numpy(frames).to(self.device)
        assert self.cache is not None, "begin() comes before act()"
        logits, self.cache = self.policy.step(pixels, self.previous, self.cache)
        self.previous = actions = sample(logits, self.greedy, self.generator)
        if self.record:
            logp = sum(torch.log_softmax(b.float(), -1).gather(1, actions[:, i:i + 1])[:, 0]
                       for i, b in enumerate(logits))
            for row, value in enumerate(logp.tolist()):  # idle rows add extras, cut off later
                self.logprobs[int(self.episode_of[row])].append(value)
        return actions.cpu().numpy()


class PlayerActor:
    """Scripted players from a Population, one per episode: drawn from the episode's own stream
    (seed, PLAYER_STREAM, k), or, given `rng`, from that one generator in the order episodes
    begin (collect: a shard's players come from the shard's stream)."""

    def __init__(self, population: Population, seed: int = 0,
                 rng: np.random.Generator | None = None) -> None:
        self.population, self.seed, self.rng = population, seed, rng
        self.players: list[Player | None] = []
        self.by_episode: dict[int, Player] = {}  # the player of each episode begun

    def begin(self, starting: np.ndarray, episodes: np.ndarray) -> None:
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
