"""The one settings loader: packaged defaults, a user file, --set and flags, every key typed and
range-checked, unknown keys refused, one-line errors that name where the value came from."""

import json

import pytest

from agentalign.collect_config import CollectSettings
from agentalign.commands import WHERE, command
from agentalign.config import Settings, defaults, load, packaged_data
from agentalign.errors import ConfigError
from agentalign.evaluate_config import EvaluateSettings
from agentalign.pipeline_config import PipelineSettings
from agentalign.train.align_config import AlignSettings
from agentalign.train.bc_config import ImitationSettings
from agentalign.train.reward_config import RewardSettings


def test_every_packaged_config_loads_into_its_settings():
    """Each command with settings loads its YAML as shipped (the defaults are valid)."""
    for name in WHERE:
        chosen = command(name)
        if not chosen.settings:
            continue
        settings, _ = chosen.request(_defaults_args(chosen))
        assert isinstance(settings, Settings), name


def _defaults_args(chosen):
    """A parsed command line with every required argument given, nothing else."""
    from agentalign.command import parse

    required = {"pretrain": [], "sft": ["--from-scratch"], "label": ["--policy", "p",
                "--target", "left"], "reward": ["--target", "left", "--random-init"],
                "prefft": ["--policy", "p", "--reward", "r", "--target", "left"],
                "rl": ["--policy", "p", "--reward", "r", "--target", "left"],
                "align": ["--policy", "p", "--reward", "r", "--target", "left"],
                "evaluate": ["c"], "export": ["c", "--name", "n"], "play": ["f.onnx"],
                "check-model": ["f.onnx"], "studio": ["--run", "r"],
                "unity-personalities": ["r"]}
    return parse(chosen, required.get(chosen.name, []))


def test_values_are_typed_and_converted():
    s = load(ImitationSettings, overrides=["lr=1e-3", "model.cnn_channels=[8,8]",
                                           "episodes=null"])
    assert s.lr == 0.001 and isinstance(s.lr, float)  # YAML reads 1e-3 as a string
    assert s.model.cnn_channels == (8, 8) and s.episodes is None
    assert load(RewardSettings).epochs == 40.0 and isinstance(load(RewardSettings).epochs, float)
    assert defaults(AlignSettings).rl.samples_per_start == packaged_data("rl")["samples_per_start"]


@pytest.mark.parametrize("overrides,message", [
    (["episodes=-1"], "--set episodes=-1: episodes: must be >= 1, got -1"),
    (["episodes=ten"], "--set episodes=ten: episodes: must be an integer, got 'ten'"),
    (["greedy=yes please"], "greedy: must be true or false"),
    (["starts=everywhere"], "starts: must be one of spawns, offlane, got 'everywhere'"),
    (["offlane.turn=[90, 45]"], "offlane.turn: must be [low, high] with low <= high"),
    (["offlane.turn=[0, 270]"], "offlane.turn[1]: must be within 0.0..180.0, got 270"),
    (["episodez=3"], "--set episodez=3: unknown key 'episodez'"),
    (["offlane.kinds.sideways=1"], "offlane.kinds: must weigh"),
    (["nonsense"], "--set 'nonsense': expected key.path=value"),
])
def test_bad_values_are_one_line_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        load(EvaluateSettings, overrides=overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_user_file_is_named_in_its_errors(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("episodes: 0\n")
    with pytest.raises(ConfigError, match=f"{config}: episodes: must be >= 1, got 0"):
        load(CollectSettings, config)
    config.write_text("players:\n  corpus:\n    mixture: {pilot: 1}\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: players.corpus.mixture.pilot: unknown"):
        load(CollectSettings, config)
    config.write_text("episodes: [\n")
    with pytest.raises(ConfigError, match="mine.yaml: not valid YAML at line"):
        load(CollectSettings, config)
    with pytest.raises(ConfigError, match="cannot read it"):
        load(CollectSettings, tmp_path / "missing.yaml")
    config.write_text("workerz: 2\n")
    with pytest.raises(ConfigError, match="mine.yaml: unknown key 'workerz'"):
        load(CollectSettings, config)


def test_flags_win_over_set_and_the_packaged_file_is_named():
    s = load(CollectSettings, None, ["seed=5"], {"seed": 7, "episodes": None})
    assert s.seed == 7 and s.episodes == packaged_data("collect")["episodes"]
    with pytest.raises(ConfigError, match="--seed: seed: must be >= 0"):
        load(CollectSettings, None, [], {"seed": -1})


def test_sections_of_other_configs_and_free_keys():
    s = load(PipelineSettings, overrides=["label.pairs=10", "stages.pretrain=[steps=5]"])
    assert s.label.pairs == 10 and s.stages["pretrain"] == ("steps=5",)
    c = load(CollectSettings, overrides=["players.corpus.mixture.idler=0.5"])
    assert c.players["corpus"].mixture["idler"] == 0.5  # a mixture's keys are names
    with pytest.raises(ConfigError, match="stages.pretrian: no such stage"):
        load(PipelineSettings, overrides=["stages.pretrian=[steps=5]"])


def test_settings_are_frozen_and_replace_checks():
    s = defaults(EvaluateSettings)
    with pytest.raises(AttributeError):
        s.episodes = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="episodes: must be >= 1"):
        s.replace(episodes=0)


def test_spawn_only_settings_keep_the_identities_of_before():
    """The starts-anywhere keys enter a stage's identity only when used, so a run folder made
    before they existed (same spawn starts) is resumed or skipped, not refused."""
    from agentalign.train.label_config import LabelSettings
    from agentalign.train.prefft_config import PrefftSettings
    from agentalign.train.rl_config import RLSettings

    for cls in (RLSettings, PrefftSettings, LabelSettings):
        assert not [k for k in load(cls).identity() if k.startswith("anywhere")], cls.__name__
        used = load(cls, None, ["anywhere=0.5"]).identity()
        assert used["anywhere"] == 0.5 and "anywhere_edge" in used
    held_out = load(LabelSettings, None, ["anywhere_heldout_episodes=40"]).identity()
    assert held_out["anywhere_heldout_episodes"] == 40 and held_out["anywhere"] == 0.0
    assert "anywhere" not in load(PipelineSettings).identity()["label"]
    assert load(PipelineSettings, None, ["label.anywhere=0.5"]).identity()["label"]["anywhere"]


def test_dormant_keys_stay_out_of_records_until_switched_on():
    """Keys added after runs were recorded (`dormant_while`) leave identities, nested settings
    and the recipe digest as they were while off, so folders, cards and digests stay valid."""
    from agentalign.export.recipe import default_recipe
    from agentalign.train.prefft_config import PrefftSettings

    off = load(ImitationSettings)
    assert off.future_weight == 0 and off.future_temperature > 0  # loaded, only not recorded
    assert not [k for k in off.to_dict() if k.startswith("future")]
    assert not [k for k in off.identity() if k.startswith("future")]
    on = load(ImitationSettings, None, ["future_weight=0.5"]).identity()
    assert on["future_weight"] == 0.5 and on["future_temperature"] == off.future_temperature
    finetune = load(PrefftSettings).identity()["finetune"]  # nested settings too
    assert "future_weight" not in finetune and "batch_size" in finetune
    nested = load(PrefftSettings, None, ["finetune.future_weight=1"]).identity()["finetune"]
    assert nested["future_weight"] == 1
    for stage in ("pretrain", "sft", "align"):  # align holds prefft.finetune
        assert "future_weight" not in json.dumps(default_recipe()[stage]), stage
