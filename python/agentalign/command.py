"""A command: how a stage is called from a command line (the CLI's, or a training run's that the
server starts). Each stage's light `*_config` module declares its commands; the stage's own
module, which imports torch, is imported only to run one.

`request(args)` turns parsed arguments into the stage's settings (through the one loader) and
its other arguments (paths, names); `inputs` and `outputs` name the arguments that are paths the
stage reads and writes, so the server can keep them inside its folders.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from agentalign.errors import UserError

Request = tuple[Any, dict[str, Any]]  # (the stage's settings or None, its other arguments)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    request: Callable[[argparse.Namespace], Request]
    run: str  # "module:function": the stage, called as run(settings, **arguments, progress=..)
    summary: str  # "module:function": the result as the terminal shows it
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    settings: bool = True  # run takes the settings first (False: only the other arguments)

    def call(self, args: argparse.Namespace, progress: bool = True) -> tuple[Any, str]:
        """Build the request from `args`, run the stage; returns its result and summary."""
        settings, kwargs = self.request(args)
        run = _function(self.run)
        result = run(settings, **kwargs, progress=progress) if self.settings else \
            run(**kwargs, progress=progress)
        return result, _function(self.summary)(result)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises a UserError instead of exiting (the server parses runs'
    command lines with it)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UserError((message or f"{self.prog}: exit {status}").strip())


def parse(command: Command, argv: list[str]) -> argparse.Namespace:
    """`argv` (without the command's name) parsed with the command's own arguments."""
    parser = _Parser(prog=f"agentalign {command.name}", add_help=False)
    command.arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


def _function(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
