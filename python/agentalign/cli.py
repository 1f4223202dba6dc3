"""`agentalign ...`: one command per stage. Each imports its stage lazily, so --help is instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from agentalign import __version__
from agentalign.errors import UserError


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

    overrides = list(args.overrides)
    for key in ("episodes", "workers", "num_envs", "seed", "population"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    config = load_config("collect", args.config, overrides, sections={"players": "players"})
    summary = collect(config, args.out, progress=not args.no_progress)
    print(format_summary(summary))
    print(f"collected {summary['new_steps']:,} new frames in {summary['seconds']:.1f} s "
          f"into {args.out}")


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
    p.add_argument("--seed", type=int, help="corpus seed (default 0)")
    _config_args(p)
    p.set_defaults(func=cmd_collect)
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
