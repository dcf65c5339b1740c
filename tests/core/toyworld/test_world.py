"""Panoramas and camera paths: determinism, validation, and revisits across the gaps the oracle needs."""

from __future__ import annotations

import numpy as np
import pytest

from context_forcing_core.toyworld.camera import HOLD_FRAMES, MOTIONS, CameraSpec, camera_path, render_video
from context_forcing_core.toyworld.world import CELL, FRAME_SIZE, PALETTES, STYLES, SceneSpec, render_panorama


def revisit_gaps_s(offsets: np.ndarray, width: int) -> np.ndarray:
    """Seconds between a panorama column leaving the view and coming back, for every return (brute force)."""
    last_seen: dict[int, int] = {}
    previous: set[int] = set()
    gaps = []
    for t, o in enumerate(offsets):
        cols = {int(c) for c in (o + np.arange(FRAME_SIZE)) % width}
        gaps += [(t - last_seen[c]) / 4 for c in cols - previous if c in last_seen]
        last_seen.update({c: t for c in cols})
        previous = cols
    return np.asarray(gaps)


@pytest.mark.parametrize("palette", sorted(PALETTES))
@pytest.mark.parametrize("style", STYLES)
def test_panoramas_are_deterministic_in_range_and_seed_dependent(palette, style):
    a = render_panorama(SceneSpec(palette=palette, style=style, seed=3))
    assert a.shape == (3, FRAME_SIZE, 256) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a * 256, np.round(a * 256)), "colours lie on the 1/256 grid"
    assert np.array_equal(a, render_panorama(SceneSpec(palette=palette, style=style, seed=3)))
    assert not np.array_equal(a, render_panorama(SceneSpec(palette=palette, style=style, seed=4)))


def test_panoramas_are_flat_cells_of_the_palette_with_a_faint_shade():
    pano = render_panorama(SceneSpec(palette="neon", seed=5))
    cells = pano.reshape(3, FRAME_SIZE // CELL, CELL, -1, CELL)  # (3, rows, 8, cols, 8)
    assert np.all(cells == cells[:, :, :1, :, :1]), "every 8 x 8 cell is flat"
    palette = np.asarray(PALETTES["neon"]) / 255.0  # (5, 3)
    colours = cells[:, :, 0, :, 0].reshape(3, -1).T  # (cells, 3)
    nearest = np.abs(colours[:, None] - palette[None]).max(axis=-1).min(axis=1)
    assert nearest.max() <= 0.04 + 1 / 256 and nearest.mean() > 0.005, "palette colour +- its cell's shade"


def test_palette_drives_colour():
    desert = render_panorama(SceneSpec(palette="desert", seed=0)).mean(axis=(1, 2))
    ocean = render_panorama(SceneSpec(palette="ocean", seed=0)).mean(axis=(1, 2))
    assert desert[0] > desert[2] and ocean[2] > ocean[0]  # red-ish sand, blue-ish sea


@pytest.mark.parametrize("motion", MOTIONS)
def test_camera_paths_move_stay_in_bounds_and_are_deterministic(motion):
    path = camera_path(CameraSpec(motion=motion, seed=1), 240, 256)
    assert np.array_equal(path, camera_path(CameraSpec(motion=motion, seed=1), 240, 256))
    assert np.abs(np.diff(path)).sum() > 100, "the camera travels"
    if motion != "loop":
        assert path.min() >= 0 and path.max() <= 256 - FRAME_SIZE
        assert (np.diff(np.sign(np.diff(path))[np.diff(path) != 0]) != 0).any(), "ping-pong turns around"


@pytest.mark.parametrize("motion", MOTIONS)
def test_camera_steps_one_cell_at_the_motions_pace(motion):
    steps = np.diff(camera_path(CameraSpec(motion=motion, seed=2), 240, 256))
    assert set(np.unique(steps)) <= {-CELL, 0, CELL}
    moving = np.flatnonzero(steps)
    if motion in HOLD_FRAMES:  # steady pace: exactly one step every HOLD_FRAMES frames
        assert np.all(np.diff(moving) == HOLD_FRAMES[motion])
    else:  # a step every 1-4 frames, and pauses of up to 3 s
        assert set(np.unique(np.diff(moving))) - {1, 2, 3, 4} and np.diff(moving).max() <= 4 + 12 + 1


def test_revisit_gaps_span_one_to_forty_seconds():
    gaps = np.concatenate([
        revisit_gaps_s(camera_path(CameraSpec(motion=m, seed=s), 240, 256), 256)
        for m in ("slow_pan", "fast_pan", "pan_with_pauses") for s in range(5)
    ])
    assert gaps.min() <= 1.0 and gaps.max() >= 40.0
    assert np.mean(gaps > 20) > 0.1, "a good share of revisits test memory beyond 20 s"


def test_render_video_is_a_rigid_window_with_wrap_around():
    pano = render_panorama(SceneSpec(seed=0))
    video = render_video(pano, np.array([0, 5, 250]))
    assert video.shape == (3, 3, FRAME_SIZE, FRAME_SIZE)
    assert np.array_equal(video[1], pano[:, :, 5:37])
    assert np.array_equal(video[2], np.concatenate([pano[:, :, 250:], pano[:, :, :26]], axis=-1))


def test_bad_specs_list_what_is_allowed():
    with pytest.raises(ValueError, match="allowed: desert"):
        SceneSpec(palette="mars")
    with pytest.raises(ValueError, match="allowed: bands"):
        SceneSpec(style="dots")
    with pytest.raises(ValueError, match="at least 64"):
        SceneSpec(width=40)
    with pytest.raises(ValueError, match="allowed: slow_pan"):
        CameraSpec(motion="zoom")
    with pytest.raises(ValueError, match="positive"):
        camera_path(CameraSpec(), 0, 256)
