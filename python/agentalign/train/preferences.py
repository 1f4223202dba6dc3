"""Preferences: pairs of trajectories, a synthetic labeller for a target pad, and the label store.

Trajectories are whole episodes of the SFT agent, recorded as corpora (one for training labels,
one held out, from separate seeds) and referenced as (corpus, episode index). Whole episodes,
not segments, because the designer's intent ("run to the left pad") is a property of where an
episode ends up: a segment in the middle of a run says little about it.

The synthetic labeller stands in for a designer's clicks and is the only code that reads
positions and outcomes. Human labels arrive through the same SQLite table, so the store is built
for concurrent writers (WAL journal, a busy timeout, one short transaction per write).
"""

from __future__ import annotations

import datetime as _dt
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agentalign.errors import UserError
from agentalign.spec import PADS

STORE = "labels.sqlite"  # the label store's file name in a label folder
ANYWHERE_CORPUS = "rollouts-heldout-anywhere"  # held-out runs from starts anywhere (see label)
SCHEMA_VERSION = 1
SOURCES = ("synthetic", "human")


class LabelStoreError(UserError):
    """A label store that is missing, of another schema, empty or inconsistent."""


@dataclass(frozen=True)
class TrajectorySummary:
    """What the labeller may know about an episode (never shown to any learner)."""

    outcome: int  # spec.OUTCOMES code
    final_position: tuple[float, float]
    length: int


class SyntheticLabeller:
    """Prefers trajectories by the designer's rule for one target pad.

    A trajectory that reaches the target beats one that does not; otherwise the one whose final
    position is closer to the target pad wins; then the shorter one; exact ties give no label.
    A run that ended on a pad is at that pad: its final position is the pad's centre, not the
    spot on the rim where it touched (which of two runs to the middle pad touched its left side
    is no intent of the designer's, nor visible in 64x64 frames: with rim positions the
    held-out pairs of runs to the same pad were ordered by noise). So two runs to the same
    wrong pad, or (for middle) to the left and the right pad, which lie equally far, are
    ordered by length.
    With `temperature > 0`, the choice is drawn Bradley-Terry style from a utility that orders
    trajectories the same way (reach: +100, minus final distance in metres, minus 0.01 a decision),
    imitating an imperfect human.
    """

    def __init__(self, target: str, pad_positions: Sequence[tuple[float, float]],
                 temperature: float = 0.0, seed: int = 0):
        if target not in PADS:
            raise UserError(f"unknown target {target!r}: choose one of {list(PADS)}")
        if temperature < 0 or not math.isfinite(temperature):
            raise UserError(f"labeller temperature must be >= 0, got {temperature}")
        self.target = target
        self.target_code = PADS.index(target)
        self.pads = np.asarray(pad_positions, dtype=np.float64)
        self.pad = self.pads[self.target_code]
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)
        self.labeller_id = f"synthetic:{target}:T={temperature:g}"

    def key(self, t: TrajectorySummary) -> tuple[int, float, int]:
        """Sort key: larger is better (reached, -distance, -length)."""
        reached = int(t.outcome == self.target_code)
        final = self.pads[t.outcome] if t.outcome < len(self.pads) else t.final_position
        distance = 0.0 if reached else float(np.linalg.norm(np.asarray(final) - self.pad))
        return (reached, -round(distance, 6), -t.length)

    def utility(self, t: TrajectorySummary) -> float:
        reached, neg_distance, neg_length = self.key(t)
        return 100.0 * reached + neg_distance + 0.01 * neg_length

    def prefer(self, a: TrajectorySummary, b: TrajectorySummary) -> int | None:
        """0 if a is preferred, 1 if b, None for an exact tie (the pair is dropped)."""
        ka, kb = self.key(a), self.key(b)
        if ka == kb:
            return None
        if self.temperature == 0:
            return 0 if ka > kb else 1
        margin = (self.utility(a) - self.utility(b)) / self.temperature
        p_a = 1.0 / (1.0 + math.exp(-max(min(margin, 50.0), -50.0)))
        return 0 if self.rng.random() < p_a else 1


def sample_pairs(num_trajectories: int, num_pairs: int, seed: int) -> np.ndarray:
    """Distinct unordered pairs (i, j), i != j, drawn uniformly; [num_pairs, 2] int64."""
    total = num_trajectories * (num_trajectories - 1) // 2
    if num_trajectories < 2:
        raise UserError("pairing needs at least 2 trajectories")
    num_pairs = min(num_pairs, total)
    rng = np.random.default_rng(seed)
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < num_pairs:
        i, j = rng.integers(num_trajectories, size=2)
        if i != j:
            chosen.add((int(min(i, j)), int(max(i, j))))
    pairs = np.array(sorted(chosen), dtype=np.int64)
    flip = rng.random(len(pairs)) < 0.5  # random presentation order
    pairs[flip] = pairs[flip][:, ::-1]
    return pairs


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trajectories (
    id INTEGER PRIMARY KEY,
    corpus TEXT NOT NULL,          -- corpus folder, relative to the store's folder
    episode INTEGER NOT NULL,      -- episode index in that corpus
    split TEXT NOT NULL CHECK (split IN ('train', 'heldout')),
    UNIQUE (corpus, episode)
);
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY,
    first INTEGER NOT NULL REFERENCES trajectories(id),
    second INTEGER NOT NULL REFERENCES trajectories(id),
    split TEXT NOT NULL CHECK (split IN ('train', 'heldout')),
    CHECK (first != second),
    UNIQUE (first, second)
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    pair INTEGER NOT NULL REFERENCES pairs(id),
    choice INTEGER NOT NULL CHECK (choice IN (0, 1)),   -- 0: first preferred, 1: second
    source TEXT NOT NULL CHECK (source IN ('synthetic', 'human')),
    labeller TEXT NOT NULL,
    target TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_by_target ON labels (target, pair);
"""


class LabelStore:
    """The SQLite label store. One connection per process; safe for concurrent writers."""

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LabelStoreError(f"label store {self.path}: does not exist; make one with "
                                  "`agentalign label`")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=30000")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                (str(SCHEMA_VERSION),))
            version = self.db.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise LabelStoreError(f"label store {self.path}: not a readable SQLite database "
                                  f"({e})") from None
        if version != str(SCHEMA_VERSION):
            raise LabelStoreError(f"label store {self.path}: schema version {version}, this "
                                  f"agentalign reads {SCHEMA_VERSION}")

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def add_trajectories(self, corpus: str, episodes: Iterable[int], split: str) -> list[int]:
        """Register episodes of a corpus; returns their trajectory ids (existing ones reused)."""
        ids = []
        with self._transaction():
            for e in episodes:
                self.db.execute("INSERT OR IGNORE INTO trajectories (corpus, episode, split) "
                                "VALUES (?, ?, ?)", (corpus, int(e), split))
                ids.append(self.db.execute("SELECT id FROM trajectories WHERE corpus = ? AND "
                                           "episode = ?", (corpus, int(e))).fetchone()[0])
        return ids

    def add_pairs(self, pairs: Iterable[tuple[int, int]], split: str) -> list[int]:
        ids = []
        with self._transaction():
            for a, b in pairs:
                self.db.execute("INSERT OR IGNORE INTO pairs (first, second, split) VALUES "
                                "(?, ?, ?)", (int(a), int(b), split))
                ids.append(self.db.execute("SELECT id FROM pairs WHERE first = ? AND second = ?",
                                           (int(a), int(b))).fetchone()[0])
        return ids

    def add_label(self, pair: int, choice: int, *, source: str, labeller: str,
                  target: str) -> int:
        """Record one choice (0 = first, 1 = second). One short transaction: many writers fit."""
        if source not in SOURCES:
            raise LabelStoreError(f"label source must be one of {list(SOURCES)}, got {source!r}")
        created = _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")
        try:
            with self._transaction():
                cur = self.db.execute(
                    "INSERT INTO labels (pair, choice, source, labeller, target, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (int(pair), int(choice), source, labeller,
                                                  target, created))
        except sqlite3.IntegrityError as e:
            raise LabelStoreError(f"label store {self.path}: cannot add a label for pair {pair} "
                                  f"({e})") from None
        return int(cur.lastrowid)

    def labelled_pairs(self, target: str, split: str, limit: int | None = None
                       ) -> list[tuple[str, int, str, int, int]]:
        """(corpus_a, episode_a, corpus_b, episode_b, choice) for labelled pairs, oldest first.

        A pair labelled more than once counts with its latest label.
        """
        rows = self.db.execute(
            """SELECT ta.corpus, ta.episode, tb.corpus, tb.episode, l.choice
               FROM labels l JOIN pairs p ON p.id = l.pair
               JOIN trajectories ta ON ta.id = p.first JOIN trajectories tb ON tb.id = p.second
               WHERE l.target = ? AND p.split = ? AND l.id = (
                   SELECT MAX(id) FROM labels WHERE pair = l.pair AND target = l.target)
               ORDER BY l.id""", (target, split)).fetchall()
        return rows[:limit] if limit is not None else rows

    def counts(self) -> dict[str, int]:
        return {t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("trajectories", "pairs", "labels")}


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, so a writer takes the lock up front and waits politely."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def add_labels(store: LabelStore, labels: Iterable[tuple[int, int]], *, source: str,
               labeller: str, target: str) -> int:
    """Record many (pair id, choice) labels in one transaction (a labelling run's batch);
    returns how many were written."""
    if source not in SOURCES:
        raise LabelStoreError(f"label source must be one of {list(SOURCES)}, got {source!r}")
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")
    rows = [(int(p), int(c), source, labeller, target, created) for p, c in labels]
    try:
        with store._transaction():
            store.db.executemany("INSERT INTO labels (pair, choice, source, labeller, target, "
                                 "created) VALUES (?, ?, ?, ?, ?, ?)", rows)
    except sqlite3.IntegrityError as e:
        raise LabelStoreError(f"label store {store.path}: cannot add labels ({e})") from None
    return len(rows)
