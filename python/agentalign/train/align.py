"""`agentalign align`: preference fine-tuning, then RL, against one target's reward model.

out/prefft (train.prefft) fine-tunes the SFT policy on its best-scored rollouts; out/rl (train.rl)
starts from that policy, which is also its KL reference. Each sub-stage resumes itself and skips
itself once finished, so rerunning the same command finishes an interrupted alignment. The
result is saved as out/checkpoints/step-N (stage "align", meta target: the ONNX export puts it
on the personality card) with out/metrics.json.

RL's own seed can decide where it ends: with one reward model that pays an intent, five RL seeds
gave 0.0 to 55.8% (docs/results.md, "The studio"). With `draws` K > 1, RL runs K times (out/rl,
out/rl-1, ..., seeds rl.seed + i) and the aligned policy is the draw whose runs from the spawns
(`pick_episodes`, a seed stream of their own) the reward model scores highest on average: the
reward model picks, not ground truth (out/pick.json). `second_iterations` > 0 then runs a second
RL from the picked policy (out/rl-I-second for draw I, so a rerun with more draws that picks
another keeps both; the picked policy is its KL reference and its along states are its own
runs), which carries a route RL found part way to the whole spawn set. The draws run side by
side in `draw_workers` worker processes (train.draws; 0: one per core), the same draws as one
after another.

The target is a designer intent by name (`envs.intents`; `intents` names its file, default the
packaged one): a pad, or, say, `campfire-middle`. For an intent other than a plain pad the
checkpoint's meta also records `intent` (name, description and the file it came from), so
`agentalign export` can describe it and measure its satisfaction, and the evaluations report
that satisfaction beside the outcome rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.atomic import write_json_atomic
from agentalign.envs.layout import load_layout
from agentalign.errors import UserError
from agentalign.lifecycle import METRICS, StageRun, read_json, result_from
from agentalign.models.checkpoint import load_policy, save_step
from agentalign.models.reward import RewardFunction
from agentalign.rollout import intent_line, rates_line
from agentalign.rollout.cluster import Cluster
from agentalign.rollout.starts import spawn_starts
from agentalign.rollout.trajectories import sample_trajectories
from agentalign.spec import PADS
from agentalign.train import prefft, rl
from agentalign.train.align_config import AlignSettings
from agentalign.train.draws import portable, run_side_by_side, worker_count

PICK = "pick.json"
PICK_STREAM = 4_271  # seeds the runs that score the draws apart from RL's and evaluation's


@dataclass(frozen=True)
class AlignResult:
    """An aligned policy (its metrics.json)."""

    target: str
    prefft: dict[str, Any]  # evaluation, rounds, wall_seconds
    rl: dict[str, Any]  # the final RL's evaluation, iteration, score, kl, wall_seconds
    evaluation: dict[str, Any] | None  # the aligned policy's true outcome rates
    wall_seconds: float
    checkpoint: str
    pick: dict[str, Any] | None = None  # with draws > 1: each draw's score, the picked one


def run(settings: AlignSettings, policy: str | Path, reward: str | Path | RewardFunction,
        target: str, out: str | Path, *, intents: str | Path | None = None,
        progress: bool = True, cluster: Cluster | None = None) -> AlignResult:
    """Align `policy` to the intent `target` of `intents` (default: the packaged file) against
    `reward` (its reward model checkpoint, or a RewardFunction), into `out`; with `cluster`,
    prefft plays its rollouts on Ray actors and RL trains on Ray Train workers."""
    intent = prefft.target_intent(target, intents, settings.rl.layout)
    out = Path(out)
    score = prefft.reward_function(reward, policy, target)
    on = {"cluster": cluster} if cluster is not None else {}
    first = prefft.run(settings.prefft, policy, score, target, out / "prefft", intents=intents,
                       progress=progress, **on)
    folders = ["rl"] + [f"rl-{i}" for i in range(1, settings.draws)]
    jobs = [(settings.rl.replace(seed=settings.rl.seed + i), out / folder)
            for i, folder in enumerate(folders)]
    pending = [(c, f) for c, f in jobs if not (f / METRICS).exists()]  # unfinished draws
    workers = worker_count(settings.draw_workers, len(pending))
    if cluster is None and workers > 1 and portable(score):
        run_side_by_side(pending, out / "prefft", score, target, intents=intents,
                         workers=workers, progress=progress)
    draws = [rl.run(config, out / "prefft", score, target, folder, intents=intents,
                    progress=progress, **on) for config, folder in jobs]
    runs = [read_json(out / f / METRICS)["run"] for f in folders]  # each draw's identity
    identity = {"prefft": read_json(out / "prefft" / METRICS)["run"], "rl": runs[0]}
    picked, pick = 0, None
    if settings.draws > 1:
        identity["draws"], identity["pick_episodes"] = runs[1:], settings.pick_episodes
        pick = pick_draw(settings, out, folders, runs, score, draws)
        picked = pick["picked"]
    final, last = out / folders[picked], draws[picked]
    if settings.second_iterations:
        second = out / f"{folders[picked]}-second"
        last = rl.run(settings.rl.replace(iterations=settings.second_iterations,
                                          seed=settings.rl.seed + picked),
                      final, score, target, second, intents=intents, progress=progress, **on)
        final = second
        identity["second"] = read_json(final / METRICS)["run"]
    life = StageRun(out, "align", identity)
    if (done := life.begin()) is not None:
        return result_from(AlignResult, done)
    model, info = load_policy(final)
    meta = {"target": target, "stage": "align", "run": life.identity,
            "evaluation": last.evaluation}
    if target not in PADS:  # a pad's checkpoint stays as it was
        meta["intent"] = {"name": intent.name, "description": intent.description,
                          "file": None if intents is None else str(Path(intents).resolve())}
    path = save_step(out, model, model.config.to_dict(), kind="policy", stage="align",
                     step=int(info.get("step") or 0), meta=meta)
    trained = sum(d.wall_seconds for d in draws) + (
        last.wall_seconds if settings.second_iterations else 0.0)
    return result_from(AlignResult, life.finish({
        "target": target,
        "prefft": {"evaluation": first.evaluation, "rounds": first.rounds,
                   "wall_seconds": first.wall_seconds},
        "rl": {"evaluation": last.evaluation, "iteration": last.iteration,
               "score": last.score, "kl": last.kl, "wall_seconds": last.wall_seconds},
        "evaluation": last.evaluation or first.evaluation,
        "wall_seconds": first.wall_seconds + trained,
        "checkpoint": str(path.relative_to(out)),
        "pick": pick}))


def pick_draw(settings: AlignSettings, out: Path, folders: list[str], runs: list[Any],
              score: RewardFunction, draws: list[rl.RLResult]) -> dict[str, Any]:
    """The draw whose runs from the spawns the reward model scores highest on average (each draw
    plays the same starts), written to out/pick.json and read back while the draws, the reward
    and the episodes are the same (a resumed align plays nothing again); the draws' true rates
    ride along for the record only."""
    cfg = settings.rl
    seed = cfg.seed + PICK_STREAM
    of = {"episodes": settings.pick_episodes, "seed": seed, "reward": score.identity,
          "runs": runs}
    if (saved := read_json(out / PICK)) is not None and saved.get("of") == of:
        return {k: v for k, v in saved.items() if k != "of"}
    layout = load_layout(cfg.layout)
    starts = spawn_starts(layout, settings.pick_episodes, seed, cfg.spawn_jitter)
    rows = []
    for folder, draw in zip(folders, draws, strict=True):
        policy, _ = load_policy(out / folder)
        trajectories, _, _ = sample_trajectories(
            policy, starts, layout, num_envs=min(cfg.num_envs, settings.pick_episodes),
            max_steps=cfg.max_steps, seed=seed)
        scores = score([t.frames for t in trajectories], [t.actions for t in trajectories])
        if not np.isfinite(scores).all():
            raise UserError(f"the reward model scored {out / folder}'s runs with NaN or "
                            "infinity; retrain it (its checkpoint may be damaged)")
        rows.append({"folder": folder, "seed": cfg.seed + len(rows),
                     "mean_score": float(scores.mean()), "score_sd": float(scores.std()),
                     "evaluation": draw.evaluation})
    picked = int(np.argmax([r["mean_score"] for r in rows]))
    pick = {"episodes": settings.pick_episodes, "seed": seed, "draws": rows, "picked": picked}
    write_json_atomic(out / PICK, {**pick, "of": of})
    return pick


def summary(result: AlignResult) -> str:
    lines = [f"align -> {result.target}: {result.wall_seconds:.1f} s of training"]
    if result.pick:
        scored = ", ".join(f"{d['folder']} {d['mean_score']:.2f}" for d in result.pick["draws"])
        picked = result.pick["draws"][result.pick["picked"]]["folder"]
        lines.append(f"  RL draws scored by the reward model: {scored}; picked {picked}")
    for stage in ("prefft", "rl"):
        if (ev := getattr(result, stage).get("evaluation")) is not None:
            lines.append(f"  after {stage:6s}: {rates_line(ev['rates'])}")
    if result.evaluation and result.evaluation.get("intent"):
        lines.append(f"  {intent_line(result.evaluation['intent'])}")
    lines.append(f"checkpoint: {result.checkpoint}")
    return "\n".join(lines)
