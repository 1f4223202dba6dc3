"""The stand-in headless player: the island behind the Unity side of ML-Agents' protocol.

`agentalign-island-player` behaves like a Linux build of the Unity island, so that everything on
the engine path (`UnityEnvironment`, the `unity` backend, restarts, side channels) runs here over
real gRPC with the real `mlagents_envs` client, without a Unity editor:

- it takes the player's command line (`--mlagents-port`, `-batchmode`, `-nographics`,
  `-logFile`, and ignores arguments it does not know, as a Unity player does);
- Python is the gRPC server; the player is the client calling `UnityToExternalProto.Exchange`
  and speaks as the ML-Agents 4.0 package's RpcCommunicator does: the initialization output
  (name, communication version "1.5.0", package version, capabilities), an empty message whose
  answer is the first command, then one RL output per decision with agent infos (terminal ones
  first, then those asking for a decision) and, the first time a behaviour has agents, its brain
  parameters;
- it serves the embedded island (`IslandVectorEnv`, one agent or `--num-agents N`), each frame
  PNG-compressed as a camera sensor sends it: shape [3, H, W], sensor `CameraSensor`,
  behaviour `JumppadAgent?team=0` with discrete branches (9, 3);
- side channels: engine configuration (parsed and logged; a simulation has no clock to speed
  up), environment parameters (`target_pad` sets the rewarded pad, `spawn_seed` reseeds at the
  next reset, `start_spawn`/`start_x`/`start_y`/`start_heading` place the agents at the next
  reset), and the outcome channel of `agentalign.spec`, sent every step.

It uses `mlagents_envs`' own message classes (through `agentalign.envs.mlagents_compat`), so it
checks our reading of the protocol against the same definitions the trainer uses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import struct
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from PIL import Image

from agentalign.envs import mlagents_compat
from agentalign.envs.island import IslandVectorEnv
from agentalign.spec import (
    ACTION_BRANCHES,
    BEHAVIOR_NAME,
    CAMERA_SENSOR_NAME,
    MAX_DECISIONS,
    NO_TARGET,
    OUTCOME_CHANNEL_ID,
    PADS,
    SEED_PARAMETER,
    START_HEADING_PARAMETER,
    START_NONE,
    START_SPAWN_PARAMETER,
    START_X_PARAMETER,
    START_Y_PARAMETER,
    TARGET_PARAMETER,
    outcome_name,
    pack_outcomes,
)

# What the Unity package reports about itself in the handshake (com.unity.ml-agents 4.0.x).
ACADEMY_NAME = "AcademySingleton"
COMMUNICATION_VERSION = "1.5.0"
PACKAGE_VERSION = "4.0.0"
EDITOR_PORT = 5004
BEHAVIOR_ID = f"{BEHAVIOR_NAME}?team=0"  # Unity appends the team id to the behaviour name
# ML-Agents' DimensionProperty for a CHW camera: channels NONE (1), height/width TRANSLATIONAL (2).
CAMERA_DIMENSION_PROPERTIES = (1, 2, 2)
STATUS_OK, STATUS_QUIT = 200, 400

log = logging.getLogger("agentalign.player")


@dataclass
class PlayerOptions:
    """The command line: Unity's own flags first, then the island's (a real build ignores those)."""

    port: int = EDITOR_PORT  # --mlagents-port; without it a player in the editor uses 5004
    log_file: str | None = None  # -logFile PATH ("-" = stdout)
    batchmode: bool = False
    nographics: bool = False
    num_agents: int = 1  # agents in the scene, like copies of the agent prefab
    height: int = 64  # camera sensor resolution
    width: int = 64
    layout: str = "jumppad_island"
    spawn_jitter: float = 0.5
    max_steps: int = MAX_DECISIONS  # the agent's MaxStep, in decisions
    connect_timeout: float = 60.0  # seconds to wait for the trainer's server
    png_level: int = 1  # zlib level of the PNG frames (any level is valid PNG)
    ignored: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> PlayerOptions:
    parser = argparse.ArgumentParser(
        prog="agentalign-island-player", allow_abbrev=False,
        description="A stand-in for a headless Unity build of the jumppad island: connects to "
        "an ML-Agents trainer (UnityEnvironment) and plays the embedded island over its "
        "protocol. Unknown arguments are ignored, as by a Unity player.")
    parser.add_argument("--mlagents-port", dest="port", type=int, default=EDITOR_PORT,
                        help="the trainer's port (default 5004, the editor's)")
    parser.add_argument("-logFile", "-logfile", dest="log_file", help="write the log here")
    parser.add_argument("-batchmode", action="store_true", help="accepted (always headless)")
    parser.add_argument("-nographics", action="store_true", help="accepted (no window anyway)")
    parser.add_argument("--num-agents", type=int, default=1, help="agents in the scene")
    parser.add_argument("--obs-height", dest="height", type=int, default=64)
    parser.add_argument("--obs-width", dest="width", type=int, default=64)
    parser.add_argument("--layout", default="jumppad_island", help="layout name or .json")
    parser.add_argument("--spawn-jitter", type=float, default=0.5)
    parser.add_argument("--max-steps", type=int, default=MAX_DECISIONS)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--png-level", type=int, default=1, choices=range(10))
    args, ignored = parser.parse_known_args(argv)
    if args.num_agents < 1:
        parser.error("--num-agents must be at least 1")
    return PlayerOptions(**vars(args), ignored=ignored)


def encode_png(frame: np.ndarray, level: int = 1) -> bytes:
    """One HWC uint8 frame as PNG bytes, as a camera sensor's GetCompressedObservation."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def side_channel_messages(data: bytes) -> list[tuple[uuid.UUID, bytes]]:
    """Split a side-channel byte stream into (channel id, payload) messages."""
    messages, offset = [], 0
    while offset < len(data):
        if offset + 20 > len(data):
            raise ValueError("side-channel data ends inside a message header")
        channel = uuid.UUID(bytes_le=bytes(data[offset:offset + 16]))
        (length,) = struct.unpack_from("<i", data, offset + 16)
        offset += 20
        if length < 0 or offset + length > len(data):
            raise ValueError(f"side-channel message of {length} bytes overruns the data")
        messages.append((channel, bytes(data[offset:offset + length])))
        offset += length
    return messages


def side_channel_message(channel: uuid.UUID, payload: bytes) -> bytes:
    return channel.bytes_le + struct.pack("<i", len(payload)) + payload


class IslandPlayer:
    """The Unity side of one connection: the academy, its agents and the communicator."""

    def __init__(self, options: PlayerOptions):
        mlagents_compat.require_mlagents()
        from mlagents_envs.side_channel import DefaultTrainingAnalyticsSideChannel
        from mlagents_envs.side_channel.engine_configuration_channel import (
            EngineConfigurationChannel,
        )
        from mlagents_envs.side_channel.environment_parameters_channel import (
            EnvironmentParametersChannel,
        )

        self.options = options
        self.engine_channel = EngineConfigurationChannel().channel_id
        self.parameters_channel = EnvironmentParametersChannel().channel_id
        self.analytics_channel = DefaultTrainingAnalyticsSideChannel.CHANNEL_ID
        self.outcome_channel = uuid.UUID(OUTCOME_CHANNEL_ID)
        self.env = IslandVectorEnv(options.num_agents, layout=options.layout,
                                   height=options.height, width=options.width,
                                   autoreset_mode=AutoresetMode.SAME_STEP,
                                   spawn_jitter=options.spawn_jitter, max_steps=options.max_steps)
        self.engine_config: dict[str, Any] = {}
        self.parameters: dict[str, float] = {}
        self.seed: int | None = None  # from the handshake, then from spawn_seed
        self.start: dict[str, float] = {}  # start_* parameters, used at the next reset
        self.brain_sent = False
        self.started = False
        self.next_episode_id = 1  # like Unity's EpisodeIdCounter, one id per agent episode
        self.episode_ids = np.zeros(options.num_agents, dtype=np.int64)
        self.steps = 0

    # -- messages ------------------------------------------------------------------------------

    def initialization_output(self) -> Any:
        from mlagents_envs.communicator_objects.capabilities_pb2 import UnityRLCapabilitiesProto
        from mlagents_envs.communicator_objects.unity_output_pb2 import UnityOutputProto
        from mlagents_envs.communicator_objects.unity_rl_initialization_output_pb2 import (
            UnityRLInitializationOutputProto,
        )

        capabilities = UnityRLCapabilitiesProto(
            baseRLCapabilities=True, concatenatedPngObservations=True,
            compressedChannelMapping=True, hybridActions=True, trainingAnalytics=True,
            variableLengthObservation=True, multiAgentGroups=True)
        return UnityOutputProto(rl_initialization_output=UnityRLInitializationOutputProto(
            name=ACADEMY_NAME, communication_version=COMMUNICATION_VERSION,
            package_version=PACKAGE_VERSION, capabilities=capabilities))

    def brain_parameters(self) -> Any:
        from mlagents_envs.communicator_objects.brain_parameters_pb2 import (
            ActionSpecProto,
            BrainParametersProto,
        )

        return BrainParametersProto(brain_name=BEHAVIOR_ID, is_training=True,
                                    action_spec=ActionSpecProto(
                                        num_continuous_actions=0,
                                        num_discrete_actions=len(ACTION_BRANCHES),
                                        discrete_branch_sizes=list(ACTION_BRANCHES)))

    def agent_info(self, episode_id: int, frame: np.ndarray, reward: float = 0.0,
                   done: bool = False, max_step_reached: bool = False) -> Any:
        from mlagents_envs.communicator_objects.agent_info_pb2 import AgentInfoProto
        from mlagents_envs.communicator_objects.observation_pb2 import (
            PNG,
            ObservationProto,
        )

        camera = ObservationProto(
            shape=[3, frame.shape[0], frame.shape[1]], compression_type=PNG,
            compressed_data=encode_png(frame, self.options.png_level),
            dimension_properties=list(CAMERA_DIMENSION_PROPERTIES), name=CAMERA_SENSOR_NAME)
        return AgentInfoProto(reward=reward, done=done, max_step_reached=max_step_reached,
                              id=int(episode_id), observations=[camera])

    def rl_output(self, infos: list[Any], records: list[tuple]) -> Any:
        from mlagents_envs.communicator_objects.unity_output_pb2 import UnityOutputProto

        output = UnityOutputProto()
        output.rl_output.agentInfos[BEHAVIOR_ID].value.extend(infos)
        if infos and not self.brain_sent:
            # As the C# communicator: a behaviour is declared together with its first agent
            # infos, because the trainer derives the observation specs from them.
            output.rl_initialization_output.brain_parameters.append(self.brain_parameters())
            self.brain_sent = True
        output.rl_output.side_channel = side_channel_message(self.outcome_channel,
                                                             pack_outcomes(records))
        return output

    # -- the island ----------------------------------------------------------------------------

    def _new_ids(self, count: int) -> np.ndarray:
        ids = np.arange(self.next_episode_id, self.next_episode_id + count)
        self.next_episode_id += count
        return ids

    def _records(self, rows: np.ndarray, ids: np.ndarray, info: dict[str, Any]) -> list[tuple]:
        return [(int(ids[k]), int(info["step"][i]), float(info["position"][i][0]),
                 float(info["position"][i][1]), float(info["heading"][i]),
                 int(info["outcome"][i])) for k, i in enumerate(rows)]

    def reset(self) -> tuple[list[Any], list[tuple]]:
        """The academy's reset: every agent starts a new episode and asks for a decision."""
        obs, info = self.env.reset(seed=self.seed, options=self._start_options())
        self.seed = None  # reseed once per spawn_seed message, then continue the stream
        self.start = {}  # a chosen start places the episodes of one reset, like spawn_seed
        self.started = True
        self.episode_ids = self._new_ids(self.options.num_agents)
        rows = np.arange(self.options.num_agents)
        infos = [self.agent_info(self.episode_ids[i], obs[i]) for i in rows]
        return infos, self._records(rows, self.episode_ids, info)

    def _start_options(self) -> dict[str, Any]:
        """The island's reset options for the start_* parameters received since the last
        reset (every agent of the scene starts there): none means the game's own spawn draw."""
        n, options = self.options.num_agents, {}
        spawn = self.start.get(START_SPAWN_PARAMETER, START_NONE)
        if spawn != START_NONE:
            index = round(spawn)
            if 0 <= index < len(self.env.layout.spawns):
                options["spawns"] = np.full(n, index)
            else:
                log.warning("start_spawn %s is not a spawn index (0..%d) or %s", spawn,
                            len(self.env.layout.spawns) - 1, START_NONE)
        x = self.start.get(START_X_PARAMETER, float("nan"))
        y = self.start.get(START_Y_PARAMETER, float("nan"))
        if not (np.isnan(x) or np.isnan(y)):
            options["positions"] = np.tile(np.array([x, y], dtype=np.float64), (n, 1))
        heading = self.start.get(START_HEADING_PARAMETER, float("nan"))
        if not np.isnan(heading):
            options["headings"] = np.full(n, heading, dtype=np.float64)
        return options

    def step(self, actions: np.ndarray) -> tuple[list[Any], list[tuple]]:
        """One decision for every agent; an ended episode reports done, then its successor."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        self.steps += 1
        ended = np.flatnonzero(terminated | truncated)
        terminal_infos: list[Any] = []
        records: list[tuple] = []
        if len(ended):
            final = info["final_info"]
            terminal_infos = [self.agent_info(self.episode_ids[i], info["final_obs"][i],
                                              float(rewards[i]), True, bool(truncated[i]))
                              for i in ended]
            records += self._records(ended, self.episode_ids[ended], final)
            for i in ended:
                log.info("episode %d ended: %s after %d decisions", self.episode_ids[i],
                         outcome_name(int(final["outcome"][i])), int(final["step"][i]))
            self.episode_ids[ended] = self._new_ids(len(ended))
        rows = np.arange(self.options.num_agents)
        reward = np.where(terminated | truncated, 0.0, rewards)
        decision_infos = [self.agent_info(self.episode_ids[i], obs[i], float(reward[i]))
                          for i in rows]
        records += self._records(rows, self.episode_ids, info)
        return terminal_infos + decision_infos, records

    def actions_from(self, rl_input: Any) -> np.ndarray:
        """Discrete actions in the order the agents asked for decisions (zeros where missing)."""
        actions = np.zeros((self.options.num_agents, len(ACTION_BRANCHES)), dtype=np.int64)
        given = rl_input.agent_actions[BEHAVIOR_ID].value \
            if BEHAVIOR_ID in rl_input.agent_actions else []
        for i, action in enumerate(given[:self.options.num_agents]):
            values = list(action.discrete_actions) or [int(v) for v in
                                                       action.vector_actions_deprecated]
            if len(values) == len(ACTION_BRANCHES):
                actions[i] = values
        clipped = np.clip(actions, 0, np.array(ACTION_BRANCHES) - 1)
        if (clipped != actions).any():
            log.warning("actions out of range %s clipped to the branch sizes %s",
                        actions.tolist(), list(ACTION_BRANCHES))
        return clipped

    # -- side channels -------------------------------------------------------------------------

    def read_side_channels(self, data: bytes) -> None:
        from mlagents_envs.side_channel.incoming_message import IncomingMessage

        for channel, payload in side_channel_messages(data):
            message = IncomingMessage(payload)
            if channel == self.engine_channel:
                self._engine_configuration(message)
            elif channel == self.parameters_channel:
                self._environment_parameter(message)
            elif channel == self.analytics_channel:
                log.info("training analytics received (%d bytes)", len(payload))
            else:
                log.warning("Unknown side channel data received. Channel type: %s", channel)

    def _engine_configuration(self, message: Any) -> None:
        kind = message.read_int32()
        if kind == 0:
            self.engine_config["screen"] = (message.read_int32(), message.read_int32())
        elif kind == 1:
            self.engine_config["quality_level"] = message.read_int32()
        elif kind == 2:
            self.engine_config["time_scale"] = message.read_float32()
        elif kind == 3:
            self.engine_config["target_frame_rate"] = message.read_int32()
        elif kind == 4:
            self.engine_config["capture_frame_rate"] = message.read_int32()
        else:
            log.warning("unknown engine configuration type %d", kind)
            return
        log.info("engine configuration: %s", " ".join(f"{k}={v}" for k, v in
                                                      sorted(self.engine_config.items())))

    def _environment_parameter(self, message: Any) -> None:
        key, kind = message.read_string(), message.read_int32()
        if kind != 0:  # a sampler: the island has no parameter drawn from a distribution
            log.warning("environment parameter %s: sampler type ignored", key)
            return
        value = message.read_float32()
        self.parameters[key] = value
        log.info("environment parameter %s=%s", key, value)
        if key == TARGET_PARAMETER:
            index = round(value)
            if value == NO_TARGET:
                self.env.target = None
            elif 0 <= index < len(PADS):
                self.env.target = index
            else:
                log.warning("target_pad %s is not a pad index (0..%d) or %s", value,
                            len(PADS) - 1, NO_TARGET)
        elif key == SEED_PARAMETER:
            self.seed = int(value)
        elif key in (START_SPAWN_PARAMETER, START_X_PARAMETER, START_Y_PARAMETER,
                     START_HEADING_PARAMETER):
            self.start[key] = value

    # -- the connection ------------------------------------------------------------------------

    def run(self) -> int:
        """Connect, handshake, then answer commands until the trainer quits or goes away."""
        import grpc
        from mlagents_envs.communicator_objects.command_pb2 import QUIT, RESET
        from mlagents_envs.communicator_objects.header_pb2 import HeaderProto
        from mlagents_envs.communicator_objects.unity_message_pb2 import UnityMessageProto
        from mlagents_envs.communicator_objects.unity_to_external_pb2_grpc import (
            UnityToExternalProtoStub,
        )

        def wrap(output: Any | None, status: int = STATUS_OK) -> Any:
            message = UnityMessageProto(header=HeaderProto(status=status))
            if output is not None:
                message.unity_output.CopyFrom(output)
            return message

        target = f"127.0.0.1:{self.options.port}"
        log.info("connecting to the trainer at %s", target)
        with grpc.insecure_channel(target) as channel:
            exchange = UnityToExternalProtoStub(channel).Exchange
            try:
                reply = exchange(wrap(self.initialization_output()), wait_for_ready=True,
                                 timeout=self.options.connect_timeout)
            except grpc.RpcError as e:
                log.error("could not reach a trainer at %s: %s", target, e.code())
                return 1
            init = reply.unity_input.rl_initialization_input
            python_version = init.communication_version
            if reply.header.status != STATUS_OK or not _compatible(python_version):
                log.error("incompatible trainer: communication version %r, ours %s",
                          python_version, COMMUNICATION_VERSION)
                return 1
            log.info("connected: mlagents-envs %s, communication %s, seed %d",
                     init.package_version, python_version, init.seed)
            self.seed = init.seed
            try:
                reply = exchange(wrap(None))  # as Unity: the answer is the first command
                while reply.header.status == STATUS_OK:
                    rl_input = reply.unity_input.rl_input
                    self.read_side_channels(rl_input.side_channel)
                    if rl_input.command == QUIT:
                        log.info("quit command received")
                        return 0
                    if rl_input.command == RESET or not self.started:
                        infos, records = self.reset()
                    else:
                        infos, records = self.step(self.actions_from(rl_input))
                    reply = exchange(wrap(self.rl_output(infos, records)))
            except grpc.RpcError as e:  # the trainer went away: a Unity player quits too
                log.info("connection closed (%s) after %d steps", e.code(), self.steps)
                return 0
            log.info("trainer closed the connection after %d steps", self.steps)
            with contextlib.suppress(grpc.RpcError):  # as Unity's Dispose: say goodbye
                exchange(wrap(None, STATUS_QUIT), timeout=1.0)
        return 0


def _compatible(python_version: str) -> bool:
    """Major versions must match (and minor ones too before 1.0), as in both ML-Agents sides."""
    try:
        theirs = [int(p) for p in python_version.split(".")[:2]]
        ours = [int(p) for p in COMMUNICATION_VERSION.split(".")[:2]]
    except ValueError:
        return False
    return theirs[0] == ours[0] and (ours[0] != 0 or theirs[1] == ours[1])


def _configure_logging(options: PlayerOptions) -> None:
    handler: logging.Handler
    if options.log_file == "-":
        handler = logging.StreamHandler(sys.stdout)
        level = logging.INFO
    elif options.log_file:
        handler = logging.FileHandler(options.log_file)  # appended: a restart keeps the past
        level = logging.INFO
    else:  # a player without -logFile writes its log elsewhere; keep the terminal quiet
        handler = logging.StreamHandler(sys.stderr)
        level = logging.WARNING
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's core logs a line when the trainer closes the connection; that is our normal exit.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    options = parse_args(argv)
    _configure_logging(options)
    started = time.perf_counter()
    log.info("agentalign island player: port %d, %d agent(s), %dx%d camera%s",
             options.port, options.num_agents, options.height, options.width,
             f"; ignored arguments {options.ignored}" if options.ignored else "")
    try:
        player = IslandPlayer(options)
        code = player.run()
    except mlagents_compat.MissingMLAgentsError as e:
        log.error("%s", e)
        print(f"agentalign-island-player: {e}", file=sys.stderr)
        return 1
    log.info("exiting with code %d after %.1f s", code, time.perf_counter() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
