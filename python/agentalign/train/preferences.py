"""Preferences: pairs of trajectories, a synthetic labeller for a target pad, and the label store.

Trajectories are whole episodes of the SFT agent, recorded as corpora (one for training labels,
one held out, from separate seeds) and referenced as (corpus, episode index). Whole episodes,
not segments, because the designer's intent ("run to the left pad") is a property of where an
episode ends up: a segment in the middle of a run says little about it.

The synthetic labeller stands in for a designer's clicks and is the only code that reads
positions and outcomes. Human labels arrive through the same SQLite table, so the store is built
for concurrent writers (WAL journal, a busy timeout, one short transaction per write). A human
may also answer "equal" (a tie, trained as half a preference), "can't tell" or "skip" (kept,
never trained on); the row keeps who answered, for which target, under which rubric and which
side the page drew each trajectory on, since those are what a label's quality depends on.
"""

from __future__ import annotations

import datetime as _dt
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.errors import UserError
from agentalign.spec import PADS

STORE = "labels.sqlite"  # the label store's file name in a label folder
ANYWHERE_CORPUS = "rollouts-heldout-anywhere"  # held-out runs from starts anywhere (see label)
SCHEMA_VERSION = 2  # v1 stores are migrated when opened
SOURCES = ("synthetic", "human")
ANSWERS = ("first", "second", "equal", "cant_tell", "skip")  # what a designer may answer
CHOICES = {"first": 0, "second": 1, "equal": 0.5}  # an answer as a number (cant_tell, skip: none)


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


# Schema v2. A label is an answer: which of the pair the designer prefers (first, second),
# neither (equal: a tie, trained as half a preference), or none (cant_tell, skip: kept for the
# studio's statistics, never trained on). `choice` is the answer as a number, so v1 readers'
# queries still mean the same; a CHECK keeps the two in step.
_LABELS = """
CREATE TABLE {name} (
    id INTEGER PRIMARY KEY,
    pair INTEGER NOT NULL REFERENCES pairs(id),
    answer TEXT NOT NULL CHECK (answer IN ('first', 'second', 'equal', 'cant_tell', 'skip')),
    choice REAL CHECK (choice IS CASE answer WHEN 'first' THEN 0 WHEN 'second' THEN 1
                                             WHEN 'equal' THEN 0.5 END),
    shown_left INTEGER CHECK (shown_left IS NULL OR shown_left IN (0, 1)),  -- first=0, second=1
    source TEXT NOT NULL CHECK (source IN ('synthetic', 'human')),
    labeller TEXT NOT NULL,        -- the synthetic labeller's id, or the annotator's name
    target TEXT NOT NULL,          -- the personality the answer is for
    rubric TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    request TEXT UNIQUE            -- a client's idempotency key: a double click writes one row
)"""
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS trajectories (
    id INTEGER PRIMARY KEY,
    corpus TEXT NOT NULL,          -- corpus folder, relative to the store's folder
    episode INTEGER NOT NULL,      -- episode index in that corpus
    split TEXT NOT NULL CHECK (split IN ('train', 'heldout')),
    UNIQUE (corpus, episode)
)""",
    """CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY,
    first INTEGER NOT NULL REFERENCES trajectories(id),
    second INTEGER NOT NULL REFERENCES trajectories(id),
    split TEXT NOT NULL CHECK (split IN ('train', 'heldout')),
    CHECK (first != second),
    UNIQUE (first, second)
)""",
    _LABELS.format(name="IF NOT EXISTS labels"),
    "CREATE INDEX IF NOT EXISTS labels_by_target ON labels (target, pair)",
]
# v1 -> v2: the SQLite way to change a table's columns and checks (a new table, the rows
# copied, the old one dropped); run in one transaction, so a failure leaves v1 as it was.
_MIGRATE_V1 = [
    _LABELS.format(name="labels_v2"),
    """INSERT INTO labels_v2 (id, pair, answer, choice, shown_left, source, labeller, target,
                              rubric, created, request)
       SELECT id, pair, CASE choice WHEN 0 THEN 'first' ELSE 'second' END, choice, NULL, source,
              labeller, target, '', created, NULL FROM labels""",
    "DROP TABLE labels",
    "ALTER TABLE labels_v2 RENAME TO labels",
    "CREATE INDEX labels_by_target ON labels (target, pair)",
    "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
]
_DECISIVE = ("first", "second")  # by choice: 0 = first preferred, 1 = second
# The answer as a number, read back as an int for first/second (the REAL column holds 0.0, and
# v1 readers, the reward data's fingerprint among them, saw ints) and 0.5 for equal.
_CHOICE_SQL = "CASE l.answer WHEN 'first' THEN 0 WHEN 'second' THEN 1 WHEN 'equal' THEN 0.5 END"


class LabelStore:
    """The SQLite label store. One connection per process; safe for concurrent writers.

    Opening a v1 store migrates it to v2 (answers, drawn side, rubric, request keys).
    """

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LabelStoreError(f"label store {self.path}: does not exist; make one with "
                                  "`agentalign label`")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        migrating = False
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=30000")
            with self._transaction():  # one writer at a time creates or migrates
                version = self._version()
                if version is None:
                    for statement in _SCHEMA:
                        self.db.execute(statement)
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                    (str(SCHEMA_VERSION),))
                    version = str(SCHEMA_VERSION)
                elif version == "1":
                    migrating = True
                    for statement in _MIGRATE_V1:
                        self.db.execute(statement)
                    version = self._version()
        except sqlite3.DatabaseError as e:
            self.db.close()
            what = (f"its migration from schema 1 to {SCHEMA_VERSION} failed and it was left as "
                    "it was" if migrating else "not a readable SQLite database")
            raise LabelStoreError(f"label store {self.path}: {what} ({e})") from None
        if version != str(SCHEMA_VERSION):
            self.db.close()
            raise LabelStoreError(f"label store {self.path}: schema version {version}, this "
                                  f"agentalign reads {SCHEMA_VERSION} (and migrates 1); "
                                  "upgrade agentalign to read it")

    def _version(self) -> str | None:
        """The stored schema version; None for a new (empty) store."""
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                           "name = 'meta'").fetchone() is None:
            return None
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

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
        row = _label_row(self, pair, choice, source, labeller, target, _now())
        try:
            with self._transaction():
                cur = self.db.execute(_INSERT_LABEL, row)
        except sqlite3.IntegrityError as e:
            raise LabelStoreError(f"label store {self.path}: cannot add a label for pair {pair} "
                                  f"({e})") from None
        return int(cur.lastrowid)

    def add_answer(self, pair: int, answer: str, *, annotator: str, target: str,
                   rubric: str = "", shown_left: int | None = None, request: str | None = None,
                   source: str = "human") -> tuple[int, bool]:
        """Record one answer to a pair; returns (label id, created). One short transaction.

        With `request` (a client's idempotency key), a repeated request writes nothing and
        returns the first one's id with created False: a double click is one label.
        """
        where = f"label store {self.path}"
        if answer not in ANSWERS:
            raise LabelStoreError(f"{where}: unknown answer {answer!r}; answer one of "
                                  f"{list(ANSWERS)}")
        if not isinstance(annotator, str) or not annotator.strip():
            raise LabelStoreError(f"{where}: an answer needs the annotator's name; give "
                                  "annotator=...")
        if not isinstance(target, str) or not target.strip():
            raise LabelStoreError(f"{where}: an answer needs a target (the personality it is "
                                  "for); give target=...")
        if shown_left is not None and (isinstance(shown_left, bool) or shown_left not in (0, 1)):
            raise LabelStoreError(f"{where}: shown_left must be None, 0 (the first trajectory "
                                  f"was drawn on the left) or 1 (the second), got {shown_left!r}")
        if source not in SOURCES:
            raise LabelStoreError(f"{where}: label source must be one of {list(SOURCES)}, got "
                                  f"{source!r}")
        if not isinstance(rubric, str):
            raise LabelStoreError(f"{where}: rubric must be text, got {rubric!r}")
        if request is not None and (not isinstance(request, str) or not request.strip()):
            raise LabelStoreError(f"{where}: request must be a non-empty key or None, got "
                                  f"{request!r}")
        with self._transaction():
            if request is not None:
                found = self.db.execute("SELECT id FROM labels WHERE request = ?",
                                        (request,)).fetchone()
                if found is not None:
                    return int(found[0]), False
            known = isinstance(pair, int | np.integer) and not isinstance(pair, bool) and \
                self.db.execute("SELECT 1 FROM pairs WHERE id = ?", (int(pair),)).fetchone()
            if not known:
                raise LabelStoreError(f"{where}: no pair {pair!r}; answer a pair the store "
                                      "holds")
            cur = self.db.execute(
                "INSERT INTO labels (pair, answer, choice, shown_left, source, labeller, target, "
                "rubric, created, request) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (int(pair), answer, CHOICES.get(answer), None if shown_left is None else
                 int(shown_left), source, annotator.strip(), target.strip(), rubric, _now(),
                 request))
        return int(cur.lastrowid), True

    def labelled_pairs(self, target: str, split: str, limit: int | None = None,
                       ties: bool = False) -> list[tuple[str, int, str, int, float]]:
        """(corpus_a, episode_a, corpus_b, episode_b, choice) for labelled pairs, oldest first.

        A pair answered more than once counts with its latest first/second/equal answer
        (cant_tell and skip say nothing about the pair). Choice is 0 or 1 (ints); with `ties`,
        pairs whose latest answer is equal come too, with choice 0.5; without, they are left out.
        """
        answers = "('first', 'second', 'equal')" if ties else "('first', 'second')"
        rows = self.db.execute(
            f"""SELECT ta.corpus, ta.episode, tb.corpus, tb.episode, {_CHOICE_SQL}
               FROM labels l JOIN pairs p ON p.id = l.pair
               JOIN trajectories ta ON ta.id = p.first JOIN trajectories tb ON tb.id = p.second
               WHERE l.target = ? AND p.split = ? AND l.answer IN {answers} AND l.id = (
                   SELECT MAX(id) FROM labels WHERE pair = l.pair AND target = l.target
                   AND answer IN ('first', 'second', 'equal'))
               ORDER BY l.id""", (target, split)).fetchall()
        return rows[:limit] if limit is not None else rows

    def answers(self, target: str | None = None) -> list[dict[str, Any]]:
        """Every label row (of `target`, or all), oldest first, with its pair's trajectories:
        what the studio counts and what `export-labels` writes."""
        rows = self.db.execute(
            f"""SELECT l.id, l.pair, p.split, ta.corpus, ta.episode, tb.corpus, tb.episode,
                      l.answer, {_CHOICE_SQL}, l.shown_left, l.source, l.labeller, l.target,
                      l.rubric, l.created, l.request
               FROM labels l JOIN pairs p ON p.id = l.pair
               JOIN trajectories ta ON ta.id = p.first JOIN trajectories tb ON tb.id = p.second
               WHERE ?1 IS NULL OR l.target = ?1 ORDER BY l.id""", (target,)).fetchall()
        return [dict(zip(_ANSWER_KEYS, row, strict=True)) for row in rows]

    def targets(self) -> list[str]:
        """The targets that have labels, sorted."""
        return [t for (t,) in self.db.execute("SELECT DISTINCT target FROM labels ORDER BY "
                                              "target")]

    def counts(self) -> dict[str, int]:
        return {t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("trajectories", "pairs", "labels")}


_ANSWER_KEYS = ("id", "pair", "split", "first_corpus", "first_episode", "second_corpus",
                "second_episode", "answer", "choice", "shown_left", "source", "labeller",
                "target", "rubric", "created", "request")
_INSERT_LABEL = ("INSERT INTO labels (pair, answer, choice, source, labeller, target, created) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def _label_row(store: LabelStore, pair: int, choice: int, source: str, labeller: str,
               target: str, created: str) -> tuple[int, str, int, str, str, str, str]:
    """A v1-style label (choice 0 or 1) as an insert row, or a one-line error."""
    if source not in SOURCES:
        raise LabelStoreError(f"label source must be one of {list(SOURCES)}, got {source!r}")
    if choice not in (0, 1):
        raise LabelStoreError(f"label store {store.path}: cannot add a label for pair {pair} "
                              f"(choice must be 0 or 1, got {choice!r})")
    return (int(pair), _DECISIVE[int(choice)], int(choice), source, labeller, target, created)


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
    created = _now()
    rows = [_label_row(store, p, c, source, labeller, target, created) for p, c in labels]
    try:
        with store._transaction():
            store.db.executemany(_INSERT_LABEL, rows)
    except sqlite3.IntegrityError as e:
        raise LabelStoreError(f"label store {store.path}: cannot add labels ({e})") from None
    return len(rows)
