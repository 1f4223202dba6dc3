"""The report's charts and the trajectory heatmap are drawn by matplotlib: SVG markup ready to
inline in HTML (deterministic bytes), and a framed RGB heatmap with a colour bar."""

from __future__ import annotations

import re
import xml.dom.minidom

import numpy as np
import pytest
from PIL import Image

from agentalign.envs.layout import load_layout
from agentalign.envs.render import IslandRenderer
from agentalign.report import OUTCOME_COLOURS, line_chart, outcome_bars
from agentalign.rollout.pictures import colour_map, trajectory_heatmap, visit_shares


def _rate(rate: float, half: float = 0.05, n: int = 200) -> dict[str, float]:
    return {"rate": rate, "low": max(0.0, rate - half), "high": min(1.0, rate + half), "n": n}


ROWS = [
    ("base", {"none": _rate(0.7), "left": _rate(0.1), "middle": _rate(0.1),
              "right": _rate(0.1)}),
    ("sft", {"none": _rate(0.2), "left": _rate(0.3), "middle": _rate(0.25),
             "right": _rate(0.25)}),
    ("left-aligned", {"none": _rate(0.05), "left": _rate(0.9), "middle": _rate(0.03),
                      "right": _rate(0.02)}),
]


def test_outcome_bars_is_inline_svg_with_one_bar_per_agent_and_outcome():
    svg = outcome_bars(ROWS)
    assert svg.startswith("<svg")  # no XML prolog or doctype inside the HTML
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert svg.rstrip().endswith("</svg>")
    xml.dom.minidom.parseString(svg)  # well-formed
    for colour in OUTCOME_COLOURS.values():
        fills = re.findall(rf"fill: ?{colour}\b", svg, flags=re.IGNORECASE)
        assert len(fills) == len(ROWS) + 1  # one bar per agent, plus the legend's swatch
    texts = set(re.findall(r"<!-- (.*?) -->", svg))  # matplotlib names each text it draws
    assert {label for label, _ in ROWS} <= texts
    assert set(OUTCOME_COLOURS) <= texts  # the legend
    assert {"0%", "50%", "100%"} <= texts  # the percent axis
    assert {"70", "90"} <= texts  # value labels on the bars


def test_charts_are_deterministic():
    assert outcome_bars(ROWS) == outcome_bars(ROWS)
    series = {"left": [(1.0, 0.2), (2.0, 0.4), (3.0, 0.5)], "none": [(1.0, 0.6), (3.0, 0.1)]}
    first = line_chart("left: true outcome rates", series, "RL iteration")
    assert first == line_chart("left: true outcome rates", series, "RL iteration")
    assert "Date" not in first and "<dc:date>" not in first


def test_line_chart_draws_its_series_and_handles_no_data():
    assert line_chart("left: KL to reference", {}, "RL iteration") == (
        "<p>left: KL to reference: no data</p>")
    assert line_chart("a <b>", {"kl": []}) == "<p>a &lt;b&gt;: no data</p>"
    svg = line_chart("left: score", {"left": [(1.0, 0.1), (2.0, 0.3)], "kl": [(1.0, 2.0)]},
                     "RL iteration")
    assert svg.startswith("<svg")
    texts = set(re.findall(r"<!-- (.*?) -->", svg))
    assert {"left: score", "RL iteration", "left", "kl"} <= texts
    assert OUTCOME_COLOURS["left"] in svg  # outcome series keep their outcome colour


@pytest.fixture(scope="module")
def island():
    layout = load_layout("jumppad_island")
    return layout, IslandRenderer(layout)


def _tracks(layout, episodes: int) -> list[np.ndarray]:
    """Straight walks from the spawns towards the pads, with a little wobble."""
    rng = np.random.default_rng(0)
    tracks = []
    for k in range(episodes):
        start = np.array(layout.spawns[k % len(layout.spawns)].position)
        end = np.array(layout.pads[k % len(layout.pads)].position)
        t = np.linspace(0.0, 1.0, 30)[:, None]
        tracks.append(start + (end - start) * t + rng.normal(0.0, 0.1, (30, 2)))
    return tracks


def test_trajectory_heatmap_frames_the_map_with_matplotlib(island):
    layout, renderer = island
    episodes, ppm, margin = 40, 10.0, 3.0
    image = trajectory_heatmap(renderer, _tracks(layout, episodes), "stage sft",
                               "left 50.0%  middle 25.0%", pixels_per_metre=ppm, margin=margin)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    coast = np.array(layout.polygon)
    map_w, map_h = np.round((coast.max(0) - coast.min(0) + 2 * margin) * ppm).astype(int)
    assert image.width == pytest.approx(map_w, abs=1)
    assert image.height > map_h + 60  # a title strip above and a colour bar below the map
    pixels = np.asarray(image).astype(np.int64)
    # The colour bar (in the bottom strip) runs from the floor of the ramp to its top.
    footer = pixels[-40:].reshape(-1, 3)
    for value in (0.0, 1.0):
        colour = colour_map(np.array(value)).astype(np.int64)
        assert np.abs(footer - colour).max(axis=1).min() <= 12, value
    # Title text is drawn on the strip's background.
    assert (np.abs(pixels[:50] - pixels[0, -1]).max(axis=2) > 100).any()


def test_colour_map_uses_the_upper_part_of_inferno():
    import matplotlib

    colours = colour_map(np.array([0.0, 1.0]))
    assert colours.dtype == np.uint8 and colours.shape == (2, 3)
    assert not np.array_equal(colours[0], colours[1])
    inferno = matplotlib.colormaps["inferno"]
    assert np.array_equal(colours[1], inferno(1.0, bytes=True)[:3])
    assert colours[0].sum() > 60  # the floor: dark purple, not black
    assert colour_map(np.zeros((4, 5))).shape == (4, 5, 3)


def test_visit_shares_counts_each_episode_once_per_square(island):
    layout, _ = island
    spawn = np.array(layout.spawns[0].position)
    dither = np.array([spawn, spawn + 0.1, spawn, spawn + 0.1, spawn])
    walk = np.array([spawn, spawn + np.array([0.0, 5.0])])
    shares = visit_shares(layout, [dither, walk], cell=0.5)
    (x0, _), (_, y1) = layout.world_min, layout.world_max
    i, j = int((y1 - spawn[1]) / 0.5), int((spawn[0] - x0) / 0.5)
    assert shares[i, j] == 1.0
    assert shares.max() == 1.0 and shares.min() == 0.0
    assert 0.5 in shares  # squares only the walk entered


def test_the_report_shows_each_targets_study_with_its_gaps(tmp_path):
    """Each target's label-scaling chart, and agent minus random init at each label count."""
    import json

    from agentalign.report import build_report

    plots = {}
    for target, agent in (("left", 0.9), ("right", 0.7)):
        folder = tmp_path / f"study-{target}"
        folder.mkdir()
        Image.new("RGB", (4, 4)).save(folder / "study.png")
        table = [{"labels": 50, "init": "agent", "mean": agent},
                 {"labels": 50, "init": "random", "mean": 0.8}]
        (folder / "study.json").write_text(json.dumps({"table": table}))
        plots[target] = f"study-{target}/study.png"
    (tmp_path / "pipeline.json").write_text(json.dumps({"study_plots": plots}))
    html = build_report(tmp_path).read_text()
    assert "Label scaling: left" in html and "Label scaling: right" in html
    assert "50: +10.0" in html and "50: -10.0" in html
