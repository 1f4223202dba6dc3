import multiprocessing as mp

import pytest

from agentalign.errors import UserError
from agentalign.spec import OUTCOME_CODES
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
