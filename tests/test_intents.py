"""Designer intents: each kind satisfied and scored on hand-made tracks, pad intents label exactly
as SyntheticLabeller, partial credit that only grows as an episode comes closer, intent files and
their one-line errors, satisfaction with its interval, and `evaluate --intent`."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from agentalign.cli import main
from agentalign.data.shards import Corpus
from agentalign.envs.intents import (
    AllOf,
    AwayFromEdge,
    EndOn,
    Fast,
    IntentError,
    IntentLabeller,
    PassBy,
    Track,
    intent_by_name,
    load_intents,
    satisfaction,
    track_from_episode,
)
from agentalign.errors import UserError
from agentalign.models.checkpoint import save_step
from agentalign.models.policy import Policy, get_config
from agentalign.spec import OUTCOME_CODES, PADS
from agentalign.stats import wilson_interval
from agentalign.train.preferences import SyntheticLabeller, TrajectorySummary

LEFT, MIDDLE, RIGHT = (OUTCOME_CODES[p] for p in PADS)
FELL, TIMEOUT = OUTCOME_CODES["fell"], OUTCOME_CODES["timeout"]


def path(*points: tuple[float, float], steps: int = 10) -> np.ndarray:
    """Positions along straight segments through `points`, `steps` per segment."""
    parts = [np.linspace(a, b, steps, endpoint=False) for a, b in itertools.pairwise(points)]
    return np.concatenate([*parts, np.array([points[-1]], dtype=np.float64)])


def track(positions: np.ndarray, outcome: int, length: int | None = None) -> Track:
    return Track(positions, outcome, len(positions) - 1 if length is None else length)


SPAWN = (-3.0, -16.0)
BY_CAMPFIRE = track(path(SPAWN, (-9.0, -4.0), (-1.0, 12.6)), MIDDLE)  # campfire at (-10, -3)
STRAIGHT = track(path(SPAWN, (0.0, 12.4)), MIDDLE)
CAMPFIRE_TO_LEFT = track(path(SPAWN, (-9.0, -4.0), (-14.0, 5.6)), LEFT)


# -- each kind on hand-made tracks -----------------------------------------------------------

def test_end_on_a_pad(layout):
    middle, left = EndOn(layout, "middle"), EndOn(layout, "left")
    assert middle.satisfied(STRAIGHT) and not left.satisfied(STRAIGHT)
    assert middle.name == "middle" and middle.description == "end on the middle pad"
    # Reached: +100 and no distance; the rim position it touched does not matter.
    assert middle.utility(STRAIGHT) == pytest.approx(100 - 0.01 * STRAIGHT.length)
    # Ended on the middle pad: it counts as at the middle pad's centre, 15 m * sqrt(...) away.
    distance = float(np.hypot(15.0, 7.0))
    assert left.utility(STRAIGHT) == pytest.approx(-distance - 0.01 * STRAIGHT.length)
    timeout = track(path(SPAWN, (-10.0, 7.0)), TIMEOUT)
    assert left.utility(timeout) == pytest.approx(-5.0 - 0.01 * timeout.length)


def test_pass_the_campfire_then_end_on_the_middle_pad(layout):
    intent = PassBy(layout, "campfire", then="middle")
    assert intent.radius == 1.5 + 1.0 and intent.name == "campfire-middle"
    assert intent.satisfied(BY_CAMPFIRE)
    assert not intent.satisfied(STRAIGHT)  # the right pad, the wrong way
    assert not intent.satisfied(CAMPFIRE_TO_LEFT)  # the right way, the wrong pad
    assert intent.utility(BY_CAMPFIRE) > intent.utility(STRAIGHT) > intent.utility(CAMPFIRE_TO_LEFT)
    # Passed (+50) and reached (+100); the straight run misses the campfire by its closest
    # approach minus the radius.
    assert intent.utility(BY_CAMPFIRE) == pytest.approx(150 - 0.01 * BY_CAMPFIRE.length)
    closest = intent.closest(STRAIGHT)
    assert closest > intent.radius
    assert intent.utility(STRAIGHT) == pytest.approx(100 - (closest - intent.radius)
                                                     - 0.01 * STRAIGHT.length)
    # Without `then`, passing is enough; a radius of its own.
    assert PassBy(layout, "campfire").satisfied(CAMPFIRE_TO_LEFT)
    assert not PassBy(layout, "campfire", radius=0.5).satisfied(BY_CAMPFIRE)


def test_stay_away_from_the_edge(layout):
    inland = track(path(SPAWN, (0.0, 12.4)), MIDDLE)
    along_coast = track(path((0.0, -17.0), (5.0, -20.0), (10.0, -17.0)), TIMEOUT)  # coast y=-22
    fell = track(path((0.0, -17.0), (0.0, -21.9)), FELL)  # the last position still on land
    careful = AwayFromEdge(layout, 3.0)
    assert careful.satisfied(inland) and careful.utility(inland) == 50.0
    assert not careful.satisfied(along_coast)
    assert careful.margin(along_coast) == pytest.approx(2.0)
    assert careful.utility(along_coast) == pytest.approx(-1.0)
    assert not careful.satisfied(fell) and careful.utility(fell) <= -3.0
    assert not AwayFromEdge(layout, 0.0).satisfied(fell)  # edge 0: do not fall
    off = track(np.array([[0.0, -17.0], [0.0, -23.0]]), FELL)  # 1 m into the sea
    assert careful.margin(off) == pytest.approx(-1.0) and careful.utility(off) == -4.0


def test_fast(layout):
    short, long = track(path(SPAWN, (0.0, 0.0), steps=10), TIMEOUT), \
        track(path(SPAWN, (0.0, 0.0), steps=60), TIMEOUT)
    assert Fast().satisfied(long)  # without N it only orders episodes
    assert Fast().utility(short) > Fast().utility(long)
    assert Fast(20).satisfied(short) and not Fast(20).satisfied(long)
    assert Fast(20).utility(short) == pytest.approx(50 - 0.1 * 10)


def test_all_of_sums_its_parts(layout):
    careful_middle = AllOf((EndOn(layout, "middle"), AwayFromEdge(layout, 3.0)))
    assert careful_middle.satisfied(STRAIGHT)
    assert careful_middle.utility(STRAIGHT) == pytest.approx(
        sum(p.utility(STRAIGHT) for p in careful_middle.parts))
    assert careful_middle.name == "middle+edge-3"
    assert not AllOf((EndOn(layout, "middle"), Fast(STRAIGHT.length - 1))).satisfied(STRAIGHT)


# -- pad intents are SyntheticLabeller -------------------------------------------------------

def random_tracks(layout, n: int, seed: int) -> list[Track]:
    """Tracks ending anywhere on (or just off) the island, on pads, off the edge or timing out;
    positions and lengths from small sets, so exact ties occur too."""
    rng = np.random.default_rng(seed)
    finals = rng.uniform(-26, 26, size=(12, 2))
    tracks = []
    for _ in range(n):
        outcome = int(rng.integers(5))
        final = finals[rng.integers(len(finals))]
        if outcome < 3:  # somewhere on that pad's rim
            angle = rng.uniform(0, 2 * np.pi)
            pad = layout.pads[outcome]
            final = np.array(pad.position) + pad.radius * np.array([np.cos(angle), np.sin(angle)])
        length = int(rng.choice([5, 17, 40, 100]))
        positions = np.concatenate([rng.uniform(-15, 15, size=(length, 2)), final[None]])
        tracks.append(Track(positions.astype(np.float32), outcome, length))
    return tracks


def summary_of(t: Track) -> TrajectorySummary:
    return TrajectorySummary(t.outcome, (float(t.final[0]), float(t.final[1])), t.length)


def corpus_tracks(folder) -> list[Track]:
    corpus = Corpus(folder, verify=False)
    return [track_from_episode(corpus.episode(i), int(corpus.episodes["outcomes"][i]))
            for i in range(corpus.num_episodes)]


@pytest.mark.parametrize("temperature", [0.0, 0.5, 3.0])
def test_pad_intents_prefer_exactly_as_the_synthetic_labeller(layout, small_corpus, temperature):
    tracks = random_tracks(layout, 70, seed=1) + corpus_tracks(small_corpus)
    summaries = [summary_of(t) for t in tracks]
    pads = [p.position for p in layout.pads]
    intents = load_intents(layout=layout)
    for pad in PADS:
        ours = IntentLabeller(intents[pad], temperature=temperature, seed=5)
        theirs = SyntheticLabeller(pad, pads, temperature=temperature, seed=5)
        answers = [(ours.prefer(tracks[i], tracks[j]), theirs.prefer(summaries[i], summaries[j]))
                   for i, j in itertools.combinations(range(len(tracks)), 2)]
        assert all(a == b for a, b in answers)
        assert any(a is None for a, _ in answers) and {0, 1} <= {a for a, _ in answers}
        for t, s in zip(tracks, summaries, strict=True):
            assert ours.utility(t) == theirs.utility(s)


def test_labeller_prefers_the_intended_way(layout):
    labeller = IntentLabeller(intent_by_name("campfire-middle", layout=layout))
    assert labeller.prefer(BY_CAMPFIRE, STRAIGHT) == 0 and labeller.prefer(STRAIGHT,
                                                                           BY_CAMPFIRE) == 1
    assert labeller.prefer(BY_CAMPFIRE, BY_CAMPFIRE) is None
    assert labeller.labeller_id == "intent:campfire-middle:T=0"
    with pytest.raises(UserError, match="temperature"):
        IntentLabeller(labeller.intent, temperature=-1)


# -- partial credit ----------------------------------------------------------------------------

def test_utility_grows_as_an_episode_comes_closer(layout):
    campfire = np.array(layout.landmarks[1].position)
    passing = PassBy(layout, "campfire", then="middle")
    approaches = np.linspace(12.0, 0.0, 25)
    by_approach = np.diff([passing.utility(track(path(SPAWN, (campfire[0] + d, campfire[1]),
                                                      (0.0, 12.4)), MIDDLE, 60))
                           for d in approaches])
    outside = approaches[1:] > passing.radius
    assert np.all(by_approach[outside] > 0)  # every metre closer counts until it passes,
    assert by_approach[~outside][0] > 50 and np.all(by_approach[~outside][1:] == 0)  # then +50
    left = EndOn(layout, "left")
    by_final = [left.utility(track(path(SPAWN, (x, 7.0)), TIMEOUT, 60))
                for x in np.linspace(5.0, -13.0, 19)]
    assert np.all(np.diff(by_final) > 0)
    edge = AwayFromEdge(layout, 3.0)
    by_margin = [edge.utility(track(path((0.0, -15.0), (0.0, y)), TIMEOUT))
                 for y in np.linspace(-21.5, -19.0, 6)]  # coast at y = -22; kept from 3 m
    assert np.all(np.diff(by_margin) > 0)
    fast = Fast(30)
    by_length = [fast.utility(track(np.zeros((2, 2)), TIMEOUT, n)) for n in range(60, 0, -1)]
    assert np.all(np.diff(by_length) > 0)


# -- intent files ------------------------------------------------------------------------------

def test_the_packaged_file(layout):
    intents = load_intents(layout=layout)
    assert {"left", "middle", "right", "campfire-middle", "careful-left"} <= set(intents)
    assert intents["campfire-middle"] == PassBy(layout, "campfire", then="middle",
                                                name="campfire-middle")
    assert intents["campfire-middle"].description == ("pass by the campfire, then end on the "
                                                      "middle pad")
    careful = intents["careful-left"]
    assert isinstance(careful, AllOf) and careful.parts == (EndOn(layout, "left"),
                                                            AwayFromEdge(layout, 3.0))
    assert all(i.description for i in intents.values())


def test_a_file_of_ones_own_keeps_the_builtins(layout, tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("well-right:\n  pass: well\n  radius: 4\n  then: right\n"
                 "nested:\n  all:\n    - all: [{end: left}, {fast: true}]\n    - edge: 0\n")
    intents = load_intents(f, layout)
    assert set(intents) == {"left", "middle", "right", "well-right", "nested"}
    assert intents["well-right"].radius == 4.0
    assert intents["well-right"].description == "pass within 4 m of the well, then end on the " \
        "right pad"
    assert intent_by_name("left", f, layout) == EndOn(layout, "left")


@pytest.mark.parametrize("text,expected", [
    ("x:\n  pass: bonfire\n  then: middle\n", ["intent 'x'", "unknown landmark 'bonfire'",
                                               "flower_bed, campfire, well, stones"]),
    ("x:\n  end: top\n", ["intent 'x'", "unknown pad 'top'", "left, middle, right"]),
    ("x:\n  pass: well\n  then: top\n", ["intent 'x'", "unknown pad 'top'"]),
    ("x:\n  pass: well\n  radiuss: 3\n", ["intent 'x'", "unknown key 'radiuss'",
                                          "pass, radius, then, description"]),
    ("x:\n  all:\n    - end: left\n      description: no\n",
     ["unknown key 'description' for `end`"]),
    ("x:\n  end: left\n  edge: 3\n", ["exactly one of the keys end, pass, edge, fast, all"]),
    ("x:\n  description: nothing\n", ["exactly one of the keys", "found nothing"]),
    ("x:\n  edge: -1\n", ["edge distance must be a number of metres >= 0"]),
    ("x:\n  fast: 0\n", ["fast takes true or a number of decisions >= 1"]),
    ("x:\n  all: []\n", ["all must be a list of parts"]),
    ("x: 3\n", ["intent 'x'", "must be a mapping"]),
    ("left:\n  end: right\n", ["intent 'left'", "built in as `end: left`"]),
    ("- a\n", ["expected a mapping of intent names"]),
    ("x: [\n", ["not valid YAML at line"]),
])
def test_bad_files_are_one_line_errors(layout, tmp_path, text, expected):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(IntentError) as error:
        load_intents(f, layout)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"intents {f}")
    for part in expected:
        assert part in message, message


def test_unknown_names_and_files(layout, tmp_path):
    with pytest.raises(UserError) as error:
        intent_by_name("campfire-left", layout=layout)
    message = str(error.value)
    assert "\n" not in message and "<agentalign>/configs/intents.yaml" in message
    assert "no intent 'campfire-left'" in message and "campfire-middle" in message
    with pytest.raises(UserError, match="cannot read it"):
        load_intents(tmp_path / "nowhere.yaml", layout)


def test_track_from_a_corpus_episode(small_corpus):
    corpus = Corpus(small_corpus, verify=False)
    steps = corpus.episode(0)
    t = track_from_episode(steps, int(corpus.episodes["outcomes"][0]), final_position=(1.0, 2.0))
    assert t.length == len(steps["positions"]) == int(corpus.episodes["lengths"][0])
    assert t.positions.shape == (t.length + 1, 2) and tuple(t.final) == (1.0, 2.0)
    with pytest.raises(ValueError, match="finished episode"):
        Track(np.zeros((1, 2)), -1, 0)  # spec.RUNNING
    streamed = track_from_episode(next(corpus.iter_episodes()))
    assert streamed.outcome == t.outcome and np.array_equal(streamed.positions,
                                                            t.positions[:-1])


# -- satisfaction ------------------------------------------------------------------------------

def test_satisfaction_rate_with_the_outcome_rates_interval(layout):
    intent = PassBy(layout, "campfire", then="middle")
    tracks = [BY_CAMPFIRE] * 3 + [STRAIGHT] * 5 + [CAMPFIRE_TO_LEFT] * 2
    got = satisfaction(intent, tracks)
    assert got["rate"] == 0.3 and got["count"] == 3 and got["episodes"] == 10
    assert (got["low"], got["high"]) == wilson_interval(3, 10)
    assert got["intent"] == "campfire-middle"
    empty = satisfaction(intent, [])
    assert (empty["rate"], empty["low"], empty["high"], empty["episodes"]) == (0.0, 0.0, 1.0, 0)


# -- evaluate --intent -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = get_config("tiny", obs_height=32, obs_width=32, n_layer=1, n_head=2, n_embd=32,
                        context=8, cnn_channels=(8, 16))
    policy = Policy(config).eval()
    stage = tmp_path_factory.mktemp("sft")
    save_step(stage, policy, policy.config.to_dict(), kind="policy", stage="sft", step=7)
    return stage


def evaluate(checkpoint, out, *args: str) -> int:
    threads = torch.get_num_threads()
    try:
        return main(["evaluate", str(checkpoint), "--episodes", "6", "--num-envs", "6", "--out",
                     str(out), "--no-progress", "--set", "gif_episodes=0", "--set",
                     "max_steps=25", *args])
    finally:
        torch.set_num_threads(threads)


def test_evaluate_reports_the_share_satisfying_an_intent(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate(checkpoint, out) == 0
    plain = json.loads((out / "results.json").read_text())
    assert "intent" not in plain and "intent" not in plain["settings"]
    assert "intent" not in plain["per_episode"] and "intent " not in capsys.readouterr().out

    assert evaluate(checkpoint, out, "--intent", "campfire-middle") == 0
    printed = capsys.readouterr().out
    assert "intent campfire-middle (pass by the campfire, then end on the middle pad): " \
        in printed and "95% interval" in printed
    results = json.loads((out / "results.json").read_text())
    got = results["intent"]
    assert got["intent"] == "campfire-middle" and got["episodes"] == 6
    assert got["file"] == "<packaged>" and results["settings"]["intent"] == "campfire-middle"
    assert got["count"] == sum(results["per_episode"]["intent"])
    assert {k: results[k] for k in ("rates", "by_spawn")} == \
        {k: plain[k] for k in ("rates", "by_spawn")}  # the same episodes

    mine = tmp_path / "mine.yaml"
    mine.write_text("within-20:\n  description: quick\n  fast: 20\n")
    assert evaluate(checkpoint, out, "--intent", "within-20", "--intents", str(mine)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["per_episode"]["intent"] == [n <= 20 for n in results["per_episode"]["length"]]
    assert results["intent"]["file"] == str(mine)

    capsys.readouterr()
    assert evaluate(checkpoint, out, "--intent", "nothing-such") == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "no intent 'nothing-such'" in message
    assert evaluate(checkpoint, out, "--intents", str(mine)) == 2
    assert "no intent is chosen" in capsys.readouterr().err
