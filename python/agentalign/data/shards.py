"""Trajectory shards: the corpus on disk, written atomically, read without loading it into RAM.

A shard is one file in the safetensors layout (8-byte header length, JSON header, raw arrays),
so any safetensors reader can open it, and its arrays are memory-mapped in place rather than
loaded. Frames are zlib-compressed one by one (codec "zlib", the default: ~560 bytes a frame
instead of 12,288 at 64x64, and a frame decodes in ~12 us, so a random training window costs K
small decodes and the corpus stays ~20x smaller in the page cache) or stored raw (codec "raw":
a window is a slice of the mapped file). docs/benchmarks.md has the measurements behind the
default. Shards hold whole episodes, a fixed number per shard. `corpus.json` beside them lists
every shard with its counts and sha256, and is the only thing that makes a shard part of the
corpus.

Per step: frames uint8 [T,H,W,3] (raw) or frame_bytes uint8 [sum of sizes] with frame_offsets
int64 [T+1] (zlib), actions uint8 [T,2], positions float32 [T,2], headings float32 [T]. Per
episode: starts int64 [E], lengths int32 [E], outcomes int8 [E] (spec codes), players int8 [E]
(index into player_types), spawns int8 [E], targets int8 [E] (pad index or -1).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.atomic import write_atomic
from agentalign.errors import CorpusError

FORMAT = "agentalign-shard"
FORMAT_VERSION = 1
MANIFEST = "corpus.json"

STEP_FIELDS = {"positions": np.float32, "headings": np.float32, "actions": np.uint8,
               "frames": np.uint8}
CODECS = ("zlib", "raw")
EPISODE_FIELDS = {"starts": np.int64, "lengths": np.int32, "outcomes": np.int8,
                  "players": np.int8, "spawns": np.int8, "targets": np.int8}
# Widest dtypes first, so that every array starts aligned for its dtype.
_ORDER = ("starts", "frame_offsets", "lengths", "positions", "headings", "outcomes", "players",
          "spawns", "targets", "actions", "frames", "frame_bytes")
_DTYPE_NAMES = {np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8", np.dtype(np.int32): "I32",
                np.dtype(np.int64): "I64", np.dtype(np.float32): "F32"}
_NAMES_DTYPE = {v: k for k, v in _DTYPE_NAMES.items()}


@dataclass
class Episode:
    """One recorded episode, as the collector hands it to a shard."""

    frames: np.ndarray
    actions: np.ndarray
    positions: np.ndarray
    headings: np.ndarray
    outcome: int
    player: int
    spawn: int
    target: int


def write_shard(path: str | Path, episodes: Sequence[Episode], metadata: dict[str, Any],
                codec: str = "zlib", level: int = 6) -> dict[str, Any]:
    """Write episodes as one shard, atomically; returns its manifest entry (counts, sha256)."""
    if not episodes:
        raise ValueError("a shard needs at least one episode")
    if codec not in CODECS:
        raise ValueError(f"unknown frame codec {codec!r}: choose one of {list(CODECS)}")
    lengths = np.array([len(e.frames) for e in episodes], dtype=np.int32)
    arrays: dict[str, np.ndarray] = {
        "starts": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        "lengths": lengths,
        "outcomes": np.array([e.outcome for e in episodes], dtype=np.int8),
        "players": np.array([e.player for e in episodes], dtype=np.int8),
        "spawns": np.array([e.spawn for e in episodes], dtype=np.int8),
        "targets": np.array([e.target for e in episodes], dtype=np.int8),
    }
    for name, dtype in STEP_FIELDS.items():
        arrays[name] = np.ascontiguousarray(
            np.concatenate([getattr(e, name) for e in episodes]), dtype=dtype)
    frame_shape = arrays["frames"].shape[1:]
    if codec == "zlib":
        blobs = [zlib.compress(frame.tobytes(), level) for frame in arrays.pop("frames")]
        arrays["frame_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])\
            .astype(np.int64)
        arrays["frame_bytes"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "frames_codec": codec,
            "frame_shape": json.dumps(list(frame_shape)),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}}
    header: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    for name in (n for n in _ORDER if n in arrays):
        a = arrays[name]
        header[name] = {"dtype": _DTYPE_NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    digest = hashlib.sha256()

    def write(f: Any) -> None:
        for chunk in (struct.pack("<Q", len(head)), head,
                      *(arrays[n].data for n in _ORDER if n in arrays)):
            f.write(chunk)
            digest.update(chunk)

    write_atomic(path, write)
    return {"file": Path(path).name, "episodes": len(episodes), "steps": int(lengths.sum()),
            "bytes": 8 + len(head) + offset, "sha256": digest.hexdigest(),
            "outcomes": np.bincount(arrays["outcomes"], minlength=5).tolist()}


@dataclass
class Shard:
    """One shard file, memory-mapped; arrays are read-only views into the file."""

    path: Path
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path, expected_bytes: int | None = None,
             sha256: str | None = None) -> Shard:
        path = Path(path)
        header, data_start, size = read_header(path)
        if expected_bytes is not None and size != expected_bytes:
            raise CorpusError(f"shard {path}: is {size} bytes, the manifest says "
                              f"{expected_bytes}; it is truncated or was replaced. Re-collect it "
                              "(delete it and rerun `agentalign collect` with the same --out)")
        if sha256 is not None and file_sha256(path) != sha256:
            raise CorpusError(f"shard {path}: checksum mismatch (the file is corrupt). Delete it "
                              "and rerun `agentalign collect` with the same --out to rebuild it")
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        arrays = {}
        for name, spec in header.items():
            if name == "__metadata__":
                continue
            begin, end = spec["data_offsets"]
            dtype = _NAMES_DTYPE[spec["dtype"]]
            arrays[name] = mapped[data_start + begin:data_start + end].view(dtype).reshape(
                spec["shape"])
        meta = header.get("__metadata__", {})
        frames = {"raw": {"frames"}, "zlib": {"frame_bytes", "frame_offsets"}}.get(
            meta.get("frames_codec"))
        if frames is None:
            raise CorpusError(f"shard {path}: unknown frame codec {meta.get('frames_codec')!r}")
        missing = (set(STEP_FIELDS) - {"frames"} | set(EPISODE_FIELDS) | frames) - set(arrays)
        if missing:
            raise CorpusError(f"shard {path}: lacks the arrays {sorted(missing)}; "
                              "it was not written by agentalign collect")
        return cls(path, arrays, meta)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(json.loads(self.metadata["frame_shape"]))

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames of steps [start, stop) as a uint8 array (decoded, or a view when raw)."""
        if "frames" in self.arrays:
            return self.arrays["frames"][start:stop]
        out = np.empty((stop - start, *self.frame_shape), dtype=np.uint8)
        offsets = self.arrays["frame_offsets"][start:stop + 1]
        decode_into(out, self.arrays["frame_bytes"][offsets[0]:offsets[-1]], offsets)
        return out

    @property
    def num_episodes(self) -> int:
        return len(self.arrays["starts"])

    def episode_slice(self, index: int) -> slice:
        start = int(self.arrays["starts"][index])
        return slice(start, start + int(self.arrays["lengths"][index]))


def decode_into(out: np.ndarray, blob: Any, offsets: np.ndarray) -> None:
    """Decompress consecutive zlib frames (byte ranges given by `offsets`) into `out`."""
    base = int(offsets[0])
    flat = out.reshape(len(out), -1)
    for i, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)):
        try:
            flat[i] = np.frombuffer(zlib.decompress(blob[a - base:b - base]), dtype=np.uint8)
        except (zlib.error, ValueError):
            raise CorpusError("a compressed frame is corrupt or has the wrong size; verify the "
                              "corpus (its sha256) and re-collect the bad shard") from None


def read_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """Parse and check a shard's header; returns (header, data start, file size)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise CorpusError(f"shard {path}: is truncated (no header); re-collect it")
            (head_len,) = struct.unpack("<Q", raw_len)
            if head_len > min(size - 8, 100_000_000):
                raise CorpusError(f"shard {path}: header length {head_len} does not fit in the "
                                  f"file ({size} bytes); it is truncated or not a shard")
            header = json.loads(f.read(head_len))
    except FileNotFoundError:
        raise CorpusError(f"shard {path}: is missing; rerun `agentalign collect` with the same "
                          "--out to regenerate it") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CorpusError(f"shard {path}: the header is not valid JSON; the file is corrupt "
                          "or not a shard") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    if meta.get("format") != FORMAT:
        raise CorpusError(f"shard {path}: not an agentalign shard (format "
                          f"{meta.get('format')!r})")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CorpusError(f"shard {path}: format version {meta.get('format_version')}, this "
                          f"agentalign reads version {FORMAT_VERSION}")
    data_start = 8 + head_len
    data_end = max(s["data_offsets"][1] for k, s in header.items() if k != "__metadata__")
    if data_start + data_end > size:
        raise CorpusError(f"shard {path}: is truncated ({size} bytes, its header needs "
                          f"{data_start + data_end}); delete it and rerun `agentalign collect`")
    return header, data_start, size


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Corpus:
    """A corpus folder: the manifest plus its shards, with random access and streaming.

    `verify=True` checks every shard's sha256 when the corpus is opened (about 1 GB/s here);
    sizes are always checked. `shards` picks a subset by position (e.g. one rank's share).
    """

    def __init__(self, folder: str | Path, verify: bool = True,
                 shards: Sequence[int] | None = None):
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise CorpusError(f"no corpus at {self.folder}: {MANIFEST} is missing; create one "
                              f"with `agentalign collect --out {self.folder}`") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorpusError(f"corpus {self.folder}: {MANIFEST} is not valid JSON") from None
        entries = self.manifest.get("shards") if isinstance(self.manifest, dict) else None
        if not isinstance(entries, list):
            raise CorpusError(f"corpus {self.folder}: {MANIFEST} has no shard list")
        if shards is not None:
            entries = [entries[i] for i in shards]
        if not entries:
            raise CorpusError(f"corpus {self.folder}: holds no shards"
                              + (" for this selection" if shards is not None else ""))
        self.entries = entries
        self.shards = [Shard.open(self.folder / e["file"], e["bytes"],
                                  e["sha256"] if verify else None) for e in entries]
        self.player_types: list[str] = json.loads(self.shards[0].metadata.get("player_types",
                                                                              "[]"))
        counts = [s.num_episodes for s in self.shards]
        self._first_episode = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.episodes = {name: np.concatenate([s.arrays[name] for s in self.shards])
                         for name in EPISODE_FIELDS}
        self.episodes["shard"] = np.repeat(np.arange(len(self.shards)), counts)
        self.obs_shape: tuple[int, ...] = self.shards[0].frame_shape
        for s in self.shards:
            if s.frame_shape != self.obs_shape:
                raise CorpusError(f"corpus {self.folder}: shard {s.path.name} has frames of "
                                  f"shape {s.frame_shape}, others {self.obs_shape}")

    @property
    def num_episodes(self) -> int:
        return int(self._first_episode[-1])

    @property
    def num_steps(self) -> int:
        return int(self.episodes["lengths"].sum())

    def _locate(self, episode: int) -> tuple[Shard, slice]:
        if not 0 <= episode < self.num_episodes:
            raise IndexError(f"episode {episode} out of range 0..{self.num_episodes - 1}")
        k = int(np.searchsorted(self._first_episode, episode, side="right") - 1)
        shard = self.shards[k]
        return shard, shard.episode_slice(episode - int(self._first_episode[k]))

    def episode(self, episode: int) -> dict[str, np.ndarray]:
        """Every step of one episode (read-only views into the mapped shard)."""
        shard, steps = self._locate(episode)
        out = {name: shard.arrays[name][steps] for name in STEP_FIELDS if name != "frames"}
        out["frames"] = shard.frames(steps.start, steps.stop)
        return out

    def window(self, episode: int, start: int, length: int) -> dict[str, np.ndarray]:
        """Steps [start, start + length) of an episode, zero-padded past its end.

        `mask` marks the real steps; `first` is True where the window starts the episode (so
        the model knows there is no previous action).
        """
        shard, steps = self._locate(episode)
        n = steps.stop - steps.start
        if not 0 <= start < n:
            raise IndexError(f"window start {start} outside episode {episode} of {n} steps")
        stop = min(start + length, n)
        out = {}
        for name in STEP_FIELDS:
            lo, hi = steps.start + start, steps.start + stop
            src = shard.frames(lo, hi) if name == "frames" else shard.arrays[name][lo:hi]
            buf = np.zeros((length, *src.shape[1:]), dtype=src.dtype)
            buf[:len(src)] = src
            out[name] = buf
        out["mask"] = np.arange(length) < stop - start
        out["first"] = np.bool_(start == 0)
        return out

    def iter_episodes(self) -> Iterator[dict[str, Any]]:
        """Stream every episode in order with plain file reads, one episode in memory at a time.

        Unlike the mapped arrays, nothing stays resident afterwards, so a pass over a corpus far
        larger than RAM keeps the process small.
        """
        for k, shard in enumerate(self.shards):
            header, data_start, _ = read_header(shard.path)
            with open(shard.path, "rb", buffering=0) as f:
                for i in range(shard.num_episodes):
                    steps = shard.episode_slice(i)
                    n = steps.stop - steps.start
                    at = (f, shard.path, header, data_start)
                    item: dict[str, Any] = {
                        "actions": _read_rows(*at, "actions", steps.start, n, (2,)),
                        "positions": _read_rows(*at, "positions", steps.start, n, (2,)),
                        "headings": _read_rows(*at, "headings", steps.start, n, ())}
                    if "frames" in shard.arrays:
                        item["frames"] = _read_rows(*at, "frames", steps.start, n,
                                                    shard.frame_shape)
                    else:
                        offsets = shard.arrays["frame_offsets"][steps.start:steps.stop + 1]
                        blob = _read_rows(*at, "frame_bytes", int(offsets[0]),
                                          int(offsets[-1] - offsets[0]), ())
                        item["frames"] = np.empty((n, *shard.frame_shape), dtype=np.uint8)
                        decode_into(item["frames"], blob, offsets)
                    for name, key in (("lengths", "length"), ("outcomes", "outcome"),
                                      ("players", "player"), ("spawns", "spawn"),
                                      ("targets", "target")):
                        item[key] = shard.arrays[name][i].item()
                    item["shard"] = k
                    yield item


def _read_rows(f: Any, path: Path, header: dict[str, Any], data_start: int, name: str,
               first: int, count: int, row_shape: tuple[int, ...]) -> np.ndarray:
    """Read rows [first, first + count) of one array with a plain file read (no mapping)."""
    spec = header[name]
    buf = np.empty((count, *row_shape), _NAMES_DTYPE[spec["dtype"]])
    row_bytes = buf[:1].nbytes if count else 0
    f.seek(data_start + spec["data_offsets"][0] + first * row_bytes)
    if f.readinto(memoryview(buf).cast("B")) != buf.nbytes:
        raise CorpusError(f"shard {path}: ended early; re-collect it")
    return buf
