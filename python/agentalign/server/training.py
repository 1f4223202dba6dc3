"""TrainingService: training runs, each a stage called in a worker process.

A run is an `agentalign` command line (`RunConfig.args`). StartRun parses it with the command's
own argument definitions and builds its settings here, so a bad run is refused at once with
INVALID_ARGUMENT naming the argument, before any process starts: only training stages may run,
every output path must resolve inside the run's folder, every input path inside the server's
runs or personalities folder, and a Unity build (`--env unity:PATH`) inside the builds folder
the server was started with; `..` and symlinks out are refused. The run then executes in
`python -m agentalign.server.worker` (its own process group, its run folder as working
directory), so a run that crashes, leaks or is killed never takes the server down. The stage's
structured events (`agentalign.events`: stage state, progress, metrics) come back as JSON lines
on a pipe and become RunEvents; what the run prints becomes Log events and `log.txt`; its record
is `run.json`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import grpc

from agentalign.atomic import write_json_atomic
from agentalign.command import parse
from agentalign.commands import command
from agentalign.errors import UserError
from agentalign.server.logs import log
from agentalign.server.v1 import training_pb2 as pb
from agentalign.server.v1 import training_pb2_grpc
from agentalign.server.worker import EVENTS_FD

DEFAULT_ARGS = ("pipeline", "--out", "{run_dir}")
# The commands a run may be: the stages that train or measure. Not serve, studio, unity-scene,
# import-demo, preview, play, check-model, report.
RUNNABLE = ("collect", "pretrain", "sft", "label", "reward", "prefft", "rl", "align", "evaluate",
            "export", "pipeline")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FINAL = (pb.SUCCEEDED, pb.FAILED, pb.CANCELLED)


class RefusedRun(UserError):
    """A run the server will not start (INVALID_ARGUMENT)."""


@dataclass
class Run:
    name: str
    run_dir: Path
    args: list[str]
    process: subprocess.Popen
    state: int = pb.RUNNING
    exit_code: int | None = None
    started: float = field(default_factory=time.time)
    ended: float = 0.0
    cancelled: bool = False
    events: list[pb.RunEvent] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def message(self) -> pb.Run:
        return pb.Run(name=self.name, state=self.state, run_dir=str(self.run_dir),
                      args=self.args, exit_code=self.exit_code, started=self.started,
                      ended=self.ended)

    def emit(self, **event: object) -> None:
        with self.changed:
            self.events.append(pb.RunEvent(time=time.time(), **event))
            self.changed.notify_all()


@dataclass(frozen=True)
class Folders:
    """Where runs may read and write: each run's own folder under `runs`, inputs from `runs`
    and `personalities`, Unity builds from `builds` (None: no builds)."""

    runs: Path
    personalities: Path
    builds: Path | None = None


def check_run(args: list[str], run_dir: Path, folders: Folders) -> None:
    """Raise RefusedRun (naming the argument) unless `args` is a run this server may start."""
    if not args or args[0] not in RUNNABLE:
        raise RefusedRun(f"{args[0] if args else 'an empty command'!r} is not a training stage; "
                         f"runs may be one of {', '.join(RUNNABLE)}")
    chosen = command(args[0])
    readable = [folders.runs, folders.personalities]
    try:
        parsed = parse(chosen, args[1:])
        if getattr(parsed, "config", None) is not None:  # checked before it is read
            _inside(parsed.config, run_dir, readable, "config")
        settings, kwargs = chosen.request(parsed)
    except RefusedRun:
        raise
    except UserError as e:
        raise RefusedRun(str(e)) from None
    if kwargs.get("cluster") is not None:  # a Ray driver unpickles what its cluster sends
        raise RefusedRun("--cluster: runs this server starts play and train on this machine; "
                         "start a cluster run from a shell on the cluster (docs/distributed.md)")
    for key in chosen.outputs:
        if kwargs.get(key) is None:
            raise RefusedRun(f"--{key}: give it, inside the run's folder {run_dir}")
        _inside(kwargs[key], run_dir, [run_dir], key)
    for key, value in [(key, kwargs.get(key)) for key in chosen.inputs]:
        for path in value if isinstance(value, list) else [value]:
            if path is not None:
                _inside(path, run_dir, readable, key)
    for key, value in _settings_items(settings.to_dict() if settings is not None else {}):
        custom_layout = key.endswith("layout") and not _packaged_layout(value)
        if custom_layout or (key.endswith("intents") and value is not None):  # files it reads
            _inside(value, run_dir, readable, key)
        elif key.endswith("env") and isinstance(value, str) and value.startswith("unity:"):
            if folders.builds is None:
                raise RefusedRun(f"{key}: this server runs no Unity builds (start it with "
                                 "--builds FOLDER)")
            _inside(value.partition(":")[2], run_dir, [folders.builds], key)


def _inside(path: Any, base: Path, roots: list[Path], key: str) -> None:
    raw = Path(path)
    if ".." in raw.parts:
        raise RefusedRun(f"{key}: {path} contains '..'; give a path inside "
                         f"{' or '.join(map(str, roots))}")
    resolved = (raw if raw.is_absolute() else base / raw).resolve()  # symlinks followed
    if not any(resolved == r.resolve() or resolved.is_relative_to(r.resolve()) for r in roots):
        raise RefusedRun(f"{key}: {path} is outside {' and '.join(map(str, roots))}")


def _settings_items(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _settings_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _packaged_layout(name: Any) -> bool:
    folder = resources.files("agentalign.envs") / "layouts"
    return isinstance(name, str) and "/" not in name and (folder / f"{name}.json").is_file()


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, runs_dir: Path, max_runs: int = 2, *,
                 personalities: Path = Path("runs/personalities"),
                 builds: Path | None = None) -> None:
        self.runs_dir, self.max_runs = Path(runs_dir), max_runs
        self.folders = Folders(self.runs_dir, Path(personalities),
                               Path(builds) if builds else None)
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()

    # -- RPCs -----------------------------------------------------------------------------------

    def StartRun(self, request: pb.StartRunRequest, context: grpc.ServicerContext) -> pb.Run:
        config = request.config
        name = config.name or time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        if not NAME.fullmatch(name):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"run name {name!r}: use 1-64 letters, digits, '-' or '_'")
        run_dir = (self.runs_dir / name).resolve()
        args = [a.replace("{run_dir}", str(run_dir)) for a in (config.args or DEFAULT_ARGS)]
        try:
            check_run(args, run_dir, self.folders)
        except RefusedRun as e:
            log("run_refused", level="warning", run=name, args=args, reason=str(e))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        with self.lock:
            if name in self.runs or run_dir.exists():
                context.abort(grpc.StatusCode.ALREADY_EXISTS,
                              f"run {name!r} exists ({run_dir}); pick another name")
            if sum(r.state == pb.RUNNING for r in self.runs.values()) >= self.max_runs:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{self.max_runs} runs are running; wait or cancel one")
            run_dir.mkdir(parents=True)
            events_read, events_write = os.pipe()
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "agentalign.server.worker", *args], cwd=run_dir,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: cancel reaches its workers
                    pass_fds=(events_write,),
                    env={**os.environ, "PYTHONUNBUFFERED": "1",
                         EVENTS_FD: str(events_write)})
            finally:
                os.close(events_write)
            run = Run(name=name, run_dir=run_dir, args=args, process=process)
            self.runs[name] = run
        run.emit(state=pb.RUNNING)
        self._save(run)
        log("run_started", run=name, args=args, pid=process.pid, peer=context.peer())
        threading.Thread(target=self._follow, args=(run, events_read), name=f"run-{name}",
                         daemon=True).start()
        return run.message()

    def WatchRun(self, request: pb.WatchRunRequest,
                 context: grpc.ServicerContext) -> Iterator[pb.RunEvent]:
        run = self._run(request.name, context)
        sent = 0
        while True:  # under grpc.aio each event is pulled by the server; a gone client pulls none
            with run.changed:
                if sent == len(run.events):
                    if run.state in FINAL:
                        return
                    run.changed.wait(timeout=1.0)
                new = run.events[sent:]
            sent += len(new)
            yield from new

    def CancelRun(self, request: pb.CancelRunRequest, context: grpc.ServicerContext) -> pb.Run:
        run = self._run(request.name, context)
        self.cancel(run)
        return run.message()

    def ListRuns(self, request: pb.ListRunsRequest,
                 context: grpc.ServicerContext) -> pb.ListRunsResponse:
        with self.lock:
            return pb.ListRunsResponse(runs=[r.message() for r in self.runs.values()])

    # -- runs -----------------------------------------------------------------------------------

    def cancel(self, run: Run, grace_s: float = 5.0) -> None:
        """SIGTERM to the run's process group, SIGKILL if it is still there after `grace_s`."""
        if run.process.poll() is not None:
            return
        run.cancelled = True
        log("run_cancelling", run=run.name)
        try:
            os.killpg(run.process.pid, signal.SIGTERM)
            run.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(run.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Cancel every running run (server shutdown)."""
        for run in list(self.runs.values()):
            self.cancel(run)

    def _run(self, name: str, context: grpc.ServicerContext) -> Run:
        run = self.runs.get(name)
        if run is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"unknown run {name!r}; ListRuns shows this server's runs")
        return run

    def _follow(self, run: Run, events_fd: int) -> None:
        """Read the run's events and output until it exits."""
        reader = threading.Thread(target=self._read_events, args=(run, events_fd), daemon=True)
        reader.start()
        with open(run.run_dir / "log.txt", "w") as log_file:
            assert run.process.stdout is not None
            for raw in run.process.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.strip():
                    log_file.write(line + "\n")
                    log_file.flush()
                    run.emit(log=line)
        code = run.process.wait()
        reader.join()
        run.exit_code, run.ended = code, time.time()
        run.state = pb.CANCELLED if run.cancelled else pb.SUCCEEDED if code == 0 else pb.FAILED
        self._save(run)
        run.emit(state=run.state)
        log("run_ended", run=run.name, state=pb.RunState.Name(run.state), exit_code=code)

    @staticmethod
    def _read_events(run: Run, fd: int) -> None:
        """The stage's events (JSON lines, agentalign.events) as RunEvents."""
        with os.fdopen(fd, "rb") as stream:
            for raw in stream:
                try:
                    event = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                kind, stage = event.get("kind"), str(event.get("stage", ""))
                if kind == "progress":
                    run.emit(progress=pb.Progress(stage=stage, done=float(event["done"]),
                                                  total=float(event.get("total") or 0)))
                elif kind == "metrics":
                    run.emit(metrics=pb.Metrics(source=stage, values=event["values"]))
                elif kind == "state":
                    run.emit(stage_state=pb.StageState(stage=stage, state=event["state"]))

    def _save(self, run: Run) -> None:
        write_json_atomic(run.run_dir / "run.json", {
            "name": run.name, "state": pb.RunState.Name(run.state), "args": run.args,
            "exit_code": run.exit_code, "started": run.started, "ended": run.ended or None})
