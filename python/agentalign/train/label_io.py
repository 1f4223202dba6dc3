"""`agentalign export-labels` and `import-labels`: a label store's answers as JSONL, one a line.

Labels are the designers' work: a JSONL file carries them from one label folder to another (a
studio on a laptop, a training run elsewhere), into a review or version control, and back. A
label names its trajectories as the store does, by corpus folder (relative to the label folder)
and episode, so the corpora travel beside it. Import checks every line first (JSON, answer,
chosen/rejected, each corpus a folder inside the label folder that holds the episode) and then
writes all of it in one transaction, or nothing. A label already in the store (same pair, answer,
annotator, target and time) is not added again, so importing a file twice adds nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from agentalign.atomic import write_atomic
from agentalign.data.shards import Corpus
from agentalign.errors import CorpusError, UserError
from agentalign.train.preferences import (
    ANSWERS,
    CHOICES,
    SOURCES,
    STORE,
    LabelStore,
    LabelStoreError,
)

SPLITS = ("train", "heldout")
Ref = tuple[str, int]  # (corpus folder relative to the label folder, episode index)


@dataclass(frozen=True)
class ExportResult:
    out: str
    labels: int


@dataclass(frozen=True)
class ImportResult:
    file: str
    store: str
    added: int
    present: int  # lines whose label the store already held


@dataclass(frozen=True)
class _Label:
    """One checked line of a JSONL file."""

    line: int
    split: str
    first: Ref
    second: Ref
    answer: str
    annotator: str
    source: str
    target: str
    rubric: str
    shown_left: int | None
    time: str


class _BadLine(Exception):
    """What is wrong with a line; reported with the file and line number."""


# --- export ------------------------------------------------------------------------------------


def record(row: dict[str, Any]) -> dict[str, Any]:
    """One `LabelStore.answers` row as its JSONL object."""
    first = {"corpus": row["first_corpus"], "episode": row["first_episode"]}
    second = {"corpus": row["second_corpus"], "episode": row["second_episode"]}
    chosen, rejected = {"first": (first, second), "second": (second, first)}.get(
        row["answer"], (None, None))
    return {"pair": row["pair"], "split": row["split"], "first": first, "second": second,
            "chosen": chosen, "rejected": rejected, "answer": row["answer"],
            "annotator": row["labeller"], "source": row["source"], "target": row["target"],
            "rubric": row["rubric"], "shown_left": row["shown_left"], "time": row["created"]}


def export_labels(labels: str | Path, out: str | Path, target: str | None = None, *,
                  progress: bool = False) -> ExportResult:
    """Write every label of the store in `labels` (of `target`, or all) to `out`, oldest first,
    atomically."""
    store = LabelStore(Path(labels) / STORE)
    try:
        if target is not None and target not in (targets := store.targets()):
            raise LabelStoreError(f"label store {store.path}: no labels for target {target!r}; "
                                  f"it holds labels for {', '.join(map(repr, targets)) or 'none'}")
        rows = store.answers(target)
    finally:
        store.close()
    text = "".join(json.dumps(record(r), ensure_ascii=False) + "\n" for r in rows)
    write_atomic(out, lambda f: f.write(text.encode()))
    return ExportResult(str(out), len(rows))


def export_summary(result: ExportResult) -> str:
    return f"exported {result.labels:,} labels to {result.out}"


# --- import ------------------------------------------------------------------------------------


def import_labels(labels: str | Path, file: str | Path, *, progress: bool = False
                  ) -> ImportResult:
    """Add the labels of the JSONL `file` to the store in `labels` (made if missing). Every line
    is checked before anything is written; the first bad one is a one-line error."""
    folder, file = Path(labels), Path(file)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; import into a label folder that holds the "
                        "corpora the labels refer to")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{file}: cannot read it as UTF-8 text ({e})") from None
    corpora: dict[str, Corpus | str] = {}  # opened corpora, or why one cannot be
    found = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 in text
        if not line.strip():
            continue
        try:
            found.append(_parse(line, number, folder, corpora))
        except _BadLine as e:
            raise UserError(f"{file}: line {number}: {e}") from None
    store = LabelStore(folder / STORE, create=True)
    added = 0
    try:
        with store._transaction():  # all lines or none
            for label in found:
                try:
                    added += _add(store.db, label)
                except _BadLine as e:
                    raise UserError(f"{file}: line {label.line}: {e}") from None
    except sqlite3.IntegrityError as e:
        raise LabelStoreError(f"label store {store.path}: cannot import {file} ({e}); nothing "
                              "was written") from None
    finally:
        store.close()
    return ImportResult(str(file), str(folder / STORE), added, len(found) - added)


def import_summary(result: ImportResult) -> str:
    return (f"imported {result.file} into {result.store}: {result.added:,} labels added, "
            f"{result.present:,} already present")


def _parse(line: str, number: int, folder: Path, corpora: dict[str, Corpus | str]) -> _Label:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise _BadLine(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise _BadLine(f"expected a JSON object, got {type(obj).__name__}")
    split = obj.get("split")
    if split not in SPLITS:
        raise _BadLine(f"split must be one of {list(SPLITS)}, got {split!r}")
    first, second = (_ref(obj.get(key), key, folder, corpora) for key in ("first", "second"))
    if first == second:
        raise _BadLine(f"first and second are the same trajectory {_show(first)}")
    answer = obj.get("answer")
    if answer not in ANSWERS:
        raise _BadLine(f"unknown answer {answer!r}; one of {list(ANSWERS)}")
    expected: tuple[Ref | None, Ref | None] = {
        "first": (first, second), "second": (second, first)}.get(answer, (None, None))
    for key, want in zip(("chosen", "rejected"), expected, strict=True):
        value = obj.get(key)
        got = None if value is None else _ref_value(value, key)
        if got != want:
            raise _BadLine(f"answer {answer!r} needs {key} = "
                           + (_show(want) if want is not None else "null") + f", got {value!r}")
    texts = {}
    for key, default in (("annotator", None), ("target", None), ("source", "human"),
                         ("rubric", "")):
        value = obj.get(key, default)
        if not isinstance(value, str) or (key != "rubric" and not value.strip()):
            raise _BadLine(f"{key} must be non-empty text, got {value!r}" if key != "rubric" else
                           f"rubric must be text, got {value!r}")
        texts[key] = value if key == "rubric" else value.strip()
    if texts["source"] not in SOURCES:
        raise _BadLine(f"source must be one of {list(SOURCES)}, got {texts['source']!r}")
    shown_left = obj.get("shown_left")
    if shown_left is not None and (isinstance(shown_left, bool) or shown_left not in (0, 1)):
        raise _BadLine(f"shown_left must be null, 0 or 1, got {shown_left!r}")
    time = obj.get("time")
    if not isinstance(time, str) or not _is_time(time):
        raise _BadLine(f"time must be an ISO 8601 time, got {time!r}")
    return _Label(number, split, first, second, answer, texts["annotator"], texts["source"],
                  texts["target"], texts["rubric"], None if shown_left is None else
                  int(shown_left), time)


def _is_time(text: str) -> bool:
    try:
        _dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _ref_value(value: Any, key: str) -> Ref:
    """{"corpus": ..., "episode": ...} as a (corpus, episode) pair, checked for its types only."""
    if not isinstance(value, dict):
        raise _BadLine(f"{key} must be an object {{\"corpus\": ..., \"episode\": ...}}, got "
                       f"{value!r}")
    corpus, episode = value.get("corpus"), value.get("episode")
    if not isinstance(corpus, str) or not corpus:
        raise _BadLine(f"{key}.corpus must be a folder name, got {corpus!r}")
    if not isinstance(episode, int) or isinstance(episode, bool) or episode < 0:
        raise _BadLine(f"{key}.episode must be an episode index >= 0, got {episode!r}")
    return _canonical(corpus, key), episode


def _canonical(corpus: str, key: str) -> str:
    """The corpus folder as the store names it (relative, with /), or why it cannot be one."""
    path = PurePosixPath(corpus)
    if "\\" in corpus or path.is_absolute() or ".." in path.parts or path.as_posix() == ".":
        raise _BadLine(f"{key}.corpus {corpus!r} is not a folder inside the label folder; name "
                       "it relative to the label folder, without '..'")
    return path.as_posix()


def _ref(value: Any, key: str, folder: Path, corpora: dict[str, Corpus | str]) -> Ref:
    """A trajectory reference, checked against the corpora in `folder`."""
    corpus, episode = _ref_value(value, key)
    if corpus not in corpora:
        path = folder / corpus
        if not path.resolve().is_relative_to(folder.resolve()):  # a link out of the folder
            corpora[corpus] = f"{corpus!r} leads outside the label folder"
        else:
            try:
                corpora[corpus] = Corpus(path, verify=False)
            except CorpusError as e:
                corpora[corpus] = f"{corpus!r} does not open as a corpus ({e})"
    opened = corpora[corpus]
    if isinstance(opened, str):
        raise _BadLine(f"{key}.corpus {opened}")
    if episode >= opened.num_episodes:
        raise _BadLine(f"{key}: episode {episode} of {corpus!r}, which holds "
                       f"{opened.num_episodes}")
    return corpus, episode


def _show(ref: Ref) -> str:
    return json.dumps({"corpus": ref[0], "episode": ref[1]})


def _add(db: sqlite3.Connection, label: _Label) -> int:
    """Write one checked label (and its trajectories and pair if missing) unless the store
    holds it already; returns 1 if it was added. Runs inside the import's transaction."""
    ids = [_get_or_add(db, "SELECT id, split FROM trajectories WHERE corpus = ? AND episode = ?",
                       "INSERT INTO trajectories (corpus, episode, split) VALUES (?, ?, ?)",
                       ref, label.split, f"trajectory {_show(ref)}")
           for ref in (label.first, label.second)]
    pair = _get_or_add(db, "SELECT id, split FROM pairs WHERE first = ? AND second = ?",
                       "INSERT INTO pairs (first, second, split) VALUES (?, ?, ?)",
                       (ids[0], ids[1]), label.split, "its pair")
    if db.execute("SELECT 1 FROM labels WHERE pair = ? AND answer = ? AND labeller = ? AND "
                  "target = ? AND created = ?", (pair, label.answer, label.annotator,
                                                 label.target, label.time)).fetchone():
        return 0
    db.execute("INSERT INTO labels (pair, answer, choice, shown_left, source, labeller, target, "
               "rubric, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (pair, label.answer, CHOICES.get(label.answer), label.shown_left, label.source,
                label.annotator, label.target, label.rubric, label.time))
    return 1


def _get_or_add(db: sqlite3.Connection, select: str, insert: str, key: tuple[Any, Any],
                split: str, what: str) -> int:
    """The id of the row with `key`, added with `split` if missing; a row of another split is
    an error (a pair's split decides what it trains or tests)."""
    row = db.execute(select, key).fetchone()
    if row is None:
        return int(db.execute(insert, (*key, split)).lastrowid)
    if row[1] != split:
        raise _BadLine(f"split {split!r}, but the store has {what} in split {row[1]!r}")
    return int(row[0])
