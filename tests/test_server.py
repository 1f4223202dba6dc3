"""The agent server through a real gRPC server on loopback: sessions, batching, parity with the
local personality, bad input, auth and TLS, training runs, and the committed stubs."""

from __future__ import annotations

import datetime as dt
import io
import re
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from agentalign.client import Client, ServerAgents, observation
from agentalign.config import defaults
from agentalign.errors import UserError
from agentalign.export.export_config import ExportSettings
from agentalign.export.onnx_agent import OnnxAgent
from agentalign.export.personality import run as export_personality
from agentalign.models.checkpoint import save_step
from agentalign.models.policy import Policy, get_config
from agentalign.rollout import play
from agentalign.server.app import Server, ServerConfig
from agentalign.server.v1 import policy_pb2 as pb
from agentalign.server.v1 import training_pb2

ROOT = Path(__file__).resolve().parent.parent
FRAME = (64, 64, 3)


def _export(tmp: Path, name: str, seed: int, out: Path) -> None:
    torch.manual_seed(seed)
    policy = Policy(get_config("tiny", context=8)).eval()
    with torch.no_grad():  # a random init gives near-uniform logits; make them decisive
        for p in policy.parameters():
            if p.dim() >= 2:
                p.mul_(8.0)
    stage = tmp / name
    save_step(stage, policy, policy.config.to_dict(), kind="policy", stage="sft", step=1)
    # Greedy feedback: the file's own deterministic output feeds back the argmax, as the
    # server does for greedy sessions, so the two can be compared action for action.
    export_personality(defaults(ExportSettings).replace(episodes=4, num_envs=4,
                                                        deterministic=True), stage, name, out)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("personalities")
    out = tmp / "personalities"
    _export(tmp, "alpha", 0, out)
    _export(tmp, "beta", 1, out)
    return out


@pytest.fixture(scope="module")
def server(folder: Path, tmp_path_factory: pytest.TempPathFactory):
    srv = Server(ServerConfig(personalities=folder, runs=tmp_path_factory.mktemp("runs"),
                              port=0, max_sessions=80, max_message_bytes=1 << 20))
    yield srv
    srv.stop(grace_s=1.0)


@pytest.fixture()
def client(server: Server):
    with Client(f"127.0.0.1:{server.port}") as c:
        yield c


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *FRAME), dtype=np.uint8)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


# -- the policy API -----------------------------------------------------------------------------

def test_list_open_act_swap_close(client: Client) -> None:
    listed = {p.name: p for p in client.personalities()}
    assert set(listed) == {"alpha", "beta"}
    assert list(listed["alpha"].action_branches) == [9, 3]
    assert list(listed["alpha"].observation_shape) == list(FRAME)
    assert set(listed["alpha"].outcome_rates) >= {"left", "fell", "timeout"}
    with client.open("alpha", seed=3) as agent:
        for frame in frames(3):
            actions = agent.act(frame)
            assert actions.shape == (2,) and 0 <= actions[0] < 9 and 0 <= actions[1] < 3
        agent.end_episode("fell")
        assert agent.swap("beta").name == "beta"
        response = agent._send(pb.ActRequest(observation=observation(frames(1)[0])))
        assert response.personality == "beta" and response.step == 0
    assert code_of(lambda: client.policy.CloseSession(
        pb.CloseSessionRequest(session_id=agent.id)))[0] == grpc.StatusCode.NOT_FOUND


def test_png_raw_and_float_frames_agree(client: Client) -> None:
    frame = frames(1, seed=5)[0]
    png = io.BytesIO()
    Image.fromarray(frame).save(png, format="PNG")
    results = []
    for sent in (frame, png.getvalue(), frame.astype(np.float32) / 255):
        with client.open("alpha", greedy=True) as agent:
            results.append(agent.act(sent).tolist())
    assert results[0] == results[1] == results[2]


def test_seeded_sessions_repeat_and_ignore_batch_mates(client: Client) -> None:
    clip = frames(20, seed=1)
    runs = []
    for seed in (7, 7, 8):
        with client.open("alpha", seed=seed) as agent:
            runs.append([agent.act(f).tolist() for f in clip])
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_island_through_server_matches_local_personality(client: Client, folder: Path) -> None:
    episodes, seed, num_envs = 8, 11, 8
    local = play(OnnxAgent(folder / "alpha.onnx", num_envs, deterministic=True), None,
                 episodes=episodes, num_envs=num_envs, seed=seed, record_frames=0)
    agents = ServerAgents(client, "alpha", num_envs, greedy=True)
    try:
        served = play(agents, None, episodes=episodes, num_envs=num_envs, seed=seed,
                      record_frames=0)
    finally:
        agents.close()
    assert [e.outcome for e in served.episodes] == [e.outcome for e in local.episodes]
    assert [e.length for e in served.episodes] == [e.length for e in local.episodes]


def test_64_concurrent_sessions_are_batched(client: Client, server: Server) -> None:
    errors: list[BaseException] = []
    before = server.batcher.batches

    def play(i: int) -> None:
        try:
            with client.open("alpha" if i % 2 else "beta", seed=i) as agent:
                for frame in frames(10, seed=i):
                    agent.act(frame)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=play, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert server.batcher.batches - before < 64 * 10 / 2  # most passes served several sessions


def _tick(ids: list[str], clip: np.ndarray, start: bool = False) -> pb.ActBatchRequest:
    return pb.ActBatchRequest(requests=[
        pb.ActRequest(session_id=i, observation=observation(f), episode_start=start)
        for i, f in zip(ids, clip, strict=True)])


def test_act_batch_decides_as_separate_streams_do(client: Client) -> None:
    """Seeded sessions on one ActBatch stream take the actions they take on their own Act
    streams, episode ends and starts included, and keep their steps."""
    clips = [frames(6, seed=20 + k) for k in range(3)]
    alone = []
    for k, clip in enumerate(clips):
        with client.open("alpha" if k else "beta", seed=k) as agent:
            actions = [agent.act(f).tolist() for f in clip[:3]]
            agent.end_episode("left")
            actions += [agent.act(f).tolist() for f in clip[3:5]]
            actions.append(agent.act(clip[5], episode_start=True).tolist())
            alone.append(actions)
    ids = [client.open("alpha" if k else "beta", seed=k).id for k in range(3)]
    ticks = [_tick(ids, [c[t] for c in clips], start=t == 5) for t in range(6)]
    ticks.insert(3, pb.ActBatchRequest(requests=[
        pb.ActRequest(session_id=i, episode_end=pb.EpisodeEnd(outcome="left")) for i in ids]))
    answers = list(client.policy.ActBatch(iter(ticks)))
    assert [r.episode_ended for r in answers[3].responses] == [True] * 3
    together = [[list(a.responses[k].actions) for a in answers[:3] + answers[4:]]
                for k in range(3)]
    assert together == alone
    assert [r.step for r in answers[5].responses] == [1, 1, 1]
    assert [r.step for r in answers[6].responses] == [0, 0, 0]
    assert [r.personality for r in answers[0].responses] == ["beta", "alpha", "alpha"]
    for i in ids:
        client.policy.CloseSession(pb.CloseSessionRequest(session_id=i))


def test_act_batch_bad_item_decides_nothing(client: Client) -> None:
    ids = [client.open("alpha", greedy=True).id for _ in range(3)]
    clip = frames(3)
    bad = _tick(ids, clip)
    bad.requests[2].observation.raw.height = 32
    code, details = code_of(lambda: list(client.policy.ActBatch(iter([_tick(ids, clip), bad]))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("item 2:")
    # The stream is over and its sessions free: none moved on the refused tick.
    answer = next(client.policy.ActBatch(iter([_tick(ids, clip)])))
    assert [r.step for r in answer.responses] == [1, 1, 1]
    missing = _tick(ids, clip)
    missing.requests[1].session_id = ""
    twice = _tick([ids[0], ids[1], ids[0]], clip)
    for request, code_wanted, words in [
            (missing, grpc.StatusCode.INVALID_ARGUMENT, "item 1: every ActRequest"),
            (twice, grpc.StatusCode.INVALID_ARGUMENT, "item 2: session"),
            (_tick([ids[0], "nope"], clip[:2]), grpc.StatusCode.NOT_FOUND, "item 1: unknown")]:
        code, details = code_of(lambda r=request: list(client.policy.ActBatch(iter([r]))))
        assert code == code_wanted and details.startswith(words), details
    with client.open("alpha") as agent:  # a session with its own Act stream is not shared
        agent.act(clip[0])
        code, details = code_of(lambda: list(client.policy.ActBatch(iter([
            _tick([ids[0], agent.id], clip[:2])]))))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "item 1" in details
    answer = next(client.policy.ActBatch(iter([_tick(ids, clip)])))
    assert [r.step for r in answer.responses] == [2, 2, 2]
    for i in ids:
        client.policy.CloseSession(pb.CloseSessionRequest(session_id=i))


def test_act_batch_holds_its_sessions_and_survives_a_close(client: Client) -> None:
    ids = [client.open("alpha").id for _ in range(2)]
    clip = frames(2)
    requests: list[pb.ActBatchRequest | None] = []
    ready = threading.Event()

    def feed():
        yield _tick(ids, clip, start=True)
        ready.wait(10)
        yield requests[0]
        yield requests[1]

    call = client.policy.ActBatch(feed())
    first = next(call)
    assert [r.step for r in first.responses] == [0, 0]
    single = client.policy.Act(iter([pb.ActRequest(session_id=ids[0],
                                                    observation=observation(clip[0]))]))
    code, _ = code_of(lambda: next(single))  # held by the ActBatch stream
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    client.policy.CloseSession(pb.CloseSessionRequest(session_id=ids[1]))
    requests += [_tick(ids[:1], clip[:1]), _tick(ids, clip)]
    ready.set()
    assert next(call).responses[0].step == 1  # the others' stream goes on
    code, details = code_of(lambda: next(call))
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("item 1")
    with client.open("alpha") as agent:  # and the stream's end frees its sessions
        agent.act(clip[0])
    follow = next(client.policy.Act(iter([pb.ActRequest(session_id=ids[0],
                                                        observation=observation(clip[0]))])))
    assert follow.step == 2
    client.policy.CloseSession(pb.CloseSessionRequest(session_id=ids[0]))


# -- bad input ------------------------------------------------------------------------------------

def _act_once(client: Client, request: pb.ActRequest, session_id: str | None = None):
    if session_id is None:
        session_id = client.open("alpha").id
    request.session_id = session_id
    return next(client.policy.Act(iter([request])))


@pytest.mark.parametrize(("obs", "words"), [
    (pb.Observation(raw=pb.RawFrame(data=bytes(32 * 32 * 3), height=32, width=32, channels=3)),
     "takes 64x64x3"),
    (pb.Observation(raw=pb.RawFrame(data=bytes(100), height=64, width=64, channels=3)),
     "needs 12288 bytes"),
    (pb.Observation(raw=pb.RawFrame(data=bytes(64 * 64 * 3), height=64, width=64, channels=3,
                                    dtype=pb.FLOAT32)), "float32 frame 64x64x3 needs 49152"),
    (pb.Observation(raw=pb.RawFrame(data=np.full(FRAME, np.nan, np.float32).tobytes(),
                                    height=64, width=64, channels=3, dtype=pb.FLOAT32)), "NaN"),
    (pb.Observation(raw=pb.RawFrame(data=np.full(FRAME, np.inf, np.float32).tobytes(),
                                    height=64, width=64, channels=3, dtype=pb.FLOAT32)), "NaN"),
    (pb.Observation(raw=pb.RawFrame(data=bytes(64 * 64 * 3), height=64, width=64, channels=3,
                                    dtype=7)), "dtype"),
    (pb.Observation(png=b"\x89PNG\r\n\x1a\nnot really"), "png cannot be decoded"),
    (pb.Observation(), "no pixels"),
])
def test_bad_observations_are_invalid_argument(client: Client, obs: pb.Observation,
                                               words: str) -> None:
    code, details = code_of(lambda: _act_once(client, pb.ActRequest(observation=obs)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details
    with client.open("alpha") as agent:  # the server keeps serving
        agent.act(frames(1)[0])


def test_unknown_names_and_oversized_messages(client: Client) -> None:
    code, details = code_of(lambda: client.open("gamma"))
    assert code == grpc.StatusCode.NOT_FOUND and "alpha, beta" in details
    code, _ = code_of(lambda: _act_once(client, pb.ActRequest(
        observation=observation(frames(1)[0])), session_id="nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    with client.open("alpha") as agent:
        code, _ = code_of(lambda: agent.swap("gamma"))
        assert code == grpc.StatusCode.NOT_FOUND
    big = pb.ActRequest(observation=pb.Observation(png=bytes(2 << 20)))
    code, _ = code_of(lambda: _act_once(client, big))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_stream_stopping_mid_episode_keeps_session(client: Client, server: Server) -> None:
    agent = client.open("alpha", greedy=True)
    agent.act(frames(1)[0])
    agent.end_stream()  # the stream stops mid-episode
    with client.open("beta") as other:
        other.act(frames(1)[0])
    response = agent._send(pb.ActRequest(observation=observation(frames(1)[0])))
    assert response.step == 1  # same session, same episode
    second = client.policy.Act(iter([pb.ActRequest(session_id=agent.id,
                                                    observation=observation(frames(1)[0]))]))
    code, _ = code_of(lambda: next(second))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert agent.close() == 2


def test_session_limit_and_idle_timeout(folder: Path, tmp_path: Path) -> None:
    srv = Server(ServerConfig(personalities=folder, runs=tmp_path, port=0, max_sessions=2,
                              idle_timeout_s=0.5))
    try:
        with Client(f"127.0.0.1:{srv.port}") as c:
            first = c.open("alpha")
            c.open("alpha")
            code, details = code_of(lambda: c.open("alpha"))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 2" in details
            for _ in range(40):
                if not srv.policy.sessions:
                    break
                threading.Event().wait(0.1)
            code, details = code_of(lambda: first.act(frames(1)[0]))
            assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.CANCELLED)
            c.open("alpha").act(frames(1)[0])
    finally:
        srv.stop(grace_s=1.0)


# -- operations -----------------------------------------------------------------------------------

def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_token_auth(folder: Path, tmp_path: Path, tls: bool) -> None:
    cert = key = None
    if tls:
        pytest.importorskip("cryptography")
        cert, key = _self_signed(tmp_path)
    srv = Server(ServerConfig(personalities=folder, runs=tmp_path / "runs", port=0,
                              token="s3cret", tls_cert=cert, tls_key=key))
    target = f"localhost:{srv.port}"
    try:
        for token, expected in ((None, "missing"), ("wrong", "wrong")):
            with Client(target, token=token, tls_ca=cert) as c:
                code, details = code_of(c.personalities)
                assert code == grpc.StatusCode.UNAUTHENTICATED and expected in details
                code, _ = code_of(lambda c=c: c.open("alpha").act(frames(1)[0]))
                assert code == grpc.StatusCode.UNAUTHENTICATED
        with Client(target, token="s3cret", tls_ca=cert) as c:
            with c.open("alpha") as agent:
                agent.act(frames(1)[0])
            health = health_pb2_grpc.HealthStub(c.channel)  # health needs no token
            assert health.Check(health_pb2.HealthCheckRequest()).status == \
                health_pb2.HealthCheckResponse.SERVING
        if tls:
            with Client(target, token="s3cret") as plain:  # no TLS: the handshake fails
                code, _ = code_of(lambda: plain.personalities())
                assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop(grace_s=1.0)


def test_refuses_open_address_without_token(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="without a token"):
        Server(ServerConfig(personalities=folder, runs=tmp_path, host="0.0.0.0", port=0))


def test_health_and_reflection(client: Client) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "agentalign.v1.PolicyService", "agentalign.v1.TrainingService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    listed = next(stub.ServerReflectionInfo(iter([request]))).list_services_response
    names = {s.name for s in listed.service}
    assert {"agentalign.v1.PolicyService", "agentalign.v1.TrainingService",
            "grpc.health.v1.Health"} <= names


def test_graceful_shutdown_answers_decisions_in_flight(folder: Path, tmp_path: Path) -> None:
    srv = Server(ServerConfig(personalities=folder, runs=tmp_path, port=0,
                              batch_window_s=0.5))
    client = Client(f"127.0.0.1:{srv.port}")
    waiting, other = client.open("alpha"), client.open("alpha")
    other.act(frames(1)[0])  # a second open stream: the next decision waits for its window
    answered: list[np.ndarray] = []
    thread = threading.Thread(target=lambda: answered.append(waiting.act(frames(1)[0])))
    thread.start()
    threading.Event().wait(0.2)
    srv.stop(grace_s=1.5)  # the decision is queued, not yet computed
    thread.join()
    assert len(answered) == 1 and answered[0].shape == (2,)
    code, _ = code_of(lambda: client.open("alpha"))
    assert code == grpc.StatusCode.UNAVAILABLE
    client.close()


def test_cli_serve_refuses_open_address_without_token(folder: Path, capsys, monkeypatch
                                                      ) -> None:
    from agentalign.cli import main

    monkeypatch.delenv("AGENTALIGN_SERVER_TOKEN", raising=False)
    assert main(["serve", "--personalities", str(folder), "--host", "0.0.0.0"]) == 2
    assert "without a token" in capsys.readouterr().err


# -- training ---------------------------------------------------------------------------------

def _watch(client: Client, name: str) -> list[training_pb2.RunEvent]:
    return list(client.watch_run(name))


def test_run_watched_to_completion(client: Client) -> None:
    run = client.start_run(["collect", "--episodes", "8", "--workers", "1", "--num-envs", "4",
                            "--out", "{run_dir}/corpus"], name="toy")
    assert run.state == training_pb2.RUNNING
    events = _watch(client, "toy")
    kinds = [e.WhichOneof("event") for e in events]
    assert events[0].state == training_pb2.RUNNING and events[-1].state == training_pb2.SUCCEEDED
    assert {"progress", "log", "stage_state", "metrics"} <= set(kinds)
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    assert {p.stage for p in progress} == {"collect"}  # the stage's own events, not bar text
    assert progress[-1].done == progress[-1].total == 8
    states = [(e.stage_state.stage, e.stage_state.state) for e in events
              if e.WhichOneof("event") == "stage_state"]
    assert states == [("collect", "started"), ("collect", "done")]
    metrics = [e.metrics for e in events if e.WhichOneof("event") == "metrics"]
    assert metrics[-1].source == "collect" and metrics[-1].values["episodes"] == 8
    run_dir = Path(run.run_dir)
    assert (run_dir / "corpus" / "corpus.json").exists() and (run_dir / "log.txt").exists()
    assert {r.name: r.state for r in client.runs()}["toy"] == training_pb2.SUCCEEDED
    code, _ = code_of(lambda: client.start_run(["collect"], name="toy"))
    assert code == grpc.StatusCode.ALREADY_EXISTS


def test_failing_and_cancelled_runs(client: Client, server: Server) -> None:
    client.start_run(["pretrain", "--corpus", "{run_dir}/nowhere", "--out", "{run_dir}/p"],
                     name="bad")
    events = _watch(client, "bad")
    assert events[-1].state == training_pb2.FAILED
    assert any("no corpus at" in e.log for e in events if e.WhichOneof("event") == "log")
    client.start_run(["collect", "--episodes", "100000", "--workers", "1", "--num-envs", "4",
                      "--out", "{run_dir}/corpus"], name="long")
    events = client.watch_run("long")
    next(events)  # running
    assert client.cancel_run("long").name == "long"
    assert list(events)[-1].state == training_pb2.CANCELLED
    code, _ = code_of(lambda: client.cancel_run("nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    with client.open("alpha") as agent:  # the server is fine
        agent.act(frames(1)[0])


@pytest.mark.parametrize("args,words", [
    (["serve"], "'serve' is not a training stage"),
    (["unity-scene"], "'unity-scene' is not a training stage"),
    (["--help"], "is not a training stage"),
    (["collect", "--episodes", "0", "--out", "{run_dir}/c"], "episodes: must be >= 1"),
    (["collect", "--nonsense"], "unrecognized arguments: --nonsense"),
    (["collect", "--out", "/tmp/elsewhere"], "out: /tmp/elsewhere is outside"),
    (["collect", "--out", "{run_dir}/../escape"], "contains '..'"),
    (["pretrain", "--corpus", "/etc", "--out", "{run_dir}/p"], "corpus: /etc is outside"),
    (["collect", "--config", "/etc/passwd", "--out", "{run_dir}/c"], "config: /etc/passwd"),
    (["collect", "--set", "layout=/etc/island.json", "--out", "{run_dir}/c"],
     "layout: /etc/island.json is outside"),
    (["collect", "--env", "unity:/usr/bin/true", "--out", "{run_dir}/c"],
     "env: this server runs no Unity builds"),
    (["export", "{run_dir}/x", "--name", "x"], "--out: give it"),
    (["pipeline", "--set", "label.layout=/x.json", "--out", "{run_dir}"], "label.layout"),
    (["pipeline", "--intents", "/etc/passwd", "--out", "{run_dir}"], "intents: /etc/passwd"),
    (["label", "--policy", "{run_dir}/s", "--target", "x", "--intents", "/etc/passwd",
      "--out", "{run_dir}/l"], "intents: /etc/passwd is outside"),
    (["pretrain", "--corpus", "{run_dir}/c", "--out", "{run_dir}/p", "--cluster",
      "ray:10.0.0.9:6379"], "--cluster: runs this server starts"),
    (["evaluate", "{run_dir}/p", "--cluster", "ray", "--out", "{run_dir}/e"],
     "--cluster: runs this server starts"),
])
def test_runs_that_would_step_outside_are_refused(client: Client, server: Server, args: list,
                                                  words: str) -> None:
    code, details = code_of(lambda: client.start_run(args))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details, details
    assert not list(server.training.runs_dir.glob("run-*"))  # nothing started, nothing made


def test_symlinks_out_of_the_runs_folder_are_refused(client: Client, server: Server,
                                                     tmp_path: Path) -> None:
    link = server.training.runs_dir / "shortcut"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        code, details = code_of(lambda: client.start_run(
            ["sft", "--init", str(link), "--demos", str(link), "--out", "{run_dir}/s"]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "is outside" in details
    finally:
        link.unlink()


def test_builds_must_live_in_the_builds_folder(tmp_path: Path) -> None:
    from agentalign.server.training import Folders, RefusedRun, check_run

    builds = tmp_path / "builds"
    builds.mkdir()
    (builds / "island.x86_64").write_text("")
    folders = Folders(tmp_path / "runs", tmp_path / "personalities", builds)
    run_dir = tmp_path / "runs" / "r"
    check_run(["collect", "--env", f"unity:{builds / 'island.x86_64'}", "--out", str(run_dir)],
              run_dir, folders)
    with pytest.raises(RefusedRun, match="env: /usr/bin/true is outside"):
        check_run(["collect", "--env", "unity:/usr/bin/true", "--out", str(run_dir)], run_dir,
                  folders)


def test_undecodable_requests_are_invalid_argument(server: Server) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    garbage = b"\xff\xff\xff\xff"
    try:
        for method in ("/agentalign.v1.TrainingService/StartRun",
                       "/agentalign.v1.PolicyService/OpenSession"):
            call = channel.unary_unary(method, request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)
            code, details = code_of(lambda call=call: call(garbage))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not parse" in details
        act = channel.stream_stream("/agentalign.v1.PolicyService/Act",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        code, details = code_of(lambda: list(act(iter([garbage]))))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not parse" in details
    finally:
        channel.close()


def test_a_bad_frame_does_not_poison_the_session(client: Client) -> None:
    with client.open("alpha", greedy=True) as agent:
        good = frames(2)
        first = agent.act(good[0]).tolist()
        code, _ = code_of(lambda: agent.act(np.zeros((3, 3, 3), np.uint8)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert agent.act(good[1]).shape == (2,)  # a fresh stream: no replay of the error
        assert len(first) == 2


# -- generated code -------------------------------------------------------------------------------

def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "build" / "gen_protos.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for path in gen.generate(tmp_path):
        committed = ROOT / "python" / "agentalign" / "server" / "v1" / path.name
        assert without_generator_versions(committed.read_text()) == \
            without_generator_versions(path.read_text()), \
            f"{committed.name} is stale: run python build/gen_protos.py"


def without_generator_versions(text: str) -> str:
    """Generated code less the versions of the generator that made it: they move with each
    grpcio-tools release (1.85.1 made the committed stubs, a fresh install got 1.85.4) while
    the code, which is what the .proto files decide, stays the same."""
    text = re.sub(r"GRPC_GENERATED_VERSION = '[^']*'", "GRPC_GENERATED_VERSION = '*'", text)
    text = re.sub(r"# Protobuf Python Version: \S+", "# Protobuf Python Version: *", text)
    return re.sub(r"ValidateProtobufRuntimeVersion\([^)]*\)",
                  lambda m: re.sub(r"\b\d+\b", "*", m.group(0)), text)
