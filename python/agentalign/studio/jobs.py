"""The studio's background jobs: start, list, cancel, and resume after a restart.

A job is a folder RUN/studio/jobs/NAME with job.json; its work runs in `python -m
agentalign.studio.job` in its own process group, so a crash or a kill never takes the studio
down. On start the studio resumes every job left queued or running by an earlier studio (its
process is gone: the steps are resumable). Progress is the last progress event of
events.jsonl.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agentalign.atomic import write_json_atomic
from agentalign.studio.job import EVENTS, JOB
from agentalign.studio.state import StudioError, now

FINAL = ("done", "failed", "cancelled")


class Jobs:
    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()

    def start(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        job_dir = self.folder / name
        with self.lock:
            if (job_dir / JOB).exists():
                raise StudioError(f"job {name!r} exists")
            job_dir.mkdir(parents=True)
            write_json_atomic(job_dir / JOB, {**spec, "name": name, "state": "queued",
                                               "step": None, "created": now(), "error": None})
            self._launch(job_dir)
        return self.get(name)

    def _launch(self, job_dir: Path) -> None:
        log = open(job_dir / "log.txt", "ab")  # noqa: SIM115 (the child owns it)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.processes[job_dir.name] = subprocess.Popen(
            [sys.executable, "-m", "agentalign.studio.job", str(job_dir)], stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        log.close()

    def resume(self) -> list[str]:
        """Start again every job an earlier studio left unfinished."""
        resumed = []
        for job_dir in sorted(self.folder.iterdir()):
            if not (job_dir / JOB).exists():
                continue
            job = json.loads((job_dir / JOB).read_text())
            if job.get("state") not in FINAL and not self.alive(job_dir.name) \
                    and not _pid_alive(job.get("pid")):
                with self.lock:
                    self._launch(job_dir)
                resumed.append(job_dir.name)
        return resumed

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def get(self, name: str) -> dict[str, Any]:
        job_dir = self.folder / name
        if not (job_dir / JOB).exists():
            raise StudioError(f"unknown job {name!r}")
        job = json.loads((job_dir / JOB).read_text())
        process = self.processes.get(name)
        if job.get("state") not in FINAL and process is not None and process.poll() is not None:
            job["state"] = "failed"  # died without saying so (killed)
            job["error"] = job.get("error") or f"the job's process exited ({process.returncode})"
        job["progress"] = _last_progress(job_dir / EVENTS)
        return job

    def list(self) -> list[dict[str, Any]]:
        return [self.get(d.name) for d in sorted(self.folder.iterdir()) if (d / JOB).exists()]

    def busy(self, personality: str | None = None) -> bool:
        return any(j["state"] not in FINAL and (personality is None or
                                               j.get("personality") == personality)
                   for j in self.list())

    def stop_all(self, grace_s: float = 5.0) -> None:
        """Stop the studio's job processes (they resume with the next studio)."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.time() + grace_s
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _pid_alive(pid: Any) -> bool:
    """Whether an earlier studio's job process still runs (then it is left to finish)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie or a reused pid of another program is not our job
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"agentalign.studio.job" in cmdline


def _last_progress(path: Path) -> dict[str, Any] | None:
    """The latest progress event (read from the file's tail only)."""
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 16384))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("kind") == "progress":
            return {k: event.get(k) for k in ("stage", "done", "total", "unit")}
    return None
