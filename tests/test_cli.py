import subprocess
import sys

import pytest

from agentalign.cli import build_parser, main

COMMANDS = ["preview", "collect", "evaluate", "pretrain", "sft", "export", "check-model", "play",
            "import-demo", "unity-scene", "pipeline", "report", "label", "reward", "serve",
            "prefft", "rl", "align", "export-labels", "import-labels", "studio",
            "unity-personalities"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: agentalign " + command in capsys.readouterr().out


def test_all_commands_listed():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(COMMANDS) == set(sub.choices)


@pytest.mark.parametrize("command,options", [
    ("collect", ["episodes", "seed", "num_envs", "workers"]), ("label", ["pairs", "seed"]),
    ("evaluate", ["episodes", "seed", "num_envs"]), ("export", ["episodes", "seed"]),
    ("play", ["episodes", "num_envs", "gifs"]), ("preview", ["player", "target"])])
def test_help_reads_defaults_from_the_configs(command, options, capsys):
    """An option's help ends with its default as the packaged YAML holds it."""
    from agentalign.config import packaged_data

    defaults = packaged_data(command)  # each of these commands' YAML is named after it
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key in options:
        flag = "--" + key.replace("_", "-")
        assert flag in text, flag
        assert f"(default: {defaults[key]})" in text.split(flag, 2)[-1].split("--")[0], key


def test_user_errors_are_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "agentalign.cli", "collect", "--out",
                             str(tmp_path), "--set", "nonsense=1"], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "unknown key 'nonsense'" in result.stderr


def test_preview_writes_map_and_gif(tmp_path, capsys):
    from PIL import Image

    assert main(["preview", "--out", str(tmp_path), "--target", "left"]) == 0
    with Image.open(tmp_path / "episode.gif") as gif:
        assert gif.n_frames > 10 and gif.size == (256, 256)
    with Image.open(tmp_path / "map.png") as png:
        assert png.size == (512, 512)
    assert main(["preview", "--out", str(tmp_path), "--player", "pilot"]) == 2
    assert "--player: player: unknown player type 'pilot'" in capsys.readouterr().err
