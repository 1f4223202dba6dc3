"""A studio job's process: `python -m agentalign.studio.job JOB_DIR`.

The studio starts it in its own process group and reads nothing back but files: JOB_DIR/job.json
(what to do; its `state` and `step` updated here), JOB_DIR/events.jsonl (the stages' structured
events, `agentalign.events`, one JSON line each; the stages run without progress bars, whose
progress arrives there) and log.txt (what the stages print). Every step
is resumable (recorded corpora are reused, the stages resume from their checkpoints, export is
atomic), so a job whose studio died is simply started again.

Kinds:
- pool: record the SFT (spawns, anywhere, along its own runs) and pre-trained pools and their
  features;
- align: reward model on the personality's studio labels (agent init), align the SFT agent (or
  the policy the job names: another personality's newest) to it, export the personality with a
  card that records how it was taught (with `draws` > 1 in stages.align, also which RL draw the
  reward model kept), then record the aligned personality's rollouts into the
  pool (with pool.handoff_episodes, also its runs handed to the pre-trained agent part way).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from agentalign.atomic import write_json_atomic

JOB = "job.json"
EVENTS = "events.jsonl"


def update(job_dir: Path, **fields: Any) -> dict[str, Any]:
    job = json.loads((job_dir / JOB).read_text())
    job.update(fields)
    write_json_atomic(job_dir / JOB, job)
    return job


def main(job_dir: Path) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see agentalign.cli
    from agentalign import events
    from agentalign.errors import UserError

    job = json.loads((job_dir / JOB).read_text())
    stream = open(job_dir / EVENTS, "a", buffering=1)  # noqa: SIM115 (closed below)
    lock = threading.Lock()

    def send(event: dict[str, Any]) -> None:
        with lock:
            stream.write(json.dumps(event) + "\n")

    events.set_sink(send)
    update(job_dir, state="running", pid=os.getpid(), error=None)
    try:
        if job["kind"] == "pool":
            run_pool(job, job_dir)
        elif job["kind"] == "align":
            run_align(job, job_dir)
        else:
            raise UserError(f"unknown job kind {job['kind']!r}")
        update(job_dir, state="done", step="done")
        return 0
    except UserError as e:
        update(job_dir, state="failed", error=str(e))
        print(f"studio job: error: {e}", file=sys.stderr, flush=True)
        return 2
    except Exception as e:
        update(job_dir, state="failed", error=f"{type(e).__name__}: {e}")
        traceback.print_exc()
        return 1
    finally:
        events.set_sink(None)
        stream.close()


def _step(job_dir: Path, name: str) -> None:
    from agentalign import events

    update(job_dir, step=name)
    events.state(f"studio:{name}", "started")


def run_pool(job: dict[str, Any], job_dir: Path) -> None:
    from agentalign.data.shards import Corpus
    from agentalign.studio.pool import PoolPart, feature_kind, feature_path, record, write_features
    from agentalign.studio.state import StudioState

    run, labels, pool = Path(job["run"]), Path(job["labels"]), job["pool"]
    kind = feature_kind(pool)
    parts = [PoolPart("sft", run / "sft", pool["sft_episodes"], pool["seed"]),
             PoolPart("anywhere", run / "sft", pool["anywhere_episodes"], pool["seed"] + 1,
                      anywhere=pool["anywhere"]),
             PoolPart("base", run / "pretrain", pool["base_episodes"], pool["seed"] + 2),
             PoolPart("along", run / "sft", pool.get("along_episodes", 0), pool["seed"] + 4,
                      along=1.0)]
    state = StudioState(labels)
    try:
        for part in parts:  # finished corpora and features are reused: a rerun completes
            if part.episodes == 0:
                continue
            _step(job_dir, f"pool-{part.kind}")
            corpus = record(part, labels, num_envs=pool["num_envs"], progress=False)
            write_features(corpus, run / "sft", labels, kind)
            state.add_corpus(part.corpus, part.kind, corpus.num_episodes)
        for row in state.pool():  # e.g. aligned runs, after `pool.features` changed kind
            if not feature_path(labels, row["corpus"], kind).exists():
                _step(job_dir, f"features-{row['corpus']}")
                write_features(Corpus(labels / row["corpus"]), run / "sft", labels, kind)
    finally:
        state.close()


def run_align(job: dict[str, Any], job_dir: Path) -> None:
    from agentalign.config import load
    from agentalign.export.export_config import ExportSettings
    from agentalign.export.personality import run as export
    from agentalign.models.checkpoint import config_from_info, read_info
    from agentalign.models.reward import load_reward_function
    from agentalign.studio.pool import PoolPart, feature_kind, record, write_features
    from agentalign.studio.state import StudioState
    from agentalign.train.align import run as align
    from agentalign.train.align_config import AlignSettings
    from agentalign.train.reward import run as reward
    from agentalign.train.reward_config import RewardSettings

    run, labels = Path(job["run"]), Path(job["labels"])
    name, stages = job["personality"], job["stages"]
    start = Path(job["policy"]) if job.get("policy") else run / "sft"  # SFT or a personality
    # align to the personality's intent when it names one (its stages then also report how
    # often the intent is satisfied), else to its pad; the reward model is the studio's either way
    intent = job["card"].get("intent")
    target = intent or job["pad"]
    seed = job["pool"]["seed"]
    _step(job_dir, "reward")
    reward(load(RewardSettings, None, [f"seed={seed}", *stages.get("reward", [])]), labels,
           name, job_dir / "reward", run / "pretrain", progress=False)
    _step(job_dir, "align")
    sft_config = config_from_info(read_info(run / "sft", kind="policy")[1], run / "sft")
    score = load_reward_function(job_dir / "reward", sft_config, name)
    aligned = align(load(AlignSettings, None, [f"prefft.seed={seed}", f"rl.seed={seed}",
                                               f"prefft.explore_policy={run / 'pretrain'}",
                                               *stages.get("align", [])]),
                    start, score, target, job_dir / "align", progress=False)
    _step(job_dir, "export")
    out = Path(job["studio"]) / "personalities"
    result = export(load(ExportSettings, None, [f"seed={seed}", *stages.get("export", [])]),
                    job_dir / "align", name, out, target)
    _step(job_dir, "evaluate")
    from agentalign.evaluate import run as evaluate
    from agentalign.evaluate_config import EvaluateSettings

    evaluate(load(EvaluateSettings, None, [
        f"seed={seed}", "gif_episodes=0", *([f"intent={intent}"] if intent else []),
        *stages.get("evaluate", [])]), job_dir / "align", job_dir / "eval", progress=False)
    found = json.loads((job_dir / "eval" / "results.json").read_text())
    shutil.copyfile(job_dir / "eval" / "heatmap.png", out / f"{name}.heatmap.png")
    card = {**result.card, "studio": {**job["card"], "evaluation": {
        "episodes": found.get("episodes"), "rates": found.get("rates"),
        "intent": found.get("intent"), "seed": seed}}}
    if aligned.pick:  # several RL draws: which one the reward model kept, and their scores
        card["studio"]["rl_draws"] = {
            "picked": aligned.pick["draws"][aligned.pick["picked"]]["seed"],
            "mean_scores": {str(d["seed"]): round(d["mean_score"], 3)
                            for d in aligned.pick["draws"]},
            "episodes": aligned.pick["episodes"]}
    write_json_atomic(out / f"{name}.json", card)
    pool = job["pool"]
    parts = [PoolPart("aligned", job_dir / "align", pool["aligned_episodes"], seed + 3,
                      personality=name, tag=job_dir.name, along=pool.get("aligned_along", 0.0),
                      reference=run / "sft"),
             PoolPart("handoff", job_dir / "align", pool.get("handoff_episodes", 0), seed + 5,
                      personality=name, tag=job_dir.name, then=run / "pretrain",
                      handoff_within=pool.get("handoff_within", 0))]
    for part in parts:
        if not part.episodes:
            continue
        _step(job_dir, f"pool-{part.kind}")
        corpus = record(part, labels, num_envs=pool["num_envs"], progress=False)
        write_features(corpus, run / "sft", labels, feature_kind(pool))
        state = StudioState(labels)
        try:
            state.add_corpus(part.corpus, part.kind, corpus.num_episodes, personality=name)
        finally:
            state.close()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
