import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from agentalign.data.shards import MANIFEST, Corpus, Episode, Shard, write_shard
from agentalign.errors import CorpusError


def make_episodes(rng, lengths, shape=(8, 8, 3)):
    return [Episode(frames=rng.integers(0, 255, (n, *shape), dtype=np.uint8),
                    actions=rng.integers(0, 3, (n, 2)).astype(np.uint8),
                    positions=rng.normal(size=(n, 2)).astype(np.float32),
                    headings=rng.uniform(0, 360, n).astype(np.float32),
                    outcome=int(rng.integers(5)), player=int(rng.integers(5)),
                    spawn=int(rng.integers(4)), target=int(rng.integers(-1, 3)))
            for n in lengths]


def write_corpus(folder, shards, codec="zlib"):
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, episodes in enumerate(shards):
        entry = write_shard(folder / f"shard-{k:05d}.safetensors", episodes,
                            {"player_types": ["a", "b", "c", "d", "e"]}, codec=codec)
        entries.append({**entry, "index": k})
    (folder / MANIFEST).write_text(json.dumps({"shards": entries}))
    return entries


@pytest.mark.parametrize("codec", ["zlib", "raw"])
def test_round_trip(tmp_path, codec):
    rng = np.random.default_rng(0)
    shards = [make_episodes(rng, [5, 17, 3]), make_episodes(rng, [9, 1])]
    write_corpus(tmp_path, shards, codec)
    corpus = Corpus(tmp_path)
    flat = [e for s in shards for e in s]
    assert corpus.num_episodes == 5 and corpus.num_steps == 35
    assert corpus.obs_shape == (8, 8, 3)
    for i, ep in enumerate(flat):
        got = corpus.episode(i)
        for name in ("frames", "actions", "positions", "headings"):
            np.testing.assert_array_equal(got[name], getattr(ep, name))
        assert corpus.episodes["outcomes"][i] == ep.outcome
        assert corpus.episodes["targets"][i] == ep.target
    streamed = list(corpus.iter_episodes())
    assert [s["length"] for s in streamed] == [5, 17, 3, 9, 1]
    for s, ep in zip(streamed, flat, strict=True):
        np.testing.assert_array_equal(s["frames"], ep.frames)
        np.testing.assert_array_equal(s["headings"], ep.headings)
        assert (s["outcome"], s["player"]) == (ep.outcome, ep.player)


def test_windows_pad_past_the_episode_end(tmp_path):
    rng = np.random.default_rng(1)
    episodes = make_episodes(rng, [10, 4])
    write_corpus(tmp_path, [episodes])
    corpus = Corpus(tmp_path)
    w = corpus.window(0, 7, 6)
    assert w["mask"].tolist() == [True, True, True, False, False, False]
    np.testing.assert_array_equal(w["frames"][:3], episodes[0].frames[7:])
    assert not w["frames"][3:].any() and not w["first"]
    assert corpus.window(1, 0, 2)["first"]
    with pytest.raises(IndexError):
        corpus.window(1, 4, 2)


def test_files_are_standard_safetensors(tmp_path):
    from safetensors.numpy import load_file

    rng = np.random.default_rng(2)
    episodes = make_episodes(rng, [6, 2])
    write_corpus(tmp_path, [episodes], codec="raw")
    tensors = load_file(str(tmp_path / "shard-00000.safetensors"))
    np.testing.assert_array_equal(tensors["frames"][6:], episodes[1].frames)
    np.testing.assert_array_equal(tensors["lengths"], [6, 2])


def test_missing_truncated_and_corrupt_shards(tmp_path):
    rng = np.random.default_rng(3)
    write_corpus(tmp_path, [make_episodes(rng, [20]), make_episodes(rng, [20])])
    Corpus(tmp_path)
    path = tmp_path / "shard-00001.safetensors"
    data = path.read_bytes()

    path.write_bytes(data[:-100])
    with pytest.raises(CorpusError, match="shard-00001.safetensors: is truncated"):
        Corpus(tmp_path)
    with pytest.raises(CorpusError, match="truncated"):
        Shard.open(path)

    corrupt = bytearray(data)
    corrupt[-50] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(CorpusError, match="checksum mismatch"):
        Corpus(tmp_path)
    Corpus(tmp_path, verify=False)  # sizes still match: only the checksum can tell

    path.unlink()
    with pytest.raises(CorpusError, match="shard-00001.safetensors: is missing"):
        Corpus(tmp_path)
    path.write_bytes(b"\x05\x00")
    with pytest.raises(CorpusError, match="no header"):
        Shard.open(path)
    path.write_bytes(b"\x10" + b"\x00" * 7 + b"not json at all!")
    with pytest.raises(CorpusError, match="not valid JSON"):
        Shard.open(path)


def test_manifest_errors(tmp_path):
    with pytest.raises(CorpusError, match="corpus.json is missing; create one"):
        Corpus(tmp_path)
    (tmp_path / MANIFEST).write_text("{oops")
    with pytest.raises(CorpusError, match="not valid JSON"):
        Corpus(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"shards": []}))
    with pytest.raises(CorpusError, match="holds no shards"):
        Corpus(tmp_path)


def test_mismatched_frame_shapes(tmp_path):
    rng = np.random.default_rng(4)
    write_corpus(tmp_path, [make_episodes(rng, [3]), make_episodes(rng, [3], shape=(4, 4, 3))])
    with pytest.raises(CorpusError, match="frames of shape"):
        Corpus(tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_streaming_stays_under_a_memory_budget(tmp_path):
    """Streaming a corpus 3x larger than the memory budget keeps peak RSS under the budget."""
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 255, (100, 64, 64, 3), dtype=np.uint8)  # incompressible
    episodes = [Episode(frames, np.zeros((100, 2), np.uint8), np.zeros((100, 2), np.float32),
                        np.zeros(100, np.float32), 0, 0, 0, -1) for _ in range(10)]
    write_corpus(tmp_path, [episodes] * 20, codec="raw")  # 20 shards of 12 MB
    corpus_bytes = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
    budget = 80_000_000
    assert corpus_bytes > 3 * budget
    # VmHWM is this process's own peak (ru_maxrss would include the forking parent's).
    script = textwrap.dedent(f"""
        from agentalign.data.shards import Corpus
        frames = sum(len(e["frames"]) for e in Corpus({str(tmp_path)!r}).iter_episodes())
        status = open("/proc/self/status").read()
        peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
        print(frames, int(peak.split()[1]) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    frames, peak = int(out[0]), int(out[1])
    assert frames == 20 * 10 * 100
    assert peak < budget, f"peak RSS {peak / 1e6:.0f} MB over the {budget / 1e6:.0f} MB budget"
