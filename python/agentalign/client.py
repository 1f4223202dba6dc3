"""A Python client for the agent server (`agentalign serve`).

    from agentalign.client import Client

    with Client("127.0.0.1:50051") as client:
        print([p.name for p in client.personalities()])
        with client.open("left-runner", greedy=True) as agent:
            actions = agent.act(frame)          # uint8 [64, 64, 3] -> int64 [n_branches]
            agent.end_episode("left")           # the next act starts a new episode
            agent.swap("right-runner")

Errors arrive as `grpc.RpcError` with the server's status code and message.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from agentalign.server.v1 import policy_pb2 as pb
from agentalign.server.v1 import policy_pb2_grpc, training_pb2, training_pb2_grpc


class Client:
    """A channel to one server. `token`: its bearer token; `tls_ca`: the PEM certificate(s) to
    trust for TLS (the server's own for a self-signed one); without it the channel is plain."""

    def __init__(self, target: str = "127.0.0.1:50051", *, token: str | None = None,
                 tls_ca: bytes | Path | None = None, server_name: str | None = None,
                 max_message_bytes: int = 4 * 1024 * 1024) -> None:
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls_ca is not None:
            pem = tls_ca.read_bytes() if isinstance(tls_ca, Path) else tls_ca
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(pem),
                                               options)
        else:
            self.channel = grpc.insecure_channel(target, options)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.policy = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.training = training_pb2_grpc.TrainingServiceStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    # -- policy ---------------------------------------------------------------------------------

    def personalities(self) -> list[pb.Personality]:
        return list(self.policy.ListPersonalities(pb.ListPersonalitiesRequest(),
                                                  metadata=self.metadata).personalities)

    def open(self, personality: str, *, greedy: bool = False, seed: int | None = None
             ) -> AgentSession:
        """A session and its Act stream."""
        options = pb.SessionOptions(greedy=greedy, seed=seed)
        response = self.policy.OpenSession(
            pb.OpenSessionRequest(personality=personality, options=options),
            metadata=self.metadata)
        return AgentSession(self, response)

    # -- training -------------------------------------------------------------------------------

    def start_run(self, args: list[str] | None = None, name: str = "") -> training_pb2.Run:
        config = training_pb2.RunConfig(name=name, args=args or [])
        return self.training.StartRun(training_pb2.StartRunRequest(config=config),
                                      metadata=self.metadata)

    def watch_run(self, name: str) -> Iterator[training_pb2.RunEvent]:
        return self.training.WatchRun(training_pb2.WatchRunRequest(name=name),
                                      metadata=self.metadata)

    def cancel_run(self, name: str) -> training_pb2.Run:
        return self.training.CancelRun(training_pb2.CancelRunRequest(name=name),
                                       metadata=self.metadata)

    def runs(self) -> list[training_pb2.Run]:
        return list(self.training.ListRuns(training_pb2.ListRunsRequest(),
                                           metadata=self.metadata).runs)


def observation(frame: np.ndarray | bytes) -> pb.Observation:
    """An Observation from uint8 [H, W, 3] pixels, float32 [H, W, 3] pixels in 0..1, or the
    bytes of a PNG file."""
    if isinstance(frame, bytes):
        return pb.Observation(png=frame)
    frame = np.asarray(frame)
    dtype = {np.dtype(np.uint8): pb.UINT8, np.dtype(np.float32): pb.FLOAT32}.get(frame.dtype)
    if dtype is None or frame.ndim != 3:
        raise ValueError(f"frame must be uint8 or float32 [H, W, 3], got {frame.dtype} "
                         f"{list(frame.shape)}")
    h, w, c = frame.shape
    data = np.ascontiguousarray(frame, frame.dtype.newbyteorder("<")).tobytes()
    return pb.Observation(raw=pb.RawFrame(data=data, height=h, width=w, channels=c,
                                          dtype=dtype))


class _Stream:
    """A bidirectional stream fed from a queue, one response per request. An error status ends
    it: the next `send` opens a fresh one, instead of re-raising that error for ever."""

    def __init__(self, method: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method, self.metadata = method, metadata
        self.requests: queue.Queue[Any] = queue.Queue()
        self.responses: Iterator[Any] | None = None

    @property
    def open(self) -> bool:
        return self.responses is not None

    def send(self, request: Any) -> Any:
        if self.responses is None:
            feed = self.requests  # this stream's queue, whatever later streams use

            def requests() -> Iterator[Any]:
                while (item := feed.get()) is not None:
                    yield item

            self.responses = self.method(requests(), metadata=self.metadata)
        self.requests.put(request)
        try:
            return next(self.responses)
        except grpc.RpcError:
            self.requests.put(None)
            self.requests, self.responses = queue.Queue(), None
            raise

    def close(self) -> None:
        if self.responses is not None:
            self.requests.put(None)
            self.responses.cancel()  # type: ignore[attr-defined]
            self.requests, self.responses = queue.Queue(), None


class AgentSession:
    """One session: decisions go over a single Act stream, opened on the first `act`."""

    def __init__(self, client: Client, opened: pb.OpenSessionResponse) -> None:
        self.client, self.id = client, opened.session_id
        self.personality = opened.personality
        self.stream = _Stream(client.policy.Act, client.metadata)

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _send(self, request: pb.ActRequest) -> pb.ActResponse:
        if not self.stream.open:  # a stream's first request names the session
            request.session_id = self.id
        return self.stream.send(request)

    def act(self, frame: np.ndarray | bytes, episode_start: bool = False) -> np.ndarray:
        """The action (int64 [n_branches]) for one frame (see `observation`)."""
        response = self._send(pb.ActRequest(observation=observation(frame),
                                            episode_start=episode_start))
        return np.array(response.actions, dtype=np.int64)

    def end_episode(self, outcome: str = "") -> None:
        self._send(pb.ActRequest(episode_end=pb.EpisodeEnd(outcome=outcome)))

    def swap(self, personality: str) -> pb.Personality:
        return self.client.policy.SwapPersonality(
            pb.SwapPersonalityRequest(session_id=self.id, personality=personality),
            metadata=self.client.metadata).personality

    def end_stream(self) -> None:
        """Close the Act stream (the session stays open; the next `act` opens a new one)."""
        self.stream.close()

    def close(self) -> int:
        """End the stream and the session; returns the decisions it made."""
        self.end_stream()
        try:
            return int(self.client.policy.CloseSession(
                pb.CloseSessionRequest(session_id=self.id),
                metadata=self.client.metadata).decisions)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:  # already gone (timed out)
                return 0
            raise


class ServerAgents:
    """N sessions of one personality acting together, an actor of the rollout loop
    (`begin(starting, episodes)`, `act(frames, info)`), so the island can be played through the
    server. Each step is one ActBatchRequest on one ActBatch stream (as a game sends its agents'
    decisions together), which the server batches into one forward pass."""

    def __init__(self, client: Client, personality: str, num_agents: int, *,
                 greedy: bool = False, seed: int | None = None) -> None:
        self.sessions = [client.open(personality, greedy=greedy,
                                     seed=None if seed is None else seed + i)
                         for i in range(num_agents)]
        self.starting = np.ones(num_agents, dtype=bool)
        self.stream = _Stream(client.policy.ActBatch, client.metadata)

    def begin(self, starting: np.ndarray, episodes: np.ndarray | None = None,
              seed: int | None = None) -> None:
        self.starting |= np.asarray(starting, dtype=bool)

    def act(self, frames: np.ndarray, info: object = None) -> np.ndarray:
        """Every agent's action (int64 [N, n_branches]) for its frame (frames [N, H, W, 3])."""
        starting, self.starting = self.starting, np.zeros_like(self.starting)
        answer = self.stream.send(pb.ActBatchRequest(requests=[
            pb.ActRequest(session_id=a.id, observation=observation(f), episode_start=bool(s))
            for a, f, s in zip(self.sessions, frames, starting, strict=True)]))
        return np.array([r.actions for r in answer.responses], dtype=np.int64)

    def close(self) -> None:
        """End the stream and close every session."""
        self.stream.close()
        for session in self.sessions:
            session.close()
