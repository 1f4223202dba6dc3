"""Training windows from a corpus: which episodes a rank reads and holds out, how windows are
drawn and batched, and a loader thread that decodes batches ahead of the training step.

An example is a window of K consecutive steps of one episode (K = the policy's context unless the
settings ask for less), drawn one of two ways (`windows`):
- `starts` (pre-training): a start drawn uniformly from [0, L-1] of an episode of L steps. Step
  0 then lies in one window for every K that hold step K-1 or later, but few slots are padding.
- `steps` (SFT, preference fine-tuning): a start s drawn uniformly from [-(K-1), L-1] (episodes
  weighted by L + K - 1), a window with s < 0 cut at the episode's start (its first K + s steps,
  at positions 0.., as the policy sees them when acting). Every step lies in exactly K draws,
  the first steps, where a demonstrator picks its pad, included.
Steps past a window's real ones (the episode's end, or the cut) are masked out of the loss; the
causal mask keeps them from the real steps. The previous action of a window's first step is the
corpus action before it, or `no_previous_action` at the episode start: exactly what the policy
is fed when it acts. Held-out episodes for the eval loss are picked by a hash of their index in
the corpus (`is_eval_episode`), so the split is fixed for a corpus whatever the number of ranks.
The batch of step s depends only on (seed, rank, s).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agentalign.data.shards import Corpus
from agentalign.errors import CorpusError

Batch = dict[str, Tensor]
# How training windows are drawn (WindowSampler): `starts` uniform over an episode's steps,
# `steps` so that every step, the first ones included, lies in as many windows as any other.
WINDOW_DRAWS = ("starts", "steps")


def rank_shards(num_shards: int, rank: int, world: int) -> list[int]:
    """The manifest positions of the shards rank `rank` reads: every `world`-th one."""
    if num_shards < world:
        raise CorpusError(f"the corpus has {num_shards} shard(s), fewer than the {world} ranks; "
                          "use fewer ranks or collect with a smaller shard_episodes")
    return list(range(rank, num_shards, world))


def open_corpus(folder: str | Path, rank: int = 0, world: int = 1) -> Corpus:
    """This rank's share of a corpus, checksummed."""
    everything = Corpus(folder, verify=False)  # opens lazily (memory maps): cheap
    return Corpus(folder, verify=True, shards=rank_shards(len(everything.entries), rank, world))


def corpus_fingerprint(corpus: Corpus) -> str:
    """sha256 of the whole manifest's shard checksums: which data a run trained on."""
    sums = [entry["sha256"] for entry in corpus.manifest["shards"]]
    return hashlib.sha256("\n".join(sums).encode()).hexdigest()


def global_episode_index(corpus: Corpus) -> np.ndarray:
    """Index in the whole corpus of each episode of this (possibly partial) Corpus."""
    entries = corpus.manifest["shards"]
    first = np.concatenate([[0], np.cumsum([e["episodes"] for e in entries])])
    position = {e["file"]: i for i, e in enumerate(entries)}
    offsets = [first[position[e["file"]]] for e in corpus.entries]
    return np.concatenate([offset + np.arange(shard.num_episodes)
                           for offset, shard in zip(offsets, corpus.shards, strict=True)])


def is_eval_episode(index: np.ndarray, fraction: float) -> np.ndarray:
    """The held-out episodes: Fibonacci hashing of the corpus episode index, whose top bits
    spread consecutive indices evenly over [0, 1), so about `fraction` of any stretch of
    episodes is held out, the same ones for any number of ranks or shards per rank."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        hashed = (index.astype(np.uint64) * golden) >> np.uint64(40)
    return hashed < np.uint64(round(fraction * 2**24))


def split_episodes(corpus: Corpus, episodes: int | None, eval_fraction: float, data: Path
                   ) -> tuple[np.ndarray, np.ndarray]:
    """This rank's training and held-out episodes (indices into `corpus`): the episodes whose
    corpus index is below `episodes` (all if None), split by `is_eval_episode`."""
    index = global_episode_index(corpus)
    keep = np.ones(len(index), dtype=bool)
    if episodes is not None:
        available = sum(entry["episodes"] for entry in corpus.manifest["shards"])
        if available < episodes:
            raise CorpusError(f"corpus {data} holds {available} episodes, the config asks for "
                              f"episodes={episodes}; collect more or lower it")
        keep = index < episodes
    held_out = is_eval_episode(index, eval_fraction)
    return np.flatnonzero(keep & ~held_out), np.flatnonzero(keep & held_out)


def read_window(corpus: Corpus, episode: int, start: int, length: int,
                no_previous: np.ndarray, real: int | None = None) -> dict[str, np.ndarray]:
    """Steps [start, start + length) of an episode (zero-padded past its end, `mask` = real,
    and only the first `real` steps if given: a window cut at the episode's start), with each
    step's previous action: the corpus action before it, or `no_previous` (the policy's "no
    previous action" index) at the episode's first step."""
    window = corpus.window(episode, start, length)
    if real is not None:
        window["mask"][real:] = False
    actions = window["actions"].astype(np.int64)
    prev_actions = np.empty_like(actions)
    prev_actions[1:] = actions[:-1]
    if start == 0:
        prev_actions[0] = no_previous
    else:
        shard = corpus.shards[int(corpus.episodes["shard"][episode])]
        prev_actions[0] = shard.arrays["actions"][int(corpus.episodes["starts"][episode])
                                                  + start - 1]
    return {"frames": window["frames"], "actions": actions, "prev_actions": prev_actions,
            "mask": window["mask"]}


def collate(corpus: Corpus, windows: list[tuple[int, int, int]], length: int,
            no_previous: np.ndarray, ends: bool = False) -> Batch:
    """Stack windows given as (episode, start, real steps <= length) into one batch of tensors;
    steps past the real ones are masked out. With `ends`, also each window's episode index
    (`episodes`) and the frame that ends its episode (`ends`, for train.future)."""
    parts = [read_window(corpus, e, s, length, no_previous, real) for e, s, real in windows]
    batch = {key: torch.from_numpy(np.stack([p[key] for p in parts])) for key in parts[0]}
    if ends:
        last = corpus.episodes["lengths"]
        batch["ends"] = torch.from_numpy(np.stack(
            [corpus.window(e, int(last[e]) - 1, 1)["frames"][0] for e, _, _ in windows]))
        batch["episodes"] = torch.tensor([e for e, _, _ in windows], dtype=torch.int64)
    return batch


def step_seed(seed: int, rank: int, step: int, stream: int) -> int:
    """A seed for one random stream (0 = windows, 1 = dropout) of one rank at one step."""
    return int(np.random.SeedSequence([seed, rank, step, stream]).generate_state(1, np.uint64)[0])


class WindowSampler:
    """The batches of one rank: windows (episode, start, real steps) drawn as `draw` says
    (`starts` or `steps`, module docstring) over the training episodes. The batch of step s
    depends only on (seed, rank, s)."""

    def __init__(self, corpus: Corpus, episodes: np.ndarray, length: int, batch_size: int,
                 seed: int, rank: int, no_previous: np.ndarray, draw: str = "starts",
                 ends: bool = False) -> None:
        self.corpus, self.episodes, self.length = corpus, episodes, length
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.no_previous, self.with_ends = no_previous, ends
        if draw not in WINDOW_DRAWS:
            raise ValueError(f"draw must be one of {WINDOW_DRAWS}, got {draw!r}")
        self.before = length - 1 if draw == "steps" else 0  # draws before an episode's start
        draws = corpus.episodes["lengths"][episodes].astype(np.int64) + self.before
        self.ends = np.cumsum(draws)  # each episode's share of [0, total draws)

    def windows(self, step: int) -> list[tuple[int, int, int]]:
        rng = np.random.default_rng(step_seed(self.seed, self.rank, step, 0))
        flat = rng.integers(0, self.ends[-1], size=self.batch_size)
        k = np.searchsorted(self.ends, flat, side="right")
        starts = flat - np.concatenate([[0], self.ends[:-1]])[k] - self.before
        return [(int(self.episodes[i]), max(int(s), 0), self.length + min(int(s), 0))
                for i, s in zip(k, starts, strict=True)]

    def batch(self, step: int) -> Batch:
        return collate(self.corpus, self.windows(step), self.length, self.no_previous,
                       self.with_ends)


class Prefetcher:
    """Builds `make(step)` for steps [start, stop) in a background thread, `depth` ahead.

    Decoding a batch (zlib, numpy copies) releases the GIL, so it overlaps the training step
    instead of adding to it. `depth` 0 builds each batch in the caller's thread.
    """

    def __init__(self, make: Callable[[int], Batch], start: int, stop: int, depth: int) -> None:
        self.make, self.depth = make, depth
        self.queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=max(depth, 1))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(start, stop), daemon=True)
        if depth > 0:
            self.thread.start()

    def _put(self, item: Batch | BaseException) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, start: int, stop: int) -> None:
        try:
            for step in range(start, stop):
                if not self._put(self.make(step)):
                    return
        except BaseException as e:  # hand it to the training thread, which raises it
            self._put(e)

    def get(self, step: int) -> Batch:
        if self.depth == 0:
            return self.make(step)
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()


def eval_windows(corpus: Corpus, episodes: np.ndarray, length: int, limit: int
                 ) -> list[tuple[int, int, int]]:
    """Held-out windows: each eval episode cut into consecutive windows from its start (every
    step scored once), then at most `limit` of them, evenly spread, so evaluation stays cheap."""
    windows = [(int(e), s, length) for e in episodes
               for s in range(0, int(corpus.episodes["lengths"][e]), length)]
    if len(windows) > limit:
        windows = [windows[i] for i in np.linspace(0, len(windows) - 1, limit).round().astype(int)]
    return windows
