"""PolicyService: play exported personalities for many sessions, one batched forward pass.

What is served: the personality files themselves (`<name>.onnx` + `<name>.json`, as
`agentalign export` writes them), run with onnxruntime, not the PyTorch checkpoints they came
from. The server then plays exactly the artifact a designer ships to Unity (the export's parity
test ties it to PyTorch), needs no checkpoint beside it, and each session's context is the
graph's flat `recurrent_in` memory, which batches by stacking: B sessions' memories are one
[B, 1, memory] array (gathered from the personality's `MemoryRows`), one `session.run`, and
row b of `recurrent_out` is session b's next memory. A new episode is a zero row. (PyTorch's
`KVCache` would need rows gathered and scattered across cache tensors as sessions come and go;
the ONNX memory is already per row.)

Sampling is the server's, not the graph's: the graph's `Multinomial` has no seed and draws from
one process-wide stream, so a session's actions would depend on who else is in the batch. At
load the masked logits (the inputs of the graph's ArgMax nodes) are added as outputs; each
session samples from them with its own seeded generator (or takes the argmax), then writes the
action it took into its memory's previous-action slot (`MemoryLayout`: floats 1..n_branches
hold action + 1), exactly what the graph does with its own choice.

Batching: the service runs on grpc.aio, one event loop for every stream (a thread per stream
costs more in switching than the model costs in compute). Act handlers (one session per stream)
and ActBatch handlers (a game's agents together, one message per tick: far less gRPC and
asyncio work per decision) add decisions to one list; the batcher task takes them once
`max_batch` are waiting, or every session with an open stream has one waiting, or `window_s`
after the first arrived, and runs one forward pass per personality in a worker thread
(onnxruntime releases the GIL); with two workers a second batch can run meanwhile, while the
loop goes on receiving the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from PIL import Image, UnidentifiedImageError

from agentalign.export.contract import constant_value, require_valid
from agentalign.export.onnx import ACTION_MASKS, MEMORY_SIZE, OBS, RECURRENT_IN, RECURRENT_OUT
from agentalign.export.personality import CARD_FORMAT, PersonalityError
from agentalign.server.logs import log
from agentalign.server.v1 import policy_pb2 as pb
from agentalign.server.v1 import policy_pb2_grpc


class BadInput(Exception):
    """A request the client must fix; carries the gRPC status code to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- personalities ------------------------------------------------------------------------------

class MemoryRows:
    """The memories of every session a personality plays, a row each of one array: a batch
    gathers its rows with one indexing and writes the next memories back with one assignment
    (an array per session per decision, concatenated for each batch, cost the forward thread
    a third of the model's own time). Each row has a generation, bumped whenever the row is
    handed out or cleared, so a batch whose session has since closed, swapped or started a
    new episode (its stream cancelled mid-decision) does not write over the row."""

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()  # the event loop hands rows out, forward threads use them
        self.rows = np.zeros((0, 1, size), np.float32)
        self.generation = np.zeros(0, np.int64)
        self.free: list[int] = []

    def take(self) -> int:
        """A zeroed row for a new session (the array doubles when none is free)."""
        with self.lock:
            if not self.free:
                n = len(self.rows)
                rows = np.zeros((max(16, 2 * n), *self.rows.shape[1:]), np.float32)
                rows[:n] = self.rows
                self.rows = rows
                self.generation = np.concatenate([self.generation,
                                                  np.zeros(len(rows) - n, np.int64)])
                self.free = list(range(len(rows) - 1, n - 1, -1))
            row = self.free.pop()
            self.rows[row] = 0
            self.generation[row] += 1
            return row

    def clear(self, row: int) -> None:
        """A new episode: the row back to zeros."""
        with self.lock:
            self.rows[row] = 0
            self.generation[row] += 1

    def give(self, row: int) -> None:
        with self.lock:
            self.generation[row] += 1
            self.free.append(row)

    def gather(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Memories [B, 1, size] of these rows (a copy) and their generations."""
        with self.lock:
            return self.rows[rows], self.generation[rows]

    def scatter(self, rows: list[int], generations: np.ndarray, memory: np.ndarray) -> None:
        """Write each row's next memory, unless the row changed hands since `gather`."""
        with self.lock:
            current = self.generation[rows] == generations
            if current.all():
                self.rows[rows] = memory
            else:
                self.rows[np.asarray(rows)[current]] = memory[current]


@dataclass
class Personality:
    """One loaded personality: its onnxruntime session and what its card says."""

    name: str
    card: dict[str, Any]
    session: Any  # onnxruntime.InferenceSession
    memory_size: int
    branches: tuple[int, ...]
    frame_shape: tuple[int, int, int]  # height, width, channels
    logit_outputs: list[str]  # masked logits per branch, added to the graph at load
    memories: MemoryRows  # the memory of every session it plays

    def message(self) -> pb.Personality:
        rates = (self.card.get("measured") or {}).get("rates") or {}
        return pb.Personality(
            name=self.name, target=self.card.get("target") or "",
            stage=str(self.card.get("stage") or ""), observation_shape=self.frame_shape,
            action_branches=self.branches, card_json=json.dumps(self.card),
            outcome_rates={k: float(v["rate"]) for k, v in rates.items()
                           if isinstance(v, dict) and "rate" in v})

    def run(self, frames: np.ndarray, memory: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Masked logits per branch [B, n_b] and the next memory, for frames [B, H, W, 3]
        (uint8 pixels, or float32 in 0..1) and memory [B, 1, memory_size]."""
        obs = np.empty((frames.shape[0], frames.shape[3], *frames.shape[1:3]), np.float32)
        if frames.dtype == np.uint8:  # one pass: to float, / 255 and to NCHW together
            np.divide(frames.transpose(0, 3, 1, 2), np.float32(255.0), out=obs)
        else:
            obs[:] = frames.transpose(0, 3, 1, 2)
        feeds = {OBS: obs,
                 ACTION_MASKS: np.ones((len(frames), sum(self.branches)), np.float32),
                 RECURRENT_IN: memory}
        *logits, memory_out = self.session.run([*self.logit_outputs, RECURRENT_OUT], feeds)
        return logits, memory_out


def load_personality(onnx_path: Path, threads: int | None = None) -> Personality:
    import onnx
    import onnxruntime as ort

    card_path = onnx_path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PersonalityError(f"{card_path}: cannot read the card ({e})") from None
    if card.get("format") != CARD_FORMAT:
        raise PersonalityError(f"{card_path}: not a personality card")
    model = require_valid(onnx_path)
    memory = constant_value(model, MEMORY_SIZE)
    memory_size = int(memory.flat[0]) if memory is not None else 0
    argmax_inputs = [n.input[0] for n in model.graph.node if n.op_type == "ArgMax"]
    branches = tuple(int(b) for b in card["action_spec"]["discrete_branches"])
    if memory_size == 0 or len(argmax_inputs) != len(branches):
        raise PersonalityError(f"{onnx_path}: not an agentalign decision graph (no memory or "
                               "no per-branch ArgMax); re-export it with `agentalign export`")
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name)
                              for name in argmax_inputs)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Idle pool threads would spin while the gRPC threads need the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    channels, height, width = card["observation_spec"][0]["shape"]
    return Personality(name=card["name"], card=card, session=session, memory_size=memory_size,
                       branches=branches, frame_shape=(height, width, channels),
                       logit_outputs=argmax_inputs, memories=MemoryRows(memory_size))


class Personalities:
    """The personalities of a folder, loaded once; files added later are picked up on a miss
    and on every list."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        self.folder, self.threads = Path(folder), threads
        if not self.folder.is_dir():
            raise PersonalityError(f"personalities folder {self.folder}: does not exist")
        self.loaded: dict[str, Personality] = {}
        self.lock = threading.Lock()
        self.scan()

    def scan(self) -> None:
        with self.lock:
            for path in sorted(self.folder.glob("*.onnx")):
                if path.stem in self.loaded or not path.with_suffix(".json").exists():
                    continue
                try:
                    self.loaded[path.stem] = load_personality(path, self.threads)
                    log("personality_loaded", name=path.stem, file=str(path))
                except Exception as e:  # one bad file must not hide the others
                    log("personality_skipped", level="warning", file=str(path), error=str(e))

    def get(self, name: str) -> Personality:
        if name not in self.loaded:
            self.scan()
        if name not in self.loaded:
            known = ", ".join(sorted(self.loaded)) or "none"
            raise BadInput(grpc.StatusCode.NOT_FOUND,
                           f"unknown personality {name!r}; this server has: {known}")
        return self.loaded[name]


# -- observations -------------------------------------------------------------------------------

def decode_frame(obs: pb.Observation, shape: tuple[int, int, int]) -> np.ndarray:
    """[H, W, 3] pixels from a raw or PNG frame: uint8 (0..255) as sent or decoded, float32
    (0..1) for FLOAT32 frames, converted for the network by the batch at once
    (`Personality.run`); BadInput (INVALID_ARGUMENT) with what to fix otherwise."""
    height, width, channels = shape
    want = f"{height}x{width}x{channels}"
    kind = obs.WhichOneof("pixels")
    if kind == "png":
        try:
            image = Image.open(io.BytesIO(obs.png), formats=["PNG"])
            if image.size != (width, height):  # checked before decoding: no PNG bombs
                raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                               f"png is {image.size[1]}x{image.size[0]}, this personality "
                               f"takes {height}x{width} frames")
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           f"png cannot be decoded ({e}); send a PNG file's bytes") from None
        return pixels
    if kind != "raw":
        raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                       "observation has no pixels: set observation.raw or observation.png")
    raw = obs.raw
    if (raw.height, raw.width, raw.channels) != shape:
        raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                       f"raw frame is {raw.height}x{raw.width}x{raw.channels}, this "
                       f"personality takes {want} (height x width x RGB)")
    if raw.dtype == pb.UINT8:
        if len(raw.data) != height * width * channels:
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           f"raw uint8 frame {want} needs {height * width * channels} bytes, "
                           f"got {len(raw.data)}")
        pixels = np.frombuffer(raw.data, np.uint8)
    elif raw.dtype == pb.FLOAT32:
        if len(raw.data) != 4 * height * width * channels:
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           f"raw float32 frame {want} needs {4 * height * width * channels} "
                           f"bytes, got {len(raw.data)}")
        pixels = np.frombuffer(raw.data, "<f4").astype(np.float32)
        if not np.isfinite(pixels).all():
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           "raw float32 frame holds NaN or infinity; send pixels in 0..1")
        if pixels.min() < 0.0 or pixels.max() > 1.0:
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           f"raw float32 frame has values in {pixels.min():g}..{pixels.max():g}"
                           "; send pixels in 0..1")
    else:
        raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                       f"raw frame dtype {raw.dtype} unknown; use UINT8 or FLOAT32")
    return pixels.reshape(shape)


# -- sessions and batching ----------------------------------------------------------------------

@dataclass
class Session:
    """One agent's context: the personality playing it, its memory and its random stream."""

    id: str
    personality: Personality
    greedy: bool
    rng: np.random.Generator
    row: int = -1  # its memory: this row of personality.memories (zeros = a new episode)
    step: int = 0  # decisions in the current episode
    decisions: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one decision or swap at once
    stream: asyncio.Task | None = None  # the open Act or ActBatch stream's handler, if any
    shared: bool = False  # that stream is an ActBatch stream, which other sessions share

    def __post_init__(self) -> None:
        self.row = self.personality.memories.take()

    def new_episode(self) -> None:
        self.personality.memories.clear(self.row)
        self.step = 0

    def play_with(self, personality: Personality) -> None:
        """Another personality from the next decision on, with an empty context."""
        self.personality.memories.give(self.row)
        self.personality, self.row = personality, personality.memories.take()

    def free(self) -> None:
        """Give the memory row back (the session is closed)."""
        if self.row >= 0:
            self.personality.memories.give(self.row)
            self.row = -1


@dataclass
class Decision:
    session: Session
    frame: np.ndarray
    result: asyncio.Future


class Batcher:
    """Turns the decisions of all sessions into batched forward passes (on the event loop;
    the passes themselves run in `workers` threads, so one batch can run while the next
    fills and, with two workers, while another runs)."""

    def __init__(self, max_batch: int = 64, window_s: float = 0.002, workers: int = 1) -> None:
        self.max_batch, self.window_s = max(1, max_batch), window_s
        self.pending: list[Decision] = []
        self.streams = 0  # sessions with an open stream: no batch can get bigger than that
        self.batches = 0
        self.has_work, self.full = asyncio.Event(), asyncio.Event()
        self.free = asyncio.Semaphore(max(1, workers))  # workers not running a batch
        self.running: set[asyncio.Task] = set()
        self.worker = ThreadPoolExecutor(max(1, workers), thread_name_prefix="forward")
        self.task = asyncio.get_running_loop().create_task(self._loop())

    def _target(self) -> int:
        return min(self.max_batch, max(1, self.streams))

    async def decide(self, session: Session, frame: np.ndarray) -> np.ndarray:
        """The session's action for one frame, once its batch has run."""
        decision = Decision(session, frame, asyncio.get_running_loop().create_future())
        self._queue([decision])
        return await decision.result

    async def decide_many(self, items: list[tuple[Session, np.ndarray]]) -> list[np.ndarray]:
        """`decide` for many sessions at once (an ActBatch tick), their actions in order."""
        loop = asyncio.get_running_loop()
        decisions = [Decision(s, f, loop.create_future()) for s, f in items]
        self._queue(decisions)
        return list(await asyncio.gather(*(d.result for d in decisions)))

    def _queue(self, decisions: list[Decision]) -> None:
        self.pending.extend(decisions)
        if decisions:
            self.has_work.set()
        if len(self.pending) >= self._target():
            self.full.set()

    async def stop(self) -> None:
        """Finish the waiting and running decisions, then end the task."""
        while self.pending or self.running:
            await asyncio.sleep(0.001)
        self.task.cancel()
        self.worker.shutdown()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.has_work.wait()
            await self.free.acquire()  # while every worker is busy, the next batch grows
            if len(self.pending) < self._target():
                self.full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.full.wait(), self.window_s)
            batch = self.pending[:self.max_batch]
            del self.pending[:self.max_batch]
            if not self.pending:
                self.has_work.clear()
            self.batches += 1
            task = loop.create_task(self._run(batch))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _run(self, batch: list[Decision]) -> None:
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(self.worker, run_batch,
                                                                        batch)
        finally:
            self.free.release()
        for decision, outcome in zip(batch, outcomes, strict=True):
            if decision.result.done():  # its stream was cancelled meanwhile
                continue
            if isinstance(outcome, Exception):
                decision.result.set_exception(outcome)
            else:
                decision.result.set_result(outcome)


def run_batch(batch: list[Decision]) -> list[np.ndarray | Exception]:
    """One forward pass per personality in the batch; each session's action, or the error."""
    groups: dict[int, list[int]] = {}
    for i, d in enumerate(batch):
        groups.setdefault(id(d.session.personality), []).append(i)
    outcomes: list[np.ndarray | Exception] = [RuntimeError("not run")] * len(batch)
    for rows in groups.values():
        group = [batch[i] for i in rows]
        personality = group[0].session.personality
        memory_rows = [d.session.row for d in group]
        try:
            memory, generations = personality.memories.gather(memory_rows)
            logits, memory = personality.run(stack_frames([d.frame for d in group]), memory)
        except Exception as e:  # never let one batch kill the batcher
            for i in rows:
                outcomes[i] = e
            continue
        actions = np.stack([choose(b, [d.session for d in group]) for b in logits], axis=1)
        # Memory floats 1..n_branches hold the previous action + 1 (MemoryLayout): the action
        # this session took, which need not be the one the graph drew.
        memory[:, 0, 1:1 + actions.shape[1]] = actions + 1
        personality.memories.scatter(memory_rows, generations, memory)
        for row, i in enumerate(rows):
            outcomes[i] = actions[row]
    return outcomes


def stack_frames(frames: list[np.ndarray]) -> np.ndarray:
    """[B, H, W, 3]: uint8 if every frame is (the usual case: a quarter of the bytes to move),
    else float32 in 0..1."""
    if all(f.dtype == np.uint8 for f in frames):
        return np.stack(frames)
    return np.stack([f if f.dtype == np.float32 else f / np.float32(255.0) for f in frames])


def choose(logits: np.ndarray, sessions: list[Session]) -> np.ndarray:
    """An action per row of one branch's masked logits [B, n]: the argmax for greedy sessions,
    else a draw with the session's own generator (inverse CDF of the softmax)."""
    z = logits.astype(np.float64)
    cdf = np.cumsum(np.exp(z - z.max(axis=1, keepdims=True)), axis=1)
    draws = np.array([0.0 if s.greedy else s.rng.random() for s in sessions])
    sampled = (cdf < (draws * cdf[:, -1])[:, None]).sum(axis=1)
    greedy = np.array([s.greedy for s in sessions])
    return np.where(greedy, logits.argmax(axis=1), np.minimum(sampled, z.shape[1] - 1))


# -- the service --------------------------------------------------------------------------------

class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """The RPCs, as coroutines on the server's event loop (create it there)."""

    def __init__(self, personalities: Personalities, batcher: Batcher, *,
                 max_sessions: int = 256, idle_timeout_s: float = 300.0) -> None:
        self.personalities, self.batcher = personalities, batcher
        self.max_sessions, self.idle_timeout_s = max_sessions, idle_timeout_s
        self.sessions: dict[str, Session] = {}
        self.reaper = asyncio.get_running_loop().create_task(self._reap())

    def close(self) -> None:
        self.reaper.cancel()

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise BadInput(grpc.StatusCode.NOT_FOUND,
                           f"unknown session {session_id!r} (closed, timed out after "
                           f"{self.idle_timeout_s:g} s idle, or never opened): call OpenSession")
        session.last_used = time.monotonic()
        return session

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout_s / 4))
            now = time.monotonic()
            for s in [s for s in self.sessions.values()
                      if now - s.last_used > self.idle_timeout_s]:
                del self.sessions[s.id]
                s.free()
                log("session_timed_out", session=s.id, idle_s=round(now - s.last_used, 1))
                if s.stream is not None and not s.shared:
                    s.stream.cancel()

    # -- RPCs -----------------------------------------------------------------------------------

    async def ListPersonalities(self, request: pb.ListPersonalitiesRequest,
                                context: grpc.aio.ServicerContext
                                ) -> pb.ListPersonalitiesResponse:
        self.personalities.scan()
        return pb.ListPersonalitiesResponse(
            personalities=[p.message() for _, p in sorted(self.personalities.loaded.items())])

    async def OpenSession(self, request: pb.OpenSessionRequest,
                          context: grpc.aio.ServicerContext) -> pb.OpenSessionResponse:
        try:
            personality = self.personalities.get(request.personality)
            if len(self.sessions) >= self.max_sessions:
                raise BadInput(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"this server holds at most {self.max_sessions} sessions; "
                               "close one (CloseSession) or retry later")
        except BadInput as e:
            await _abort(context, e)
        options = request.options
        seed = options.seed if options.HasField("seed") else None
        session = Session(id=uuid.uuid4().hex, personality=personality, greedy=options.greedy,
                          rng=np.random.default_rng(seed))
        self.sessions[session.id] = session
        log("session_opened", session=session.id, personality=personality.name,
            greedy=options.greedy, seed=seed, peer=context.peer())
        return pb.OpenSessionResponse(session_id=session.id, personality=personality.message(),
                                      idle_timeout_s=self.idle_timeout_s)

    async def Act(self, request_iterator: AsyncIterator[pb.ActRequest],
                  context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ActResponse]:
        session: Session | None = None
        self.batcher.streams += 1
        try:
            async for request in request_iterator:
                try:
                    if session is None:
                        session = self._attach(request.session_id)
                    elif request.session_id and request.session_id != session.id:
                        raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                                       "one Act stream serves one session: open another "
                                       f"stream for {request.session_id!r}")
                    response = await self._act(session, request, self._frame(session, request))
                except BadInput as e:
                    await _abort(context, e)
                yield response
        finally:
            self.batcher.streams -= 1
            if session is not None:
                self._release(session)

    async def ActBatch(self, request_iterator: AsyncIterator[pb.ActBatchRequest],
                       context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ActBatchResponse]:
        held: dict[str, Session] = {}  # the sessions this stream has named so far
        try:
            async for batch in request_iterator:
                try:
                    work = self._check_batch(batch, held)
                except BadInput as e:
                    await _abort(context, e)
                try:
                    responses = await self._act_batch(work)
                except BadInput as e:  # a swap to another frame shape since the check
                    await _abort(context, e)
                yield pb.ActBatchResponse(responses=responses)
        finally:
            self.batcher.streams -= len(held)
            for session in held.values():
                self._release(session)

    def _check_batch(self, batch: pb.ActBatchRequest, held: dict[str, Session]
                     ) -> list[tuple[Session, pb.ActRequest, np.ndarray | None]]:
        """Every item's session and decoded frame, or BadInput naming the first bad item:
        nothing of a request is decided unless all of it can be."""
        work, seen = [], set()
        for i, request in enumerate(batch.requests):
            try:
                session_id = request.session_id
                if not session_id:
                    raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                                   "every ActRequest of an ActBatch needs its session_id")
                if session_id in seen:
                    raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"session {session_id!r} appears twice in one ActBatchRequest;"
                                   " send one request per session per tick")
                seen.add(session_id)
                session = held.get(session_id)
                if session is None or self.sessions.get(session_id) is not session:
                    session = self._attach(session_id, shared=True)
                    held[session_id] = session
                    self.batcher.streams += 1
                session.last_used = time.monotonic()
                work.append((session, request, self._frame(session, request)))
            except BadInput as e:
                raise BadInput(e.code, f"item {i}: {e}") from None
        return work

    def _attach(self, session_id: str, shared: bool = False) -> Session:
        if not session_id:
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           "the first ActRequest of a stream must carry session_id")
        session = self._session(session_id)
        if session.stream is not None:
            raise BadInput(grpc.StatusCode.FAILED_PRECONDITION,
                           f"session {session_id} already has an open Act or ActBatch stream; "
                           "end it before opening another")
        session.stream, session.shared = asyncio.current_task(), shared
        return session

    @staticmethod
    def _release(session: Session) -> None:
        session.stream, session.shared = None, False
        if session.step:  # the stream stopped mid-episode; the session keeps it
            log("stream_ended", session=session.id, step=session.step)

    @staticmethod
    def _frame(session: Session, request: pb.ActRequest) -> np.ndarray | None:
        """The request's decoded frame (None for an episode end); BadInput if it has none or
        the frame does not fit the session's personality."""
        event = request.WhichOneof("event")
        if event == "episode_end":
            return None
        if event != "observation":
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           "ActRequest needs an observation or an episode_end")
        return decode_frame(request.observation, session.personality.frame_shape)

    async def _act(self, session: Session, request: pb.ActRequest, frame: np.ndarray | None
                   ) -> pb.ActResponse:
        session.last_used = time.monotonic()
        async with session.lock:
            personality = session.personality
            if frame is None:
                return self._end_episode(session, request)
            frame = self._fitted(personality, request, frame)
            if request.episode_start:
                session.new_episode()
            actions = await self.batcher.decide(session, frame)
            return self._answer(session, personality, actions)

    async def _act_batch(self, work: list[tuple[Session, pb.ActRequest, np.ndarray | None]]
                         ) -> list[pb.ActResponse]:
        """`_act` for one tick's items together: every decision queued before any is awaited,
        and no task per item (a game's tick may carry hundreds)."""
        locked: list[Session] = []
        try:
            for session, _, _ in work:
                await session.lock.acquire()
                locked.append(session)
            responses: list[pb.ActResponse] = [pb.ActResponse()] * len(work)
            deciding: list[tuple[int, Session, Personality, np.ndarray]] = []
            for i, (session, request, frame) in enumerate(work):
                personality = session.personality
                if frame is None:
                    responses[i] = self._end_episode(session, request)
                    continue
                try:
                    frame = self._fitted(personality, request, frame)
                except BadInput as e:
                    raise BadInput(e.code, f"item {i}: {e}") from None
                deciding.append((i, session, personality, frame))
            for i, session, _, _ in deciding:
                if work[i][1].episode_start:
                    session.new_episode()
            actions = await self.batcher.decide_many([(s, f) for _, s, _, f in deciding])
            for (i, session, personality, _), chosen in zip(deciding, actions, strict=True):
                responses[i] = self._answer(session, personality, chosen)
            return responses
        finally:
            for session in locked:
                session.lock.release()

    @staticmethod
    def _end_episode(session: Session, request: pb.ActRequest) -> pb.ActResponse:
        log("episode_ended", session=session.id, steps=session.step,
            outcome=request.episode_end.outcome)
        session.new_episode()
        return pb.ActResponse(episode_ended=True, personality=session.personality.name)

    @staticmethod
    def _fitted(personality: Personality, request: pb.ActRequest, frame: np.ndarray
                ) -> np.ndarray:
        """The frame, decoded again if the session was swapped to another frame shape since."""
        if frame.shape != personality.frame_shape:
            return decode_frame(request.observation, personality.frame_shape)
        return frame

    @staticmethod
    def _answer(session: Session, personality: Personality, actions: np.ndarray
                ) -> pb.ActResponse:
        """The response to a decision, counted in the session's episode and total."""
        response = pb.ActResponse(actions=actions.tolist(), step=session.step,
                                  personality=personality.name)
        session.step += 1
        session.decisions += 1
        return response

    async def SwapPersonality(self, request: pb.SwapPersonalityRequest,
                              context: grpc.aio.ServicerContext) -> pb.SwapPersonalityResponse:
        try:
            session = self._session(request.session_id)
            personality = self.personalities.get(request.personality)
        except BadInput as e:
            await _abort(context, e)
        async with session.lock:  # between two decisions, never during one
            old = session.personality.name
            session.play_with(personality)
        log("personality_swapped", session=session.id, old=old, new=personality.name,
            step=session.step)
        return pb.SwapPersonalityResponse(personality=personality.message())

    async def CloseSession(self, request: pb.CloseSessionRequest,
                           context: grpc.aio.ServicerContext) -> pb.CloseSessionResponse:
        try:
            session = self._session(request.session_id)
        except BadInput as e:
            await _abort(context, e)
        del self.sessions[session.id]
        session.free()
        if (session.stream is not None and not session.shared
                and session.stream is not asyncio.current_task()):
            session.stream.cancel()  # an ActBatch stream goes on; naming it again fails
        log("session_closed", session=session.id, decisions=session.decisions)
        return pb.CloseSessionResponse(decisions=session.decisions)


async def _abort(context: grpc.aio.ServicerContext, error: BadInput) -> None:
    log("bad_request", code=error.code.name, message=str(error), peer=context.peer())
    await context.abort(error.code, str(error))
