"""ML-Agents `.demo` files: recorded play in, our trajectories out.

A game developer records human play in the Unity editor (Demonstration Recorder); importing those
files into shards feeds real gameplay into the same pipeline as the scripted corpus.

The layout, as Unity's DemonstrationWriter writes it and ML-Agents' demo loader reads it: a
length-delimited `DemonstrationMetaProto` zero-padded to byte 33; a length-delimited
`BrainParametersProto`; then one length-delimited `AgentInfoActionPairProto` per step. Writers
leave a stray copy of the meta behind the last step, so a reader stops after `number_steps`.
Messages are `mlagents_envs`' own classes (no copied .proto files).

Read, in all the forms ML-Agents has produced: camera observations PNG-compressed or as floats,
declared CHW (current packages) or HWC (old ones), several PNGs concatenated for more than 3
channels; actions in `discrete_actions`/`continuous_actions` or the deprecated
`vector_actions`; action specs in `action_spec` or the deprecated vector-action fields.

Pairing: a step is (observation, action) as ML-Agents' own loader pairs them: the action in a
record goes with the observation of the *same* record (checked in
Unity-Technologies/ml-agents `ml-agents/mlagents/trainers/demo_loader.py`, `make_demo_buffer`,
both the BrainInfo-era and the current ObsUtil versions: observations from
`current_pair_info.agent_info`, actions from `current_pair_info.action_info`; the next record
gives only `done` and reward). Our reader and `write_demo` (`data.demo_write`) follow that, so
our files mean what they say to ML-Agents' trainer. Episodes end after a step with `done`; an
action-less terminal step (the final observation) ends the episode without becoming a step of it.
Caveat, not verified here against the C# source: Unity's recorder writes a record in
`Agent.SendInfoToBrain` before the brain decides, from `storedActions`, which may still hold the
previous decision's action, so in editor recordings a record's action may be the one taken
*before* its observation (a one-step lag that ML-Agents' loader keeps as well).

Importing keeps each file's own spec (sensors, shapes, action spec) in the shard manifest;
`check_corpus_spec` is how a trainer refuses a corpus that does not fit the policy it trains.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from agentalign.data.shards import Corpus
from agentalign.envs import mlagents_compat
from agentalign.errors import CorpusError
from agentalign.spec import ACTION_BRANCHES, CAMERA_SENSOR_NAME

META_BYTES = 33  # the meta record is padded to this offset (ML-Agents' INITIAL_POS)
API_VERSIONS = (0, 1)  # DemonstrationMetaProto.api_version values ML-Agents has written
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DIM_NONE, DIM_TRANSLATIONAL = 1, 2  # ML-Agents' DimensionProperty values for a camera
IMPORT_PLAYER_TYPES = ("human",)  # imported play is one player type in corpus statistics


@dataclass(frozen=True)
class SensorSpec:
    """One observation as the file declares it."""

    name: str
    shape: tuple[int, ...]  # as declared: [C, H, W] (current), [H, W, C] (old) or a vector
    compression: str  # "PNG" or "NONE"
    layout: str  # "CHW", "HWC" or "vector"

    @property
    def is_visual(self) -> bool:
        return self.layout != "vector"

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """The frame as we store it: H, W, C."""
        if self.layout == "CHW":
            return (self.shape[1], self.shape[2], self.shape[0])
        return (self.shape[0], self.shape[1], self.shape[2])


@dataclass(frozen=True)
class DemoSpec:
    """What a demonstration holds: its behaviour, sensors and action spec."""

    behavior_name: str
    sensors: tuple[SensorSpec, ...]
    continuous: int
    branches: tuple[int, ...]

    @property
    def camera(self) -> int | None:
        """Index of the sensor we keep as frames: the first visual one, `CameraSensor` first."""
        visual = [i for i, s in enumerate(self.sensors) if s.is_visual]
        named = [i for i in visual if self.sensors[i].name == CAMERA_SENSOR_NAME]
        return (named or visual or [None])[0]

    def to_dict(self) -> dict[str, Any]:
        camera = self.camera
        return {"behavior_name": self.behavior_name,
                "sensors": [{"name": s.name, "shape": list(s.shape),
                             "compression": s.compression, "layout": s.layout}
                            for s in self.sensors],
                "frames": None if camera is None else {
                    "sensor": self.sensors[camera].name,
                    "shape": list(self.sensors[camera].frame_shape)},
                "actions": {"continuous": self.continuous,
                            "discrete_branches": list(self.branches)}}


@dataclass
class Demonstration:
    """Every recorded step of one .demo file, decoded.

    observations[i] is sensor i over all steps: visual as uint8 [T, H, W, C], vectors as
    float32 [T, ...]. `has_action` is False for Unity's action-less terminal steps.
    """

    name: str
    api_version: int
    number_episodes: int
    mean_reward: float
    spec: DemoSpec
    observations: list[np.ndarray]
    discrete_actions: np.ndarray  # int64 [T, len(branches)]
    continuous_actions: np.ndarray  # float32 [T, continuous]
    rewards: np.ndarray  # float32 [T]
    done: np.ndarray  # bool [T]
    max_step_reached: np.ndarray  # bool [T]
    agent_ids: np.ndarray  # int64 [T]
    has_action: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __len__(self) -> int:
        return len(self.rewards)

    def episodes(self) -> list[slice]:
        """Step ranges of the episodes: each ends after a `done` step or where the agent id
        changes (a new episode of the agent); a trailing episode may be unfinished."""
        bounds, start = [], 0
        for t in range(len(self)):
            last = t + 1 == len(self)
            if self.done[t] or last or self.agent_ids[t + 1] != self.agent_ids[t]:
                bounds.append(slice(start, t + 1))
                start = t + 1
        return bounds


# -- reading -----------------------------------------------------------------------------------

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a protobuf varint at `pos`; returns (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise IndexError("varint runs past the end")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _messages() -> dict[str, type]:
    mlagents_compat.require_mlagents()
    from mlagents_envs.communicator_objects.agent_info_action_pair_pb2 import (
        AgentInfoActionPairProto,
    )
    from mlagents_envs.communicator_objects.brain_parameters_pb2 import BrainParametersProto
    from mlagents_envs.communicator_objects.demonstration_meta_pb2 import (
        DemonstrationMetaProto,
    )

    return {"meta": DemonstrationMetaProto, "brain": BrainParametersProto,
            "pair": AgentInfoActionPairProto}


def read_demo(path: str | Path) -> Demonstration:
    """Read and decode one .demo file; CorpusError (one line) if it is missing, truncated or
    corrupt."""
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"demo {path}: no such file") from None
    except OSError as e:
        raise CorpusError(f"demo {path}: cannot read it ({e.strerror})") from None
    messages = _messages()

    def record(pos: int, what: str) -> tuple[bytes, int]:
        try:
            size, start = _varint(data, pos)
        except (IndexError, ValueError):
            raise CorpusError(f"demo {path}: truncated or corrupt at byte {pos} (reading the "
                              f"length of {what}); the file has {len(data)} bytes") from None
        if start + size > len(data):
            raise CorpusError(f"demo {path}: truncated: {what} needs bytes {start}.."
                              f"{start + size}, the file has {len(data)}")
        return data[start:start + size], start + size

    if len(data) < META_BYTES:
        raise CorpusError(f"demo {path}: {len(data)} bytes is too short for a demonstration "
                          f"(the header alone is {META_BYTES})")
    try:
        raw, _ = record(0, "the header")
        meta = messages["meta"].FromString(raw)
        pos = META_BYTES
        raw, pos = record(pos, "the brain parameters")
        brain = messages["brain"].FromString(raw)
    except DecodeError:
        raise CorpusError(f"demo {path}: the header is corrupt; not an ML-Agents "
                          "demonstration") from None
    if meta.api_version not in API_VERSIONS or meta.number_steps < 0:
        raise CorpusError(f"demo {path}: not an ML-Agents demonstration this reader knows "
                          f"(api_version {meta.api_version}, steps {meta.number_steps})")
    pairs = []
    for k in range(meta.number_steps):
        raw, pos = record(pos, f"step {k + 1} of {meta.number_steps}")
        try:
            pairs.append(messages["pair"].FromString(raw))
        except DecodeError:
            raise CorpusError(f"demo {path}: step {k + 1} of {meta.number_steps} is corrupt "
                              f"(at byte {pos - len(raw)})") from None
    if not pairs:
        raise CorpusError(f"demo {path}: holds no steps")
    spec = _spec_from(brain, pairs[0].agent_info, path)
    return _decode(path, meta, spec, pairs)


def _spec_from(brain: Any, first_info: Any, path: Path) -> DemoSpec:
    sensors = []
    for i, obs in enumerate(first_info.observations):
        shape = tuple(int(d) for d in obs.shape)
        compression = "PNG" if obs.compression_type == 1 else "NONE"
        sensors.append(SensorSpec(obs.name or f"sensor_{i}", shape, compression,
                                  _visual_layout(shape, list(obs.dimension_properties))))
    spec = brain.action_spec
    if spec.num_continuous_actions or spec.num_discrete_actions:
        continuous = spec.num_continuous_actions
        branches = tuple(int(b) for b in spec.discrete_branch_sizes)
    elif brain.vector_action_space_type_deprecated == 1:  # old files: continuous
        continuous = int(brain.vector_action_size_deprecated[0]) \
            if brain.vector_action_size_deprecated else 0
        branches = ()
    else:  # old files: discrete, one size per branch
        continuous, branches = 0, tuple(int(b) for b in brain.vector_action_size_deprecated)
    if not sensors:
        raise CorpusError(f"demo {path}: its steps carry no observations")
    return DemoSpec(brain.brain_name, tuple(sensors), continuous, branches)


def _visual_layout(shape: tuple[int, ...], dims: list[int]) -> str:
    """CHW or HWC for a 3-D observation (vector otherwise): from the declared dimension
    properties when present, else from which end holds a plausible channel count."""
    if len(shape) != 3:
        return "vector"
    if len(dims) == 3:
        if dims[0] == DIM_NONE and dims[1] == dims[2] == DIM_TRANSLATIONAL:
            return "CHW"
        if dims[2] == DIM_NONE and dims[0] == dims[1] == DIM_TRANSLATIONAL:
            return "HWC"
    channels = (1, 2, 3, 4)
    if shape[2] in channels and shape[0] not in channels:
        return "HWC"
    return "CHW"


def _decode(path: Path, meta: Any, spec: DemoSpec, pairs: list[Any]) -> Demonstration:
    steps = len(pairs)
    observations: list[np.ndarray] = []
    for i, sensor in enumerate(spec.sensors):
        if sensor.is_visual:
            observations.append(np.empty((steps, *sensor.frame_shape), dtype=np.uint8))
        else:
            observations.append(np.empty((steps, *sensor.shape), dtype=np.float32))
        for t, pair in enumerate(pairs):
            infos = pair.agent_info.observations
            if len(infos) != len(spec.sensors):
                raise CorpusError(f"demo {path}: step {t + 1} has {len(infos)} observations, "
                                  f"the first has {len(spec.sensors)}")
            try:
                observations[i][t] = _observation(infos[i], sensor)
            except (ValueError, OSError, UnidentifiedImageError, zlib.error) as e:
                raise CorpusError(f"demo {path}: step {t + 1}, sensor {sensor.name!r}: "
                                  f"{_reason(e)}") from None
    discrete = np.zeros((steps, len(spec.branches)), dtype=np.int64)
    continuous = np.zeros((steps, spec.continuous), dtype=np.float32)
    has_action = np.zeros(steps, dtype=bool)
    for t, pair in enumerate(pairs):
        action = pair.action_info
        d, c = list(action.discrete_actions), list(action.continuous_actions)
        if not d and not c and len(action.vector_actions_deprecated):
            # Old files: one float list, continuous values then discrete ones.
            values = list(action.vector_actions_deprecated)
            c, d = values[:spec.continuous], [int(v) for v in values[spec.continuous:]]
        if len(d) == len(spec.branches) and len(c) == spec.continuous and (d or c):
            discrete[t], continuous[t], has_action[t] = d, c, True
        elif d or c:
            raise CorpusError(f"demo {path}: step {t + 1} has {len(c)} continuous and {len(d)} "
                              f"discrete actions; the spec says {spec.continuous} and "
                              f"{len(spec.branches)}")
    infos = [p.agent_info for p in pairs]
    return Demonstration(
        name=meta.demonstration_name or path.stem, api_version=meta.api_version,
        number_episodes=meta.number_episodes, mean_reward=meta.mean_reward, spec=spec,
        observations=observations, discrete_actions=discrete, continuous_actions=continuous,
        rewards=np.array([a.reward for a in infos], dtype=np.float32),
        done=np.array([a.done for a in infos], dtype=bool),
        max_step_reached=np.array([a.max_step_reached for a in infos], dtype=bool),
        agent_ids=np.array([a.id for a in infos], dtype=np.int64), has_action=has_action)


def _reason(error: BaseException) -> str:
    if isinstance(error, (OSError, UnidentifiedImageError, zlib.error)):
        return f"the camera image is not a valid PNG ({' '.join(str(error).split())})"
    return " ".join(str(error).split())


def _observation(obs: Any, sensor: SensorSpec) -> np.ndarray:
    """One observation: visual -> uint8 HWC frame, vector -> float32 array of its shape."""
    if not sensor.is_visual:
        values = np.asarray(obs.float_data.data, dtype=np.float32)
        if values.size != int(np.prod(sensor.shape)):
            raise ValueError(f"{values.size} floats, the shape {list(sensor.shape)} needs "
                             f"{int(np.prod(sensor.shape))}")
        return values.reshape(sensor.shape)
    height, width, channels = sensor.frame_shape
    if obs.compression_type == 1:
        frame = _decode_pngs(bytes(obs.compressed_data), channels,
                             list(obs.compressed_channel_mapping))
    else:  # floats in 0..1, in the declared layout
        values = np.asarray(obs.float_data.data, dtype=np.float32)
        if values.size != height * width * channels:
            raise ValueError(f"{values.size} floats for a {height}x{width}x{channels} image")
        values = values.reshape(sensor.shape)
        if sensor.layout == "CHW":
            values = values.transpose(1, 2, 0)
        frame = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if frame.shape != (height, width, channels):
        raise ValueError(f"decoded to {list(frame.shape)} (HWC), declared "
                         f"{list(sensor.shape)} ({sensor.layout})")
    return frame


def _decode_pngs(data: bytes, channels: int, mapping: list[int]) -> np.ndarray:
    """Decode one PNG, or several concatenated (sensors with more than 3 channels), to HWC."""
    starts = []
    at = data.find(PNG_MAGIC)
    while at >= 0:
        starts.append(at)
        at = data.find(PNG_MAGIC, at + 1)
    if not starts or starts[0] != 0:
        raise OSError("no PNG signature")
    planes = []
    for begin, end in zip(starts, [*starts[1:], len(data)], strict=True):
        with Image.open(io.BytesIO(data[begin:end])) as image:
            image.load()
            array = np.asarray(image)
        planes.append(array[..., None] if array.ndim == 2 else array)
    stacked = np.concatenate(planes, axis=2)
    if mapping and len(mapping) == stacked.shape[2] and any(m != i for i, m in
                                                             enumerate(mapping)):
        groups = [stacked[..., [k for k, m in enumerate(mapping) if m == c]].mean(axis=2)
                  for c in range(max(mapping) + 1)]
        return np.rint(np.stack(groups, axis=2)).astype(np.uint8)
    if channels == 1 and stacked.shape[2] > 1:  # a grey sensor sent as RGB: its mean
        return np.rint(stacked[..., :3].mean(axis=2, keepdims=True)).astype(np.uint8)
    return stacked[..., :channels]


# -- checking a corpus against what a trainer needs --------------------------------------------

def check_corpus_spec(corpus: Corpus | str | Path, obs_shape: Sequence[int],
                      branches: Sequence[int] = ACTION_BRANCHES, *, resize: bool = False,
                      map_actions: bool = False) -> None:
    """Refuse (one-line CorpusError) a corpus whose frames or actions do not fit the policy.

    Collected corpora hold the island's spec by construction; imported ones carry each file's
    spec in the manifest. `resize=True` accepts other frame sizes with the same channels (the
    trainer resizes), `map_actions=True` other action specs (the trainer maps them).
    """
    if not isinstance(corpus, Corpus):
        corpus = Corpus(corpus, verify=False)
    want_shape, want_branches = tuple(obs_shape), tuple(branches)
    for entry, shard in zip(corpus.entries, corpus.shards, strict=True):
        spec = entry.get("spec")
        frames = tuple(shard.frame_shape)
        got_branches = tuple(spec["actions"]["discrete_branches"]) if spec else ACTION_BRANCHES
        continuous = spec["actions"]["continuous"] if spec else 0
        source = f" (from {entry['source']})" if entry.get("source") else ""
        problems, asks = [], []
        if frames != want_shape and not (resize and frames[2:] == want_shape[2:]):
            problems.append(f"{'x'.join(map(str, frames))} frames (not "
                            f"{'x'.join(map(str, want_shape))})")
            if frames[2:] == want_shape[2:]:  # other channels: no resizing helps
                asks.append("resize=True")
        if (got_branches != want_branches or continuous) and not map_actions:
            problems.append(f"actions {list(got_branches)}"
                            + (f" + {continuous} continuous" if continuous else "")
                            + f" (not discrete branches {list(want_branches)})")
            asks.append("map_actions=True")
        if problems:
            fix = f", or ask the trainer for {' and '.join(asks)}" if asks else ""
            raise CorpusError(f"corpus {corpus.folder}: shard {entry['file']}{source} has "
                              f"{' and '.join(problems)}; record it with the island's "
                              f"agent{fix}")
