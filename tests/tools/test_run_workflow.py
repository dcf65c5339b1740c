"""The demo's revisit report reads the story back from the shipped workflow."""

from __future__ import annotations

import json
from pathlib import Path

from context_forcing_core.toyworld.story import story_schedule
from tools.run_workflow import scene_schedule_of

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def test_the_toy_workflow_is_the_story():
    workflow = json.loads((WORKFLOWS / "toy_long_video.json").read_text())
    got = scene_schedule_of(workflow, 240)
    assert got is not None
    assert [(v.prompt, v.start, v.stop) for v in got.visits] == [(v.prompt, v.start, v.stop)
                                                                 for v in story_schedule().visits]


def test_other_workflows_have_no_scene_schedule():
    for name in ("wan_long_video.json", "memory_comparison.json"):  # Wan prompts; two samplers
        assert scene_schedule_of(json.loads((WORKFLOWS / name).read_text()), 240) is None
