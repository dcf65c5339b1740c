"""The demo story, prompt switches back to schedules, and revisit errors read back from an mp4."""

from __future__ import annotations

import numpy as np
import pytest

from context_forcing_core.toyworld.constants import FRAMES_PER_SECOND
from context_forcing_core.toyworld.scenes import VISIT_UNIT, forgetting_schedule, render_schedule
from context_forcing_core.toyworld.story import (
    frames_from_video,
    revisit_lines,
    scene_prompt_of,
    schedule_from_switches,
    story_schedule,
    visit_strip,
)
from context_forcing_core.toyworld.viewer import save_video
from context_forcing_core.toyworld.visit_metrics import scene_report


def test_story_is_a_minute_of_five_scenes_with_a_long_gap():
    s = story_schedule()
    assert s.num_frames == 60 * FRAMES_PER_SECOND
    assert len({v.prompt for v in s.visits}) == 5 and len({v.prompt.palette for v in s.visits}) == 5
    assert all(v.start % VISIT_UNIT == 0 for v in s.visits)
    gaps = [r.gap_s for r in scene_report(render_schedule(s), s).returns if not r.sink]
    assert max(gaps) == 28.5 and sum(g >= 10 for g in gaps) >= 5


def test_switches_give_back_the_story():
    s = story_schedule()
    switches = [(v.start / FRAMES_PER_SECOND, v.prompt.text) for v in s.visits[1:]]
    back = schedule_from_switches(s.visits[0].prompt.text, switches, s.num_frames)
    assert [(v.prompt, v.start, v.stop) for v in back.visits] == [(v.prompt, v.start, v.stop) for v in s.visits]


def test_scene_prompts_are_read_forgivingly_and_refused_clearly():
    assert scene_prompt_of("  A desert SCENE,  shapes over bands ").palette == "desert"
    with pytest.raises(ValueError, match="a desert landscape"):
        scene_prompt_of("a desert landscape, vertical bands")
    with pytest.raises(ValueError, match="must increase"):
        schedule_from_switches("a desert scene, vertical bands", [(5.0, "a neon scene, vertical bands"),
                                                                   (3.0, "a ocean scene, vertical bands")], 40)


@pytest.mark.parametrize("forget", [False, True])
def test_revisit_errors_survive_the_mp4(tmp_path, forget):
    """Ground truth written as an 8x-enlarged mp4 and read back scores as ground truth (revisit error ~0, every
    picture recalled); the forget-after-5-s oracle scores ~1 beyond 5 s."""
    s = story_schedule()
    shown = forgetting_schedule(s, 5.0) if forget else s
    path = save_video(render_schedule(shown), tmp_path / "story.mp4", scale=8)
    frames = frames_from_video(path)
    assert frames.shape == (240, 3, 32, 32)
    assert np.abs(frames - render_schedule(shown)).mean() < 0.01
    report = scene_report(frames, s)
    far = [r for r in report.returns if not r.sink and r.gap_s > 5]
    if forget:
        assert all(r.relative > 0.6 and not r.recalled for r in far)
    else:
        assert all(r.relative < 0.05 and r.recalled for r in report.returns)
        lines = revisit_lines(report)
        assert len(lines) == len(report.returns) + 3 and "sunset bands" in lines[-3] and "28.5" in lines[-3]


def test_visit_strip_shows_the_last_frame_of_every_visit():
    s = story_schedule()
    frames = render_schedule(s)
    img = np.asarray(visit_strip(frames, s, scale=2, gap=4))
    assert img.shape == (64 + 28, len(s.visits) * 64 + (len(s.visits) - 1) * 4, 3)
    last = s.visits[-1]
    expected = (frames[last.stop - 1].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(img[:64:2, -64::2], expected)
