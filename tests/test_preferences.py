import multiprocessing as mp

import pytest

from agentalign.errors import UserError
from agentalign.lifecycle import result_from
from agentalign.spec import OUTCOME_CODES
from agentalign.train.label import LabelResult
from agentalign.train.preferences import (
    LabelStore,
    LabelStoreError,
    SyntheticLabeller,
    TrajectorySummary,
    sample_pairs,
)

PADS_XY = [(-15.0, 7.0), (0.0, 14.0), (15.0, 7.0)]


def t(outcome, xy, length):
    return TrajectorySummary(OUTCOME_CODES[outcome], xy, length)


def test_labeller_ordering_rules():
    lab = SyntheticLabeller("left", PADS_XY)
    reached = t("left", (-15.0, 7.0), 60)
    assert lab.prefer(reached, t("middle", (0.0, 14.0), 30)) == 0  # reaching beats anything
    assert lab.prefer(t("timeout", (0.0, 0.0), 100), reached) == 1
    # Neither reaches: the closer final position wins, whatever the outcome.
    assert lab.prefer(t("middle", (0.0, 14.0), 40), t("timeout", (-10.0, 5.0), 100)) == 1
    # Same distance: the shorter wins; both reach: the shorter wins.
    assert lab.prefer(t("fell", (-10.0, 5.0), 90), t("timeout", (-10.0, 5.0), 100)) == 0
    assert lab.prefer(t("left", (-15.0, 7.0), 70), reached) == 1
    assert lab.prefer(reached, t("left", (-14.5, 7.0), 60)) is None  # exact tie: dropped


def test_a_run_that_ends_on_a_pad_is_at_that_pad():
    lab = SyntheticLabeller("left", PADS_XY)
    # Two runs to the middle pad: where on the rim each touched does not matter, length does.
    near_rim, far_rim = t("middle", (-1.5, 13.5), 70), t("middle", (1.5, 14.5), 60)
    assert lab.prefer(near_rim, far_rim) == 1
    assert lab.prefer(t("middle", (-1.5, 13.5), 60), far_rim) is None
    # Aligning to middle: the left and right pads lie equally far, so the shorter run wins.
    mid = SyntheticLabeller("middle", PADS_XY)
    assert mid.prefer(t("left", (-13.6, 7.5), 80), t("right", (14.0, 8.0), 65)) == 1
    # Runs that did not end on a pad keep their own final position.
    assert mid.prefer(t("timeout", (0.0, 10.0), 100), t("fell", (0.0, -20.0), 30)) == 0


def test_bradley_terry_noise_follows_the_margin():
    lab = SyntheticLabeller("right", PADS_XY, temperature=2.0, seed=0)
    near, far = t("timeout", (12.0, 7.0), 100), t("timeout", (10.0, 7.0), 100)  # 2 m apart
    wins = sum(lab.prefer(near, far) == 0 for _ in range(4000)) / 4000
    assert abs(wins - 1 / (1 + pytest.approx(2.718281828 ** -1.0).expected)) < 0.03
    with pytest.raises(UserError, match="unknown target"):
        SyntheticLabeller("north", PADS_XY)


def test_pairs_are_distinct():
    pairs = sample_pairs(20, 100, seed=1)
    assert len(pairs) == 100 and (pairs[:, 0] != pairs[:, 1]).all()
    assert len({tuple(sorted(p)) for p in pairs.tolist()}) == 100
    assert len(sample_pairs(4, 100, seed=1)) == 6  # all there are


def _label_all(path, pairs, k):
    store = LabelStore(path)
    for p in pairs:
        store.add_label(p, k % 2, source="human", labeller=f"designer-{k}", target="left")


def test_store_schema_and_concurrent_writers(tmp_path):
    path = tmp_path / "labels.sqlite"
    with pytest.raises(LabelStoreError, match="does not exist"):
        LabelStore(path)
    store = LabelStore(path, create=True)
    ids = store.add_trajectories("rollouts-train", range(8), "train")
    assert store.add_trajectories("rollouts-train", [3], "train") == [ids[3]]
    pairs = store.add_pairs([(ids[a], ids[b]) for a, b in sample_pairs(8, 10, 0)], "train")
    procs = [mp.get_context("fork").Process(target=_label_all, args=(path, pairs, k))
             for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    assert store.counts() == {"trajectories": 8, "pairs": 10, "labels": 40}
    rows = store.labelled_pairs("left", "train")
    assert len(rows) == 10 and all(r[0] == "rollouts-train" for r in rows)
    assert store.labelled_pairs("right", "train") == []
    with pytest.raises(LabelStoreError, match="label source"):
        store.add_label(pairs[0], 0, source="robot", labeller="x", target="left")
    with pytest.raises(LabelStoreError, match="cannot add a label"):
        store.add_label(999, 0, source="human", labeller="x", target="left")


def test_store_refuses_other_files(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(LabelStoreError, match="not a readable SQLite"):
        LabelStore(junk)


# --- pad targets label exactly as before intents became targets ------------------------------

def label_fingerprint(out) -> dict[str, str]:
    """sha256 of every stored label (all but its creation time) and of the label run's identity."""
    import hashlib
    import json

    store = LabelStore(out / "labels.sqlite")
    try:
        rows = [{k: v for k, v in row.items() if k != "created"} for row in store.answers()]
    finally:
        store.close()
    return {what: hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
            for what, data in (("labels", rows),
                               ("identity", json.loads((out / "run.json").read_text())))}


# Recorded before intents became targets (scripted players of the corpus mixture, seed 0).
PAD_LABELS = {0.0: {"labels": "345967b129498710", "identity": "4aa73894f2fab025"},
              0.5: {"labels": "94d0a1bab7cc62af", "identity": "f67fcfbca57ced0a"}}


@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_pad_targets_label_exactly_as_before(tmp_path, layout, temperature):
    from agentalign.collect_config import CollectSettings
    from agentalign.config import defaults
    from agentalign.data.players import Population
    from agentalign.rollout import PlayerActor
    from agentalign.train.label import make_labels
    from agentalign.train.label_config import LabelSettings

    population = Population(defaults(CollectSettings).players["corpus"], layout)
    settings = defaults(LabelSettings).replace(
        train_episodes=12, heldout_episodes=10, pairs=40, heldout_pairs=30, num_envs=12,
        anywhere_heldout_episodes=6, temperature=temperature)
    result = make_labels(PlayerActor(population, seed=3), tmp_path, ["left", "middle", "right"],
                         settings, source={"players": "corpus"}, progress=False)
    assert label_fingerprint(tmp_path) == PAD_LABELS[temperature]
    assert "intents" not in result  # nor do the metrics gain a key


def test_an_intent_target_is_labelled_by_its_intent_on_the_tracks(tmp_path, layout):
    from agentalign.collect_config import CollectSettings
    from agentalign.config import defaults
    from agentalign.data.players import Population
    from agentalign.data.shards import Corpus
    from agentalign.envs.intents import IntentLabeller, intent_by_name
    from agentalign.rollout import PlayerActor
    from agentalign.train.label import make_labels, summary, tracks
    from agentalign.train.label_config import LabelSettings

    population = Population(defaults(CollectSettings).players["corpus"], layout)
    settings = defaults(LabelSettings).replace(train_episodes=16, heldout_episodes=10, pairs=60,
                                               heldout_pairs=30, num_envs=16)

    def label(targets, intents=None):
        return make_labels(PlayerActor(population, seed=3), tmp_path, targets, settings,
                           source={"players": "corpus"}, progress=False, intents=intents)

    result = label(["middle", "campfire-middle"])
    about = result["intents"]["campfire-middle"]
    assert about["description"] == "pass by the campfire, then end on the middle pad"
    assert "middle" not in result["intents"]
    intent = intent_by_name("campfire-middle", layout=layout)
    store = LabelStore(tmp_path / "labels.sqlite")
    try:
        assert {r["labeller"] for r in store.answers("campfire-middle")} == \
            {"intent:campfire-middle:T=0"}
        for split, folder in (("train", "rollouts-train"), ("heldout", "rollouts-heldout")):
            episodes = tracks(Corpus(tmp_path / folder))
            assert len(episodes) == Corpus(tmp_path / folder).num_episodes
            rows = store.labelled_pairs("campfire-middle", split)
            assert rows and len(rows) == result["targets"]["campfire-middle"][split]["labels"]
            labeller = IntentLabeller(intent)
            assert all(labeller.prefer(episodes[a], episodes[b]) == choice
                       for _, a, _, b, choice in rows)
    finally:
        store.close()
    assert "target campfire-middle (pass by the campfire, then end on the middle pad)" in \
        summary(result_from(LabelResult, result))

    mine = tmp_path / "mine.yaml"  # same intent, other words: its labels are reused
    mine.write_text("campfire-middle:\n  description: by the fire\n  pass: campfire\n"
                    "  then: middle\n")
    assert label(["campfire-middle"], mine)["targets"] == result["targets"]
    mine.write_text("campfire-middle:\n  pass: campfire\n  radius: 1.0\n  then: middle\n")
    with pytest.raises(UserError, match="holds labels for intent 'campfire-middle' as"):
        label(["campfire-middle"], mine)  # another intent under the same name
    with pytest.raises(UserError, match="no intent 'north': choose one of left, middle") as e:
        label(["left", "north"])
    assert "\n" not in str(e.value) and "<agentalign>/configs/intents.yaml" in str(e.value)
