"""Shipped personalities: the sample's left, middle and right (`agentalign unity-personalities`),
their cards' digests, and the graph's guard against an out-of-range Multinomial draw."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from agentalign import config
from agentalign.cli import main
from agentalign.config import defaults, load
from agentalign.envs.layout import load_layout
from agentalign.export.contract import check_model, constant_value, errors
from agentalign.export.export_config import ExportSettings
from agentalign.export.onnx import (
    ACTION_MASKS,
    DETERMINISTIC_ACTIONS,
    DISCRETE_ACTIONS,
    OBS,
    RECURRENT_IN,
    RECURRENT_OUT,
    MemoryLayout,
    export_model,
)
from agentalign.export.play import measure
from agentalign.export.recipe import default_pipeline_config, recipe_sha256
from agentalign.export.unity_personalities import IGNORED, TARGETS
from agentalign.models.checkpoint import save_step
from agentalign.models.policy import Policy, get_config
from agentalign.pipeline_config import SCHEDULING_KEYS, PipelineSettings
from agentalign.unityproj.assets import guid_for, meta_text
from agentalign.unityproj.paths import PACKAGE, SAMPLE_PERSONALITIES
from agentalign.unityproj.personalities import onnx_meta, write_personality

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "unity_project" / SAMPLE_PERSONALITIES
REFRESH = "run `agentalign unity-personalities RUN` on a default run to refresh"
SHIP_EPISODES = 500
SHIP_SEED = 4242  # island and sampling; no training stage or export measurement uses it
# The .onnx.meta the Inference Engine 2.2.1 writes for a new model, exactly (note the spaces
# after "userData:" and the asset bundle keys).
ONNX_META = "\n".join([
    "fileFormatVersion: 2", "guid: {guid}", "ScriptedImporter:", "  internalIDToNameTable: []",
    "  externalObjects: {{}}", "  serializedVersion: 2", "  userData: ", "  assetBundleName: ",
    "  assetBundleVariant: ",
    "  script: {{fileID: 11500000, guid: f22407ba6b4157b4a93d0a670bd3dd57, type: 3}}",
    "  dynamicDimConfigs: []", ""])


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.manual_seed(0)
    model = Policy(get_config("tiny", n_layer=1, n_embd=32, n_head=2, context=8)).eval()
    with torch.no_grad():  # decisive logits, so that sampled and greedy actions often differ
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8.0)
    return model


# -- the guard: an out-of-range draw becomes the argmax ----------------------------------------


def with_draws(model: onnx.ModelProto, value: int) -> onnx.ModelProto:
    """`model` whose Multinomial nodes output `value` in every row (as Unity's CPU kernel
    outputs -1 for a uniform draw of exactly 0.0), keeping their shape."""
    model = copy.deepcopy(model)
    graph, nodes = model.graph, []
    graph.initializer.extend([helper.make_tensor("draw_zero", TensorProto.INT64, [], [0]),
                              helper.make_tensor("draw_value", TensorProto.INT64, [], [value])])
    for node in graph.node:
        nodes.append(node)
        if node.op_type == "Multinomial":
            out = node.output[0]
            node.output[0] = f"{out}_raw"
            nodes += [helper.make_node("Mul", [f"{out}_raw", "draw_zero"], [f"{out}_zero"]),
                      helper.make_node("Add", [f"{out}_zero", "draw_value"], [out])]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def decide(model: onnx.ModelProto, steps: int = 3) -> list[dict[str, np.ndarray]]:
    """A few decisions of 16 agents on random frames, memory carried as Unity carries it."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    size = int(constant_value(model, "memory_size").flat[0])
    memory = np.zeros((16, 1, size), np.float32)
    found = []
    for _ in range(steps):
        feeds = {OBS: rng.random((16, 3, 64, 64), dtype=np.float32),
                 ACTION_MASKS: np.ones((16, 12), np.float32), RECURRENT_IN: memory}
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds),
                       strict=True))
        memory = out[RECURRENT_OUT]
        found.append(out)
    return found


@pytest.mark.parametrize("value", [-1, 3, 1000])
def test_an_out_of_range_draw_takes_the_argmax_and_is_what_the_memory_records(policy, value):
    model = export_model(policy)
    for out in decide(with_draws(model, value)):
        greedy, taken = out[DETERMINISTIC_ACTIONS], out[DISCRETE_ACTIONS]
        # 3 is inside the move branch (9) and outside the turn branch (3)
        expected = np.where(np.array([[value >= 9 or value < 0, value >= 3 or value < 0]]),
                            greedy, value)
        np.testing.assert_array_equal(taken, expected)
        previous = out[RECURRENT_OUT][:, 0, 1:3]
        np.testing.assert_array_equal(previous, (expected + 1).astype(np.float32))
    if value == 3:  # an in-range draw is taken as drawn, even where the argmax differs
        assert (out[DETERMINISTIC_ACTIONS][:, 0] != 3).any()


def test_the_guarded_graph_keeps_the_unity_contract(policy):
    model = export_model(policy)
    assert errors(check_model(model, (3, 64, 64), (9, 3))) == []
    assert {o.name: (o.type.tensor_type.elem_type,
                     [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim])
            for o in model.graph.output} == {
        "version_number": (TensorProto.FLOAT, [1]), "memory_size": (TensorProto.FLOAT, [1]),
        DISCRETE_ACTIONS: (TensorProto.INT64, ["batch", 2]),
        "discrete_action_output_shape": (TensorProto.FLOAT, [1, 2]),
        DETERMINISTIC_ACTIONS: (TensorProto.INT64, ["batch", 2]),
        RECURRENT_OUT: (TensorProto.FLOAT, ["batch", 1, MemoryLayout.of(policy.config).size])}
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) == 9


# -- the recipe digest ---------------------------------------------------------------------------


def test_the_default_pipeline_config_is_what_a_run_records():
    assert default_pipeline_config() == load(PipelineSettings).to_dict()
    assert set(IGNORED) == set(SCHEDULING_KEYS)


def test_the_recipe_digest_follows_every_stage_default(monkeypatch):
    before = recipe_sha256()
    assert recipe_sha256() == before and len(before) == 64
    packaged = config.packaged_data
    for name, path in [("rl", ["kl_coef"]), ("players", ["corpus", "mixture", "explorer"]),
                       ("pipeline", ["labels_used"]), ("label", ["pairs"]),
                       ("export", ["episodes"])]:
        def changed(config_name, name=name, path=path):
            data = packaged(config_name)
            if config_name == name:
                node = data
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] += 1
            return data
        monkeypatch.setattr(config, "packaged_data", changed)
        monkeypatch.setattr("agentalign.export.recipe.packaged_data", changed)
        assert recipe_sha256() != before, name
    monkeypatch.undo()
    assert recipe_sha256() == before


# -- the command on a toy run ----------------------------------------------------------------------


def toy_run(root: Path, policy: Policy, **config_changes) -> Path:
    """A run folder as a finished default pipeline leaves it, as far as the command reads it:
    pipeline.json and an aligned checkpoint per target (a tiny random policy)."""
    run = root / "run"
    recorded = {**load(PipelineSettings).to_dict(), "workers": 1, **config_changes}
    stages = [{"name": f"align-{t}", "status": "done", "seconds": 1.0} for t in TARGETS]
    run.mkdir(parents=True)
    (run / "pipeline.json").write_text(json.dumps({"name": "run", "config": recorded,
                                                   "stages": stages}))
    for target in TARGETS:
        save_step(run / f"align-{target}", policy, policy.config.to_dict(), kind="policy",
                  stage="rl", step=2, meta={"target": target})
    return run


@pytest.fixture(scope="module")
def shipped_toy(policy, tmp_path_factory):
    """The command run on a toy run into an empty project with a custom GUID for left.json."""
    root = tmp_path_factory.mktemp("ship")
    run, project = toy_run(root, policy), root / "project"
    (project / PACKAGE).mkdir(parents=True)
    kept = project / SAMPLE_PERSONALITIES / "left.json.meta"
    kept.parent.mkdir(parents=True)
    kept.write_text(meta_text("left.json", "0123456789abcdef0123456789abcdef"))
    start = time.perf_counter()
    code = main(["unity-personalities", str(run), "--project", str(project), "--set",
                 "episodes=4", "--set", "num_envs=4", "--no-progress"])
    assert code == 0
    return run, project, time.perf_counter() - start


def test_the_command_writes_the_six_files_with_their_metas(shipped_toy, capsys):
    run, project, seconds = shipped_toy
    folder = project / SAMPLE_PERSONALITIES
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{t}{ext}" for t in TARGETS for ext in (".onnx", ".json", ".onnx.meta", ".json.meta"))
    for name in TARGETS:
        model = (folder / f"{name}.onnx").read_bytes()
        card = json.loads((folder / f"{name}.json").read_text())
        assert card["name"] == card["target"] == name and card["onnx_file"] == f"{name}.onnx"
        assert card["onnx_sha256"] == hashlib.sha256(model).hexdigest()
        assert card["layout_sha256"] == load_layout().digest
        assert card["recipe_sha256"] == recipe_sha256()
        assert card["measured"]["episodes"] == 4 and card["stage"] == "rl"
        onnx_path = f"{SAMPLE_PERSONALITIES}/{name}.onnx"
        assert (folder / f"{name}.onnx.meta").read_text() == \
            ONNX_META.format(guid=guid_for(onnx_path))
        card_path = f"{SAMPLE_PERSONALITIES}/{name}.json"
        guid = "0123456789abcdef0123456789abcdef" if name == "left" else guid_for(card_path)
        assert (folder / f"{name}.json.meta").read_text() == meta_text(card_path, guid)
        assert errors(check_model(model, (3, 64, 64), (9, 3))) == []
    assert seconds < 60, f"the toy command took {seconds:.1f} s"


def test_shipping_again_keeps_the_guids(shipped_toy):
    _, project, _ = shipped_toy
    folder = project / SAMPLE_PERSONALITIES
    metas = {p.name: p.read_text() for p in folder.glob("*.meta")}
    model = (folder / "middle.onnx").read_bytes()
    write_personality(project, "middle", model, (folder / "middle.json").read_text())
    assert {p.name: p.read_text() for p in folder.glob("*.meta")} == metas
    with pytest.raises(ValueError, match="disagrees"):  # a card must name and hash its file
        write_personality(project, "centre", model, (folder / "middle.json").read_text())


@pytest.mark.parametrize("change,message", [
    ({"seed": 3}, "seed: 3 (default 0)"),
    ({"stages": {"collect": [], "demos": [], "pretrain": ["steps=4"], "sft": [], "reward": [],
                 "align": [], "evaluate": []}}, 'stages.pretrain: ["steps=4"] (default [])'),
    ({"targets": ["left", "middle"]}, "targets:"),
])
def test_a_run_of_another_recipe_is_refused_in_one_line(policy, tmp_path, capsys, change,
                                                         message):
    run, project = toy_run(tmp_path, policy, **change), tmp_path / "project"
    (project / PACKAGE).mkdir(parents=True)
    assert main(["unity-personalities", str(run), "--project", str(project)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a default pipeline run with seed 0" in err and message in err, err
    assert "\n" not in err
    assert not (project / SAMPLE_PERSONALITIES).exists()


def test_an_unfinished_or_missing_run_is_refused(policy, tmp_path, capsys):
    run = toy_run(tmp_path, policy)
    state = json.loads((run / "pipeline.json").read_text())
    state["stages"][1]["status"] = "running"
    (run / "pipeline.json").write_text(json.dumps(state))
    assert main(["unity-personalities", str(run), "--project", str(tmp_path)]) == 2
    assert "align-middle has not finished" in capsys.readouterr().err
    assert main(["unity-personalities", str(tmp_path / "nothing")]) == 2
    assert "no pipeline.json" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["unity-personalities", "--help"])
    assert exit_.value.code == 0
    assert "usage: agentalign unity-personalities" in capsys.readouterr().out


# -- the shipped personalities ---------------------------------------------------------------------


def shipped() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.onnx")) if SHIPPED.is_dir() else []


def test_the_sample_ships_left_middle_and_right():
    assert shipped() == sorted(TARGETS), f"{SHIPPED}: {REFRESH}"


@pytest.mark.parametrize("name", TARGETS)
def test_a_shipped_personality_is_current_and_fits_the_scene(name):
    path = SHIPPED / f"{name}.onnx"
    assert path.exists(), f"{path}: {REFRESH}"
    model = path.read_bytes()
    found = check_model(path, (3, 64, 64), (9, 3))
    assert errors(found) == [], [str(f) for f in found]
    card = json.loads((SHIPPED / f"{name}.json").read_text())
    assert card["name"] == card["target"] == name and card["onnx_file"] == path.name
    assert card["onnx_sha256"] == hashlib.sha256(model).hexdigest()
    assert card.get("layout_sha256") == load_layout().digest, f"the island changed: {REFRESH}"
    assert card.get("recipe_sha256") == recipe_sha256(), f"the recipe changed: {REFRESH}"
    rel = f"{SAMPLE_PERSONALITIES}/{name}.onnx"
    guid = (SHIPPED / f"{name}.onnx.meta").read_text().splitlines()[1].removeprefix("guid: ")
    assert (SHIPPED / f"{name}.onnx.meta").read_text() == onnx_meta(guid) == \
        ONNX_META.format(guid=guid)
    assert (SHIPPED / f"{name}.json.meta").exists(), rel


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_a_shipped_personality_reaches_its_pad(name):
    model = (SHIPPED / f"{name}.onnx").read_bytes()
    start = time.perf_counter()
    played = measure(model, SHIP_EPISODES, SHIP_SEED, num_envs=64)
    seconds = time.perf_counter() - start
    rate = played["rates"][name]
    print(f"{name}: {rate['count']}/{SHIP_EPISODES} = {rate['rate']:.1%} to its pad "
          f"[{rate['low']:.1%}, {rate['high']:.1%}] in {seconds:.1f} s")
    assert rate["rate"] >= 0.98, f"{name}: {rate['count']}/{SHIP_EPISODES} episodes reached " \
        f"its pad ({played['rates']})"


def test_export_defaults_are_what_shipping_uses():
    """The shipped cards are measured with the export stage's defaults, as the pipeline's."""
    pipeline = default_pipeline_config()
    export = defaults(ExportSettings)
    assert (export.episodes, export.seed) == (pipeline["export_episodes"], pipeline["seed"])
