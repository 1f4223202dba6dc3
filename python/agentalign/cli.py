"""`agentalign ...`: a thin dispatcher. Parse the command line with the command's own argument
definitions (agentalign.commands), build its settings, call its stage, print its summary.

Only the chosen command's light module is imported to parse, so `--help` is quick; its stage
(and torch) is imported to run.
"""

from __future__ import annotations

import argparse
import os
import sys

from agentalign import __version__
from agentalign.commands import WHERE, command
from agentalign.errors import UserError

SERVE_HELP = "serve personalities and training runs over gRPC"


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the `chosen` command's arguments are declared (the others are listed)."""
    parser = argparse.ArgumentParser(
        prog="agentalign", description="Align game agents like large language models: "
        "pre-train, fine-tune, learn a reward, align, and ship personalities to the engine.")
    parser.add_argument("--version", action="version", version=f"agentalign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [*WHERE, "serve"]:
        text = SERVE_HELP if name == "serve" else command(name).help
        p = sub.add_parser(name, help=text, description=text)
        if name != chosen:
            continue
        if name == "serve":
            from agentalign.server.app import arguments

            arguments(p)
        else:
            command(name).arguments(p)
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen).parse_args(argv)
    # OpenMP threads that spin while they wait (libgomp's default) collapse when other jobs
    # share the cores: before torch is imported, they are told to sleep instead.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if args.command == "serve":
            from agentalign.server.app import serve_from_args

            serve_from_args(args)
            return 0
        _, text = command(args.command).call(args, progress=not args.no_progress)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
            print(text)
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

