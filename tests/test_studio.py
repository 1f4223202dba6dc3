"""The studio: its API and store (bad input, idempotency, tokens, jobs), and its pages driven in
Debian's headless Chromium through Playwright (lock-step clips, keys, two annotators at once,
reload, markup shown as text)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from agentalign.config import load
from agentalign.errors import UserError
from agentalign.models.checkpoint import save_step
from agentalign.models.policy import Policy, get_config
from agentalign.studio.app import running, serve
from agentalign.studio.jobs import Jobs
from agentalign.studio.service import Studio
from agentalign.studio.state import StudioError
from agentalign.studio.studio_config import StudioSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SMALL = ["pool.sft_episodes=8", "pool.anywhere_episodes=6", "pool.base_episodes=4",
         "pool.along_episodes=4", "pool.aligned_episodes=4", "pool.aligned_along=0.5",
         "pool.num_envs=8", "warmup_labels=4", "refit_every=2"]


def make_run(folder: Path) -> Path:
    torch.manual_seed(0)
    policy = Policy(get_config("tiny", n_layer=1, n_embd=32, context=8)).eval()
    for stage in ("sft", "pretrain"):
        save_step(folder / stage, policy, policy.config.to_dict(), kind="policy", stage=stage,
                  step=0)
    return folder


def wait(jobs: Jobs, name: str, timeout: float = 240.0) -> dict:
    deadline = time.time() + timeout
    while (job := jobs.get(name))["state"] not in ("done", "failed", "cancelled"):
        assert time.time() < deadline, f"job {name} still {job['state']} after {timeout} s"
        time.sleep(0.3)
    return job


@pytest.fixture(scope="module")
def pooled(tmp_path_factory) -> Path:
    """A tiny run with its studio pool recorded (by the pool job's own process)."""
    run = make_run(tmp_path_factory.mktemp("studio-run"))
    studio = Studio(run, load(StudioSettings, None, SMALL))
    studio.start_pool()
    job = wait(studio.jobs, "pool")
    assert job["state"] == "done", job
    assert {p["kind"] for p in studio.state.pool()} == {"sft", "anywhere", "base", "along"}
    studio.close()
    return run


@pytest.fixture
def studio(pooled, tmp_path) -> Studio:
    """A fresh copy of the pooled run per test (labels of one test never leak into another)."""
    run = tmp_path / "run"
    shutil.copytree(pooled, run)
    s = Studio(run, load(StudioSettings, None, SMALL))
    yield s
    s.close()


def rows(studio: Studio) -> list[dict]:
    return studio.state.store.answers()


# -- API and store ---------------------------------------------------------------------------


def test_pairs_answers_and_their_sides(studio):
    with running(studio) as url:
        c = httpx.Client(base_url=url)
        made = c.post("/api/personalities", json={"name": "camp", "rubric": "by the fire",
                                                  "pad": "middle"})
        assert made.status_code == 200, made.text
        for i in range(10):
            shown = c.get("/api/next", params={"personality": "camp", "annotator": "ana"}).json()
            assert shown["rubric"] == "by the fire" and shown["left"]["length"] >= 1
            answer = ["left", "right", "equal", "cant_tell", "skip"][i % 5]
            r = c.post("/api/answer", json={"personality": "camp", "pair": shown["pair"],
                                            "answer": answer, "shown_left": shown["shown_left"],
                                            "annotator": "ana", "request": f"q{i}"})
            assert r.json()["created"] is True
            row = rows(studio)[-1]
            first_left = shown["shown_left"] == 0
            expected = {"left": "first" if first_left else "second",
                        "right": "second" if first_left else "first"}.get(answer, answer)
            assert (row["answer"], row["shown_left"], row["labeller"], row["request"]) == \
                (expected, shown["shown_left"], "ana", f"q{i}")
        # pairs were retired once answered (overlap 1): never shown again
        pairs = [r["pair"] for r in rows(studio)]
        assert len(set(pairs)) == len(pairs) == 10
        stats = c.get("/api/stats", params={"personality": "camp"}).json()
        assert stats["labels"] == 10 and stats["by_annotator"] == {"ana": 10}
        assert stats["by_answer"]["cant_tell"] == 2 and stats["by_answer"]["skip"] == 2


def test_bad_input_is_refused_with_nothing_written(studio):
    studio.state.add_personality("camp", "by the fire", "middle")
    shown = studio.next_pair("camp", "ana")
    studio.answer("camp", shown.pair, "left", shown.shown_left, "ana", "once")
    with running(studio) as url:
        c = httpx.Client(base_url=url)

        def refused(body: dict, words: str) -> None:
            before = len(rows(studio))
            r = c.post("/api/answer", json=body)
            assert r.status_code == 400 and words in r.json()["error"], r.text
            assert len(rows(studio)) == before

        ok = {"personality": "camp", "pair": shown.pair, "answer": "left", "shown_left": 0,
              "annotator": "bo"}
        refused({**ok, "pair": 99999}, "unknown pair 99999")
        refused(ok, "is retired")  # answered once already, overlap 1
        fresh = studio.next_pair("camp", "bo")
        refused({**ok, "pair": fresh.pair, "annotator": "  "}, "no annotator")
        refused({**ok, "pair": fresh.pair, "answer": "maybe"}, "unknown answer")
        refused({**ok, "pair": fresh.pair, "personality": "nobody"}, "unknown personality")
        refused({k: v for k, v in ok.items() if k != "pair"}, "missing 'pair'")
        r = c.post("/api/answer", content=b"{not json")
        assert r.status_code == 400 and "not JSON" in r.json()["error"]
        r = c.get("/api/next", params={"personality": "camp", "annotator": ""})
        assert r.status_code == 400 and "no annotator" in r.json()["error"]
        r = c.post("/api/personalities", json={"name": "../x", "rubric": "r", "pad": "left"})
        assert r.status_code == 400 and "personality name" in r.json()["error"]
        # the same request twice (a double click, a retried POST): one row
        body = {**ok, "pair": fresh.pair, "request": "twice"}
        first, again = c.post("/api/answer", json=body), c.post("/api/answer", json=body)
        assert first.json()["created"] and not again.json()["created"]
        assert sum(r["request"] == "twice" for r in rows(studio)) == 1


def test_token_guards_every_path_and_loopback_is_the_default(studio, tmp_path):
    with running(studio, token="s3cret") as url:
        assert httpx.get(f"{url}/label").status_code == 401
        assert "missing token" in httpx.get(f"{url}/api/personalities").json()["error"]
        wrong = httpx.get(f"{url}/api/personalities", headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401 and "wrong token" in wrong.json()["error"]
        ok = httpx.get(f"{url}/api/personalities", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        c = httpx.Client(base_url=url, follow_redirects=True)
        assert c.get("/label?token=s3cret").status_code == 200  # sets the cookie
        assert c.get("/learn").status_code == 200
    settings = load(StudioSettings, None, [*SMALL, "host=0.0.0.0"])
    with pytest.raises(UserError, match="without a token"):
        serve(settings, studio.run)


@pytest.mark.parametrize("uncertainty", ["entropy", "top"])
def test_ensemble_refits_and_active_pairs_follow_the_warmup(studio, uncertainty):
    studio.settings = studio.settings.replace(uncertainty=uncertainty)
    studio.state.add_personality("camp", "by the fire", "middle")
    hows = []
    for i in range(16):
        shown = studio.next_pair("camp", "ana")
        hows.append(shown.how)
        studio.answer("camp", shown.pair, "left" if i % 2 else "right", shown.shown_left,
                      "ana", None)
        studio.refit("camp")  # the studio refits in the background; here in step
    assert "active" in hows and "heldout" in hows
    assert studio.state.stats("camp")["fits"], "no refit recorded"
    trained = len(studio.state.decisive("camp", "train"))
    studio.settings = studio.settings.replace(budget=trained)
    with pytest.raises(StudioError, match="used its label budget"):
        studio.next_pair("camp", "ana")


def test_top_candidates_come_from_the_best_rated_quarter_of_the_runs():
    """uncertainty "top": candidate pairs are drawn from the quarter of the runs the ensemble
    rates highest (here: the runs with the largest first feature), else from every run."""
    from agentalign.studio import select

    rng = np.random.default_rng(0)
    features = np.stack([rng.normal(size=40), np.ones(40)], axis=1)  # one feature that counts
    # every pair labelled: the one with the larger first feature is better
    first, second = np.triu_indices(40, 1)
    target = (features[first, 0] > features[second, 0]).astype(float)
    ensemble = select.fit(features, first, second, target, members=3)
    best = set(np.argsort(-features[:, 0])[:10].tolist())
    top = select.candidate_pairs(ensemble, features, 200, np.random.default_rng(1), "top")
    assert top.shape == (200, 2) and set(top.ravel().tolist()) <= best
    anywhere = select.candidate_pairs(ensemble, features, 200, np.random.default_rng(1))
    assert not set(anywhere.ravel().tolist()) <= best
    assert 0 <= select.most_uncertain(ensemble, features, top, "top") < 200


def test_each_align_records_its_own_pool_corpus_and_retires_the_older(studio):
    from agentalign.studio.pool import PoolPart

    first = PoolPart("aligned", Path("a"), 4, 3, personality="camp", tag="align-camp-1")
    second = PoolPart("aligned", Path("b"), 4, 3, personality="camp", tag="align-camp-2")
    assert first.corpus != second.corpus  # a second align never meets the first's corpus
    studio.state.add_personality("camp", "by the fire", "middle")
    base = studio.state.pool()[0]["corpus"]
    for part in (first, second):  # register (the corpora's episodes are the pool's own)
        shutil.copytree(studio.labels / base, studio.labels / part.corpus)
        studio.state.add_corpus(part.corpus, "aligned", 4, personality="camp")
    active = {p["corpus"] for p in studio.state.pool() if p["kind"] == "aligned"}
    assert active == {second.corpus}


def test_colour_features_pool_each_frames_colour_shares_over_the_episode():
    from agentalign.studio.pool import LEVELS, colour_features

    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[0, ..., 0] = 255  # all red
    frames[1, :2, :, 0] = 255  # half red, half (below) blue
    frames[1, 2:, :, 2] = 255
    frames[2, ..., 2] = 255  # all blue
    size = LEVELS ** 3
    red, blue = (LEVELS - 1) * LEVELS * LEVELS, LEVELS - 1
    f = colour_features(frames)
    peak, mean, last = f[:size], f[size:2 * size], f[2 * size:]
    assert f.shape == (3 * size,) and f.dtype == np.float32
    assert peak[red] == 1.0 and peak[blue] == 1.0  # each was once the whole view
    assert mean[red] == pytest.approx(0.5) and mean[blue] == pytest.approx(0.5)
    assert last[blue] == 1.0 and last[red] == 0.0
    assert mean.sum() == pytest.approx(1.0) and last.sum() == pytest.approx(1.0)


def test_switching_the_feature_kind_computes_the_missing_ones_and_keeps_the_others(studio):
    """`pool.features: encoder` on a studio whose runs have colour features: the pool job
    computes the encoder's for every pool corpus, an aligned one too, and the colour files
    stay (switching back costs nothing)."""
    from agentalign.studio.pool import feature_path

    base = studio.state.pool()[0]["corpus"]
    aligned = "pool-aligned-camp-align-camp-1-s3"
    shutil.copytree(studio.labels / base, studio.labels / aligned)
    studio.state.add_personality("camp", "by the fire", "middle")
    studio.state.add_corpus(aligned, "aligned", 4, personality="camp")
    colour_ids, colour = studio.pool_features()
    assert colour.shape[1] == 192 and len(colour_ids) < 8 + 6 + 4 + 4 + 4  # aligned: none yet
    job = studio.start_pool()  # the aligned corpus lacks colour features
    assert job is not None and wait(studio.jobs, job["name"])["state"] == "done"
    assert len(studio.pool_features()[0]) == 8 + 6 + 4 + 4 + 4
    studio.close()
    other = Studio(studio.run, load(StudioSettings, None, [*SMALL, "pool.features=encoder"]))
    try:
        job = other.start_pool()
        assert job is not None and wait(other.jobs, job["name"])["state"] == "done"
        ids, encoded = other.pool_features()
        assert encoded.shape == (8 + 6 + 4 + 4 + 4, 3 * 32)  # the tiny policy's n_embd: 32
        assert other.start_pool() is None  # complete now
        for row in other.state.pool():
            assert feature_path(other.labels, row["corpus"], "colour").exists()
            assert feature_path(other.labels, row["corpus"], "encoder").exists()
    finally:
        other.close()


def test_unfinished_jobs_resume_after_a_restart(studio):
    job = studio.jobs.start("probe", {"kind": "no-such-kind"})
    assert wait(studio.jobs, "probe")["state"] == "failed"
    # an earlier studio died while this job ran: its record says running, its process is gone
    path = studio.jobs.folder / "probe" / "job.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "state": "running",
                                "pid": 2 ** 22 + 12345}))
    again = Jobs(studio.jobs.folder)
    assert again.resume() == ["probe"]
    assert wait(again, "probe")["state"] == "failed"  # it ran again
    assert job["name"] == "probe"


# -- pages in Chromium -----------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="Debian's chromium is not installed (.ci/run "
                                           "installs it: apt-get install chromium)")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def label_page(browser, url: str, annotator: str):
    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/label")
    page.fill("#annotator", annotator)
    page.press("#annotator", "Enter")  # leaves the box: change fires, the keys answer
    page.wait_for_selector("body[data-ready='1']")
    return page, errors


def frames(page) -> tuple[int, int]:
    return (int(page.get_attribute("#player-left", "data-frame")),
            int(page.get_attribute("#player-right", "data-frame")))


@needs_chromium
def test_pages_load_and_the_clips_stay_in_lock_step(studio, browser):
    studio.state.add_personality("camp", "by <b>the</b> fire & <script>x()</script>", "middle")
    with running(studio) as url:
        page, errors = label_page(browser, url, "ana")
        # the rubric is shown as text, never as markup
        assert page.text_content("#rubric") == "by <b>the</b> fire & <script>x()</script>"
        assert page.query_selector("#rubric b") is None
        lengths = page.evaluate("[S.lengths.left, S.lengths.right]")

        def in_step() -> None:
            # one snapshot (the page draws all three in one tick): each player shows the clock's
            # frame, clamped to its own clip's end
            clock, left, right = page.evaluate(
                "[clock.dataset.frame, players.left.dataset.frame, "
                "players.right.dataset.frame].map(Number)")
            assert (left, right) == (min(clock, lengths[0] - 1), min(clock, lengths[1] - 1))

        page.wait_for_timeout(500)  # playing
        in_step()
        target = max(0, min(lengths) - 3)
        page.eval_on_selector("#scrub", "(e, v) => { e.value = v; e.dispatchEvent(new Event"
                              "('input')); }", str(target))
        assert frames(page) == (target, target)  # seeking pauses on that frame
        page.click("#forward")
        assert frames(page) == (target + 1, target + 1)
        page.select_option("#speed", "2")
        page.click("#play")
        for _ in range(3):
            page.wait_for_timeout(200)
            in_step()
        page.select_option("#speed", "0.5")
        page.wait_for_timeout(200)
        in_step()
        for name in ("learn", "personalities"):
            page.goto(f"{url}/{name}")
            page.wait_for_load_state("networkidle")
        assert errors == []


@needs_chromium
def test_keys_write_one_row_each_with_the_drawn_side_and_reload_keeps_them(studio, browser):
    studio.state.add_personality("camp", "by the fire", "middle")
    with running(studio) as url:
        page, errors = label_page(browser, url, "ana")
        for n, key in enumerate(["ArrowLeft", "2", "=", "c", "s", "1"], 1):
            page.wait_for_selector("body[data-ready='1']")
            pair, shown_left = int(page.get_attribute("body", "data-pair")), \
                int(page.evaluate("S.pair.shown_left"))
            page.keyboard.press(key)
            try:
                page.wait_for_function(f"document.body.dataset.answered == {n}", timeout=5000)
            except Exception:
                raise AssertionError((key, n, page.text_content("#status"))) from None
            row = rows(studio)[-1]
            assert len(rows(studio)) == n and row["pair"] == pair
            assert row["shown_left"] == shown_left and row["labeller"] == "ana"
        assert [r["answer"] for r in rows(studio)][2:5] == ["equal", "cant_tell", "skip"]
        # a double click on a button writes one row
        page.wait_for_selector("body[data-ready='1']")
        page.dblclick("[data-answer=left]")
        page.wait_for_function("document.body.dataset.answered == 7")
        page.wait_for_timeout(300)
        assert len(rows(studio)) == 7
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#annotator") == "ana"  # asked once
        page.goto(f"{url}/learn")
        page.wait_for_function("document.querySelector('#labels tbody').rows.length > 0")
        assert "7" in page.text_content("#labels")
        # align "from" a personality: it must have been aligned before (the page says so)
        page.select_option("#start", "camp")
        page.click("#align")
        page.wait_for_function("document.querySelector('#status').textContent"
                               ".includes('align it first')")
        assert errors == []


@needs_chromium
def test_two_annotators_label_at_once_without_loss_or_duplicates(studio, browser):
    studio.state.add_personality("camp", "by the fire", "middle")
    with running(studio) as url:
        pages = [label_page(browser, url, name)[0] for name in ("ana", "bo")]
        for n in range(1, 6):
            for page in pages:  # interleaved: both have a pair open at the same time
                page.wait_for_selector("body[data-ready='1']")
            for page in pages:
                page.keyboard.press("1")
            for page in pages:
                page.wait_for_function(f"document.body.dataset.answered == {n}")
        found = rows(studio)
        assert len(found) == 10 and len({r["request"] for r in found}) == 10
        assert {r["labeller"] for r in found} == {"ana", "bo"}
        assert len({r["pair"] for r in found}) == 10  # overlap 1: no pair twice


def load_benchmark():
    """benchmarks/studio_e2e.py as a module (its --smoke is CI's end-to-end run)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "studio_e2e.py"
    spec = importlib.util.spec_from_file_location("studio_e2e", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_e2e_draws_compare_each_draw_and_the_mean_curves():
    bench = load_benchmark()
    curves = {"active": [[(10, 0.80), (20, 0.90), (30, 0.90)],
                         [(10, 0.70), (20, 0.80), (30, 0.95)]],
              "random": [[(10, 0.90), (20, 0.70), (30, 0.85)],
                         [(10, 0.60), (20, 0.70), (30, 0.75), (40, 0.75)]]}
    found = bench.compare_draws(curves)
    # draw 0: random touched its final 0.85 at 10 labels (then fell); draw 1: 0.75 at 30
    assert found["labels_needed"] == {"active": [20, 20], "random": [10, 30]}
    # the mean curves: the counts every draw scored (40 only one did)
    assert [n for n, _ in found["mean_curve"]["random"]] == [10, 20, 30]
    assert [a for _, a in found["mean_curve"]["random"]] == pytest.approx([0.75, 0.70, 0.80])
    assert found["mean_labels_needed"] == {"active": 20, "random": 30}


@needs_chromium
def test_e2e_smoke_labels_in_the_browser_then_aligns_exports_and_plays(tmp_path):
    """The benchmark's CI version: a scripted designer labels pairs in the real page (6 for a
    first personality, then 14 per arm for the intent), the studio's align jobs train a tiny
    first personality and the intent's from it, and it plays live."""
    e2e = load_benchmark()
    assert e2e.main(["--smoke", "--out", str(tmp_path)]) == 0
    seed = json.loads((tmp_path / "results.json").read_text())["seeds"]["0"]
    for arm in ("active", "random"):
        stats = seed["arms"][arm]["stats"]
        assert stats["train_labels"] >= 14 and stats["by_annotator"] == {
            "scripted-designer": stats["labels"]}
        assert seed["arms"][arm]["curve"] and stats["by_how"].get("heldout", 0) >= 1
    assert seed["arms"]["active"]["stats"]["by_how"].get("active", 0) >= 1
    assert "active" not in seed["arms"]["random"]["stats"]["by_how"]
    assert seed["aligned"]["episodes"] == 20 and 0 <= seed["aligned"]["rate"] <= 1
    assert [r["round"] for r in seed["rounds"]] == [1, 2]  # label, align, label, align
    assert seed["rounds"][0]["train_labels"] < seed["rounds"][1]["train_labels"]
    assert seed["rounds"][1] == seed["aligned"]
    first = seed["first"]  # taught first, from the SFT agent; the intent aligned from it
    assert first["intent"] == "campfire" and first["train_labels"] >= 6
    assert first["own"]["intent"] == "campfire" and first["target"]["episodes"] == 20
    folder = tmp_path / "s0" / "active"
    card = json.loads((folder / "personalities" / "designer.json").read_text())
    assert card["target"] == card["studio"]["intent"] == "campfire-middle"
    assert card["studio"]["pad"] == "middle" and card["measured"]["intent"]["episodes"] == 4
    assert card["studio"]["train_labels"] == seed["arms"]["active"]["stats"]["train_labels"]
    assert card["studio"]["annotators"] == ["scripted-designer"]
    assert card["studio"]["aligned_from"] == "first"
    draws = card["studio"]["rl_draws"]  # two RL draws (seeds 0, 1): the reward model kept one
    assert set(draws["mean_scores"]) == {"0", "1"} and draws["episodes"] == 4
    assert draws["mean_scores"][str(draws["picked"])] == max(draws["mean_scores"].values())
    jobs = {j["name"]: j for j in Jobs(folder / "jobs").list()}
    # each align's runs, and its runs handed to the pre-trained agent, join the pool; the
    # newest align's replace the older ones of the same personality
    studio = Studio(tmp_path / "smoke-run", load(StudioSettings, None, SMALL), folder=folder)
    pool = {(p["kind"], p["personality"]): p for p in studio.state.pool()}
    for kind, seed_offset in (("aligned", 3), ("handoff", 5)):
        for who, job in (("first", "align-first-1"), ("designer", "align-designer-2")):
            assert pool[(kind, who)]["corpus"] == f"pool-{kind}-{who}-{job}-s{seed_offset}"
            assert pool[(kind, who)]["episodes"] == 4
    assert jobs["align-first-1"]["policy"] is None and jobs["align-first-1"]["card"][
        "aligned_from"] == "sft"
    assert jobs["align-designer-2"]["policy"] == str(folder.resolve() / "jobs" / "align-first-1"
                                                     / "align")
    # watch it play live (its ONNX through onnxruntime), swap mid-episode, restart at a spawn
    with running(studio) as url:
        c = httpx.Client(base_url=url)
        cards = c.get("/api/cards").json()
        assert [k["name"] for k in cards] == ["designer", "first"]
        assert card["studio"]["evaluation"]["intent"]["intent"] == "campfire-middle"
        heatmap = c.get(cards[0]["heatmap"])
        assert heatmap.status_code == 200 and heatmap.content[:4] == b"\x89PNG"
        started = c.post("/api/play", json={"personality": "designer", "spawn": 2}).json()
        key = started["session"]
        assert started["step"] == 0 and started["frame"].startswith("data:image/png;base64,")
        for _ in range(3):
            view = c.post(f"/api/play/{key}/step").json()
        assert view["step"] == 3 or view["outcome"] is not None
        assert len(view["path"]) == view["step"] + 1
        swapped = c.post(f"/api/play/{key}/swap", json={"personality": "designer"}).json()
        assert swapped["step"] == view["step"]  # same episode, a fresh context
        again = c.post(f"/api/play/{key}/restart", json={"spawn": 1}).json()
        assert again["step"] == 0 and again["spawn"] == 1 and again["outcome"] is None
        bad = c.post("/api/play", json={"personality": "nobody"})
        assert bad.status_code == 400 and "no exported personality" in bad.json()["error"]
        bad = c.post(f"/api/play/{key}/restart", json={"spawn": 9})
        assert bad.status_code == 400 and "spawn 9" in bad.json()["error"]
        with pytest.raises(StudioError, match="unknown personality"):
            studio.start_align("nobody")
        with pytest.raises(StudioError, match="unknown personality 'nobody'"):
            studio.start_align("designer", start="nobody")
        studio.state.add_personality("fresh", "never aligned", "left")
        with pytest.raises(StudioError, match="'fresh' has no finished align job"):
            studio.start_align("designer", start="fresh")
        bad = c.post("/api/align", json={"personality": "designer", "start": "fresh"})
        assert bad.status_code == 400 and "align it first" in bad.json()["error"]
    studio.close()


def test_the_way_rubric_config_is_a_valid_studio_config():
    """examples/studio-way.yaml (docs/studio.md, "Teaching in steps") loads over the defaults
    and reaches the align job's stages."""
    config = load(StudioSettings, Path(__file__).parent.parent / "examples" / "studio-way.yaml")
    assert config.stages["reward"] == ("summary_stride=4",)
    assert config.stages["align"] == ("prefft.rounds=2", "prefft.explore_episodes=256",
                                      "prefft.top_fraction=0.125", "rl.along=0.5",
                                      "rl.iterations=200")
    assert config.pool.aligned_episodes == 200 and config.pool.sft_episodes == 200
    assert config.pool.handoff_episodes == 200 and config.uncertainty == "top"
    assert config.pool.features == "encoder"  # as measured (docs/results.md)
    assert config.budget == 300
    from agentalign.train.align_config import AlignSettings
    from agentalign.train.reward_config import RewardSettings

    assert load(RewardSettings, None, list(config.stages["reward"])).summary_stride == 4
    # the align job names the run's pre-trained agent as the explorer (studio.job)
    align = load(AlignSettings, None, ["prefft.explore_policy=runs/future/pretrain",
                                       *config.stages["align"]])
    assert align.prefft.rounds == 2 and align.prefft.explore_episodes == 256
    assert align.rl.along == 0.5 and align.rl.iterations == 200
