import json

import pytest

from agentalign.envs.layout import load_layout, parse_layout
from agentalign.errors import LayoutError
from agentalign.spec import PADS


def raw_layout() -> dict:
    from importlib import resources

    return json.loads((resources.files("agentalign.envs") / "layouts" /
                       "jumppad_island.json").read_text())


def test_packaged_layout_has_the_papers_task(layout):
    assert [p.name for p in layout.pads] == list(PADS)
    assert len(layout.spawns) == 4
    assert layout.obstacles and layout.landmarks
    # "left" is west of the spawn area, "right" east, as the agent faces north at spawn.
    spawn_x = sum(s.position[0] for s in layout.spawns) / 4
    assert layout.pad("left").position[0] < spawn_x < layout.pad("right").position[0]
    assert all(s.heading == 0.0 for s in layout.spawns)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("camera"), "field camera is missing"),
    (lambda r: r["palette"].__setitem__("grass", [0, 300, 0]), "palette.grass"),
    (lambda r: r["jumppads"][0].__setitem__("position", [-31.0, 0.0]), "is not on the island"),
    (lambda r: r["jumppads"][0].__setitem__("name", "west"), "must be exactly"),
    (lambda r: r["spawns"][0].__setitem__("position", [0.0, 1.0]), "inside an obstacle"),
    (lambda r: r["obstacles"][0].__setitem__("colour", "lava"), "not in the palette"),
    (lambda r: r["agent"].__setitem__("move_speed", -1), "agent.move_speed"),
    (lambda r: r["camera"].__setitem__("pitch", 95), "camera.pitch"),
    (lambda r: r.__setitem__("format_version", 7), "format_version"),
    (lambda r: r["spawns"].__setitem__(0, 5), "spawns[0]"),
])
def test_malformed_layouts_name_the_field(mutate, message):
    raw = raw_layout()
    mutate(raw)
    with pytest.raises(LayoutError, match=r"layout my\.json:.*") as err:
        parse_layout(raw, "my.json")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_and_unknown_layouts(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(LayoutError, match="broken.json: not valid JSON"):
        load_layout(bad)
    with pytest.raises(LayoutError, match="unknown layout 'atlantis'"):
        load_layout("atlantis")
    with pytest.raises(LayoutError, match="cannot read it"):
        load_layout(tmp_path / "missing.json")
