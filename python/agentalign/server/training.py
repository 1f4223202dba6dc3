"""TrainingService: training runs as `agentalign` command lines in worker processes.

Each run is `python -m agentalign.cli ARGS` in its own process group, with its run folder as the
place its artifacts land (ARGS name it through "{run_dir}"), so a run that crashes, leaks or
is killed never takes the server down. The server reads the run's output as it comes: progress
bars (tqdm's "desc: 42%|...| 21/50") become Progress events, other lines Log events; JSON
lines appended to any `metrics.jsonl` under the run folder, and each new version of a stage's
`metrics.json` (numbers flattened to dotted keys), become Metrics events. Everything
the run printed is kept in `log.txt`, its record in `run.json`.
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
from pathlib import Path

import grpc

from agentalign.atomic import write_json_atomic
from agentalign.server.logs import log
from agentalign.server.v1 import training_pb2 as pb
from agentalign.server.v1 import training_pb2_grpc

DEFAULT_ARGS = ("pipeline", "--out", "{run_dir}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
PROGRESS = re.compile(r"^\s*(?P<stage>[^:|]*?):?\s*(?P<pct>\d+)%\|.*?\|\s*(?P<done>[\d.]+[kM]?)"
                      r"/(?P<total>[\d.]+[kM]?)")
FINAL = (pb.SUCCEEDED, pb.FAILED, pb.CANCELLED)


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


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, runs_dir: Path, max_runs: int = 2) -> None:
        self.runs_dir, self.max_runs = Path(runs_dir), max_runs
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
        if args[0].startswith("-"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"args must start with an agentalign command, got {args[0]!r}")
        with self.lock:
            if name in self.runs or run_dir.exists():
                context.abort(grpc.StatusCode.ALREADY_EXISTS,
                              f"run {name!r} exists ({run_dir}); pick another name")
            if sum(r.state == pb.RUNNING for r in self.runs.values()) >= self.max_runs:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{self.max_runs} runs are running; wait or cancel one")
            run_dir.mkdir(parents=True)
            process = subprocess.Popen(
                [sys.executable, "-m", "agentalign.cli", *args], cwd=run_dir,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: cancel reaches its workers
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
            run = Run(name=name, run_dir=run_dir, args=args, process=process)
            self.runs[name] = run
        run.emit(state=pb.RUNNING)
        self._save(run)
        log("run_started", run=name, args=args, pid=process.pid, peer=context.peer())
        threading.Thread(target=self._follow, args=(run,), name=f"run-{name}",
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

    def _follow(self, run: Run) -> None:
        """Read the run's output until it exits; poll its metrics files meanwhile."""
        metrics_at: dict[Path, float] = {}
        stop = threading.Event()
        poller = threading.Thread(target=self._poll_metrics, args=(run, metrics_at, stop),
                                  daemon=True)
        poller.start()
        with open(run.run_dir / "log.txt", "w") as log_file:
            pending = ""
            assert run.process.stdout is not None
            while chunk := run.process.stdout.read1(4096):
                text = pending + chunk.decode(errors="replace")
                *lines, pending = re.split(r"[\r\n]", text)
                for line in filter(str.strip, lines):
                    log_file.write(line + "\n")
                    self._line(run, line)
                log_file.flush()
            if pending.strip():
                log_file.write(pending + "\n")
                self._line(run, pending)
        code = run.process.wait()
        stop.set()
        poller.join()
        self._read_metrics(run, metrics_at)
        run.exit_code, run.ended = code, time.time()
        run.state = pb.CANCELLED if run.cancelled else pb.SUCCEEDED if code == 0 else pb.FAILED
        self._save(run)
        run.emit(state=run.state)
        log("run_ended", run=run.name, state=pb.RunState.Name(run.state), exit_code=code)

    def _line(self, run: Run, line: str) -> None:
        if match := PROGRESS.match(line):
            run.emit(progress=pb.Progress(stage=match["stage"].strip() or run.args[0],
                                          done=_number(match["done"]),
                                          total=_number(match["total"])))
        else:
            run.emit(log=line)

    def _poll_metrics(self, run: Run, at: dict[Path, float], stop: threading.Event) -> None:
        while not stop.wait(0.5):
            self._read_metrics(run, at)

    def _read_metrics(self, run: Run, at: dict[Path, float]) -> None:
        for path in sorted(run.run_dir.rglob("metrics.json*")):
            try:
                if path.name == "metrics.json":  # rewritten whole, once a stage is done
                    mtime = path.stat().st_mtime
                    if at.get(path) == mtime:
                        continue
                    at[path], records = mtime, [path.read_bytes()]
                elif path.name == "metrics.jsonl":  # appended to as a stage goes
                    with open(path, "rb") as f:
                        f.seek(int(at.get(path, 0)))
                        data = f.read()
                    complete = data[:data.rfind(b"\n") + 1]  # a half-written line waits
                    at[path] = at.get(path, 0) + len(complete)
                    records = complete.splitlines()
                else:
                    continue
            except OSError:
                continue
            for record in records:
                try:
                    values = _numbers(json.loads(record))
                except json.JSONDecodeError:
                    continue
                if values:
                    run.emit(metrics=pb.Metrics(source=str(path.relative_to(run.run_dir)),
                                                values=values))

    def _save(self, run: Run) -> None:
        write_json_atomic(run.run_dir / "run.json", {
            "name": run.name, "state": pb.RunState.Name(run.state), "args": run.args,
            "exit_code": run.exit_code, "started": run.started, "ended": run.ended or None})


def _numbers(data: object, prefix: str = "") -> dict[str, float]:
    """The numbers of a JSON object, nested keys joined with dots."""
    if isinstance(data, bool) or data is None:
        return {}
    if isinstance(data, int | float):
        return {prefix: float(data)} if prefix else {}
    if isinstance(data, dict):
        out: dict[str, float] = {}
        for key, value in data.items():
            out.update(_numbers(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {}


def _number(text: str) -> float:
    scale = {"k": 1e3, "M": 1e6}.get(text[-1], 1.0)
    return float(text.rstrip("kM")) * scale
