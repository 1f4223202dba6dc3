"""Personalities: the ONNX graph's contract, parity with PyTorch, the checker, the card, play."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from gymnasium.vector import AutoresetMode
from onnx import TensorProto, helper

from agentalign.cli import main
from agentalign.config import defaults
from agentalign.envs.island import IslandVectorEnv
from agentalign.export import personality
from agentalign.export.contract import check_model, errors
from agentalign.export.export_config import ExportSettings, PlaySettings
from agentalign.export.onnx import (
    DEBUG_LOGITS,
    DETERMINISTIC_ACTIONS,
    DISCRETE_ACTIONS,
    OPSET,
    OUTPUTS,
    RECURRENT_OUT,
    MemoryLayout,
    export_model,
)
from agentalign.export.onnx_agent import OnnxAgent, PersonalityError
from agentalign.export.personality import check_name
from agentalign.export.personality import run as export_run
from agentalign.export.play import run as play_run
from agentalign.models.checkpoint import save_step
from agentalign.models.policy import (
    Policy,
    PolicyConfig,
    get_config,
    no_previous_action,
    sample,
    window_start,
)


def export_personality(checkpoint, name, out=None, *, target=None, episodes=200, seed=0,
                       num_envs=64, deterministic=False):
    """The export stage with the card's measurement settings given directly."""
    settings = defaults(ExportSettings).replace(episodes=episodes, seed=seed, num_envs=num_envs,
                                                deterministic=deterministic)
    result = export_run(settings, checkpoint, name, out, target)
    return result.card, result.path


def play(path, out, *, episodes, seed, num_envs, deterministic=False, gifs=1):
    settings = defaults(PlaySettings).replace(episodes=episodes, seed=seed, num_envs=num_envs,
                                              deterministic=deterministic, gifs=gifs)
    return vars(play_run(settings, path, out))


CONTEXT = 8  # small, so that 40-step episodes cross several slides (at steps 8, 12, 16, ...)
EPISODES, SEED, NUM_ENVS = 12, 3, 6
# Chi-square critical values at p = 0.001 for 1..8 degrees of freedom.
CHI2_999 = (10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12)


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.manual_seed(0)
    model = Policy(get_config("tiny", context=CONTEXT)).eval()
    with torch.no_grad():  # a random init gives near-uniform logits; make them decisive
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8.0)
    return model


@pytest.fixture(scope="module")
def exported(policy, tmp_path_factory):
    """A checkpoint of `policy` (stage sft, meta target left) and its exported personality."""
    root = tmp_path_factory.mktemp("export")
    folder = save_step(root / "run" / "sft", policy, policy.config.to_dict(), kind="policy",
                       stage="sft", step=7, meta={"target": "left"})
    card, path = export_personality(folder, "left-runner", root / "out", episodes=EPISODES,
                                    seed=SEED, num_envs=NUM_ENVS)
    info = json.loads((folder / "checkpoint.json").read_text())
    return card, path, info, folder


def session(model: onnx.ModelProto, seed: int | None = None) -> ort.InferenceSession:
    """One thread: onnxruntime's spinning pool threads would fight torch's on a busy box."""
    if seed is not None:
        ort.set_seed(seed)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def debug_sessions(policy):
    return {feedback: session(export_model(policy, feedback=feedback, debug_logits=True), seed=0)
            for feedback in ("sampled", "greedy")}


def decide(sess: ort.InferenceSession, frames: np.ndarray, memory: np.ndarray,
           masks: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One call as Unity makes it: NCHW float frames in 0..1."""
    obs = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    masks = np.ones((len(frames), 12), np.float32) if masks is None else masks
    names = [o.name for o in sess.get_outputs()]
    results = sess.run(None, {"obs_0": obs, "action_masks": masks, "recurrent_in": memory})
    return dict(zip(names, results, strict=True))


@pytest.fixture(scope="module")
def recorded():
    """Observation sequences of 3 island envs over 60 steps, episodes cut at 40 steps, driven by
    slow random actions; `starts[t, i]` marks the first decision of an episode."""
    env = IslandVectorEnv(3, autoreset_mode=AutoresetMode.SAME_STEP, max_steps=40)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    frames, starts, first = [], [], np.ones(3, dtype=bool)
    for _ in range(60):
        frames.append(obs)
        starts.append(first)
        moves = np.where(rng.random(3) < 0.8, 0, rng.integers(0, 9, 3))
        obs, _, terminated, truncated, _ = env.step(np.stack([moves, rng.integers(0, 3, 3)], 1))
        first = terminated | truncated
    frames, starts = np.stack(frames), np.stack(starts)
    assert starts[1:].any(), "the recording should hold an episode boundary"
    longest = max(np.diff(np.flatnonzero(np.append(starts[:, i], True))).max() for i in range(3))
    assert longest >= 30, "episodes should cross several slides of the context window"
    return frames, starts


def memory_size(policy: Policy) -> int:
    return MemoryLayout.of(policy.config).size


# -- the graph --------------------------------------------------------------------------------

def test_graph_io_names_dtypes_and_constants(exported, policy):
    card, path, _, _ = exported
    model = onnx.load(path)
    size = memory_size(policy)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    inputs = {i.name: i for i in model.graph.input}
    assert list(inputs) == ["obs_0", "action_masks", "recurrent_in"]
    for name, dims in {"obs_0": ["batch", 3, 64, 64], "action_masks": ["batch", 12],
                       "recurrent_in": ["batch", 1, size]}.items():
        t = inputs[name].type.tensor_type
        assert t.elem_type == TensorProto.FLOAT
        assert [d.dim_param or d.dim_value for d in t.shape.dim] == dims
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert list(outputs) == list(OUTPUTS)
    assert outputs[DISCRETE_ACTIONS] == outputs[DETERMINISTIC_ACTIONS] == TensorProto.INT64
    multinomials = [n for n in model.graph.node if n.op_type == "Multinomial"]
    assert len(multinomials) == 2
    assert not any(a.name == "seed" for n in multinomials for a in n.attribute)

    sess = session(model)
    for batch in (1, 5):  # dynamic batch axis
        frames = np.zeros((batch, 64, 64, 3), np.uint8)
        out = decide(sess, frames, np.zeros((batch, 1, size), np.float32))
        assert out["version_number"].tolist() == [3.0]
        assert out["memory_size"].tolist() == [float(size)] and card["memory_size"] == size
        assert out["discrete_action_output_shape"].tolist() == [[9.0, 3.0]]
        for name in (DISCRETE_ACTIONS, DETERMINISTIC_ACTIONS):
            assert out[name].shape == (batch, 2) and out[name].dtype == np.int64
        assert out[RECURRENT_OUT].shape == (batch, 1, size)


def test_zero_memory_is_a_fresh_episode(policy, debug_sessions, recorded):
    sess, size = debug_sessions["sampled"], memory_size(policy)
    frames = recorded[0][:, :2]  # two agents, no episode boundary before step 40
    memory = np.zeros((2, 1, size), np.float32)
    for t in range(13):
        out = decide(sess, frames[t], memory)
        memory = out[RECURRENT_OUT]
        assert memory[:, 0, 0].tolist() == [float(t + 1 - window_start(t, CONTEXT))] * 2
        assert (memory[:, 0, 1:3] == out[DISCRETE_ACTIONS] + 1).all()  # the action taken
    memory[0] = 0.0  # agent 0 starts a new episode, as Unity does; agent 1 carries on
    out = decide(sess, frames[13], memory)
    with torch.no_grad():
        fresh = policy(torch.from_numpy(frames[13][:, None]), no_previous_action(2)[:, None])
    fresh = torch.cat(fresh, -1)[:, -1].numpy()
    np.testing.assert_allclose(out[DEBUG_LOGITS][0], fresh[0], atol=1e-4)
    assert np.abs(out[DEBUG_LOGITS][1] - fresh[1]).max() > 1e-2, "context should matter"
    assert out[RECURRENT_OUT][0, 0, 0] == 1.0


@pytest.mark.parametrize("feedback", ["sampled", "greedy"])
def test_parity_with_pytorch_step_by_step(policy, debug_sessions, recorded, exported, feedback):
    """Recorded episodes fed one decision at a time, memory carried as Unity carries it, against
    Policy.step with its KV cache: same greedy action at every step, logits within 1e-4."""
    sess, size = debug_sessions[feedback], memory_size(policy)
    shipped = session(onnx.load(exported[1]))
    frames, starts = recorded
    n = frames.shape[1]
    memory = np.zeros((n, 1, size), np.float32)
    cache, previous = policy.new_cache(n), no_previous_action(n)
    worst = 0.0
    for t in range(len(frames)):
        memory[starts[t]] = 0.0
        cache.reset_rows(torch.from_numpy(starts[t]))
        previous[starts[t]] = no_previous_action(int(starts[t].sum()))
        out = decide(sess, frames[t], memory)
        logits, cache = policy.step(torch.from_numpy(frames[t]), previous, cache)
        worst = max(worst, float(np.abs(out[DEBUG_LOGITS] - torch.cat(logits, -1).numpy()).max()))
        greedy = sample(logits, greedy=True).numpy()
        np.testing.assert_array_equal(out[DETERMINISTIC_ACTIONS], greedy, err_msg=f"step {t}")
        if feedback == "greedy":
            np.testing.assert_array_equal(out[DISCRETE_ACTIONS], greedy)
        else:  # the shipped file decides the same as its debug twin
            np.testing.assert_array_equal(decide(shipped, frames[t], memory)
                                          [DETERMINISTIC_ACTIONS], greedy)
        previous = torch.from_numpy(out[DISCRETE_ACTIONS])  # the action the agent took
        memory = out[RECURRENT_OUT]
    assert worst <= 1e-4, worst


def chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom, pooling classes expected below 5 times."""
    expected = probs * counts.sum()
    small = expected < 5
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    stat = float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    return stat, int(keep.sum()) - 1


def test_sampled_actions_follow_the_policy_and_respect_masks(policy, recorded):
    """Many samples of one mid-episode decision (past a slide) against PyTorch's softmax."""
    size, frames = memory_size(policy), recorded[0][:, :1]
    sess = session(export_model(policy, debug_logits=True), seed=1)
    memory = np.zeros((1, 1, size), np.float32)
    for t in range(13):
        memory = decide(sess, frames[t], memory)[RECURRENT_OUT]
    rows, calls = 250, 16
    batch = np.repeat(frames[13], rows, 0)
    memory = np.repeat(memory, rows, 0)
    masks = np.ones((rows, 12), np.float32)
    masks[:, [1, 2, 9]] = 0.0  # two moves and one turn forbidden
    for mask in (None, masks):
        drawn, logits = [], None
        for _ in range(calls):
            out = decide(sess, batch, memory, mask)
            drawn.append(out[DISCRETE_ACTIONS])
            logits = out[DEBUG_LOGITS][0]
            if mask is not None:
                assert not np.isin(out[DETERMINISTIC_ACTIONS][:, 0], [1, 2]).any()
                assert (out[DETERMINISTIC_ACTIONS][:, 1] != 0).all()
        drawn = np.concatenate(drawn)
        allowed = np.ones(12, bool) if mask is None else mask[0] > 0.5
        for b, (lo, hi) in enumerate(((0, 9), (9, 12))):
            z = np.where(allowed[lo:hi], logits[lo:hi].astype(np.float64), -np.inf)
            probs = np.exp(z - z.max())
            probs /= probs.sum()
            counts = np.bincount(drawn[:, b], minlength=hi - lo)
            assert (counts[~allowed[lo:hi]] == 0).all(), "a masked action was sampled"
            assert probs.max() < 0.95, "the test needs a spread-out distribution"
            stat, dof = chi_square(counts, probs)
            assert stat < CHI2_999[dof - 1], (b, counts, probs * counts.sum())


# -- the checker ------------------------------------------------------------------------------

def _rename_input_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def break_model(model: onnx.ModelProto, how: str) -> onnx.ModelProto:
    """A valid ONNX copy of `model` that breaks one rule of the ML-Agents contract."""
    m = copy.deepcopy(model)
    g = m.graph
    if how in ("no_version", "no_memory_size"):
        name = "version_number" if how == "no_version" else "memory_size"
        g.node.remove(next(n for n in g.node if name in n.output))
        g.output.remove(next(o for o in g.output if o.name == name))
    elif how in ("branch_8", "three_branches"):
        node = next(n for n in g.node if "discrete_action_output_shape" in n.output)
        value = [8.0, 3.0] if how == "branch_8" else [9.0, 3.0, 2.0]
        node.attribute[0].t.CopyFrom(helper.make_tensor("v", TensorProto.FLOAT,
                                                        [1, len(value)], value))
    elif how == "nhwc":
        _rename_input_uses(g, "obs_0", "obs_0_nchw")
        g.node.insert(0, helper.make_node("Transpose", ["obs_0"], ["obs_0_nchw"],
                                          perm=[0, 3, 1, 2]))
        g.input[0].CopyFrom(helper.make_tensor_value_info("obs_0", TensorProto.FLOAT,
                                                          ["batch", 64, 64, 3]))
    elif how == "extra_input":
        g.input.append(helper.make_tensor_value_info("step_index", TensorProto.FLOAT,
                                                     ["batch", 1]))
    elif how == "float_actions":
        producer = next(n for n in g.node if "discrete_actions" in n.output)
        producer.output[list(producer.output).index("discrete_actions")] = "actions_int64"
        _rename_input_uses(g, "discrete_actions", "actions_int64")
        g.node.append(helper.make_node("Cast", ["actions_int64"], ["discrete_actions"],
                                       to=TensorProto.FLOAT))
        output = next(o for o in g.output if o.name == "discrete_actions")
        output.type.tensor_type.elem_type = TensorProto.FLOAT
    elif how == "no_recurrent_out":
        g.output.remove(next(o for o in g.output if o.name == "recurrent_out"))
    onnx.checker.check_model(m)
    return m


BROKEN = {
    "no_version": 'Required constant "version_number" was not found in the model file.',
    "no_memory_size": 'Required constant "memory_size" was not found in the model file.',
    "branch_8": "The number of Discrete Actions of branch 0 does not match. Was expecting 9 but "
                "the model contains 8",
    "three_branches": "Discrete Action Size of the model does not match. The BrainParameters "
                      "expect 2 branches but the model contains 3.",
    "nhwc": "The visual Observation of the model does not match. Received TensorProxy of shape "
            "[?x64x64x3] but was expecting [?x3x64x64] for the CameraSensor Sensor.",
    "extra_input": "Model contains an unexpected input named : step_index",
    "float_actions": "agentalign: output discrete_actions is float, not int64: Unity reads "
                     "discrete actions as integers",
    "no_recurrent_out": "The model does not contain a Recurrent Output Node but has "
                        "memory_size.",
}


def test_checker_passes_our_export(exported, capsys):
    path = exported[1]
    assert check_model(path) == []
    assert main(["check-model", str(path)]) == 0
    assert "ok: " in capsys.readouterr().out
    assert main(["check-model", str(path), "--obs-shape", "3,84,84"]) == 2
    assert "Received TensorProxy of shape [?x84x84x3]" in capsys.readouterr().out


@pytest.mark.parametrize("how", list(BROKEN))
def test_checker_names_what_is_broken(exported, how):
    model = break_model(onnx.load(exported[1]), how)
    messages = [f.message for f in errors(check_model(model))]
    assert BROKEN[how] in messages, messages


def test_check_model_cli_exits_non_zero_with_the_inspector_wording(exported, tmp_path, capsys):
    path = tmp_path / "broken.onnx"
    onnx.save(break_model(onnx.load(exported[1]), "extra_input"), path)
    assert main(["check-model", str(path)]) == 2
    captured = capsys.readouterr()
    assert "error: Model contains an unexpected input named : step_index" in captured.out
    assert captured.err.count("\n") == 1 and "1 error(s)" in captured.err


# -- the card and play ------------------------------------------------------------------------

def test_card_matches_what_was_measured(exported, policy, tmp_path):
    card, path, info, _ = exported
    assert json.loads(path.with_suffix(".json").read_text()) == card
    assert (card["name"], card["target"], card["stage"], card["step"]) == \
        ("left-runner", "left", "sft", 7)
    assert card["source_checkpoint_sha256"] == info["sha256"]
    assert card["config"] == info["model_config"]
    assert PolicyConfig.from_dict(card["config"]) == policy.config
    assert card["memory_size"] == memory_size(policy) and card["opset"] == OPSET
    assert card["observation_spec"][0]["shape"] == [3, 64, 64]
    assert card["action_spec"]["discrete_branches"] == [9, 3]
    import hashlib

    assert card["onnx_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    measured = card["measured"]
    assert (measured["episodes"], measured["seed"], measured["actions"]) == \
        (EPISODES, SEED, "sampled")
    assert card["intent"] == {"name": "left", "description": "end on the left pad"}
    assert "intent" not in measured  # a pad's satisfaction is its reach rate
    rates = measured["rates"]
    assert sum(rates[o]["count"] for o in ("left", "middle", "right", "fell", "timeout")) \
        == EPISODES
    for r in rates.values():
        assert r["n"] == EPISODES and r["low"] <= r["rate"] <= r["high"]
    # Playing the written file with the same seed reproduces the card's numbers exactly.
    played = play(path, tmp_path, episodes=EPISODES, seed=SEED, num_envs=NUM_ENVS)
    assert played["rates"] == rates
    assert (tmp_path / "episode.gif").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["rates"] == rates


def test_the_card_names_an_intent_and_how_often_it_was_satisfied(exported, tmp_path, capsys):
    folder = exported[3]
    assert main(["export", str(folder), "--name", "quick", "--out", str(tmp_path), "--target",
                 "quick-right", "--episodes", str(EPISODES), "--num-envs", str(NUM_ENVS),
                 "--seed", str(SEED)]) == 0
    card = json.loads((tmp_path / "quick.json").read_text())
    assert card["target"] == "quick-right" and card["intent"] == {
        "name": "quick-right", "description": "end on the right pad within 40 decisions (4 s)"}
    got = card["measured"]["intent"]
    assert got["intent"] == "quick-right" and got["episodes"] == EPISODES
    assert got["count"] <= card["measured"]["rates"]["right"]["count"]  # right, and quick
    assert "intent quick-right (end on the right pad within 40 decisions (4 s)): " in \
        capsys.readouterr().out


def test_a_card_measured_on_another_island_says_which(exported, tmp_path):
    """`--layout`: the card's rates come from that island, and its digest names it."""
    from agentalign.envs.layout import load_layout

    folder, alike = exported[3], "jumppad_island_alike"
    assert main(["export", str(folder), "--name", "alike", "--out", str(tmp_path), "--episodes",
                 str(EPISODES), "--num-envs", str(NUM_ENVS), "--seed", str(SEED),
                 "--layout", alike]) == 0
    card = json.loads((tmp_path / "alike.json").read_text())
    assert card["layout_sha256"] == load_layout(alike).digest != load_layout().digest
    assert main(["play", str(tmp_path / "alike.onnx"), "--out", str(tmp_path / "play"),
                 "--episodes", str(EPISODES), "--num-envs", str(NUM_ENVS), "--seed", str(SEED),
                 "--layout", alike, "--gifs", "0"]) == 0
    played = json.loads((tmp_path / "play" / "results.json").read_text())
    assert played["rates"] == card["measured"]["rates"]  # same file, island and seed


def test_seeded_sampling_is_reproducible(exported):
    path, frames = exported[1], np.random.default_rng(0).integers(0, 256, (64, 64, 64, 3),
                                                                  dtype=np.uint8)
    runs = [OnnxAgent(path, 64, seed=s).act(frames) for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert (runs[0] != runs[2]).any()


# -- command line and bad input ---------------------------------------------------------------

@pytest.mark.parametrize("command", ["export", "check-model", "play"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: agentalign {command}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "", "x y", ".hidden", "a" * 65,
                                  "name.onnx", "-dash"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(PersonalityError, match="personality name"):
        check_name(name)


def one_line_error(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_input_gives_one_line_and_leaves_no_files(exported, tmp_path, capsys, monkeypatch):
    folder, out = exported[3], tmp_path / "out"
    err = one_line_error(capsys, "export", str(tmp_path / "nowhere"), "--name", "x",
                         "--out", str(out))
    assert "does not exist" in err
    err = one_line_error(capsys, "export", str(folder), "--name", "../x", "--out", str(out))
    assert "personality name '../x'" in err
    err = one_line_error(capsys, "export", str(folder), "--name", "x", "--out", str(out),
                         "--target", "north")
    assert "no intent 'north': choose one of left, middle, right" in err
    (tmp_path / "file").write_text("")
    err = one_line_error(capsys, "export", str(folder), "--name", "x", "--out",
                         str(tmp_path / "file"))
    assert "is a file" in err
    # A checkpoint whose weights do not load.
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(folder, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not weights")
    err = one_line_error(capsys, "export", str(corrupt), "--name", "x", "--out", str(out))
    assert "corrupt or replaced" in err
    # A failure while writing leaves neither file (nor a temporary) behind.
    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(personality, "_shareable", fail)
    err = one_line_error(capsys, "export", str(folder), "--name", "x", "--out", str(out),
                         "--episodes", "2", "--num-envs", "2")
    assert "No space left on device" in err
    assert not out.exists() or list(out.iterdir()) == []
    # Corrupt ONNX files for the checker and for play.
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff")
    for command in (["check-model", str(bad)], ["play", str(bad), "--out", str(out)]):
        assert "not an ONNX model" in one_line_error(capsys, *command)
    assert "no such file" in one_line_error(capsys, "play", str(tmp_path / "none.onnx"))
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_errors_are_one_line_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    result = subprocess.run([sys.executable, "-m", "agentalign.cli", "check-model", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
