import numpy as np
import pytest

from agentalign.envs.render import IslandRenderer, project_point

MARK = (255, 0, 255)


@pytest.fixture(scope="module")
def renderer(layout):
    return IslandRenderer(layout, 64, 64)


@pytest.mark.parametrize("forward, right, heading", [
    (6.0, 0.0, 0.0), (10.0, -3.0, 0.0), (15.0, 4.0, 90.0), (8.0, 2.0, 225.0), (25.0, -6.0, 30.0),
])
def test_marked_ground_point_lands_where_the_pinhole_camera_predicts(layout, forward, right,
                                                                     heading):
    """A marked cell at a known distance and bearing appears at the predicted pixel (+-1 px)."""
    r = IslandRenderer(layout, 64, 64)
    cell = layout.cell
    x0, y0 = r.raster_origin
    agent = np.array([x0 + 400.5 * cell, y0 + 380.5 * cell])  # centre of a cell, open ground
    th = np.radians(heading)
    point = agent + forward * np.array([np.sin(th), np.cos(th)]) \
        + right * np.array([np.cos(th), -np.sin(th)])
    i, j = int((point[1] - y0) // cell), int((point[0] - x0) // cell)
    colour_index = len(r.palette)
    r.palette = np.concatenate([r.palette, np.array([MARK], dtype=np.uint8)])
    # A square marker about 3 px wide wherever it is, so that pixel sampling cannot skip it.
    half = max(1, round(0.05 * np.hypot(forward + layout.camera.back, right) / cell))
    r.raster[i - half:i + half + 1, j - half:j + half + 1] = colour_index
    r.beacon_xy = r.beacon_xy[:0]  # beacons could cover the marker; this test is the ground
    frame = r.render(agent[None], np.array([heading]))[0]
    rows, cols = np.nonzero((frame == MARK).all(axis=2))
    assert len(rows), "the marker is not visible"
    col, row = project_point(layout, 64, 64, forward, right)
    # Pixel centres sit at +0.5; the marker's pixels surround the prediction, the nearest one
    # within a pixel of it.
    assert rows.min() - 1 <= row - 0.5 <= rows.max() + 1
    assert cols.min() - 1 <= col - 0.5 <= cols.max() + 1
    assert np.maximum(abs(rows + 0.5 - row), abs(cols + 0.5 - col)).min() <= 1.0


def pad_pixels(frame, colour) -> int:
    return int((frame == np.array(colour, dtype=np.uint8)).all(axis=2).sum())


@pytest.mark.parametrize("pad", ["left", "middle", "right"])
def test_pads_show_their_colour_when_faced_not_when_facing_away(layout, renderer, pad):
    target = np.array(layout.pad(pad).position)
    start = np.array(layout.spawns[1].position)
    bearing = np.degrees(np.arctan2(*(target - start)))
    frames = renderer.render(np.stack([start, start]), np.array([bearing, bearing + 180.0]))
    colour = layout.palette[layout.pad(pad).colour]
    assert pad_pixels(frames[0], colour) >= 6
    assert pad_pixels(frames[1], colour) == 0


def test_sky_on_top_avatar_fixed_and_deterministic(layout, renderer):
    positions = np.array([[0.0, -10.0], [5.0, 0.0]])
    frames = renderer.render(positions, np.array([0.0, 123.0]))
    assert frames.dtype == np.uint8 and frames.shape == (2, 64, 64, 3)
    assert (frames[:, 0] == np.array(layout.palette["sky_top"])).all()
    avatar = np.array(layout.palette["avatar"])
    assert (frames[0, 45, 32] == avatar).all() and (frames[1, 45, 32] == avatar).all()
    # The agent at heading 0 stands on grass, so the bottom row is ground, not sky.
    bottom = frames[0, -1, 0]
    assert tuple(bottom) in {tuple(layout.palette[k]) for k in ("grass", "grass_alt", "sand")}
    np.testing.assert_array_equal(frames, renderer.render(positions, np.array([0.0, 123.0])))


def test_other_resolutions(layout):
    r = IslandRenderer(layout, 128, 96)
    frame = r.render(np.array([[0.0, -10.0]]), np.array([0.0]))
    assert frame.shape == (1, 128, 96, 3)
    col, row = project_point(layout, 128, 96, 0.0, 0.0, layout.agent.height / 2)
    assert (frame[0, int(row), int(col)] == np.array(layout.palette["avatar"])).all()
