"""The studio end to end: a scripted designer labels in the real page, the studio aligns.

    python benchmarks/studio_e2e.py --run RUN [--seeds 0 1 2] [--labels 300]
        [--intent campfire-middle] [--out runs/studio-e2e] [--screenshots docs/img/studio]
    python benchmarks/studio_e2e.py --run RUN --skip-align --draws 3   # arms only, 3 draws each
    python benchmarks/studio_e2e.py --smoke      # CI's version: a tiny run, 20 labels, tiny align

RUN is a pipeline run (RUN/sft, RUN/pretrain; RUN/align-<pad> for the baseline personality).
1. Baseline: how often the SFT agent and the pipeline's personality for the intent's pad satisfy
   the intent (`evaluate --intent`, `--episodes` episodes on evaluation seed 4242).
2. Per seed: the studio records its pool (seed S); then two arms on copies of it, the same code
   with `random_share` 0.25 ("active": the ensemble chooses after the warm-up) and 1.0
   ("random"). A scripted designer (IntentLabeller on the rollouts' true tracks: the designer's
   eyes) answers pairs in headless Chromium by key until the arm has `--labels` training labels.
   Each arm's ensemble (studio.select, the same fit the studio uses) is scored after every
   `--every` labels on one common held-out set of 500 random pool pairs the designer labelled,
   so the arms are compared on the same pairs; "labels needed" is the first count at which an
   arm reaches the accuracy the random arm ends with. One draw is noisy (a random curve can
   touch its final accuracy early and fall back): `--draws N` labels N draws per arm (the
   studio's pair rng seeded [seed, draw], same pool and held-out pairs) and reports labels
   needed per draw and on the arms' mean curves.
3. The active arm's labels align a personality (the studio's align job: reward model, prefft
   and RL, export), whose satisfaction is measured as in 1. With `--rounds R` the active arm
   labels in R rounds with an align after each: each aligned personality's runs join the pool,
   so the next round's pairs show what it does (the loop a designer runs in the studio).
   With `--first INTENT:N` the active arm first teaches a personality INTENT with N of the
   `--labels` (aligned from the SFT agent), and the intent's personality is then aligned from
   it (the studio's "from" choice: teaching in steps); both arms then label `--labels` - N
   pairs for the intent.
Prints a table per seed and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.config import load
from agentalign.data.shards import Corpus
from agentalign.envs.intents import (
    IntentLabeller,
    final_pad,
    intent_by_name,
    track_from_episode,
)
from agentalign.evaluate import run as evaluate
from agentalign.evaluate_config import EvaluateSettings
from agentalign.studio import select
from agentalign.studio.app import running
from agentalign.studio.service import Studio
from agentalign.studio.studio_config import StudioSettings

CHROMIUM = "/usr/bin/chromium"
EVAL_SEED = 4242
ARMS = {"active": 0.25, "random": 1.0}


class Designer:
    """Answers pairs by an intent, from the rollouts' true tracks (never shown to a learner)."""

    def __init__(self, labels: Path, intent_name: str):
        self.labels = labels
        self.intent = intent_by_name(intent_name)
        self.labeller = IntentLabeller(self.intent)
        self.pad = final_pad(self.intent) or "middle"
        self.corpora: dict[str, Corpus] = {}
        self.tracks: dict[tuple[str, int], Any] = {}

    def track(self, corpus: str, episode: int) -> Any:
        if (corpus, episode) not in self.tracks:
            if corpus not in self.corpora:
                self.corpora[corpus] = Corpus(self.labels / corpus, verify=False)
            c = self.corpora[corpus]
            self.tracks[(corpus, episode)] = track_from_episode(
                c.episode(episode), int(c.episodes["outcomes"][episode]))
        return self.tracks[(corpus, episode)]

    def prefer(self, a: tuple[str, int], b: tuple[str, int]) -> int | None:
        return self.labeller.prefer(self.track(*a), self.track(*b))


def label_in_browser(url: str, studio: Studio, designer: Designer, personality: str,
                     train_labels: int, *, every: int = 10, on_count: Any = None,
                     screenshots: Path | None = None) -> dict[str, Any]:
    """Answer pairs on the Label page by key until `personality` has `train_labels` training
    labels and a held-out one; returns counts and seconds."""
    from playwright.sync_api import sync_playwright

    keys = {0: "ArrowLeft", 1: "ArrowRight", None: "="}
    answered, start = 0, time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(f"{url}/label")
        page.evaluate(f"localStorage.setItem('agentalign.personality', {json.dumps(personality)})")
        page.reload()
        page.fill("#annotator", "scripted-designer")
        page.press("#annotator", "Enter")
        while True:
            trained = len(studio.state.decisive(personality, "train"))
            if trained >= train_labels and studio.state.decisive(personality, "heldout"):
                break  # an align needs a held-out label too (drawn at random: a few may lack)
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            left = studio.state.trajectory(int(page.get_attribute("#player-left",
                                                                  "data-trajectory")))
            right = studio.state.trajectory(int(page.get_attribute("#player-right",
                                                                   "data-trajectory")))
            if screenshots is not None and answered == 5:
                page.wait_for_timeout(1500)
                page.screenshot(path=str(screenshots / "label.png"))
            page.keyboard.press(keys[designer.prefer(left, right)])
            answered += 1
            page.wait_for_function(f"document.body.dataset.answered == {answered}")
            now = len(studio.state.decisive(personality, "train"))
            if on_count is not None and now // every > trained // every:
                on_count(now)
        if screenshots is not None:
            page.goto(f"{url}/learn")
            page.wait_for_timeout(2500)
            page.screenshot(path=str(screenshots / "learn.png"), full_page=True)
        browser.close()
    return {"answered": answered, "seconds": round(time.time() - start, 1)}


def common_heldout(studio: Studio, designer: Designer, pairs: int, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pairs` random pool pairs as (first, second, target) rows of the pool features."""
    ids, _ = studio.pool_features()
    rng = np.random.default_rng([seed, 77])
    first, second, target = [], [], []
    while len(first) < pairs:
        a, b = rng.choice(len(ids), size=2, replace=False)
        choice = designer.prefer(studio.state.trajectory(int(ids[a])),
                                 studio.state.trajectory(int(ids[b])))
        if choice is not None:
            first.append(a), second.append(b), target.append(1.0 - choice)
    return np.array(first), np.array(second), np.array(target)


def curve_point(studio: Studio, personality: str, heldout: tuple[np.ndarray, ...]
                ) -> float | None:
    """The studio's ensemble on the labels so far, scored on the common held-out pairs."""
    ensemble = studio.fit(personality)
    return None if ensemble is None else select.accuracy(ensemble, studio.pool_features()[1],
                                                          *heldout)


def satisfaction(policy: Path, intent: str, episodes: int, out: Path) -> dict[str, Any]:
    settings = load(EvaluateSettings, None, [f"seed={EVAL_SEED}", f"episodes={episodes}",
                                             f"intent={intent}", "gif_episodes=0"])
    result = evaluate(settings, policy, out, progress=False)
    return json.loads((out / "results.json").read_text())["intent"] if result else {}


def run_seed(args: argparse.Namespace, seed: int, overrides: list[str]) -> dict[str, Any]:
    out = args.out / f"s{seed}"
    base = out / "pool"
    settings = load(StudioSettings, None, [*overrides, f"pool.seed={seed}"])
    studio = Studio(args.run, settings, folder=base)
    if (job := studio.start_pool()) is not None:
        job = _wait(studio, job["name"])
        if job["state"] != "done":
            raise SystemExit(f"pool job failed: {job.get('error')}")
    studio.close()
    designer = Designer(base / "labels", args.intent)
    result: dict[str, Any] = {"seed": seed, "arms": {}}
    for arm, share in ARMS.items():
        folder = out / arm
        if not (folder / "labels").exists():
            shutil.copytree(base / "labels", folder / "labels")
        studio = open_arm(args, seed, overrides, share, folder, designer)
        shots = args.screenshots if (args.screenshots and arm == "active" and
                                     seed == args.seeds[0]) else None
        done = folder / "arm.json"  # a finished arm is not labelled again (rerun to align)
        # The active arm labels in `rounds` rounds with an align after each (its personality's
        # runs join the pool, so the next round's pairs show what it does); random labels all
        # its pairs at once and does not align: it is the curve's comparison only.
        rounds = args.rounds if arm == "active" and not args.skip_align else 1
        if done.exists():
            result["arms"][arm] = json.loads(done.read_text())
        else:
            heldout = common_heldout(studio, designer, args.heldout_pairs, seed)
            partial = folder / "arm-partial.json"  # the rounds labelled so far (a rerun goes on)
            so_far = json.loads(partial.read_text()) if partial.exists() else {}
            curve: list[tuple[int, float | None]] = [tuple(c) for c in so_far.get("curve", [])]
            timing = so_far.get("timing", {"answered": 0, "seconds": 0.0})
        start = None  # after the common held-out pairs: both arms' are drawn from one pool
        if args.first and arm == "active" and not args.skip_align:
            result["first"] = teach_first(args, studio, folder)
            start = "first"
        # the arm's own labels folder: the aligned personalities' runs are recorded there
        eyes = Designer(folder / "labels", args.intent)
        aligned: list[dict[str, Any]] = []
        for r in range(1, rounds + 1):
            if not done.exists():
                with running(studio) as url:
                    part = label_in_browser(
                        url, studio, eyes, "designer", round(intent_labels(args) * r / rounds),
                        every=args.every,
                        on_count=lambda n, c=curve, s=studio, h=heldout:
                            c.append((n, curve_point(s, "designer", h))),
                        screenshots=shots if r == 1 else None)
                timing = {k: timing[k] + part[k] for k in timing}
                partial.write_text(json.dumps({"curve": curve, "timing": timing}) + "\n")
                if r == rounds:
                    result["arms"][arm] = {
                        "curve": curve, **timing,
                        "stats": {k: v for k, v in studio.state.stats("designer").items()
                                  if k != "fits"}}
                    done.write_text(json.dumps(result["arms"][arm], indent=2) + "\n")
            if arm != "active" or args.skip_align:
                continue
            finished = align(studio, "designer", r, start)
            figure = satisfaction(folder / "jobs" / finished["name"] / "align", args.intent,
                                  args.episodes, folder / f"eval-{r}")
            aligned.append({"round": r, "train_labels": finished["card"]["train_labels"],
                            **figure})
            print(f"seed {seed} round {r}: {aligned[-1]['train_labels']} labels, aligned "
                  f"{_pct(figure)}", flush=True)
        if aligned:
            result["aligned"], result["rounds"] = aligned[-1], aligned
            if shots is not None:
                with running(studio) as url:
                    _screenshot_personalities(url, shots)
        studio.close()
    final_random = result["arms"]["random"]["curve"][-1][1]
    result["level"] = final_random
    for arm in ARMS:
        result["arms"][arm]["labels_needed"] = select.labels_needed(result["arms"][arm]["curve"],
                                                             final_random)
    if args.draws > 1:
        result["draws"] = more_draws(args, seed, overrides, result["arms"])
    return result


def open_arm(args: argparse.Namespace, seed: int, overrides: list[str], share: float,
             folder: Path, designer: Designer) -> Studio:
    """An arm's studio on its copy of the pool, with the designer's personality."""
    studio = Studio(args.run, load(StudioSettings, None, [
        *overrides, f"pool.seed={seed}", f"random_share={share}"]), folder=folder)
    if not any(p["name"] == "designer" for p in studio.state.personalities()):
        studio.state.add_personality("designer", intent_text(args.intent), designer.pad,
                                     args.intent)
    return studio


def more_draws(args: argparse.Namespace, seed: int, overrides: list[str],
               first: dict[str, Any]) -> dict[str, Any]:
    """Draws 1.. of both arms on copies of the same pool (the studio's pair rng seeded
    [seed, draw]; the common held-out pairs are the same), as draw 0 labels them; per draw the
    labels each arm needs for that draw's random final accuracy, and on the mean curves."""
    out = args.out / f"s{seed}"
    designer = Designer(out / "pool" / "labels", args.intent)
    curves = {arm: [first[arm]["curve"]] for arm in ARMS}
    for draw in range(1, args.draws):
        for arm, share in ARMS.items():
            folder = out / f"{arm}-d{draw}"
            done = folder / "arm.json"
            if not done.exists():
                shutil.rmtree(folder / "labels", ignore_errors=True)  # a half-labelled draw
                shutil.copytree(out / "pool" / "labels", folder / "labels")
                studio = open_arm(args, seed, overrides, share, folder, designer)
                studio.rng = np.random.default_rng([seed, draw])
                heldout = common_heldout(studio, designer, args.heldout_pairs, seed)
                curve: list[tuple[int, float | None]] = []
                with running(studio) as url:
                    timing = label_in_browser(
                        url, studio, designer, "designer", intent_labels(args),
                        every=args.every, on_count=lambda n, c=curve, s=studio, h=heldout:
                            c.append((n, curve_point(s, "designer", h))))
                studio.close()
                done.write_text(json.dumps({"curve": curve, **timing}, indent=2) + "\n")
            curves[arm].append([tuple(c) for c in json.loads(done.read_text())["curve"]])
    return compare_draws(curves)


def compare_draws(curves: dict[str, list[list[tuple[int, float | None]]]]) -> dict[str, Any]:
    """Per draw, the labels each arm needs for that draw's random final accuracy; and the
    same on the arms' mean curves (over the counts every draw scored)."""
    per_draw = {arm: [select.labels_needed(c, r[-1][1]) for c, r in
                      zip(curves[arm], curves["random"], strict=True)] for arm in curves}
    scored = {arm: [{n: a for n, a in c if a is not None} for c in curves[arm]]
              for arm in curves}
    counts = sorted(set.intersection(*(set(p) for ps in scored.values() for p in ps)))
    mean = {arm: [(n, float(np.mean([p[n] for p in scored[arm]]))) for n in counts]
            for arm in curves}
    return {"labels_needed": per_draw, "mean_curve": mean,
            "mean_labels_needed": {arm: select.labels_needed(mean[arm], mean["random"][-1][1])
                                   for arm in curves}}


def align(studio: Studio, personality: str, r: int, start: str | None) -> dict[str, Any]:
    """The studio's align job `align-PERSONALITY-r`, started (or resumed) and waited for."""
    name = f"align-{personality}-{r}"
    if any(j["name"] == name for j in studio.jobs.list()):
        studio.jobs.resume()  # a job an earlier run left unfinished goes on
    else:
        studio.start_align(personality, start)
    finished = _wait(studio, name, timeout=4 * 3600)
    if finished["state"] != "done":
        raise SystemExit(f"align job failed: {finished.get('error')}")
    return finished


def intent_labels(args: argparse.Namespace) -> int:
    """The intent's own training labels: `--labels` less those of a `--first` step."""
    return args.labels - (args.first[1] if args.first else 0)


def teach_first(args: argparse.Namespace, studio: Studio, folder: Path) -> dict[str, Any]:
    """`--first INTENT:N`: label N pairs for INTENT's personality "first" in the page and align
    it from the SFT agent; its runs join the pool. Returns how often it satisfies its own
    intent and the benchmark's."""
    intent, labels = args.first
    eyes = Designer(folder / "labels", intent)
    if not any(p["name"] == "first" for p in studio.state.personalities()):
        studio.state.add_personality("first", intent_text(intent), eyes.pad, intent)
    with running(studio) as url:
        timing = label_in_browser(url, studio, eyes, "first", labels, every=args.every)
    finished = align(studio, "first", 1, None)
    policy = folder / "jobs" / finished["name"] / "align"
    own = satisfaction(policy, intent, args.episodes, folder / "eval-first-own")
    figure = satisfaction(policy, args.intent, args.episodes, folder / "eval-first")
    print(f"first ({intent}, {finished['card']['train_labels']} labels): satisfies it "
          f"{_pct(own)}; {args.intent} {_pct(figure)}", flush=True)
    return {"intent": intent, "train_labels": finished["card"]["train_labels"], **timing,
            "own": own, "target": figure}


def _screenshot_personalities(url: str, shots: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(f"{url}/personalities")
        page.wait_for_selector(".card")
        page.click("#start")
        page.wait_for_timeout(3000)
        page.screenshot(path=str(shots / "personalities.png"), full_page=True)
        browser.close()


def intent_text(name: str) -> str:
    return intent_by_name(name).description


def _wait(studio: Studio, name: str, timeout: float = 3600) -> dict[str, Any]:
    deadline = time.time() + timeout
    while (job := studio.jobs.get(name))["state"] not in ("done", "failed", "cancelled"):
        if time.time() > deadline:
            raise SystemExit(f"job {name} still {job['state']} after {timeout} s")
        time.sleep(2)
    return job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a pipeline run folder")
    parser.add_argument("--out", type=Path, default=Path("runs/studio-e2e"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", type=int, default=300, help="training labels per arm")
    parser.add_argument("--every", type=int, default=10, help="labels between curve points")
    parser.add_argument("--heldout-pairs", type=int, default=500)
    parser.add_argument("--intent", default="campfire-middle")
    parser.add_argument("--episodes", type=int, default=1000, help="evaluation episodes")
    parser.add_argument("--skip-align", action="store_true", help="labelling and curves only")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not measure the SFT agent and the pipeline's personality "
                             "(another seed's process does)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="the active arm's label-then-align rounds (labels split evenly)")
    parser.add_argument("--first", type=first_step, metavar="INTENT:N",
                        help="teach INTENT with N of the labels first; align the intent from it")
    parser.add_argument("--draws", type=int, default=1,
                        help="label draws per arm and seed (with --skip-align): labels needed "
                             "per draw and on the mean curves")
    parser.add_argument("--screenshots", type=Path, help="write the pages' screenshots here")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="studio settings (configs/studio.yaml)")
    parser.add_argument("--smoke", action="store_true",
                        help="CI's version: a tiny fresh run, 20 labels, a tiny align")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.smoke:
        args = smoke_arguments(args)
        overrides = [*SMOKE_SETTINGS, *overrides]
    if args.run is None:
        parser.error("--run is required (or --smoke)")
    if args.first and intent_labels(args) < args.rounds:
        parser.error(f"--first {args.first[0]}:{args.first[1]} leaves too few of --labels "
                     f"{args.labels} for the intent's {args.rounds} round(s)")
    if args.draws > 1 and not args.skip_align:
        parser.error("--draws compares the arms' labelling only: add --skip-align")
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    intent = intent_by_name(args.intent)
    report: dict[str, Any] = {"intent": args.intent, "description": intent.description,
                              "labels": args.labels, "seeds": {}}
    baseline_pad = final_pad(intent) or "middle"
    if not args.smoke and not args.skip_baseline:
        report["baseline"] = {
            "sft": satisfaction(args.run / "sft", args.intent, args.episodes,
                                args.out / "eval-sft"),
            f"align-{baseline_pad}": satisfaction(args.run / f"align-{baseline_pad}",
                                                  args.intent, args.episodes,
                                                  args.out / f"eval-align-{baseline_pad}")}
        for name, figure in report["baseline"].items():
            print(f"baseline {name}: {_pct(figure)}", flush=True)
    for seed in args.seeds:
        result = run_seed(args, seed, overrides)
        report["seeds"][seed] = result
        print(table(result), flush=True)
        (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def first_step(text: str) -> tuple[str, int]:
    intent, _, labels = text.rpartition(":")
    if not intent or not labels.isdigit() or int(labels) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: want INTENT:N, e.g. campfire:100")
    intent_by_name(intent)  # a one-line error naming the known intents
    return intent, int(labels)


def _pct(figure: dict[str, Any]) -> str:
    if not figure:
        return "n/a"
    return (f"{100 * figure['rate']:.1f}% [{100 * figure['low']:.1f}, "
            f"{100 * figure['high']:.1f}] of {figure['episodes']}")


def table(result: dict[str, Any]) -> str:
    lines = [f"seed {result['seed']}: level {result['level']}"]
    for arm, r in result["arms"].items():
        points = ", ".join(f"{n}:{'-' if a is None else f'{100 * a:.0f}'}"
                           for n, a in r["curve"])
        lines.append(f"  {arm:7s} labels needed {r['labels_needed']}, {r['answered']} answers "
                     f"in {r['seconds']} s; curve {points}")
    if "draws" in result:
        d = result["draws"]
        for arm in ARMS:
            lines.append(f"  {arm:7s} labels needed per draw {d['labels_needed'][arm]}, on the "
                         f"mean curve {d['mean_labels_needed'][arm]}")
    if "first" in result:
        first = result["first"]
        lines.append(f"  first: {first['intent']}, {first['train_labels']} labels; satisfies "
                     f"it {_pct(first['own'])}, the intent {_pct(first['target'])}")
    if "aligned" in result:
        lines.append(f"  aligned: {_pct(result['aligned'])}")
    return "\n".join(lines)


SMOKE_SETTINGS = [
    "pool.sft_episodes=8", "pool.anywhere_episodes=6", "pool.base_episodes=4",
    "pool.aligned_episodes=4", "pool.handoff_episodes=4", "pool.handoff_within=3",
    "pool.num_envs=8", "warmup_labels=4", "refit_every=4",
    "stages.reward=[min_steps=2,max_steps=3,batch_size=4,num_threads=1]",
    "stages.align=[prefft.rounds=1,prefft.episodes=8,prefft.num_envs=8,prefft.eval_episodes=4,"
    "prefft.finetune.steps=2,prefft.finetune.batch_size=4,prefft.finetune.eval_interval=2,"
    "prefft.finetune.checkpoint_interval=2,rl.iterations=2,rl.starts_per_iteration=2,"
    "rl.samples_per_start=2,rl.num_envs=4,rl.eval_episodes=4,rl.minibatch_episodes=4,"
    "draws=2,pick_episodes=4]",
    "stages.export=[episodes=4,num_envs=4]",
    "stages.evaluate=[episodes=8,num_envs=8]",
]


def smoke_arguments(args: argparse.Namespace) -> argparse.Namespace:
    import torch

    from agentalign.models.checkpoint import save_step
    from agentalign.models.policy import Policy, get_config

    run = args.out / "smoke-run"
    if not (run / "sft").exists():
        torch.manual_seed(0)
        policy = Policy(get_config("tiny", n_layer=1, n_embd=32, context=8)).eval()
        for stage in ("sft", "pretrain"):
            save_step(run / stage, policy, policy.config.to_dict(), kind="policy",
                      stage=stage, step=0)
    args.run, args.seeds, args.labels, args.every, args.rounds = run, [0], 20, 5, 2
    args.first = args.first or ("campfire", 6)  # teaching in steps: 6 labels, then 14
    args.heldout_pairs, args.episodes = 40, 20
    return args


if __name__ == "__main__":
    sys.exit(main())
