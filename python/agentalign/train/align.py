"""`agentalign align`: preference fine-tuning, then RL, against one target's reward model.

out/prefft (train.prefft) fine-tunes the SFT policy on its best-scored rollouts; out/rl (train.rl)
starts from that policy, which is also its KL reference. Each sub-stage resumes itself and skips
itself once finished, so rerunning the same command finishes an interrupted alignment. The
result is saved as out/checkpoints/step-N (stage "align", meta target: the ONNX export puts it
on the personality card) with out/metrics.json.

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

from agentalign.lifecycle import METRICS, StageRun, read_json, result_from
from agentalign.models.checkpoint import load_policy, save_step
from agentalign.models.reward import RewardFunction
from agentalign.rollout import intent_line, rates_line
from agentalign.rollout.cluster import Cluster
from agentalign.spec import PADS
from agentalign.train import prefft, rl
from agentalign.train.align_config import AlignSettings


@dataclass(frozen=True)
class AlignResult:
    """An aligned policy (its metrics.json)."""

    target: str
    prefft: dict[str, Any]  # evaluation, rounds, wall_seconds
    rl: dict[str, Any]  # evaluation, iteration, score, kl, wall_seconds
    evaluation: dict[str, Any] | None  # the aligned policy's true outcome rates
    wall_seconds: float
    checkpoint: str


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
    second = rl.run(settings.rl, out / "prefft", score, target, out / "rl", intents=intents,
                    progress=progress, **on)
    life = StageRun(out, "align", {"prefft": read_json(out / "prefft" / METRICS)["run"],
                                   "rl": read_json(out / "rl" / METRICS)["run"]})
    if (done := life.begin()) is not None:
        return result_from(AlignResult, done)
    model, info = load_policy(out / "rl")
    meta = {"target": target, "stage": "align", "run": life.identity,
            "evaluation": second.evaluation}
    if target not in PADS:  # a pad's checkpoint stays as it was
        meta["intent"] = {"name": intent.name, "description": intent.description,
                          "file": None if intents is None else str(Path(intents).resolve())}
    path = save_step(out, model, model.config.to_dict(), kind="policy", stage="align",
                     step=int(info.get("step") or 0), meta=meta)
    return result_from(AlignResult, life.finish({
        "target": target,
        "prefft": {"evaluation": first.evaluation, "rounds": first.rounds,
                   "wall_seconds": first.wall_seconds},
        "rl": {"evaluation": second.evaluation, "iteration": second.iteration,
               "score": second.score, "kl": second.kl, "wall_seconds": second.wall_seconds},
        "evaluation": second.evaluation or first.evaluation,
        "wall_seconds": first.wall_seconds + second.wall_seconds,
        "checkpoint": str(path.relative_to(out))}))


def summary(result: AlignResult) -> str:
    lines = [f"align -> {result.target}: {result.wall_seconds:.1f} s of training"]
    for stage in ("prefft", "rl"):
        if (ev := getattr(result, stage).get("evaluation")) is not None:
            lines.append(f"  after {stage:6s}: {rates_line(ev['rates'])}")
    if result.evaluation and result.evaluation.get("intent"):
        lines.append(f"  {intent_line(result.evaluation['intent'])}")
    lines.append(f"checkpoint: {result.checkpoint}")
    return "\n".join(lines)
