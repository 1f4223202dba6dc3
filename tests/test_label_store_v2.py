"""Label store schema v2: v1 stores migrated in one transaction, answers (ties, can't tell,
skip) with the drawn side, rubric and annotator, idempotent writes, ties trained as 0.5, and
labels carried between label folders as JSONL (checked first, written all or nothing).

The corpora are a few 3-step episodes written directly as shards, so the whole file runs in a
few seconds.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from agentalign.cli import main
from agentalign.config import load
from agentalign.data.shards import MANIFEST, Episode, write_shard
from agentalign.errors import UserError
from agentalign.models.policy import get_config
from agentalign.models.reward import RewardModel, bradley_terry_loss, bradley_terry_losses
from agentalign.train import preferences
from agentalign.train.distributed import Ranks
from agentalign.train.label_io import export_labels, import_labels
from agentalign.train.preferences import ANSWERS, STORE, LabelStore, LabelStoreError
from agentalign.train.reward import fit
from agentalign.train.reward_config import RewardSettings
from agentalign.train.reward_data import evaluate, load_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "context": 8, "cnn_channels": (8, 8, 8)}
TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.context=8",
        "model.cnn_channels=[8,8,8]", "num_threads=1", "batch_size=4", "min_steps=2",
        "max_steps=2", "warmup_steps=1", "log_interval=1", "checkpoint_interval=10"]

# The v1 schema as agentalign wrote it before v2 (choice 0/1 only, no answers).
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trajectories (
    id INTEGER PRIMARY KEY, corpus TEXT NOT NULL, episode INTEGER NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('train', 'heldout')), UNIQUE (corpus, episode));
CREATE TABLE pairs (
    id INTEGER PRIMARY KEY, first INTEGER NOT NULL REFERENCES trajectories(id),
    second INTEGER NOT NULL REFERENCES trajectories(id),
    split TEXT NOT NULL CHECK (split IN ('train', 'heldout')), CHECK (first != second),
    UNIQUE (first, second));
CREATE TABLE labels (
    id INTEGER PRIMARY KEY, pair INTEGER NOT NULL REFERENCES pairs(id),
    choice INTEGER NOT NULL CHECK (choice IN (0, 1)),
    source TEXT NOT NULL CHECK (source IN ('synthetic', 'human')),
    labeller TEXT NOT NULL, target TEXT NOT NULL, created TEXT NOT NULL);
CREATE INDEX labels_by_target ON labels (target, pair);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO trajectories VALUES (1, 'rollouts-train', 0, 'train'), (2, 'rollouts-train', 1,
    'train'), (3, 'rollouts-train', 2, 'train');
INSERT INTO pairs VALUES (1, 1, 2, 'train'), (2, 2, 3, 'train');
INSERT INTO labels VALUES (1, 1, 0, 'synthetic', 'synthetic:left:T=0', 'left', 't1'),
    (2, 2, 1, 'synthetic', 'synthetic:left:T=0', 'left', 't2'),
    (3, 1, 1, 'human', 'ada', 'left', 't3');
"""


def write_v1(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.close()


def dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def write_corpus(folder: Path, episodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    made = [Episode(frames=rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8),
                    actions=rng.integers(0, 3, (3, 2)).astype(np.uint8),
                    positions=np.zeros((3, 2), np.float32), headings=np.zeros(3, np.float32),
                    outcome=int(rng.integers(5)), player=0, spawn=0, target=-1)
            for _ in range(episodes)]
    entry = write_shard(folder / "shard-00000.safetensors", made, {"player_types": ["policy"]})
    (folder / MANIFEST).write_text(json.dumps({"shards": [{**entry, "index": 0}]}))


@pytest.fixture
def folder(tmp_path) -> Path:
    """A label folder: 6 train and 4 held-out episodes, 4 + 3 pairs, no labels yet."""
    out = tmp_path / "labels"
    write_corpus(out / "rollouts-train", 6, seed=0)
    write_corpus(out / "rollouts-heldout", 4, seed=1)
    store = LabelStore(out / STORE, create=True)
    train = store.add_trajectories("rollouts-train", range(6), "train")
    heldout = store.add_trajectories("rollouts-heldout", range(4), "heldout")
    store.add_pairs([(train[0], train[1]), (train[2], train[3]), (train[4], train[5]),
                     (train[1], train[2])], "train")
    store.add_pairs([(heldout[0], heldout[1]), (heldout[2], heldout[3]),
                     (heldout[1], heldout[2])], "heldout")
    store.close()
    return out


def human(store: LabelStore, pair: int, answer: str, target: str = "careful", **kw) -> int:
    return store.add_answer(pair, answer, annotator="ada", target=target, **kw)[0]


# --- the store ---------------------------------------------------------------------------------


def test_a_v1_store_is_migrated_when_opened(tmp_path):
    path = tmp_path / STORE
    write_v1(path)
    store = LabelStore(path)
    assert store.db.execute("SELECT value FROM meta").fetchone()[0] == "2"
    rows = store.answers()
    assert [(r["answer"], r["choice"], r["shown_left"], r["rubric"], r["request"]) for r in rows] \
        == [("first", 0, None, "", None), ("second", 1, None, "", None),
            ("second", 1, None, "", None)]
    assert [r["labeller"] for r in rows] == ["synthetic:left:T=0", "synthetic:left:T=0", "ada"]
    # The same rows as v1 read them: ints, the latest label of a pair, oldest first.
    assert store.labelled_pairs("left", "train") == [
        ("rollouts-train", 1, "rollouts-train", 2, 1),
        ("rollouts-train", 0, "rollouts-train", 1, 1)]
    assert all(type(r[4]) is int for r in store.labelled_pairs("left", "train"))
    assert human(store, 1, "equal", target="left", rubric="the safer run") == 4
    store.close()
    again = LabelStore(path)  # already v2: opened as is
    assert again.counts() == {"trajectories": 3, "pairs": 2, "labels": 4}
    assert again.labelled_pairs("left", "train", ties=True)[-1][4] == 0.5
    again.close()


def test_a_failed_migration_leaves_the_v1_store_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / STORE
    write_v1(path)
    before = dump(path)
    monkeypatch.setattr(preferences, "_MIGRATE_V1",
                        [*preferences._MIGRATE_V1, "INSERT INTO no_such_table VALUES (1)"])
    with pytest.raises(LabelStoreError, match="left as it was") as error:
        LabelStore(path)
    assert "\n" not in str(error.value)
    assert dump(path) == before
    monkeypatch.undo()
    LabelStore(path).close()  # the real migration still works
    assert dump(path) != before


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / STORE
    LabelStore(path, create=True).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value = '3'")
    db.close()
    with pytest.raises(LabelStoreError, match="schema version 3, this agentalign reads 2"):
        LabelStore(path)


def test_add_answer_is_idempotent_and_keeps_what_was_shown(folder):
    store = LabelStore(folder / STORE)
    label, created = store.add_answer(1, "second", annotator=" ada ", target="careful",
                                      rubric="keeps away from the edge", shown_left=1,
                                      request="click-1")
    assert created
    assert store.add_answer(1, "second", annotator="ada", target="careful", shown_left=1,
                            request="click-1") == (label, False)  # a double click: one row
    assert store.counts()["labels"] == 1
    (row,) = store.answers("careful")
    assert row | {"created": None} == {
        "id": label, "pair": 1, "split": "train", "first_corpus": "rollouts-train",
        "first_episode": 0, "second_corpus": "rollouts-train", "second_episode": 1,
        "answer": "second", "choice": 1, "shown_left": 1, "source": "human", "labeller": "ada",
        "target": "careful", "rubric": "keeps away from the edge", "created": None,
        "request": "click-1"}
    assert store.answers("other") == []
    for answer in ANSWERS:  # every answer, with and without a key
        assert store.add_answer(2, answer, annotator="bo", target="careful")[1]
    with pytest.raises(sqlite3.IntegrityError):  # the table itself keeps choice and answer in step
        store.db.execute("INSERT INTO labels (pair, answer, choice, source, labeller, target, "
                         "created) VALUES (1, 'first', NULL, 'human', 'x', 'y', 'z')")
    store.close()


@pytest.mark.parametrize("change,message", [
    ({"pair": 999}, "no pair 999"),
    ({"answer": "maybe"}, "unknown answer 'maybe'"),
    ({"annotator": "  "}, "needs the annotator's name"),
    ({"target": ""}, "needs a target"),
    ({"shown_left": 2}, "shown_left must be None, 0"),
    ({"shown_left": True}, "shown_left must be None, 0"),
    ({"source": "robot"}, "label source must be one of"),
])
def test_a_bad_answer_is_one_line_and_writes_nothing(folder, change, message):
    store = LabelStore(folder / STORE)
    args = {"pair": 1, "answer": "first", "annotator": "ada", "target": "careful",
            "request": "r", **change}
    with pytest.raises(LabelStoreError, match=message) as error:
        store.add_answer(args.pop("pair"), args.pop("answer"), **args)
    assert "\n" not in str(error.value)
    assert store.counts()["labels"] == 0
    store.close()


def test_ties_count_only_when_asked_and_cant_tell_never(folder):
    store = LabelStore(folder / STORE)
    human(store, 1, "first")
    human(store, 1, "equal")  # latest decisive answer of pair 1: a tie
    human(store, 2, "equal")
    human(store, 2, "second")  # pair 2: second
    human(store, 3, "second")
    human(store, 3, "cant_tell")  # says nothing: pair 3 stays second
    human(store, 4, "skip")  # pair 4: no decisive answer at all
    store.add_label(1, 0, source="synthetic", labeller="synthetic:left:T=0", target="left")
    decisive = store.labelled_pairs("careful", "train")
    assert [r[4] for r in decisive] == [1, 1] and all(type(r[4]) is int for r in decisive)
    assert [r[1] for r in decisive] == [2, 4]  # pairs 2 and 3, by their latest answers' ids
    with_ties = store.labelled_pairs("careful", "train", ties=True)
    assert [r[4] for r in with_ties] == [0.5, 1, 1] and type(with_ties[0][4]) is float
    assert store.labelled_pairs("careful", "train", limit=1, ties=True) == with_ties[:1]
    assert store.labelled_pairs("left", "train") == [("rollouts-train", 0, "rollouts-train", 1, 0)]
    with pytest.raises(LabelStoreError, match="choice must be 0 or 1"):
        store.add_label(1, 2, source="synthetic", labeller="x", target="left")
    store.close()


# --- training on ties --------------------------------------------------------------------------


def test_the_soft_target_is_the_old_loss_without_ties_and_pulls_a_tie_together():
    torch.manual_seed(0)
    chosen, rejected = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    old = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    old_grads = torch.autograd.grad(old, (chosen, rejected))
    new = bradley_terry_loss(chosen, rejected, torch.ones(6))
    assert torch.equal(new, old) and torch.equal(bradley_terry_loss(chosen, rejected), old)
    for a, b in zip(old_grads, torch.autograd.grad(new, (chosen, rejected)), strict=True):
        assert torch.equal(a, b)
    tie = torch.tensor([0.5, 1, 1, 1, 1, 1])
    assert not torch.equal(bradley_terry_loss(chosen, rejected, tie), old)
    # A tie's loss is symmetric and smallest (log 2) when both score the same.
    margin = torch.tensor([-2.0, 0.0, 2.0])
    losses = bradley_terry_losses(margin, torch.zeros(3), torch.full((3,), 0.5))
    assert losses[0] == losses[2] and torch.isclose(losses[1], torch.log(torch.tensor(2.0)))
    assert losses[1] < losses[0]


def test_a_designer_target_trains_with_ties_and_is_scored_on_decisive_pairs(folder):
    store = LabelStore(folder / STORE)
    for pair, answer in ((1, "first"), (2, "equal"), (3, "second"), (4, "cant_tell"),
                         (5, "first"), (6, "equal"), (7, "second")):
        human(store, pair, answer)
    store.close()
    config = get_config("tiny", **TINY_MODEL)
    data = load_labels(folder, "careful", config)  # any name with labels, not only a pad
    assert data.train.target is not None and data.train.target.tolist() == [1.0, 0.5, 1.0]
    assert len(data.heldout) == 2  # the held-out tie is left out
    assert data.train.take(np.array([1])).target.tolist() == [0.5]
    assert len(data.train.decisive()) == 2
    torch.manual_seed(0)
    model = RewardModel(config)
    cpu = Ranks(rank=0, world=1, local_world=1, device=torch.device("cpu"), owns_group=False)
    result = fit(model, data, data.train, load(RewardSettings, None, TINY), cpu, seed=0)
    assert result["steps"] == 2 and np.isfinite(result["train_loss"])
    assert evaluate(model, data, data.train)["pairs"] == 2  # decisive pairs only
    assert evaluate(model, data, data.train.take(np.array([1])))["pairs"] == 0
    with pytest.raises(LabelStoreError, match="unknown target 'bold': it holds labels for "
                                              "'careful'"):
        load_labels(folder, "bold", config)


# --- JSONL ------------------------------------------------------------------------------------


def fresh_folder(folder: Path, tmp_path: Path) -> Path:
    """Another label folder with the same corpora and no store."""
    other = tmp_path / "other"
    for corpus in ("rollouts-train", "rollouts-heldout"):
        shutil.copytree(folder / corpus, other / corpus)
    return other


def test_export_then_import_carries_every_label(folder, tmp_path, capsys):
    store = LabelStore(folder / STORE)
    human(store, 1, "first", shown_left=1, rubric="reaches the pad", request="k1")
    human(store, 2, "equal", shown_left=0)
    human(store, 6, "skip")
    store.add_label(3, 1, source="synthetic", labeller="synthetic:left:T=0", target="left")
    before = store.answers()
    store.close()
    out = tmp_path / "labels.jsonl"
    assert main(["export-labels", str(folder), "--out", str(out), "--no-progress"]) == 0
    assert "exported 4 labels" in capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0] | {"time": None} == {
        "pair": 1, "split": "train", "first": {"corpus": "rollouts-train", "episode": 0},
        "second": {"corpus": "rollouts-train", "episode": 1},
        "chosen": {"corpus": "rollouts-train", "episode": 0},
        "rejected": {"corpus": "rollouts-train", "episode": 1}, "answer": "first",
        "annotator": "ada", "source": "human", "target": "careful",
        "rubric": "reaches the pad", "shown_left": 1, "time": None}
    assert lines[1]["chosen"] is None and lines[1]["rejected"] is None
    assert export_labels(folder, tmp_path / "left.jsonl", "left").labels == 1
    with pytest.raises(LabelStoreError, match="no labels for target 'bold'"):
        export_labels(folder, tmp_path / "bold.jsonl", "bold")

    other = fresh_folder(folder, tmp_path)
    assert main(["import-labels", str(other), str(out), "--no-progress"]) == 0
    assert "4 labels added, 0 already present" in capsys.readouterr().out
    again = import_labels(other, out)
    assert (again.added, again.present) == (0, 4)  # importing twice adds nothing
    store = LabelStore(other / STORE)
    after = store.answers()
    store.close()
    keys = ("split", "first_corpus", "first_episode", "second_corpus", "second_episode",
            "answer", "choice", "shown_left", "source", "labeller", "target", "rubric",
            "created")
    assert [{k: r[k] for k in keys} for r in after] == [{k: r[k] for k in keys} for r in before]
    assert import_labels(folder, out).added == 0  # into the store it came from: all present


def bad_lines(tmp_path: Path) -> list[tuple[object, str]]:
    """(the second line of a file, what the error says)."""
    outside = tmp_path / "outside"
    shutil.copytree(tmp_path / "labels" / "rollouts-train", outside)
    return [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object, got list"),
        ({"answer": "maybe"}, "unknown answer 'maybe'"),
        ({"chosen": None}, "answer 'second' needs chosen"),
        ({"answer": "equal"}, "answer 'equal' needs chosen = null"),
        ({"first": {"corpus": "rollouts-missing", "episode": 0}}, "does not open as a corpus"),
        ({"first": {"corpus": "../outside", "episode": 0}}, "not a folder inside the label"),
        ({"first": {"corpus": str(outside), "episode": 0}}, "not a folder inside the label"),
        ({"first": {"corpus": "link", "episode": 0}}, "leads outside the label folder"),
        ({"first": {"corpus": "rollouts-train", "episode": 99}}, "episode 99 of"),
        ({"first": {"corpus": "rollouts-train", "episode": -1}}, "episode index >= 0"),
        ({"annotator": " "}, "annotator must be non-empty"),
        ({"target": ""}, "target must be non-empty"),
        ({"time": "yesterday"}, "time must be an ISO 8601 time"),
        ({"split": "heldout"}, "the store has trajectory"),  # checked against the store
    ]


def test_a_bad_line_is_named_and_nothing_is_written(folder, tmp_path):
    store = LabelStore(folder / STORE)
    human(store, 1, "first")
    human(store, 4, "second")
    store.close()
    good = tmp_path / "good.jsonl"
    export_labels(folder, good)
    first, second = good.read_text().splitlines()
    (folder / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    for k, (line, message) in enumerate(bad_lines(tmp_path)):
        if isinstance(line, dict):
            line = json.dumps({**json.loads(second), **line})
        elif not isinstance(line, str):
            line = json.dumps(line)
        path = tmp_path / "bad.jsonl"
        path.write_text(first + "\n" + line + "\n")
        other = fresh_folder(folder, tmp_path / f"case-{k}")
        if "store has" in message:  # a store that already holds those runs as train ones
            store = LabelStore(other / STORE, create=True)
            store.add_trajectories("rollouts-train", range(6), "train")
            store.close()
        shutil.copytree(tmp_path / "outside", other.parent / "outside")
        (other / "link").symlink_to(other.parent / "outside", target_is_directory=True)
        expected = dump(other / STORE) if (other / STORE).exists() else None
        with pytest.raises(UserError, match=f"bad.jsonl: line 2: .*{message}") as error:
            import_labels(other, path)
        assert "\n" not in str(error.value), message
        got = dump(other / STORE) if (other / STORE).exists() else None
        assert got == expected, message  # nothing written, not even line 1


def test_the_commands_have_help(capsys):
    for command, words in (("export-labels", "--out FILE.jsonl"),
                           ("import-labels", "LABEL_DIR FILE.jsonl")):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert words in capsys.readouterr().out
