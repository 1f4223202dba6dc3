"""The studio's own tables, beside the label store's in RUN/studio/labels/labels.sqlite.

personalities: a name, the designer's rubric, the pad its runs should end on (the stages log
  their reach of it; the reward model never sees it) and an optional intent from the intents
  file (evaluation of "did the episode satisfy it").
pool: the rollout corpora pairs are drawn from, each active until a fresher one of its kind
  replaces it; pairs whose rollouts leave the pool are retired.
studio_pairs: which pairs were made for which personality and how they were chosen (random,
  active, or held-out: random pairs that measure the reward model and do not count against the
  label budget), and whether they are retired (labelled by the overlap wanted).
served: who was shown which pair when, so two annotators are not shown the same pair at once.
fits: the ensemble's held-out accuracy each time it was refitted (the Learn page's curve).

Every write is one short transaction on the label store's connection (WAL, busy timeout), so
several annotators and the background refit share the file safely.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentalign.errors import UserError
from agentalign.spec import PADS
from agentalign.train.preferences import STORE, LabelStore

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")
IN_FLIGHT_S = 120.0  # a pair shown to someone is not shown to another for this long
PAGE_ANSWERS = {"left", "right", "equal", "cant_tell", "skip"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studio_personalities (
    name TEXT PRIMARY KEY, rubric TEXT NOT NULL, pad TEXT NOT NULL, intent TEXT,
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studio_pool (
    corpus TEXT PRIMARY KEY, kind TEXT NOT NULL, personality TEXT, episodes INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studio_pairs (
    pair INTEGER NOT NULL REFERENCES pairs(id), personality TEXT NOT NULL,
    how TEXT NOT NULL CHECK (how IN ('random', 'active', 'heldout')),
    created TEXT NOT NULL, retired INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pair, personality));
CREATE TABLE IF NOT EXISTS studio_served (
    pair INTEGER NOT NULL, personality TEXT NOT NULL, annotator TEXT NOT NULL,
    served REAL NOT NULL, PRIMARY KEY (pair, personality, annotator));
CREATE TABLE IF NOT EXISTS studio_fits (
    personality TEXT NOT NULL, train_labels INTEGER NOT NULL, heldout_pairs INTEGER NOT NULL,
    accuracy REAL, time TEXT NOT NULL);
"""


class StudioError(UserError):
    """A request the studio refuses (unknown pair or personality, missing annotator, ...)."""


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    """A personality name: it becomes file and job names (export's rule, shorter, so that
    align-NAME-N stays a short folder name; export's module brings torch, the studio starts
    without it)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise StudioError(f"personality name {name!r}: use 1-48 letters, digits, '-' or '_', "
                          "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Served:
    """A pair as the page shows it: which rollout is drawn on the left."""

    pair: int
    how: str
    left: int  # trajectory id drawn on the left
    right: int
    shown_left: int  # 0: the pair's first trajectory is on the left, 1: its second


class StudioState:
    """The studio's tables and the label store, over one SQLite connection per thread."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store = LabelStore(folder / STORE, create=True)
        self.db = self.store.db
        with self.store._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)

    def close(self) -> None:
        self.store.close()

    # -- personalities -------------------------------------------------------------------------

    def add_personality(self, name: str, rubric: str, pad: str, intent: str | None = None
                        ) -> dict[str, Any]:
        check_name(name)
        if pad not in PADS:
            raise StudioError(f"pad {pad!r}: choose one of {', '.join(PADS)}")
        if not isinstance(rubric, str) or not rubric.strip():
            raise StudioError("a personality needs a rubric: say in a sentence what its runs "
                              "should do")
        if intent:
            from agentalign.envs.intents import intent_by_name

            intent_by_name(intent)  # a one-line error naming the known intents
        with self.store._transaction():
            if self.db.execute("SELECT 1 FROM studio_personalities WHERE name = ?",
                               (name,)).fetchone():
                raise StudioError(f"personality {name!r} exists; pick another name")
            self.db.execute("INSERT INTO studio_personalities VALUES (?, ?, ?, ?, ?)",
                            (name, rubric.strip(), pad, intent or None, now()))
        return self.personality(name)

    def personality(self, name: str) -> dict[str, Any]:
        row = self.db.execute("SELECT name, rubric, pad, intent, created FROM "
                              "studio_personalities WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [p["name"] for p in self.personalities()]
            raise StudioError(f"unknown personality {name!r}: "
                              + (f"choose one of {', '.join(known)}" if known else
                                 "create one on the Label page first"))
        return dict(zip(("name", "rubric", "pad", "intent", "created"), row, strict=True))

    def personalities(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT name, rubric, pad, intent, created FROM "
                               "studio_personalities ORDER BY created, name").fetchall()
        return [dict(zip(("name", "rubric", "pad", "intent", "created"), r, strict=True))
                for r in rows]

    # -- pool ----------------------------------------------------------------------------------

    def add_corpus(self, corpus: str, kind: str, episodes: int,
                   personality: str | None = None) -> None:
        """Register a recorded corpus; an older active corpus of the same kind (and
        personality) leaves the pool, and its pairs are retired."""
        self.store.add_trajectories(corpus, range(episodes), "train")
        with self.store._transaction():
            old = [r[0] for r in self.db.execute(
                "SELECT corpus FROM studio_pool WHERE kind = ? AND personality IS ? AND "
                "active = 1 AND corpus != ?", (kind, personality, corpus))]
            self.db.execute("INSERT OR REPLACE INTO studio_pool VALUES (?, ?, ?, ?, 1, ?)",
                            (corpus, kind, personality, episodes, now()))
            for name in old:
                self.db.execute("UPDATE studio_pool SET active = 0 WHERE corpus = ?", (name,))
            if old:
                self.db.execute(
                    """UPDATE studio_pairs SET retired = 1 WHERE pair IN (
                         SELECT p.id FROM pairs p JOIN trajectories a ON a.id = p.first
                         JOIN trajectories b ON b.id = p.second
                         WHERE a.corpus IN (SELECT corpus FROM studio_pool WHERE active = 0)
                            OR b.corpus IN (SELECT corpus FROM studio_pool WHERE active = 0))""")

    def pool(self) -> list[dict[str, Any]]:
        """The active pool corpora, oldest first."""
        rows = self.db.execute("SELECT corpus, kind, personality, episodes, active, added FROM "
                               "studio_pool WHERE active = 1 ORDER BY added, corpus").fetchall()
        keys = ("corpus", "kind", "personality", "episodes", "active", "added")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def trajectory(self, trajectory: int) -> tuple[str, int]:
        row = self.db.execute("SELECT corpus, episode FROM trajectories WHERE id = ?",
                              (int(trajectory),)).fetchone()
        if row is None:
            raise StudioError(f"unknown trajectory {trajectory}")
        return row[0], int(row[1])

    # -- pairs ---------------------------------------------------------------------------------

    def make_pair(self, first: int, second: int, personality: str, how: str) -> int | None:
        """The pair's id, made for `personality`; None when that pair exists with another
        split (a held-out pair never trains, a training pair is never held out)."""
        split = "heldout" if how == "heldout" else "train"
        row = self.db.execute("SELECT id, split FROM pairs WHERE (first = ? AND second = ?) OR "
                              "(first = ? AND second = ?)",
                              (first, second, second, first)).fetchone()
        if row is not None and row[1] != split:
            return None
        pair = row[0] if row is not None else self.store.add_pairs([(first, second)], split)[0]
        with self.store._transaction():
            if self.db.execute("SELECT 1 FROM studio_pairs WHERE pair = ? AND personality = ?",
                               (pair, personality)).fetchone():
                return None  # asked before for this personality
            self.db.execute("INSERT INTO studio_pairs VALUES (?, ?, ?, ?, 0)",
                            (pair, personality, how, now()))
        return int(pair)

    def asked(self, personality: str) -> list[tuple[int, int]]:
        """(first, second) trajectory ids of every pair made for `personality`."""
        return [(int(a), int(b)) for a, b in self.db.execute(
            "SELECT p.first, p.second FROM studio_pairs s JOIN pairs p ON p.id = s.pair "
            "WHERE s.personality = ?", (personality,))]

    def pair_row(self, pair: int, personality: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT s.how, s.retired, p.first, p.second, p.split FROM studio_pairs s JOIN pairs "
            "p ON p.id = s.pair WHERE s.pair = ? AND s.personality = ?",
            (int(pair), personality)).fetchone()
        if row is None:
            raise StudioError(f"unknown pair {pair} for personality {personality!r}: ask for "
                              "the next pair")
        return dict(zip(("how", "retired", "first", "second", "split"), row, strict=True))

    def waiting_pair(self, personality: str, annotator: str, overlap: int) -> int | None:
        """A pair made before that still wants answers from someone like `annotator`: not
        retired, not answered by them, not shown to someone else in the last IN_FLIGHT_S."""
        cutoff = time.time() - IN_FLIGHT_S
        row = self.db.execute(
            """SELECT s.pair FROM studio_pairs s WHERE s.personality = ? AND s.retired = 0
                 AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair = s.pair AND l.target = ?
                                 AND l.labeller = ?)
                 AND (SELECT COUNT(*) FROM studio_served v WHERE v.pair = s.pair
                      AND v.personality = s.personality AND v.annotator != ? AND v.served > ?
                      AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair = v.pair
                                      AND l.target = v.personality
                                      AND l.labeller = v.annotator))
                     + (SELECT COUNT(DISTINCT labeller) FROM labels l WHERE l.pair = s.pair
                        AND l.target = s.personality) < ?
               ORDER BY s.rowid LIMIT 1""",
            (personality, personality, annotator, annotator, cutoff, overlap)).fetchone()
        return None if row is None else int(row[0])

    def mark_served(self, pair: int, personality: str, annotator: str) -> None:
        with self.store._transaction():
            self.db.execute("INSERT OR REPLACE INTO studio_served VALUES (?, ?, ?, ?)",
                            (pair, personality, annotator, time.time()))

    def record(self, pair: int, personality: str, *, answer: str, shown_left: int,
               annotator: str, request: str | None, overlap: int) -> tuple[int, bool]:
        """Store one answer from the page (left/right/equal/cant_tell/skip as the designer saw
        the pair); returns (label row, whether it was new). A repeated request writes nothing.
        """
        if not isinstance(annotator, str) or not annotator.strip():
            raise StudioError("no annotator: tell the studio your name before labelling")
        if answer not in PAGE_ANSWERS:
            raise StudioError(f"unknown answer {answer!r}: one of "
                              f"{', '.join(sorted(PAGE_ANSWERS))}")
        if shown_left not in (0, 1):
            raise StudioError(f"shown_left must be 0 or 1, got {shown_left!r}")
        if request:
            row = self.db.execute("SELECT id FROM labels WHERE request = ?",
                                  (request,)).fetchone()
            if row is not None:
                return int(row[0]), False
        p = self.personality(personality)
        info = self.pair_row(pair, personality)
        if info["retired"]:
            raise StudioError(f"pair {pair} is retired (labelled enough, or its rollouts left "
                              "the pool): ask for the next pair")
        stored = {"left": ("first", "second")[shown_left],
                  "right": ("second", "first")[shown_left]}.get(answer, answer)
        label, created = self.store.add_answer(pair, stored, annotator=annotator.strip(),
                                               target=personality, rubric=p["rubric"],
                                               shown_left=shown_left, request=request)
        answered = self.db.execute("SELECT COUNT(DISTINCT labeller) FROM labels WHERE pair = ? "
                                   "AND target = ?", (pair, personality)).fetchone()[0]
        if answered >= overlap:
            with self.store._transaction():
                self.db.execute("UPDATE studio_pairs SET retired = 1 WHERE pair = ? AND "
                                "personality = ?", (pair, personality))
        return label, created

    # -- statistics ----------------------------------------------------------------------------

    def decisive(self, personality: str, split: str) -> list[tuple[int, int, float]]:
        """(first trajectory, second trajectory, choice) of the pairs whose latest decisive
        answer (first, second, equal) for `personality` is in `split`; choice 0, 1 or 0.5."""
        rows = self.db.execute(
            """SELECT p.first, p.second, l.choice FROM labels l JOIN pairs p ON p.id = l.pair
               WHERE l.target = ? AND p.split = ? AND l.choice IS NOT NULL AND l.id = (
                 SELECT MAX(id) FROM labels WHERE pair = l.pair AND target = l.target
                 AND choice IS NOT NULL) ORDER BY l.id""", (personality, split)).fetchall()
        return [(int(a), int(b), float(c)) for a, b, c in rows]

    def stats(self, personality: str) -> dict[str, Any]:
        """Labels so far by split, kind and annotator; agreement on pairs labelled twice."""
        rows = self.db.execute(
            """SELECT l.pair, p.split, l.answer, l.labeller, s.how FROM labels l
               JOIN pairs p ON p.id = l.pair LEFT JOIN studio_pairs s ON s.pair = l.pair
               AND s.personality = l.target WHERE l.target = ? ORDER BY l.id""",
            (personality,)).fetchall()
        by_answer: dict[str, int] = {}
        by_annotator: dict[str, int] = {}
        by_how: dict[str, int] = {}
        per_pair: dict[int, dict[str, str]] = {}
        for pair, split, answer, labeller, how in rows:
            by_answer[answer] = by_answer.get(answer, 0) + 1
            by_annotator[labeller] = by_annotator.get(labeller, 0) + 1
            key = how or split
            by_how[key] = by_how.get(key, 0) + 1
            if answer in ("first", "second", "equal"):
                per_pair.setdefault(pair, {})[labeller] = answer
        twice = [v for v in per_pair.values() if len(v) >= 2]
        agree = sum(len(set(v.values())) == 1 for v in twice)
        fits = self.db.execute("SELECT train_labels, heldout_pairs, accuracy, time FROM "
                               "studio_fits WHERE personality = ? ORDER BY rowid",
                               (personality,)).fetchall()
        return {
            "labels": len(rows),
            "train_labels": len(self.decisive(personality, "train")),
            "heldout_labels": len(self.decisive(personality, "heldout")),
            "by_answer": by_answer, "by_annotator": by_annotator, "by_how": by_how,
            "pairs_labelled_twice": len(twice),
            "agreement": (agree / len(twice)) if twice else None,
            "fits": [dict(zip(("train_labels", "heldout_pairs", "accuracy", "time"), f,
                              strict=True)) for f in fits],
        }

    def add_fit(self, personality: str, train_labels: int, heldout_pairs: int,
                accuracy: float | None) -> None:
        with self.store._transaction():
            self.db.execute("INSERT INTO studio_fits VALUES (?, ?, ?, ?, ?)",
                            (personality, train_labels, heldout_pairs, accuracy, now()))
