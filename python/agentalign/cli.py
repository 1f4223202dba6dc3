"""`agentalign ...`: one command per stage. Each imports its stage lazily, so --help is instant."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from agentalign import __version__
from agentalign.envs.factory import ENV_HELP, check_env_spec
from agentalign.errors import UserError


def _env_args(parser: argparse.ArgumentParser, num_envs: str | None = None) -> None:
    """`--env` (and `--num-envs`, unless the command has its own), as every command that runs
    episodes takes them; `_check_env` refuses a bad value before any work starts."""
    parser.add_argument("--env", help=ENV_HELP)
    if num_envs is not None:
        parser.add_argument("--num-envs", type=int, help=num_envs)


def _check_env(args: argparse.Namespace) -> None:
    if getattr(args, "env", None) is not None:
        check_env_spec(args.env)


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="a YAML file whose keys override the defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override one config key, e.g. "
                        "--set players.corpus.mixture.idler=0.1 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def cmd_preview(args: argparse.Namespace) -> None:
    from agentalign.envs.preview import preview

    paths = preview(args.out, layout=args.layout, player=args.player, target=args.target,
                    seed=args.seed, height=args.height, width=args.width)
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")


def cmd_collect(args: argparse.Namespace) -> None:
    from agentalign.config import load_config
    from agentalign.data.collect import collect, format_summary

    _check_env(args)
    overrides = list(args.overrides)
    for key in ("episodes", "workers", "num_envs", "seed", "population", "env"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    config = load_config("collect", args.config, overrides, sections={"players": "players"})
    summary = collect(config, args.out, progress=not args.no_progress)
    print(format_summary(summary))
    print(f"collected {summary['new_steps']:,} new frames in {summary['seconds']:.1f} s "
          f"into {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from agentalign.config import load_config
    from agentalign.evaluate import evaluate, format_table

    _check_env(args)
    overrides = list(args.overrides)
    for key in ("episodes", "num_envs", "seed", "env"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.greedy:
        overrides.append("greedy=true")
    if args.offlane:
        overrides.append("starts=offlane")
    config = load_config("evaluate", args.config, overrides)
    results = evaluate(args.checkpoint, config, args.out, progress=not args.no_progress)
    ckpt, speed = results["checkpoint"], results["throughput"]
    print(f"{ckpt['path']} (stage {ckpt['stage']}, step {ckpt['step']}): "
          f"{results['episodes']} episodes from {config['starts']} starts, "
          f"{'greedy' if config['greedy'] else 'sampled'} actions, "
          f"{speed['episodes_per_s']:.1f} episodes/s")
    print(format_table(results))
    print(f"wrote results.json, heatmap.png and {len(results['files']['gifs'])} GIFs "
          f"to {args.out}")


def _training_process() -> None:
    """Settings that must precede `import torch`. OpenMP threads that spin while they wait
    (libgomp's default) collapse when other jobs share the cores: the tiny policy trained at
    ~300 frames/s instead of ~4,000 with OMP_WAIT_POLICY=PASSIVE on our busy 2-core machine."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_pretrain(args: argparse.Namespace) -> None:
    _training_process()
    from agentalign.config import load_config
    from agentalign.train.bc import format_metrics, pretrain

    config = load_config("pretrain", args.config, args.overrides)
    metrics = pretrain(config, args.corpus, args.out, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(format_metrics(metrics))
        print(f"checkpoint: {args.out / metrics['checkpoint']}")


def cmd_sft(args: argparse.Namespace) -> None:
    _training_process()
    from agentalign.config import load_config
    from agentalign.train.bc import format_metrics, sft

    config = load_config("sft", args.config, args.overrides)
    metrics = sft(config, args.demos, args.out, init=args.init, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_metrics(metrics))
        print(f"checkpoint: {args.out / metrics['checkpoint']}")


def _int_list(text: str) -> tuple[int, ...]:
    """'3,64,64' -> (3, 64, 64), for shape options."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def cmd_export(args: argparse.Namespace) -> None:
    from agentalign.export.personality import export_personality, format_rates

    card, path = export_personality(args.checkpoint, args.name, args.out, target=args.target,
                                    episodes=args.episodes, seed=args.seed,
                                    num_envs=args.num_envs, deterministic=args.deterministic)
    measured = card["measured"]
    print(f"wrote {path} and {path.with_suffix('.json').name}: stage {card['stage']}, "
          f"target {card['target']}, opset {card['opset']}, memory {card['memory_size']} floats")
    print(f"outcomes over {measured['episodes']} episodes ({measured['actions']} actions, seed "
          f"{measured['seed']}), 95% Wilson intervals:")
    print(format_rates(measured["rates"]))


def cmd_check_model(args: argparse.Namespace) -> None:
    from agentalign.export.contract import ContractError, check_model, errors

    findings = check_model(args.file, obs_shape=args.obs_shape, branches=args.branches)
    for finding in findings:
        print(finding)
    if bad := errors(findings):
        raise ContractError(f"{args.file}: {len(bad)} error(s): Unity's ML-Agents would not run "
                            "this model as is")
    print(f"ok: {args.file} meets the ML-Agents inference contract (obs_0 "
          f"{list(args.obs_shape)}, branches {list(args.branches)})")


def cmd_play(args: argparse.Namespace) -> None:
    from agentalign.export.personality import format_rates, play

    results = play(args.file, args.out, episodes=args.episodes, seed=args.seed,
                   num_envs=args.num_envs, deterministic=args.deterministic, gifs=args.gifs)
    print(f"{args.file}: {results['episodes']} episodes ({results['actions']} actions, seed "
          f"{results['seed']}), mean length {results['mean_length']:.1f} decisions, "
          "95% Wilson intervals:")
    print(format_rates(results["rates"]))
    if "warning" in results:
        print(f"warning: {results['warning']}")
    print(f"wrote results.json and {len(results['files'])} GIF(s) to {args.out}")


def cmd_import_demo(args: argparse.Namespace) -> None:
    from agentalign.data.demo import import_demos

    result = import_demos(args.files, args.out)
    for item in result["files"]:
        if "skipped" in item:
            print(f"{item['file']}: skipped ({item['skipped']})")
            continue
        spec = item["spec"]
        frames = spec["frames"]["shape"]
        actions = spec["actions"]
        print(f"{item['file']}: {item['episodes']} episodes, {item['steps']} steps -> "
              f"{item['shard']} (frames {'x'.join(map(str, frames))} from "
              f"{spec['frames']['sensor']}, discrete {actions['discrete_branches']}"
              + (f", {actions['continuous']} continuous" if actions["continuous"] else "")
              + ")")
    print(f"corpus: {result['out']}")


def cmd_unity_scene(args: argparse.Namespace) -> None:
    from agentalign.unityproj import check, generate

    if args.check:
        problems = check(args.project, args.layout)
        if problems:
            raise UserError(f"the Unity scene is out of date ({len(problems)} files; run "
                            f"agentalign unity-scene): " + "; ".join(problems[:3]))
        print(f"{args.project}: the scene and its assets are up to date with the layout")
        return
    changed = generate(args.project, args.layout)
    for path in changed:
        print(f"wrote {path}")
    print(f"{args.project}: {len(changed)} files changed" if changed
          else f"{args.project}: already up to date")


def cmd_pipeline(args: argparse.Namespace) -> None:
    from agentalign.config import load_config
    from agentalign.train.pipeline import format_timings, run_pipeline

    _check_env(args)
    overrides = list(args.overrides)
    if args.targets:
        overrides.append(f"targets=[{','.join(args.targets)}]")
    if args.env is not None:
        overrides.append(f"env={args.env}")
    config = load_config("pipeline", args.config, overrides)
    config["quiet"] = bool(args.no_progress)
    out = args.out or Path("runs") / args.name
    state = run_pipeline(config, out)
    print(format_timings(state))
    print(f"report: {out / 'report.html'}")


def cmd_report(args: argparse.Namespace) -> None:
    from agentalign.evaluate.report import build_report

    if not (args.run / "pipeline.json").exists():
        raise UserError(f"{args.run}: no pipeline.json here; pass a run folder made by "
                        "`agentalign pipeline`")
    print(f"wrote {build_report(args.run)}")


def cmd_label(args: argparse.Namespace) -> None:
    from agentalign.train.label import LabelSettings, format_summary, label

    _check_env(args)
    settings = LabelSettings(**{key: getattr(args, key) for key in (
        "train_episodes", "heldout_episodes", "pairs", "heldout_pairs", "temperature", "seed",
        "num_envs", "env", "num_threads") if getattr(args, key) is not None})
    result = label(args.policy, args.out, args.target, settings, progress=not args.no_progress)
    print(format_summary(result))
    print(f"label store: {args.out / 'labels.sqlite'} ({result['seconds']:.1f} s)")


def cmd_reward(args: argparse.Namespace) -> None:
    from agentalign.config import load_config
    from agentalign.train.reward import format_metrics, format_study, study, train_reward

    config = load_config("reward", args.config, args.overrides)
    if args.study:
        if args.init is None:
            raise UserError("reward --study compares inits: give the pre-trained --init")
        results = study(config, args.labels, args.target, args.init, args.out,
                        progress=not args.no_progress)
        print(format_study(results))
        print(f"wrote study.json, study.md and study.png to {args.out} "
              f"({results['wall_seconds']:.0f} s of training and evaluation)")
        return
    metrics = train_reward(config, args.labels, args.target, args.out, args.init,
                           args.labels_used, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_metrics(metrics))
        print(f"checkpoint: {args.out / metrics['checkpoint']}")


def cmd_serve(args: argparse.Namespace) -> None:
    from agentalign.server.app import ServerConfig, serve

    token = os.environ.get("AGENTALIGN_SERVER_TOKEN")
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
    serve(ServerConfig(personalities=args.personalities, runs=args.runs, host=args.host,
                       port=args.port, token=token or None, tls_cert=args.tls_cert,
                       tls_key=args.tls_key, max_sessions=args.max_sessions,
                       idle_timeout_s=args.idle_timeout, max_batch=args.max_batch,
                       batch_window_s=args.batch_window_ms / 1000.0))


def _env_overrides(args: argparse.Namespace) -> list[str]:
    """`env=...` / `num_envs=...` config overrides from --env / --num-envs, checked first."""
    _check_env(args)
    return [f"{key}={getattr(args, key)}" for key in ("env", "num_envs")
            if getattr(args, key) is not None]


def _reward_for(args: argparse.Namespace) -> tuple[Callable, str]:
    """The reward model at --reward as a reward function, checked against --policy's config."""
    from agentalign.models.checkpoint import load_policy
    from agentalign.train.prefft import check_target, load_reward_function

    check_target(args.target)
    policy, _ = load_policy(args.policy)
    return load_reward_function(args.reward, policy.config, args.target)


def _run_alignment_stage(args: argparse.Namespace, stage: Callable[..., dict],
                         config: dict, format_metrics: Callable[[dict], str]) -> None:
    """What prefft, rl and align share: the reward model at --reward, the stage, its summary."""
    reward_fn, reward_id = _reward_for(args)
    metrics = stage(config, args.policy, reward_fn, args.target, args.out, reward_id,
                    progress=not args.no_progress)
    print(format_metrics(metrics))
    print(f"checkpoint: {args.out / metrics['checkpoint']}")


def cmd_prefft(args: argparse.Namespace) -> None:
    from agentalign.config import load_config
    from agentalign.train.prefft import format_metrics, prefft

    config = load_config("prefft", args.config, args.overrides + _env_overrides(args))
    _run_alignment_stage(args, prefft, config, format_metrics)


def cmd_rl(args: argparse.Namespace) -> None:
    from agentalign.config import load_config
    from agentalign.train.rl import format_metrics, rl

    config = load_config("rl", args.config, args.overrides + _env_overrides(args))
    _run_alignment_stage(args, rl, config, format_metrics)


def cmd_align(args: argparse.Namespace) -> None:
    from agentalign.train.align import align, format_metrics, load_align_config

    config = load_align_config(args.overrides + [
        f"{stage}.{item}" for stage in ("prefft", "rl") for item in _env_overrides(args)])
    _run_alignment_stage(args, align, config, format_metrics)


def _alignment_args(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--policy", type=Path, required=True, metavar="CHECKPOINT",
                        help="the policy to align: a checkpoint folder or a stage folder")
    parser.add_argument("--reward", type=Path, required=True, metavar="CHECKPOINT",
                        help="the target's reward model (from `agentalign reward`)")
    parser.add_argument("--target", required=True, help="the pad: left, middle or right")
    parser.add_argument("--out", type=Path, default=Path(out), help="stage folder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentalign", description="Align game agents like large language models: "
        "pre-train, fine-tune, learn a reward, align, and ship personalities to the engine.")
    parser.add_argument("--version", action="version", version=f"agentalign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("preview", help="draw the island: a top-down map and an episode GIF",
                       description="Write map.png (top-down, pads and spawns marked, one "
                       "episode's path) and episode.gif (that episode from the agent's camera).")
    p.add_argument("--out", type=Path, default=Path("runs/preview"), help="output folder")
    p.add_argument("--layout", default="jumppad_island", help="layout name or .json path")
    p.add_argument("--player", default="pad_seeker", help="scripted player type to film")
    p.add_argument("--target", default="middle", help="pad the pad_seeker heads for")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("collect", help="record a gameplay corpus from scripted players",
                       description="Record episodes played by the scripted player population "
                       "into shards (resumable: rerun the same command to finish an "
                       "interrupted corpus). Defaults: configs/collect.yaml + players.yaml.")
    p.add_argument("--out", type=Path, default=Path("runs/corpus"), help="corpus folder")
    p.add_argument("--population", choices=["corpus", "direct"], default=None,
                   help="corpus = gameplay mixture, direct = curated straight-to-pad demos")
    p.add_argument("--episodes", type=int, help="number of episodes (default 3200)")
    p.add_argument("--workers", type=int, help="worker processes (default 2)")
    p.add_argument("--num-envs", type=int, help="environments per worker (default 32)")
    _env_args(p)
    p.add_argument("--seed", type=int, help="corpus seed (default 0)")
    _config_args(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("evaluate", help="outcome rates of a policy, with a heatmap and GIFs",
                       description="Play episodes with a policy checkpoint (sampled actions, "
                       "as deployed, unless --greedy) and write results.json (outcome rates "
                       "with 95%% Wilson intervals, overall and per spawn), heatmap.png and "
                       "episode GIFs. Defaults: configs/evaluate.yaml.")
    p.add_argument("checkpoint", type=Path, help="a policy checkpoint folder or stage folder")
    p.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="output folder")
    p.add_argument("--episodes", type=int, help="episodes to count (default 200)")
    p.add_argument("--num-envs", type=int, help="environments stepped together (default 64)")
    _env_args(p)
    p.add_argument("--seed", type=int, help="evaluation seed (default 0)")
    p.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling")
    p.add_argument("--offlane", action="store_true", help="start displaced or turned away from "
                   "the demonstration lanes (the fixed set in configs/evaluate.yaml)")
    _config_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("pretrain", help="pre-train the policy by imitating the gameplay corpus",
                       description="Behaviour cloning of the whole gameplay corpus from a random "
                       "init. Resumes from the newest checkpoint in --out (rerun the same "
                       "command after an interruption) and skips a finished run. Runs on N "
                       "processes with `torchrun --nproc_per_node N -m agentalign.cli pretrain "
                       "...`. Defaults: configs/pretrain.yaml.")
    p.add_argument("--corpus", type=Path, default=Path("runs/corpus"),
                   help="gameplay corpus folder (from `agentalign collect`)")
    p.add_argument("--out", type=Path, default=Path("runs/pretrain"), help="stage folder")
    _config_args(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("sft", help="fine-tune the policy on curated direct demos",
                       description="Supervised fine-tuning on the curated demos (made by "
                       "`agentalign collect --population direct --episodes 200`), from a "
                       "pre-trained checkpoint (--init) or from a random init (--from-scratch, "
                       "the ablation). Resumable like pretrain. Defaults: configs/sft.yaml.")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", type=Path, metavar="CHECKPOINT",
                       help="pre-trained policy: a checkpoint folder or the pretrain folder")
    start.add_argument("--from-scratch", action="store_true",
                       help="start from a random init instead (the paper's ablation)")
    p.add_argument("--demos", type=Path, default=Path("runs/demos"), help="demo corpus folder")
    p.add_argument("--out", type=Path, default=Path("runs/sft"), help="stage folder")
    _config_args(p)
    p.set_defaults(func=cmd_sft)
    p = sub.add_parser("export", help="export a policy as a personality (ONNX + card)",
                       description="Write NAME.onnx (one decision per call, in the ML-Agents "
                       "inference contract: drop it into Behavior Parameters) and NAME.json "
                       "(the card: source, spec, memory, and outcome rates measured by running "
                       "the exported file in the island).")
    p.add_argument("checkpoint", type=Path, help="a policy checkpoint folder or stage folder")
    p.add_argument("--name", required=True, help="personality name, e.g. left-runner "
                   "(letters, digits, - and _)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/<run>/personalities "
                   "for a checkpoint inside a run, else runs/personalities)")
    p.add_argument("--target", choices=["left", "middle", "right"],
                   help="the pad it was aligned to (default: the checkpoint's meta, if any)")
    p.add_argument("--episodes", type=int, default=200, help="episodes measured for the card")
    p.add_argument("--num-envs", type=int, default=64, help="environments stepped together")
    p.add_argument("--seed", type=int, default=0, help="seed of the island and the sampling")
    p.add_argument("--deterministic", action="store_true", help="export for Unity's "
                   "Deterministic Inference: both action outputs are the argmax")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("check-model", help="check an ONNX file against ML-Agents' loader",
                       description="Check FILE against the rules Unity's ML-Agents loader "
                       "applies (constants, version, inputs and shapes for the island's camera, "
                       "branch sizes, memory) and print each finding as the Behavior Parameters "
                       "inspector words it. Exits non-zero if there are errors.")
    p.add_argument("file", type=Path, help="an .onnx file")
    p.add_argument("--obs-shape", type=_int_list, default=(3, 64, 64), metavar="C,H,W",
                   help="the camera sensor's shape (default 3,64,64)")
    p.add_argument("--branches", type=_int_list, default=(9, 3), metavar="N,N",
                   help="discrete branch sizes (default 9,3)")
    p.set_defaults(func=cmd_check_model)

    p = sub.add_parser("play", help="preview a personality in the island with onnxruntime",
                       description="Run FILE with onnxruntime in the island, carrying its "
                       "memory as Unity does (zeros at each episode start, recurrent_out -> "
                       "recurrent_in); write episode.gif and results.json (outcome rates with "
                       "95%% Wilson intervals).")
    p.add_argument("file", type=Path, help="a personality .onnx file")
    p.add_argument("--episodes", type=int, default=20, help="episodes to play")
    p.add_argument("--out", type=Path, default=Path("runs/play"), help="output folder")
    p.add_argument("--num-envs", type=int, default=16, help="environments stepped together")
    p.add_argument("--seed", type=int, default=0, help="seed of the island and the sampling")
    p.add_argument("--deterministic", action="store_true",
                   help="take deterministic_discrete_actions (Unity's Deterministic Inference)")
    p.add_argument("--gifs", type=int, default=1, help="episodes to film (the first ones)")
    p.set_defaults(func=cmd_play)

    p = sub.add_parser("import-demo", help="convert ML-Agents .demo recordings into shards",
                       description="Read Unity ML-Agents demonstration files (recorded human "
                       "play; any layout ML-Agents has written) into a corpus of shards. Each "
                       "shard keeps its file's spec (sensors, shapes, actions); training "
                       "refuses a corpus that does not fit the policy. Rerunning skips files "
                       "already imported.")
    p.add_argument("files", nargs="+", type=Path, help=".demo files")
    p.add_argument("--out", type=Path, default=Path("runs/demos"), help="corpus folder")
    p.set_defaults(func=cmd_import_demo)
    p = sub.add_parser("unity-scene", help="write the Unity scene of the island from the layout",
                       description="Regenerate unity_project/Assets/AgentAlign/Scenes/"
                       "JumppadIsland.unity, its materials and textures, the build's scene list "
                       "and missing .meta files from the layout file (the editor's AgentAlign > "
                       "Regenerate Scene From Layout runs this). See docs/unity_project.md.")
    p.add_argument("--project", type=Path, default=Path("unity_project"),
                   help="the Unity project folder (default: unity_project)")
    p.add_argument("--layout", default="jumppad_island", help="layout name or .json path")
    p.add_argument("--check", action="store_true", help="change nothing; fail if the committed "
                   "files differ from what the layout gives")
    p.set_defaults(func=cmd_unity_scene)
    p = sub.add_parser("pipeline", help="the whole recipe: collect to personalities and report",
                       description="Collect the corpus and demos, pre-train, fine-tune, label "
                       "preferences, train reward models, align each target, evaluate every "
                       "stage, export the personalities and write report.html. Resumable: rerun "
                       "the same command to continue. Defaults: configs/pipeline.yaml.")
    p.add_argument("--name", default="default", help="run name: the run goes to runs/NAME")
    p.add_argument("--out", type=Path, help="run folder (default runs/NAME)")
    p.add_argument("--targets", nargs="+", choices=["left", "middle", "right"],
                   help="pads to align personalities to (default: left right)")
    p.add_argument("--env", help=ENV_HELP + "; passed to every stage that runs episodes")
    _config_args(p)
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("report", help="(re)write a run's report.html",
                       description="Write RUN/report.html from RUN/pipeline.json and the "
                       "artifacts it points to: a self-contained page for a browser.")
    p.add_argument("run", type=Path, help="a run folder made by agentalign pipeline")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("label", help="roll out the SFT agent and label pairs of its runs",
                       description="Roll out the SFT policy (sampled actions) into two corpora, "
                       "OUT/rollouts-train and OUT/rollouts-heldout (separate seeds), pair their "
                       "episodes and label the pairs with the synthetic labeller for each "
                       "--target, in OUT/labels.sqlite (ties dropped). Rerun with another "
                       "--target to add its labels to the same store.")
    p.add_argument("--policy", type=Path, required=True, metavar="SFT_CHECKPOINT",
                   help="the SFT policy: a checkpoint folder or the sft stage folder")
    p.add_argument("--out", type=Path, default=Path("runs/labels"), help="output folder")
    p.add_argument("--target", action="append", required=True,
                   choices=["left", "middle", "right"], help="pad to label for (repeatable)")
    p.add_argument("--train-episodes", type=int, help="train rollouts (default 400)")
    p.add_argument("--heldout-episodes", type=int, help="held-out rollouts (default 400)")
    p.add_argument("--pairs", type=int, help="train pairs (default 5000)")
    p.add_argument("--heldout-pairs", type=int, help="held-out pairs (default 2000)")
    p.add_argument("--temperature", type=float, help="labeller noise (default 0: exact)")
    p.add_argument("--seed", type=int, help="rollout and pairing seed (default 0)")
    p.add_argument("--num-envs", type=int, help="environments stepped together (default 64)")
    p.add_argument("--num-threads", type=int, help="torch CPU threads while acting (default 1; "
                   "0 = every core)")
    _env_args(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("reward", help="train the reward model on preference labels",
                       description="Train the reward model (the policy's trunk + a scalar head) "
                       "with the Bradley-Terry loss on the first N train labels of a target; "
                       "report held-out accuracy (all, easy = different outcomes, hard = same "
                       "outcome) in OUT/metrics.json. Resumable like pretrain. With --study, run "
                       "the label-scaling study instead (study.json, study.md, study.png). "
                       "Defaults: configs/reward.yaml.")
    p.add_argument("--labels", type=Path, default=Path("runs/labels"),
                   help="a folder made by `agentalign label`")
    p.add_argument("--target", required=True, choices=["left", "middle", "right"])
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", type=Path, metavar="PRETRAINED_CHECKPOINT",
                       help="agent-encoder init: the pre-trained policy's checkpoint or folder")
    start.add_argument("--random-init", action="store_true", help="a random trunk instead")
    p.add_argument("--labels-used", type=int, help="train on the first N labels (default all)")
    p.add_argument("--study", action="store_true", help="the label-scaling study (both inits, "
                   "the label counts and seeds of the config's study section)")
    p.add_argument("--out", type=Path, default=Path("runs/reward"), help="stage folder")
    _config_args(p)
    p.set_defaults(func=cmd_reward)
    p = sub.add_parser("serve", help="serve personalities and training runs over gRPC",
                       description="The agent server (docs/server.md): play the personalities "
                       "of a folder for many sessions, batched; start and watch training "
                       "runs; gRPC health and reflection. Binds 127.0.0.1 unless a token is "
                       "set (AGENTALIGN_SERVER_TOKEN or --token-file). JSON logs on stderr.")
    p.add_argument("--personalities", type=Path, default=Path("runs/personalities"),
                   help="folder of NAME.onnx + NAME.json (from agentalign export)")
    p.add_argument("--runs", type=Path, default=Path("runs/server"),
                   help="folder of the training runs started through the server")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--token-file", type=Path, help="file holding the bearer token")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--max-sessions", type=int, default=256)
    p.add_argument("--idle-timeout", type=float, default=300.0,
                   help="seconds before an idle session is closed")
    p.add_argument("--max-batch", type=int, default=64, help="most decisions in one pass")
    p.add_argument("--batch-window-ms", type=float, default=2.0,
                   help="how long a decision may wait for others to join its batch")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("prefft", help="preference fine-tuning on the best-scored rollouts",
                       description="ReST-like: sample rollouts from the policy, score them with "
                       "the reward model, fine-tune on the top fraction (a few rounds), then "
                       "measure the true outcome rates. Resumable; a finished run is skipped. "
                       "Defaults: configs/prefft.yaml.")
    _alignment_args(p, "runs/prefft")
    _env_args(p, "environments stepped together while sampling (default 64)")
    _config_args(p)
    p.set_defaults(func=cmd_prefft)

    p = sub.add_parser("rl", help="RL (RLOO) against the reward model with a KL penalty",
                       description="On-policy RLOO: k sampled runs per start, reward = score - "
                       "kl_coef * KL to the starting policy, logged to TensorBoard with the true "
                       "outcome rates. Resumable; a finished run is skipped. Defaults: "
                       "configs/rl.yaml.")
    _alignment_args(p, "runs/rl")
    _env_args(p, "environments stepped together while acting (default 64)")
    _config_args(p)
    p.set_defaults(func=cmd_rl)

    p = sub.add_parser("align", help="align a policy to a target pad: prefft, then rl",
                       description="Preference fine-tuning (OUT/prefft) then RL (OUT/rl); the "
                       "aligned policy is saved in OUT/checkpoints with its target. Resumable: "
                       "a finished sub-stage is skipped. Settings: --set prefft.KEY=VALUE, "
                       "--set rl.KEY=VALUE (configs/prefft.yaml, configs/rl.yaml).")
    _alignment_args(p, "runs/align")
    _env_args(p, "environments stepped together, in prefft and rl (default 64)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override one key, e.g. --set rl.iterations=10 "
                   "(repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_align)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except UserError as e:
        print(f"agentalign {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"agentalign {args.command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
