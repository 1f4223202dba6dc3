"""Structured events from the stages: which stage runs, how far it has got, what it measured.

Stages report through `progress()` (a progress bar that is also a stream of `progress` events)
and through `lifecycle` (a stage's `state` changes and its final `metrics`). Where the events go
is the caller's choice: nowhere by default (the CLI shows the bars), or to a sink set with
`set_sink`: the server's training runs send them to the server as JSON lines, so nobody has to
read progress bars back from text.

An event is a dict: {"kind": "state" | "progress" | "metrics", "time": unix seconds, "stage":
name, ...}; `state` events carry "state" (started, skipped, done, failed), `progress` events
"done" and "total" (0 when unknown) and "unit", `metrics` events "values" (numbers by dotted key).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

Sink = Callable[[dict[str, Any]], None]
_sink: Sink | None = None
PROGRESS_EVERY_S = 0.5  # at most two progress events a second per bar, plus the last


def set_sink(sink: Sink | None) -> None:
    """Send every event of this process to `sink` (None: drop them)."""
    global _sink
    _sink = sink


def emit(kind: str, stage: str, **fields: Any) -> None:
    if _sink is not None:
        _sink({"kind": kind, "time": time.time(), "stage": stage, **fields})


def state(stage: str, value: str) -> None:
    emit("state", stage, state=value)


def metrics(stage: str, values: dict[str, Any]) -> None:
    """The numbers of `values` (nested keys joined with dots) as one metrics event."""
    numbers = flatten_numbers(values)
    if numbers:
        emit("metrics", stage, values=numbers)


def flatten_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(data, bool) or data is None:
        return {}
    if isinstance(data, int | float):
        return {prefix: float(data)} if prefix else {}
    if isinstance(data, dict):
        out: dict[str, float] = {}
        for key, value in data.items():
            out.update(flatten_numbers(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {}


class Progress:
    """A tqdm bar for the terminal (when `show`), and `progress` events for the sink."""

    def __init__(self, stage: str, total: float, *, unit: str = "it", show: bool = True,
                 initial: float = 0, desc: str | None = None, unit_scale: bool = False) -> None:
        self.stage, self.total, self.done, self.unit = stage, total, initial, unit
        self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc or stage,
                        disable=not show, dynamic_ncols=True, unit_scale=unit_scale)
        self.sent = 0.0
        self._send(force=True)

    def update(self, n: float = 1) -> None:
        self.bar.update(n)
        self.done += n
        self._send(force=self.done >= self.total)

    def set_postfix(self, **values: Any) -> None:
        self.bar.set_postfix(**values)

    def write(self, message: str) -> None:
        """A line for the terminal that does not break the bar."""
        if self.bar.disable:
            print(message, flush=True)
        else:
            self.bar.write(message)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if _sink is not None and (force or now - self.sent >= PROGRESS_EVERY_S):
            self.sent = now
            emit("progress", self.stage, done=float(self.done), total=float(self.total or 0),
                 unit=self.unit)


def progress(stage: str, total: float, **kwargs: Any) -> Progress:
    return Progress(stage, total, **kwargs)
