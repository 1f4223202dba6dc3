"""A stage's life in its folder: who it is, whether it finished, resume, refuse, metrics.json.

Every stage writes into a folder of its own and follows the same four rules:
- **Identity.** A stage's run is a JSON-able dict of what shapes its output (settings that
  change results, the sha256 of its inputs); settings that only change speed or logging stay out,
  so a resumed run may change them.
- **Finished means skipped.** `metrics.json` is written last, atomically, with `"final": true`
  and the identity; a rerun with the same identity returns it without doing anything.
- **Resume, never mix.** `run.json` marks a folder as a run's from its first write; a rerun with
  the same identity resumes (from the stage's own checkpoints), a rerun with another is refused
  with a one-line message naming what differs. Checkpoints carry the identity too, so a folder
  from before `run.json` existed is checked the same way.
- **Atomic.** Every file is written to a temporary beside it and renamed (`agentalign.atomic`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from agentalign import events
from agentalign.atomic import write_json_atomic
from agentalign.errors import UserError

T = TypeVar("T")
METRICS = "metrics.json"
RUN = "run.json"
# Names for identity keys in messages: what a user can act on.
KEY_NAMES = {"data": "corpus (manifest sha256)", "init": "--init weights (sha256)",
             "reward": "reward model (sha256)", "labels": "labels (sha256)"}


def normalised(identity: dict[str, Any]) -> dict[str, Any]:
    """`identity` as JSON will hold it (tuples become lists), so saved and new ones compare."""
    return json.loads(json.dumps(identity))


def read_json(path: Path) -> Any:
    """The JSON at `path`, or None if it is missing or damaged (a damaged marker is redone)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


class StageRun:
    """One stage's run in its folder `out`."""

    def __init__(self, out: str | Path, stage: str, identity: dict[str, Any],
                 say: bool = True) -> None:
        self.out, self.stage = Path(out), stage
        self.identity = normalised(identity)
        self.say = say

    def finished(self) -> dict[str, Any] | None:
        """The metrics of a finished run of this identity in the folder, if there is one."""
        metrics = read_json(self.out / METRICS)
        if isinstance(metrics, dict) and metrics.get("final") and \
                metrics.get("run") == self.identity:
            return metrics
        return None

    def begin(self, mark: bool = True) -> dict[str, Any] | None:
        """Start or resume: the finished run's metrics (then skip the work), else None after
        refusing a folder that holds another run and (with `mark`: the one process of a job
        that writes) marking it as this one's."""
        if (done := self.finished()) is not None:
            return self.skip(done)
        self.claim(mark)
        return None

    def skip(self, done: dict[str, Any]) -> dict[str, Any]:
        """Report that the finished run `done` is taken as it is."""
        if self.say:
            print(f"{self.stage}: {self.out} already finished; skipping", flush=True)
        events.state(self.stage, "skipped")
        events.metrics(self.stage, done)
        return done

    def claim(self, mark: bool = True) -> None:
        """Refuse a folder that holds another run; mark it as this one's (with `mark`)."""
        saved = read_json(self.out / RUN)
        if saved is None:
            previous = read_json(self.out / METRICS)  # a finished run from before run.json
            if isinstance(previous, dict) and previous.get("final") and "run" in previous:
                self.refuse_other(previous["run"], self.out)
            if mark:
                write_json_atomic(self.out / RUN, self.identity)
        else:
            self.refuse_other(saved, self.out)
        events.state(self.stage, "started")

    def refuse_other(self, saved: Any, where: Path | str) -> None:
        """Raise if `saved` (an identity read from the folder or a checkpoint) is another run's."""
        if normalised(saved) != self.identity:
            raise UserError(f"{where} holds a {self.stage} run with other settings "
                            f"({differences(saved, self.identity) or 'unknown'}); use another "
                            "--out, or the same settings to resume")

    def finish(self, metrics: dict[str, Any], write: bool = True) -> dict[str, Any]:
        """Write metrics.json (final, with the identity) and report it; returns what it holds.
        `write` False: only return it (the processes of a job that do not write)."""
        record = normalised({"stage": self.stage, "final": True, **metrics,
                             "run": self.identity})
        if not write:
            return record
        write_json_atomic(self.out / METRICS, record)
        events.metrics(self.stage, record)
        events.state(self.stage, "done")
        return record


def result_from(cls: type[T], metrics: dict[str, Any]) -> T:
    """A stage's result dataclass from its metrics.json (keys it does not declare are left)."""
    return cls(**{f.name: metrics.get(f.name) for f in dataclasses.fields(cls)})  # type: ignore


def differences(saved: Any, now: Any, prefix: str = "") -> str:
    """'key: saved -> now' for the leaves that differ, e.g. 'config.lr: 0.001 -> 0.002'."""
    if isinstance(saved, dict) and isinstance(now, dict):
        parts = [differences(saved.get(k), now.get(k), f"{prefix}{k}.")
                 for k in sorted(set(saved) | set(now), key=str) if saved.get(k) != now.get(k)]
        return ", ".join(p for p in parts if p)
    key = prefix.rstrip(".") or "value"
    return f"{KEY_NAMES.get(key, key)}: {_short(saved)} -> {_short(now)}"


def _short(value: Any) -> str:
    """A value for a one-line message; sha256 digests cut to their first 12 digits."""
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
